"""Progress bars and TensorBoard: ``train/*`` keys always, ``prior/*`` keys when the env reports prior stats."""

from __future__ import annotations

from pathlib import Path

import pytest
from candidate_env import CandidateChainEnv

from prior_wrappers.sb3 import CQLPrior, DQNPrior, PPOPrior, RandomCandidatePolicy, collect_dataset

pytestmark = pytest.mark.filterwarnings("ignore:rich is experimental")

PRIOR_KEYS = {"prior/calls", "prior/cache_hit_rate", "prior/latency_ms"}


def tensorboard_tags(log_dir: Path) -> set[str]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    (run,) = [p for p in log_dir.iterdir() if p.is_dir()]
    accumulator = EventAccumulator(str(run))
    accumulator.Reload()
    return set(accumulator.Tags()["scalars"])


def make_env(stats: bool = True):
    return CandidateChainEnv(k=5, feature_dim=4, length=3, emit_prior_stats=stats)


@pytest.mark.parametrize(
    "algo,kwargs,train_keys",
    [
        (DQNPrior, dict(learning_starts=32, train_freq=1), {"train/loss", "train/q_values", "train/learning_rate"}),
        (PPOPrior, dict(n_steps=64, batch_size=32, n_epochs=1), {"train/kl_prior", "train/alpha", "train/loss"}),
    ],
    ids=["DQNPrior", "PPOPrior"],
)
def test_progress_bar_and_tensorboard_keys(tmp_path, algo, kwargs, train_keys):
    model = algo("CandidatePolicy", make_env(), tensorboard_log=str(tmp_path), seed=0, device="cpu", **kwargs)
    model.learn(256, progress_bar=True, log_interval=1)
    tags = tensorboard_tags(tmp_path)
    assert train_keys <= tags
    assert PRIOR_KEYS <= tags
    assert "rollout/success_rate" in tags


def test_no_prior_keys_without_prior_stats(tmp_path):
    model = DQNPrior("CandidatePolicy", make_env(stats=False), tensorboard_log=str(tmp_path), learning_starts=32, seed=0)
    model.learn(200, log_interval=1)
    assert not any(tag.startswith("prior/") for tag in tensorboard_tags(tmp_path))


def test_learn_offline_progress_bar_and_tensorboard(tmp_path):
    env = make_env()
    data = collect_dataset(env, RandomCandidatePolicy(seed=0), n_episodes=10, seed=0)
    model = CQLPrior("CandidatePolicy", env, tensorboard_log=str(tmp_path), seed=0, device="cpu")
    model.learn_offline(data, gradient_steps=60, log_interval=20, progress_bar=True)
    tags = tensorboard_tags(tmp_path)
    assert {"train/loss", "train/td_loss", "train/cql_loss", "offline/dataset_success_rate"} <= tags


def test_prior_keys_from_llm_prior_wrapper(tmp_path):
    from toy_text_env import CorridorTextEnv

    from prior_wrappers.priors import CachedPrior, FunctionPrior
    from prior_wrappers.wrappers import LLMPriorWrapper

    prior = CachedPrior(FunctionPrior(lambda prompt, commands: [1.0 if c == "go east" else 0.0 for c in commands]))
    env = LLMPriorWrapper(CorridorTextEnv(), prior, k=4, encoder="hashing")
    model = PPOPrior("CandidatePolicy", env, n_steps=64, batch_size=32, n_epochs=1, tensorboard_log=str(tmp_path), seed=0)
    model.learn(128)
    assert PRIOR_KEYS <= tensorboard_tags(tmp_path)
