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
from prior_wrappers.sb3.support import candidate_slots
from prior_wrappers.spaces import ACTION_MASK, LOGPROB_MIN, PRIOR_LOGPROBS

SMALL = dict(n_steps=64, batch_size=32, n_epochs=2, seed=0, device="cpu")


def make_env(**kwargs):
    return CandidateChainEnv(k=5, feature_dim=4, prior_strength=2.0, **kwargs)


def test_alpha_zero_makes_exactly_the_updates_of_ppo():
    # without the floor and with every episode under the prior: the policy and the data are PPO's own
    ppo = PPO(CandidateActorCriticPolicy, make_env(), **SMALL).learn(192)
    ppo_prior = PPOPrior("CandidatePolicy", make_env(), alpha=0.0, prior_floor=0.0, prior_trust=1.0, **SMALL).learn(192)
    theirs, ours = ppo.policy.state_dict(), ppo_prior.policy.state_dict()
    assert theirs.keys() == ours.keys()
    for name in theirs:
        assert th.equal(theirs[name], ours[name]), name


def hand_written_kl(logits: th.Tensor, prior_logprobs: th.Tensor, mask: th.Tensor) -> th.Tensor:
    """mean over rows of Σ_{valid a} π(a)·(log π(a) − log p̃(a)), written out row by row."""
    total = logits.new_zeros(())
    for row in range(logits.shape[0]):
        valid = mask[row] > 0.5
        log_pi = logits[row][valid] - th.logsumexp(logits[row][valid], dim=0)
        log_p = prior_logprobs[row][valid] - th.logsumexp(prior_logprobs[row][valid], dim=0)
        total = total + (log_pi.exp() * (log_pi - log_p)).sum()
    return total / logits.shape[0]


def test_the_kl_term_adds_alpha_times_the_gradient_of_the_kl():
    # one full-batch SGD step: θ_α − θ_0 = −lr·(∇PPO + α·∇KL), so the two runs differ by −lr·α·∇KL
    alpha, lr = 0.5, 0.5
    kwargs = dict(
        n_steps=64, batch_size=64, n_epochs=1, learning_rate=lr, max_grad_norm=1e9, seed=0, device="cpu",
        policy_kwargs=dict(residual_prior=False, optimizer_class=th.optim.SGD),  # π far from the prior
        prior_floor=0.0, prior_trust=1.0,  # the hand-written KL is to the plain prior, on the env's observations
    )
    start = PPOPrior("CandidatePolicy", make_env(), alpha=alpha, **kwargs)
    theta0 = {n: v.clone() for n, v in start.policy.state_dict().items()}
    without = PPOPrior("CandidatePolicy", make_env(), alpha=0.0, **kwargs).learn(64)
    with_kl = PPOPrior("CandidatePolicy", make_env(), alpha=alpha, **kwargs).learn(64)
    np.testing.assert_array_equal(with_kl.rollout_buffer.actions, without.rollout_buffer.actions)  # same data

    shapes = {k: space.shape for k, space in start.observation_space.spaces.items()}
    obs = {k: th.as_tensor(v.reshape(64, *shapes[k])) for k, v in with_kl.rollout_buffer.observations.items()}
    logits = start.policy.get_distribution(obs).distribution.logits
    kl = hand_written_kl(logits, obs[PRIOR_LOGPROBS], obs[ACTION_MASK].float())
    params = dict(start.policy.named_parameters())
    grads = th.autograd.grad(alpha * kl, list(params.values()), allow_unused=True)
    checked = 0.0
    for (name, param), grad in zip(params.items(), grads):
        expected = th.zeros_like(param) if grad is None else grad
        measured = (without.policy.state_dict()[name] - with_kl.policy.state_dict()[name]) / lr
        assert th.allclose(measured, expected, rtol=1e-3, atol=2e-6), name
        assert th.equal(start.policy.state_dict()[name], theta0[name])
        checked += float(expected.abs().sum())
    assert checked > 0.1  # the KL gradient is far from zero: the comparison has teeth


def test_policy_acts_and_kl_sums_over_the_candidate_slots():
    """A valid command at LOGPROB_MIN is a candidate: the policy may choose it and the KL charges it."""
    env = CandidateChainEnv(k=5, feature_dim=4, prior_strength=2.0, min_valid=4)
    obs, _ = env.reset(seed=0)
    n_valid = int(obs[ACTION_MASK].sum())
    obs[PRIOR_LOGPROBS][:n_valid] = np.log(np.r_[[0.7, 0.3], np.full(n_valid - 2, np.exp(LOGPROB_MIN))])
    obs[PRIOR_LOGPROBS][n_valid - 1] = LOGPROB_MIN
    model = PPOPrior("CandidatePolicy", env, policy_kwargs=dict(residual_prior=False), prior_floor=0.0, seed=0,
                     device="cpu")
    obs_t, _ = model.policy.obs_to_tensor(obs)
    with th.no_grad():
        probs = model.policy.get_distribution(obs_t).distribution.probs[0].numpy().astype(np.float64)
        kl = model.kl_prior(obs_t)[0].item()
    support = (probs > 0).tolist()
    assert support == candidate_slots(obs_t)[0].tolist() == model.candidates(obs_t)[0].tolist()
    assert support == (obs[ACTION_MASK] == 1).tolist() and probs[n_valid - 1] > 0.1
    p = np.exp(obs[PRIOR_LOGPROBS][:n_valid].astype(np.float64))
    p /= p.sum()
    pi = probs[:n_valid]
    assert kl == pytest.approx(float(np.sum(pi * (np.log(pi) - np.log(p)))), rel=1e-4)
    assert kl > 0.1 * 30  # the floor slots cost about π(a)·30 nats each: finite, and counted


@pytest.mark.parametrize("feature_dim", [4, None])
def test_residual_policy_starts_at_the_prior_and_masks_empty_slots(feature_dim):
    env = CandidateChainEnv(k=6, feature_dim=feature_dim, prior_strength=2.0)
    model = PPOPrior("CandidatePolicy", env, seed=0, device="cpu")
    obs, _ = env.reset(seed=0)
    obs_t, _ = model.policy.obs_to_tensor(obs)
    probs = model.policy.get_distribution(obs_t).distribution.probs[0].detach().numpy()
    valid = obs[ACTION_MASK] == 1
    assert np.all(probs[~valid] == 0.0)
    # the prior with the default floor: 0.9·p + 0.1/n over the valid slots
    p = np.exp(obs[PRIOR_LOGPROBS][valid].astype(np.float64))
    np.testing.assert_allclose(probs[valid], 0.9 * p / p.sum() + 0.1 / valid.sum(), atol=0.02)
    plain = PPOPrior("CandidatePolicy", env, prior_floor=0.0, seed=0, device="cpu")
    plain_probs = plain.policy.get_distribution(obs_t).distribution.probs[0].detach().numpy()
    np.testing.assert_allclose(plain_probs[valid], p, atol=0.02)
    th.manual_seed(0)
    batch = {k: np.repeat(v[None], 3000, axis=0) for k, v in obs.items()}
    actions, _ = model.predict(batch, deterministic=False)
    assert valid[actions].all()


def test_kl_prior_is_logged_and_alpha_anneals(tmp_path):
    schedule = LinearSchedule(0.5, 0.0, 1.0)
    model = PPOPrior("CandidatePolicy", make_env(), alpha=schedule, **SMALL)
    model.set_logger(configure(str(tmp_path), ["csv"]))
    model.learn(256)
    rows = np.genfromtxt(tmp_path / "progress.csv", delimiter=",", names=True)
    assert {"trainkl_prior", "trainalpha"} <= set(rows.dtype.names)  # genfromtxt drops the "/"
    # SB3 writes an update's train/* keys with the next rollout's: the updates after 64, 128 and 192 steps
    alphas = rows["trainalpha"][~np.isnan(rows["trainalpha"])]
    np.testing.assert_allclose(alphas, [schedule(1 - t / 256) for t in (64, 128, 192)], rtol=1e-6)
    assert np.allclose(alphas, [0.375, 0.25, 0.125])
    assert model.logger.name_to_value["train/alpha"] == 0.0  # the last update, not written yet


def test_logged_kl_prior_is_the_mean_kl_of_the_rollout():
    # learning_rate=0: the policy stays put, so every minibatch's KL is that of the initial policy
    kwargs = {**SMALL, "learning_rate": 0.0, "policy_kwargs": dict(residual_prior=False)}
    model = PPOPrior("CandidatePolicy", make_env(), alpha=0.5, **kwargs).learn(64)
    shapes = {k: space.shape for k, space in model.observation_space.spaces.items()}
    obs = {k: v.reshape(64, *shapes[k]) for k, v in model.rollout_buffer.observations.items()}
    with th.no_grad():
        probs = model.policy.get_distribution(model.policy.obs_to_tensor(obs)[0]).distribution.probs.numpy()
    expected = []
    for row in range(64):  # the KL's target is the prior with its floor, 0.9·p + 0.1/n
        valid = obs[ACTION_MASK][row] == 1
        p = np.exp(obs[PRIOR_LOGPROBS][row][valid].astype(np.float64))
        pi = probs[row][valid].astype(np.float64)
        expected.append(np.sum(pi * np.log(pi / (0.9 * p / p.sum() + 0.1 / valid.sum()))))
    assert np.mean(expected) > 0.05
    assert model.logger.name_to_value["train/kl_prior"] == pytest.approx(np.mean(expected), rel=1e-4)


def test_negative_alpha_is_rejected():
    with pytest.raises(ValueError, match="alpha"):
        PPOPrior("CandidatePolicy", make_env(), alpha=-0.1)
