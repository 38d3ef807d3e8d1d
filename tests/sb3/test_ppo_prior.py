"""PPOPrior: α = 0 is PPO, the residual policy starts at the prior, masks hold, α anneals."""

from __future__ import annotations

import numpy as np
import pytest
import torch as th
from candidate_env import CandidateChainEnv

from stable_baselines3 import PPO
from stable_baselines3.common.logger import configure
from stable_baselines3.common.utils import LinearSchedule

from prior_wrappers.sb3 import CandidateActorCriticPolicy, PPOPrior
from prior_wrappers.spaces import ACTION_MASK, PRIOR_LOGPROBS

SMALL = dict(n_steps=64, batch_size=32, n_epochs=2, seed=0, device="cpu")


def make_env(**kwargs):
    return CandidateChainEnv(k=5, feature_dim=4, prior_strength=2.0, **kwargs)


def test_alpha_zero_makes_exactly_the_updates_of_ppo():
    ppo = PPO(CandidateActorCriticPolicy, make_env(), **SMALL).learn(192)
    ppo_prior = PPOPrior("CandidatePolicy", make_env(), alpha=0.0, **SMALL).learn(192)
    theirs, ours = ppo.policy.state_dict(), ppo_prior.policy.state_dict()
    assert theirs.keys() == ours.keys()
    for name in theirs:
        assert th.equal(theirs[name], ours[name]), name
    # and the KL term does change them when α > 0
    with_kl = PPOPrior("CandidatePolicy", make_env(), alpha=1.0, **SMALL).learn(192)
    assert not all(th.equal(theirs[n], with_kl.policy.state_dict()[n]) for n in theirs)


@pytest.mark.parametrize("feature_dim", [4, None])
def test_residual_policy_starts_at_the_prior_and_masks_empty_slots(feature_dim):
    env = CandidateChainEnv(k=6, feature_dim=feature_dim, prior_strength=2.0)
    model = PPOPrior("CandidatePolicy", env, seed=0, device="cpu")
    obs, _ = env.reset(seed=0)
    obs_t, _ = model.policy.obs_to_tensor(obs)
    probs = model.policy.get_distribution(obs_t).distribution.probs[0].detach().numpy()
    valid = obs[ACTION_MASK] == 1
    assert np.all(probs[~valid] == 0.0)
    np.testing.assert_allclose(probs[valid], np.exp(obs[PRIOR_LOGPROBS][valid]), atol=0.02)
    th.manual_seed(0)
    batch = {k: np.repeat(v[None], 3000, axis=0) for k, v in obs.items()}
    actions, _ = model.predict(batch, deterministic=False)
    assert valid[actions].all()


def test_kl_prior_is_logged_and_alpha_anneals(tmp_path):
    model = PPOPrior("CandidatePolicy", make_env(), alpha=LinearSchedule(0.5, 0.0, 1.0), **SMALL)
    model.set_logger(configure(str(tmp_path), ["csv"]))
    model.learn(256)
    rows = np.genfromtxt(tmp_path / "progress.csv", delimiter=",", names=True)
    assert {"trainkl_prior", "trainalpha"} <= set(rows.dtype.names)  # genfromtxt drops the "/"
    alphas = rows["trainalpha"][~np.isnan(rows["trainalpha"])]
    assert alphas[0] < 0.5 and np.all(np.diff(alphas) < 0) and alphas[-1] >= 0.0
    assert np.all(rows["trainkl_prior"][~np.isnan(rows["trainkl_prior"])] >= 0.0)


def test_negative_alpha_is_rejected():
    with pytest.raises(ValueError, match="alpha"):
        PPOPrior("CandidatePolicy", make_env(), alpha=-0.1)
