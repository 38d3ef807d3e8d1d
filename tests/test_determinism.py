"""Same seeds, same run: two trainings of each algorithm on the wrapped toy env give identical learning curves
and parameters, with the single-env and the vector wrapper (whose resampling generator follows SB3's seed)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from stable_baselines3.common.callbacks import BaseCallback
from toy_text_env import CorridorTextEnv

from prior_wrappers import CachedPrior, FunctionPrior, LLMPriorWrapper, UniformPrior, VecLLMPrior, make_text_vec_env
from prior_wrappers.encoders import HashingEncoder


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)


def east_prior() -> FunctionPrior:
    return FunctionPrior(lambda p, c: [1.5 if x == "go east" else 0.0 for x in c])


def single_env(**kwargs) -> LLMPriorWrapper:
    return LLMPriorWrapper(CorridorTextEnv(length=4, max_steps=8), east_prior(), k=4, encoder=HashingEncoder(16), **kwargs)


def vec_env(n_envs: int = 2, **kwargs) -> VecLLMPrior:
    venv = make_text_vec_env(lambda: CorridorTextEnv(length=4, max_steps=8), n_envs)
    return VecLLMPrior(venv, CachedPrior(east_prior()), k=4, encoder=HashingEncoder(16), **kwargs)


class Curve(BaseCallback):
    """Every step's rewards and executed commands: the learning curve at the finest grain."""

    def __init__(self) -> None:
        super().__init__()
        self.rewards: list[float] = []
        self.commands: list[str] = []

    def _on_step(self) -> bool:
        self.rewards.extend(float(r) for r in self.locals["rewards"])
        self.commands.extend(info["command"] for info in self.locals["infos"])
        return True


def parameters(model) -> dict[str, np.ndarray]:
    return {k: v.detach().cpu().numpy().copy() for k, v in model.policy.state_dict().items()}


def assert_same_run(a, b) -> None:
    (model_a, curve_a), (model_b, curve_b) = a, b
    if curve_a is not None:
        assert curve_a.commands == curve_b.commands and len(curve_a.commands) > 0
        assert curve_a.rewards == curve_b.rewards
    pa, pb = parameters(model_a), parameters(model_b)
    assert pa.keys() == pb.keys()
    for key in pa:
        np.testing.assert_array_equal(pa[key], pb[key], err_msg=key)


def train_dqn_prior():
    from prior_wrappers.sb3 import DQNPrior

    curve = Curve()
    model = DQNPrior("CandidatePolicy", single_env(), learning_starts=40, buffer_size=1000, seed=3, device="cpu")
    return model.learn(200, callback=curve), curve


def train_ppo_prior():
    from prior_wrappers.sb3 import PPOPrior

    curve = Curve()
    model = PPOPrior("CandidatePolicy", vec_env(), n_steps=32, batch_size=32, n_epochs=2, seed=3, device="cpu")
    return model.learn(128, callback=curve), curve


def train_cql_prior():
    from prior_wrappers.sb3 import CQLPrior, RandomCandidatePolicy, collect_dataset

    env = single_env()
    data = collect_dataset(env, RandomCandidatePolicy(seed=5), n_episodes=8, seed=5)
    model = CQLPrior("CandidatePolicy", env, seed=3, device="cpu", batch_size=32)
    return model.learn_offline(data, gradient_steps=60, log_interval=0), None


def train_stock_dqn_on_vec_env_with_resampling():
    """Stock DQN picks empty slots; with invalid_action="resample" the vector wrapper draws the command, so the
    run is only reproducible when SB3's seed reaches the wrapper (through ``venv.seed``)."""
    from stable_baselines3 import DQN

    curve = Curve()
    venv = make_text_vec_env(lambda: CorridorTextEnv(length=4, max_steps=8), 2)
    env = VecLLMPrior(venv, UniformPrior(), k=6, encoder=HashingEncoder(16), invalid_action="resample")
    model = DQN("MultiInputPolicy", env, learning_starts=60, buffer_size=1000, seed=3, device="cpu")
    return model.learn(160, callback=curve), curve


@pytest.mark.parametrize(
    "train", [train_dqn_prior, train_ppo_prior, train_cql_prior, train_stock_dqn_on_vec_env_with_resampling]
)
def test_two_runs_with_the_same_seed_are_identical(train):
    assert_same_run(train(), train())
