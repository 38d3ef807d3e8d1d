"""The sample-efficiency benchmark's code paths in a tiny configuration (fast oracle prior, hashing features).

Exercises every part of ``benchmarks/sample_efficiency.py`` except TextWorld (game generation needs the
``textworld`` extra and ~5 s per game): online DQN and PPO with steps-to-success and ratios, offline CQL vs
CQL-Prior over dataset sizes, the CSV/PNG outputs and the final line.
"""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from prior_wrappers import CachedEncoder, HashingEncoder

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("sample_efficiency", ROOT / "benchmarks" / "sample_efficiency.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["sample_efficiency"] = module
    spec.loader.exec_module(module)
    return module


def tiny_config(bench):
    return bench.Config(
        seeds=[0],
        online_envs=[bench.TOMATO],
        online_algos=["DQN", "PPO"],
        online_steps={bench.TOMATO: 256},
        eval_freq={bench.TOMATO: 128},
        eval_episodes=2,
        n_envs=2,
        k=8,  # the offline part plays Tomato-lettuce: all 8 commands must fit
        offline_sizes=[60, 200],
        offline_seeds=[0],
        offline_gradient_steps=50,
        offline_eval_episodes=2,
    )


def test_quick_benchmark_runs_end_to_end(bench, tmp_path):
    torch.set_num_threads(1)
    res = bench.Resources("function", encoder=CachedEncoder(HashingEncoder(32)))
    lines: list[str] = []
    summary = bench.run_benchmark(tiny_config(bench), res, tmp_path, {"online", "offline"}, log=lines.append)
    text = "\n".join(lines)
    assert "Online" in text and "Offline" in text
    for name in ("sample_efficiency_online.csv", "sample_efficiency_offline.csv", "sample_efficiency_offline.png",
                 "sample_efficiency_tomato_dqn.png", "sample_efficiency_tomato_ppo.png"):
        assert (tmp_path / name).is_file(), name
    line = bench.final_line(summary)
    assert re.fullmatch(r"online_steps_ratio=\S+ offline_data_ratio=\S+ unseen_success=\S+", line)
    assert np.isfinite(summary["online_steps_ratio"]) and np.isfinite(summary["offline_data_ratio"])


def test_steps_to_success_counts_misses_as_the_budget(bench):
    hit = bench.LearningCurve("a", 0, steps=[0, 100, 200], success_rate=[0.0, 0.9, 1.0], mean_return=[0, 0, 0])
    miss = bench.LearningCurve("a", 1, steps=[0, 100, 200], success_rate=[0.0, 0.5, 0.8], mean_return=[0, 0, 0])
    s = bench.steps_to_success([hit, miss], budget=200)
    assert s.steps == [100, 200] and s.lower_bound and s.text().startswith(">=150")
    ratio, text = bench.ratio_text(s, bench.steps_to_success([hit], budget=200))
    assert ratio == 1.5 and text == ">=1.50"


def test_uniform_copy_keeps_the_transitions(bench):
    rng = np.random.default_rng(0)
    mask = np.array([[1, 1, 0], [1, 1, 1], [1, 0, 0]], dtype=np.int8)
    logp = np.log(rng.dirichlet(np.ones(3), size=3)).astype(np.float32)
    obs = {"prior_logprobs": logp, "action_mask": mask}
    data = bench.OfflineDataset(
        observations=obs, actions=np.array([0, 2, 0]), rewards=np.zeros(3, np.float32), next_observations=obs,
        terminated=np.array([False, True, True]), truncated=np.zeros(3, bool), episode_index=np.array([0, 0, 1]),
        episode_success=np.array([True, False]), episode_return=np.array([1.0, 0.0]),
    )
    flat = data.with_uniform_prior().observations["prior_logprobs"]
    np.testing.assert_allclose(flat[1], np.log([1 / 3] * 3), rtol=1e-6)
    np.testing.assert_allclose(flat[0, :2], np.log([0.5, 0.5]), rtol=1e-6)
    assert flat[0, 2] == bench.LOGPROB_MIN
