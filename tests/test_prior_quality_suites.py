"""The prior-quality benchmark's families for the third-party suites: evaluation games from the held-out fold or
split, demonstrations from the training one, one game per reset seed, named in info["game_file"]."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("prior_quality_suites", ROOT / "benchmarks" / "prior_quality.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["prior_quality_suites"] = module
    spec.loader.exec_module(module)
    return module


def _games(env, first_seed, n):
    return [env.reset(seed=first_seed + i)[1]["game_file"] for i in range(n)]


def test_textworld_express_family_plays_test_fold_games_for_evaluation(bench):
    pytest.importorskip("textworld_express")
    from envs.jvm import find_java

    if find_java() is None:
        pytest.skip("needs Java")
    family = bench.FAMILIES["twx-cooking"]
    evaluation = family.make_env(bench.UNSEEN_SEED_OFFSET, 2)
    assert _games(evaluation, bench.UNSEEN_SEED_OFFSET, 3) == [
        "TextWorldExpressEnv:game_seed=20000", "TextWorldExpressEnv:game_seed=20001", "TextWorldExpressEnv:game_seed=20000"
    ]
    demos = family.make_env(0, 2)
    assert _games(demos, 0, 2) == ["TextWorldExpressEnv:game_seed=0", "TextWorldExpressEnv:game_seed=1"]
    obs, reward, terminated, truncated, info = demos.step(demos.unwrapped.expert_command())
    assert info["game_file"] == "TextWorldExpressEnv:game_seed=1"  # the last step names the game too


def test_scienceworld_family_uses_the_test_split_for_evaluation(bench):
    pytest.importorskip("scienceworld")
    from envs.jvm import find_java

    if find_java() is None:
        pytest.skip("needs Java")
    family = bench.FAMILIES["sw-lifespan"]
    evaluation = family.make_env(bench.UNSEEN_SEED_OFFSET, 1)
    obs, info = evaluation.reset(seed=bench.UNSEEN_SEED_OFFSET)
    assert info["game_file"] == "ScienceWorldEnv:variation=93" and info["split"] == "test"  # test: 93..124
    assert evaluation.unwrapped.expert_command() in info["admissible_commands"]  # add_expert_command


def test_babyai_family_is_seeded_by_the_reset_seed(bench):
    pytest.importorskip("minigrid")
    env = bench.FAMILIES["babyai-goto"].make_env(0, 2)
    assert env.reset(seed=3)[0] == env.reset(seed=3)[0] != env.reset(seed=4)[0]
