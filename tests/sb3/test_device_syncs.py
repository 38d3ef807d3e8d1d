"""Training copies its logged scalars from the device once per ``train`` call, not once per gradient step.

On a GPU every ``.item()`` (``.cpu()``, ``.numpy()``, ``.tolist()``, ``float(t)``, ``if t:``) makes the host
wait until the device has run every kernel queued so far. The tests count these calls made by the package's own
code (not torch's or SB3's: AdamW reads its step counter, a CPU tensor, with ``.item()``) during ``train`` and
require the count not to grow with the gradient steps or minibatches.
"""

from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path

import pytest
import torch as th
from candidate_env import CandidateChainEnv

import prior_wrappers
from prior_wrappers.sb3 import CQLPrior, DQNPrior, PPOPrior, RandomCandidatePolicy, collect_dataset

PACKAGE_DIR = str(Path(prior_wrappers.__file__).parent)
HOST_COPIES = ("item", "tolist", "cpu", "numpy", "__float__", "__int__", "__bool__")


@pytest.fixture
def host_copies(monkeypatch: pytest.MonkeyPatch) -> Counter:
    """Counts the calls of :data:`HOST_COPIES` on tensors made from a frame of ``prior_wrappers``."""
    counts: Counter = Counter()

    def counting(name: str):
        original = getattr(th.Tensor, name)

        def wrapper(self, *args, **kwargs):
            if sys._getframe(1).f_code.co_filename.startswith(PACKAGE_DIR):
                counts[name] += 1
            return original(self, *args, **kwargs)

        return wrapper

    for name in HOST_COPIES:
        monkeypatch.setattr(th.Tensor, name, counting(name))
    return counts


def copies_during(counts: Counter, step) -> int:
    counts.clear()
    step()
    return sum(counts.values())


def make_env() -> CandidateChainEnv:
    return CandidateChainEnv(k=5, feature_dim=4, length=3)


def test_dqn_prior_train_copies_to_the_host_once_whatever_the_gradient_steps(host_copies):
    model = DQNPrior("CandidatePolicy", make_env(), learning_starts=10_000, seed=0, device="cpu")
    model.learn(100)  # fills the buffer, no training
    few = copies_during(host_copies, lambda: model.train(gradient_steps=5, batch_size=16))
    many = copies_during(host_copies, lambda: model.train(gradient_steps=20, batch_size=16))
    assert few == many <= 1, host_copies
    assert {"train/loss", "train/q_values"} <= set(model.logger.name_to_value)


@pytest.mark.parametrize(
    "kwargs",
    [dict(), dict(behavior_threshold=0.5, prior_mass=0.9, conservative="prior_weighted")],
    ids=["default", "behavior_support"],
)
def test_cql_prior_train_copies_to_the_host_once_whatever_the_gradient_steps(host_copies, kwargs):
    env = make_env()
    data = collect_dataset(env, RandomCandidatePolicy(seed=0), n_episodes=20, seed=0)
    model = CQLPrior("CandidatePolicy", env, seed=0, device="cpu", **kwargs)
    model.learn_offline(data, gradient_steps=1, log_interval=0)
    few = copies_during(host_copies, lambda: model.train(gradient_steps=5, batch_size=16))
    many = copies_during(host_copies, lambda: model.train(gradient_steps=20, batch_size=16))
    assert few == many <= 1, host_copies
    keys = {"train/loss", "train/q_values", "train/td_loss", "train/cql_loss"}
    assert keys | ({"train/behavior_loss"} if kwargs else set()) <= set(model.logger.name_to_value)


def test_ppo_prior_train_copies_to_the_host_once_whatever_the_minibatches(host_copies):
    model = PPOPrior("CandidatePolicy", make_env(), n_steps=64, batch_size=32, n_epochs=2, seed=0, device="cpu")
    model.learn(64)  # one rollout (and one update)
    model.batch_size = 32  # 2 minibatches per epoch
    few = copies_during(host_copies, model.train)
    model.batch_size = 8  # 8 minibatches per epoch
    many = copies_during(host_copies, model.train)
    assert few == many <= 1, host_copies
    logged = model.logger.name_to_value
    assert {"train/loss", "train/kl_prior", "train/approx_kl", "train/clip_fraction", "train/entropy_loss",
            "train/policy_gradient_loss", "train/value_loss"} <= set(logged)
    # with target_kl the approximate KL of each minibatch must reach the host, to decide whether to stop
    model.target_kl = 1e6
    copies_during(host_copies, model.train)
    assert host_copies["cpu"] == 2 * 8 and host_copies["tolist"] == 1
