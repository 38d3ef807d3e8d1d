"""Learning with fixed seeds and small budgets: an informative prior beats the uniform-prior baseline
(same algorithm, same network, same budget).

The synthetic chain has 6 decisions among 4-8 commands each, and a wrong command ends the episode: random
exploration succeeds about once in 30,000 episodes, so the baselines rarely see a reward within the budget.
"""

from __future__ import annotations

import numpy as np
from candidate_env import CandidateChainEnv, success_rate

from prior_wrappers.sb3 import CQLPrior, DQNPrior, PPOPrior, collect_expert_mixture

CHAIN = dict(k=8, min_valid=4, length=6, feature_dim=8)
INFORMATIVE, UNIFORM = 2.0, 0.0
SEEDS = (0, 1)


def chain(prior_strength: float) -> CandidateChainEnv:
    return CandidateChainEnv(prior_strength=prior_strength, **CHAIN)


def mean_success(train, prior_strength: float) -> float:
    return float(np.mean([success_rate(train(seed, prior_strength), chain(prior_strength), 30) for seed in SEEDS]))


def test_dqn_prior_beats_uniform_prior_dqn():
    def train(seed, prior_strength):
        model = DQNPrior("CandidatePolicy", chain(prior_strength), learning_starts=100, train_freq=2, seed=seed, device="cpu")
        return model.learn(1000)

    with_prior, baseline = mean_success(train, INFORMATIVE), mean_success(train, UNIFORM)
    print(f"synthetic chain, DQN: prior {with_prior:.2f} vs uniform {baseline:.2f}")
    assert with_prior >= 0.9
    assert with_prior >= baseline + 0.4


def test_ppo_prior_beats_uniform_prior_ppo():
    # residual_prior=False: the untrained policy is near uniform (the default residual policy starts at the prior,
    # which already picks the right command here), so success must come from learning to read the prior input;
    # prior_trust=1.0: every episode shows it (with the adaptive default, 3 in 4 hide it until returns differ)
    untrained = []

    def train(seed, prior_strength):
        model = PPOPrior(
            "CandidatePolicy", chain(prior_strength), n_steps=128, n_epochs=4, seed=seed, device="cpu",
            policy_kwargs=dict(residual_prior=False), prior_trust=1.0,
        )
        untrained.append(success_rate(model, chain(prior_strength), 30))
        return model.learn(1536)

    with_prior, baseline = mean_success(train, INFORMATIVE), mean_success(train, UNIFORM)
    print(f"synthetic chain, PPO: prior {with_prior:.2f} vs uniform {baseline:.2f}, untrained {untrained}")
    assert max(untrained) <= 0.1
    assert with_prior >= 0.9
    assert with_prior >= baseline + 0.4


def test_cql_prior_beats_cql_on_a_small_dataset():
    # 4 episodes (2 expert successes, 2 random failures); CQL-Prior acts among the prior's top 2 commands
    def train(seed, prior_strength):
        env = chain(prior_strength)
        expert = lambda obs, info: env.expert_slot()  # noqa: E731
        data = collect_expert_mixture(env, expert, n_episodes=4, success_ratio=0.5, seed=seed)
        top_k = 2 if prior_strength else None
        model = CQLPrior("CandidatePolicy", env, prior_top_k=top_k, seed=seed, device="cpu")
        return model.learn_offline(data, gradient_steps=400, log_interval=0)

    with_prior, baseline = mean_success(train, INFORMATIVE), mean_success(train, UNIFORM)
    print(f"synthetic chain, CQL: prior {with_prior:.2f} vs uniform {baseline:.2f}")
    # standard CQL (the default) measured 0.87 vs 0.22 here; the reference's unbounded form 1.00 vs 0.40
    assert with_prior >= 0.8
    assert with_prior >= baseline + 0.3
