"""benchmarks/text_suites.py's measuring code on BabyAI (no JVM, no model): speed, uniform play, the expert."""

from __future__ import annotations

import argparse
import importlib.util
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("text_suites", ROOT / "benchmarks" / "text_suites.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["text_suites"] = module
    spec.loader.exec_module(module)
    return module


def test_babyai_figures(bench):
    pytest.importorskip("minigrid")
    args = argparse.Namespace(babyai_levels=["GoToLocal"], episodes=3, seconds=0.05)
    row = bench.bench_babyai(args)["GoToLocal"]
    assert row["admissible_mean"] == row["admissible_max"] == 6 and row["max_steps"] == 64
    assert row["expert_success"] == 1.0 and 1 <= row["gold_mean"] <= row["gold_max"] < 64
    assert 0.0 <= row["success"] <= 1.0 and row["episode_steps_mean"] <= 64
    assert row["raw_steps_per_s"] > 0 and row["env_steps_per_s"] > 0 and row["env_steps_per_s_with_bot"] > 0


def test_uniform_play_counts_successes_within_the_step_budget(bench):
    class Coin:  # wins on "take coin", one of two commands
        def reset(self, seed=None):
            return "a coin", {"admissible_commands": ["take coin", "wait"], "is_success": False}

        def step(self, command):
            won = command == "take coin"
            return "", float(won), won, False, {"admissible_commands": ["take coin", "wait"], "is_success": won}

        def expert_command(self):
            return "take coin"

    result = bench.uniform_success(Coin, episodes=40, steps=1)
    assert 0.3 < result["success"] < 0.7 and result["admissible_mean"] == 2 and result["episode_steps_mean"] == 1
    assert bench.uniform_success(Coin, episodes=10, steps=50)["success"] == 1.0
    assert bench.expert_paths(Coin, episodes=2) == {"episodes": 2, "expert_success": 1.0, "gold_mean": 1, "gold_max": 1}
