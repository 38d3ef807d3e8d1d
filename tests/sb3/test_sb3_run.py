"""Every algorithm trains a few hundred steps on the real wrappers (single and vector), with and without
text features, with an informative and a uniform prior."""

from __future__ import annotations

import pytest
from candidate_env import CandidateChainEnv
from toy_text_env import CorridorTextEnv

from stable_baselines3.common.env_util import make_vec_env

from prior_wrappers.priors import FunctionPrior, UniformPrior
from prior_wrappers.sb3 import CQLPrior, DQNPrior, PPOPrior, RandomCandidatePolicy, collect_dataset
from prior_wrappers.vec_wrappers import VecLLMPrior, make_text_vec_env
from prior_wrappers.wrappers import LLMPriorWrapper

EAST = FunctionPrior(lambda prompt, commands: [2.0 if c == "go east" else 0.0 for c in commands])
ONLINE = [
    (DQNPrior, dict(learning_starts=50, train_freq=1)),
    (PPOPrior, dict(n_steps=64, batch_size=32, n_epochs=2)),
]
IDS = ["DQNPrior", "PPOPrior"]


def learns(algo, env, steps: int, **kwargs):
    """Train ``steps`` steps; fails unless gradient steps changed the policy's weights (a fresh model from the same
    seed has the initial ones) and the algorithm counted its updates."""
    initial = {k: v.clone() for k, v in algo("CandidatePolicy", env, seed=0, device="cpu", **kwargs).policy.state_dict().items()}
    model = algo("CandidatePolicy", env, seed=0, device="cpu", **kwargs).learn(steps)
    after = model.policy.state_dict()
    assert initial.keys() == after.keys()
    trained = [k for k in initial if "target" not in k]  # a Polyak update alone moves a target net by rounding
    assert max(float((initial[k] - after[k]).abs().max()) for k in trained) > 1e-4, "no gradient step changed the weights"
    assert model.num_timesteps >= steps and model._n_updates > 0
    return model


@pytest.mark.parametrize("algo,kwargs", ONLINE, ids=IDS)
@pytest.mark.parametrize("encoder", ["hashing", None])
@pytest.mark.parametrize("prior", [EAST, UniformPrior()], ids=["function", "uniform"])
def test_trains_on_llm_prior_wrapper(algo, kwargs, encoder, prior):
    env = LLMPriorWrapper(CorridorTextEnv(), prior, k=4, encoder=encoder)
    model = learns(algo, env, 200, **kwargs)
    obs, info = env.reset(seed=0)
    action, _ = model.predict(obs, deterministic=True)
    assert int(action) < len(info["prior_candidates"])


@pytest.mark.parametrize("algo,kwargs", ONLINE, ids=IDS)
def test_trains_on_vec_llm_prior(algo, kwargs):
    venv = VecLLMPrior(make_text_vec_env(lambda: CorridorTextEnv(), n_envs=2, seed=0), EAST, k=4, encoder="hashing")
    learns(algo, venv, 256, **kwargs)


@pytest.mark.parametrize("algo,kwargs", ONLINE, ids=IDS)
def test_trains_on_several_synthetic_envs(algo, kwargs):
    venv = make_vec_env(lambda: CandidateChainEnv(k=6, feature_dim=None, min_valid=1), n_envs=3, seed=0)
    learns(algo, venv, 192, **kwargs)


def test_cql_trains_offline_on_llm_prior_wrapper():
    env = LLMPriorWrapper(CorridorTextEnv(), EAST, k=4, encoder="hashing")
    data = collect_dataset(env, RandomCandidatePolicy(seed=0), n_episodes=5, seed=0)
    model = CQLPrior("CandidatePolicy", env, seed=0, device="cpu").learn_offline(data, gradient_steps=50)
    assert model.num_timesteps == 50
