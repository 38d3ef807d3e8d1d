"""The candidate support: every rule that decides which slots a learner may take, against hand computations, and
the one :class:`CandidateSupport` that DQN-Prior, CQL-Prior and PPO-Prior (and its policy) act through."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch as th
from candidate_env import CandidateChainEnv
from stable_baselines3 import DQN, PPO

from prior_wrappers.sb3 import CQLPrior, DQNPrior, PPOPrior
from prior_wrappers.sb3.masking import MASKED_VALUE
from prior_wrappers.sb3.support import (
    PRIOR_FLOOR,
    CandidateSupport,
    candidate_slots,
    data_supported_slots,
    floored_log_prior,
)
from prior_wrappers.spaces import ACTION_MASK, LOGPROB_MIN, PRIOR_LOGPROBS

# ---------------------------------------------------------------------------------------------------- the rules


def test_candidates_are_the_valid_slots_unless_an_explicit_rule_narrows_them():
    obs = {
        PRIOR_LOGPROBS: th.tensor(
            [[-0.5, -1.5, LOGPROB_MIN, -3.0, LOGPROB_MIN], [LOGPROB_MIN, -2.0, -0.2, -9.0, -4.0]]
        ),
        ACTION_MASK: th.tensor([[1, 1, 1, 1, 0], [1, 1, 1, 0, 0]], dtype=th.int8),
    }
    # slot 2 of row 1 is admissible with the prior's floor (a long command, no proposal named it): still a
    # candidate; slot 4 is empty and never one
    assert candidate_slots(obs).tolist() == [[True, True, True, True, False], [True, True, True, False, False]]
    assert candidate_slots(obs, top_k=2).tolist() == [
        [True, True, False, False, False],
        [False, True, True, False, False],
    ]
    # the explicit support rule: drop what the prior (almost) never names
    assert candidate_slots(obs, min_logprob=LOGPROB_MIN + 1).tolist() == [
        [True, True, False, True, False],
        [False, True, True, False, False],
    ]
    # a threshold above every slot keeps the prior's favourite valid slot (never an empty candidate set)
    assert candidate_slots(obs, min_logprob=-0.1).tolist() == [
        [True, False, False, False, False],
        [False, False, True, False, False],
    ]
    assert candidate_slots(obs, top_k=1, min_logprob=-1.0).tolist() == [
        [True, False, False, False, False],
        [False, False, True, False, False],
    ]


def test_prior_mass_keeps_the_smallest_set_holding_that_mass():
    obs = {
        PRIOR_LOGPROBS: th.log(
            th.tensor(
                [
                    [0.05, 0.6, 0.25, 0.1, 0.5],  # slot 4 is empty: its prior is ignored
                    [0.97, 0.01, 0.01, 0.01, 1.0],  # a confident prior
                    [0.2, 0.2, 0.2, 0.2, 0.2],  # a flat one: ties go to the lower slot
                    [0.3, 0.15, 0.05, 1.0, 1.0],  # mass 0.5 over the valid slots: renormalised to [.6, .3, .1]
                ]
            )
        ),
        ACTION_MASK: th.tensor([[1, 1, 1, 1, 0], [1, 1, 1, 1, 0], [1, 1, 1, 1, 1], [1, 1, 1, 0, 0]], dtype=th.int8),
    }
    # p = 0.8: row 1 needs 0.6 + 0.25 = 0.85; row 2 has 0.97 in its favourite; row 3 needs four fifths;
    # row 4: 0.6 + 0.3 = 0.9 (without renormalising, 0.3 + 0.15 + 0.05 = 0.5 < 0.8 would keep all three)
    assert candidate_slots(obs, mass=0.8).tolist() == [
        [False, True, True, False, False],
        [True, False, False, False, False],
        [True, True, True, True, False],
        [True, True, False, False, False],
    ]
    # p = 0.9: row 1 needs 0.95 (three slots); row 4 has exactly 0.9 in two
    assert candidate_slots(obs, mass=0.9).tolist() == [
        [False, True, True, True, False],
        [True, False, False, False, False],
        [True, True, True, True, True],
        [True, True, False, False, False],
    ]
    # a tiny p keeps the favourite alone; p = 1 keeps every valid slot (as no rule)
    assert candidate_slots(obs, mass=1e-6).sum(dim=1).tolist() == [1, 1, 1, 1]
    assert candidate_slots(obs, mass=1.0).tolist() == candidate_slots(obs).tolist()
    # with the other rules a slot must pass all: top_k=1 cuts row 3's four to one
    assert candidate_slots(obs, mass=0.8, top_k=1).tolist()[2] == [True, False, False, False, False]


def test_prior_mass_counts_a_slot_at_logprob_min_and_never_empties_a_state():
    obs = {
        PRIOR_LOGPROBS: th.tensor(
            [[LOGPROB_MIN, LOGPROB_MIN, LOGPROB_MIN], [math.log(0.5), LOGPROB_MIN, 0.0], [0.0, 0.0, 0.0]]
        ),
        ACTION_MASK: th.tensor([[1, 1, 0], [1, 1, 0], [0, 0, 0]], dtype=th.int8),
    }
    # row 1: every valid slot at the floor is 1/2 after renormalising; row 2: p̃ = [1 − ε, ε], ε = e^-30 / 0.5;
    # row 3 has no valid slot and no candidate
    assert candidate_slots(obs, mass=0.5).tolist() == [
        [True, False, False],
        [True, False, False],
        [False, False, False],
    ]
    assert candidate_slots(obs, mass=0.99).tolist() == [
        [True, True, False],
        [True, False, False],
        [False, False, False],
    ]
    assert candidate_slots(obs, mass=1.0).tolist() == [[True, True, False], [True, True, False], [False, False, False]]


def test_floored_log_prior_mixes_the_renormalised_prior_with_uniform_over_the_candidates():
    # prior over 4 slots; slot 3 is valid but not a candidate, slot 4 empty: p renormalised over 0-2 is [.6, .3, .1]
    prior = th.tensor([[math.log(0.3), math.log(0.15), math.log(0.05), math.log(0.5), LOGPROB_MIN]])
    candidates = th.tensor([[True, True, True, False, False]])
    floored = floored_log_prior(prior, candidates, 0.3)
    expected = 0.7 * np.array([0.6, 0.3, 0.1]) + 0.3 / 3  # [0.52, 0.31, 0.17]
    assert floored[0, :3].exp().numpy() == pytest.approx(expected, rel=1e-5)
    assert floored[0, 3:].tolist() == [MASKED_VALUE, MASKED_VALUE]
    # 0: the renormalised prior; 1: uniform over the candidates
    assert floored_log_prior(prior, candidates, 0.0)[0, :3].exp().numpy() == pytest.approx([0.6, 0.3, 0.1], rel=1e-5)
    assert floored_log_prior(prior, candidates, 1.0)[0, :3].exp().numpy() == pytest.approx([1 / 3] * 3, rel=1e-6)
    # a command the prior rules out (log p = -30) keeps floor/n, exactly
    ruled_out = th.tensor([[0.0, LOGPROB_MIN, LOGPROB_MIN, LOGPROB_MIN]])
    low = floored_log_prior(ruled_out, th.ones(1, 4, dtype=th.bool), 0.1)[0, 1].item()
    assert low == pytest.approx(math.log(0.1 / 4 + 0.9 * math.exp(LOGPROB_MIN)), rel=1e-6)


def test_no_rule_keeps_every_valid_slot_and_a_top_k_of_at_least_k_cuts_nothing():
    obs = {
        PRIOR_LOGPROBS: th.tensor([[-0.5, LOGPROB_MIN, -3.0, 0.0], [0.0, 0.0, 0.0, 0.0]]),
        ACTION_MASK: th.tensor([[1, 1, 1, 0], [0, 0, 0, 0]], dtype=th.int8),
    }
    valid = [[True, True, True, False], [False, False, False, False]]
    assert CandidateSupport().candidates(obs).tolist() == valid
    # the wrapper's k slots bound every cut: top_k >= k and mass = 1 keep all of them
    assert CandidateSupport(top_k=4, mass=1.0).candidates(obs).tolist() == valid
    assert CandidateSupport(top_k=2).candidates(obs).tolist() == [[True, False, True, False], [False] * 4]


def test_the_support_object_applies_the_rules_together():
    obs = {
        PRIOR_LOGPROBS: th.log(th.tensor([[0.05, 0.5, 0.3, 0.1, 0.05], [0.1, 0.2, 0.3, 0.4, 0.9]])),
        ACTION_MASK: th.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 1, 0]], dtype=th.int8),
    }
    # mass 0.85: row 1 needs 0.5 + 0.3 + 0.1 = 0.9 (slots 1, 2, 3); row 2 needs 0.4 + 0.3 + 0.2 = 0.9 (slots 3, 2, 1)
    mass = CandidateSupport(mass=0.85)
    assert mass.candidates(obs).tolist() == [[False, True, True, True, False], [False, True, True, True, False]]
    # with log p >= log 0.25 as well: row 1 keeps {1, 2}, row 2 {2, 3}; and with top_k = 1 the favourite alone
    both = CandidateSupport(mass=0.85, min_logprob=math.log(0.25))
    assert both.candidates(obs).tolist() == [[False, True, True, False, False], [False, False, True, True, False]]
    assert dataclasses.replace(both, top_k=1).candidates(obs).tolist() == [
        [False, True, False, False, False],
        [False, False, False, True, False],
    ]
    # the function and the object are the same rules
    assert both.candidates(obs).tolist() == candidate_slots(obs, mass=0.85, min_logprob=math.log(0.25)).tolist()


def test_the_data_support_joins_after_the_prior_rules():
    obs = {
        PRIOR_LOGPROBS: th.log(th.tensor([[0.5, 0.3, 0.1, 0.1], [0.1, 0.2, 0.7, 1.0]])),
        ACTION_MASK: th.tensor([[1, 1, 1, 1], [1, 1, 1, 0]], dtype=th.int8),
    }
    # π_b: row 1 [0.1, 0.2, 0.6, 0.1] → ratios to the max [1/6, 1/3, 1, 1/6]; row 2 [0.3, 0.1, 0.1, 0.5] → the
    # empty slot 3 has the largest π_b, so the ratios of the valid ones are [0.6, 0.2, 0.2]: none passes τ = 0.7
    logits = th.log(th.tensor([[0.1, 0.2, 0.6, 0.1], [0.3, 0.1, 0.1, 0.5]]))
    assert data_supported_slots(obs, logits, 0.3).tolist() == [[False, True, True, False], [True, False, False, False]]
    support = CandidateSupport(top_k=1, behavior_threshold=0.3)
    # top 1 of the prior, {0} and {2}, then the data's {1, 2} and {0}: a prior cut never removes what the data did
    assert support.candidates(obs, logits).tolist() == [[True, True, True, False], [True, False, True, False]]
    assert dataclasses.replace(support, behavior_threshold=0.7).candidates(obs, logits).tolist() == [
        [True, False, True, False],
        [False, False, True, False],
    ]
    # the support ignores behaviour logits it has no threshold for, and refuses to guess them when it has one
    assert CandidateSupport(top_k=1).candidates(obs, logits).tolist() == [
        [True, False, False, False],
        [False, False, True, False],
    ]
    with pytest.raises(ValueError, match="behaviour policy's logits"):
        support.candidates(obs)


def test_the_support_log_prior_is_the_floored_prior_over_its_candidates():
    obs = {
        PRIOR_LOGPROBS: th.log(th.tensor([[0.3, 0.15, 0.05, 0.5]])),
        ACTION_MASK: th.tensor([[1, 1, 1, 1]], dtype=th.int8),
    }
    support = CandidateSupport(top_k=3, floor=0.4)
    candidates = support.candidates(obs)  # {0, 1, 3}: p renormalised [0.3, 0.15, 0.5] / 0.95
    assert candidates.tolist() == [[True, True, False, True]]
    expected = 0.6 * np.array([0.3, 0.15, 0.5]) / 0.95 + 0.4 / 3
    log_p = support.log_prior(obs, candidates)
    np.testing.assert_allclose(log_p[0, [0, 1, 3]].exp().numpy(), expected, rtol=1e-5)
    assert log_p[0, 2].item() == MASKED_VALUE


@pytest.mark.parametrize(
    "rules,message",
    [
        (dict(top_k=0), "prior_top_k must be >= 1"),
        (dict(min_logprob=0.5), "prior_min_logprob is a log-probability threshold"),
        (dict(mass=0.0), "prior_mass is a fraction"),
        (dict(mass=1.5), "prior_mass is a fraction"),
        (dict(floor=-0.1), "prior_floor is the share"),
        (dict(floor=1.5), "prior_floor is the share"),
        (dict(behavior_threshold=0.0), "behavior_threshold must be in"),
        (dict(behavior_threshold=1.5), "behavior_threshold must be in"),
    ],
)
def test_invalid_rules_are_refused_with_the_argument_named(rules, message):
    with pytest.raises(ValueError, match=message):
        CandidateSupport(**rules)


def test_the_support_is_a_frozen_value():
    support = CandidateSupport(top_k=2, floor=1)
    assert support.floor == 1.0 and isinstance(support.floor, float)  # as prior_floor has always been stored
    assert support == CandidateSupport(top_k=2, floor=1.0) and hash(support) == hash(
        CandidateSupport(top_k=2, floor=1.0)
    )
    with pytest.raises(dataclasses.FrozenInstanceError):
        support.top_k = 3  # type: ignore[misc]


# ------------------------------------------------------------------------------------------ the algorithms' support
def make_env() -> CandidateChainEnv:
    return CandidateChainEnv(k=5, feature_dim=4, prior_strength=1.0)


def test_each_algorithm_builds_its_support_from_its_arguments():
    env = make_env()
    dqn = DQNPrior("CandidatePolicy", env, prior_top_k=3, prior_mass=0.9, prior_min_logprob=-5.0, device="cpu")
    assert dqn.support == CandidateSupport(top_k=3, mass=0.9, min_logprob=-5.0, floor=PRIOR_FLOOR)
    cql = CQLPrior("CandidatePolicy", env, prior_mass=0.8, prior_floor=0, behavior_threshold=0.3, device="cpu")
    assert cql.support == CandidateSupport(mass=0.8, floor=0.0, behavior_threshold=0.3)
    ppo = PPOPrior("CandidatePolicy", env, prior_floor=0.25, device="cpu")
    assert ppo.support == ppo.policy.support == CandidateSupport(floor=0.25)  # the policy starts from the same
    # the arguments stay the saved attributes, and the support follows them
    assert (dqn.prior_top_k, dqn.prior_mass, dqn.prior_min_logprob, dqn.prior_floor) == (3, 0.9, -5.0, 0.1)
    assert isinstance(cql.prior_floor, float)
    dqn.prior_mass, cql.behavior_threshold = None, None
    assert dqn.support.mass is None and cql.support.behavior_threshold is None
    # and the algorithms refuse what the support refuses
    with pytest.raises(ValueError, match="prior_top_k"):
        DQNPrior("CandidatePolicy", env, prior_top_k=0, device="cpu")
    with pytest.raises(ValueError, match="behavior_threshold"):
        CQLPrior("CandidatePolicy", env, behavior_threshold=2.0, device="cpu")
    with pytest.raises(ValueError, match="prior_floor"):
        PPOPrior("CandidatePolicy", env, prior_floor=2.0, device="cpu")


def test_a_loaded_model_has_the_saved_support(tmp_path):
    env = make_env()
    model = CQLPrior("CandidatePolicy", env, prior_top_k=2, prior_floor=0.3, behavior_threshold=0.5, device="cpu")
    model.save(tmp_path / "cql.zip")
    loaded = CQLPrior.load(tmp_path / "cql.zip", env=env, device="cpu")
    assert loaded.support == model.support == CandidateSupport(top_k=2, floor=0.3, behavior_threshold=0.5)
    ppo = PPOPrior("CandidatePolicy", env, prior_floor=0.0, device="cpu")
    ppo.save(tmp_path / "ppo.zip")
    loaded_ppo = PPOPrior.load(tmp_path / "ppo.zip", env=env, device="cpu")
    assert loaded_ppo.support == loaded_ppo.policy.support == CandidateSupport(floor=0.0)


def _the_prior_s_least_likely_valid_slot(self, obs, behavior_logits=None):
    """A rule none of the algorithms would follow on its own: act only on each state's least likely valid slot."""
    valid = obs[ACTION_MASK] > 0.5
    worst = obs[PRIOR_LOGPROBS].masked_fill(~valid, math.inf).argmin(dim=-1, keepdim=True)
    return th.zeros_like(valid).scatter_(-1, worst, True)


def test_one_rule_change_moves_all_three_algorithms(monkeypatch):
    env = make_env()
    observations = [env.reset(seed=s)[0] for s in range(32)]
    obs = {key: np.stack([o[key] for o in observations]) for key in observations[0]}
    valid = obs[ACTION_MASK] == 1
    worst = np.where(valid, obs[PRIOR_LOGPROBS], np.inf).argmin(axis=1)
    assert (valid.sum(axis=1) > 1).all() and not (worst == obs[PRIOR_LOGPROBS].argmax(axis=1)).any()
    models = {
        "dqn": DQNPrior("CandidatePolicy", env, seed=0, device="cpu"),
        "cql": CQLPrior("CandidatePolicy", env, behavior_threshold=0.5, seed=0, device="cpu"),
        "ppo": PPOPrior("CandidatePolicy", env, seed=0, device="cpu"),
    }

    def acts(model) -> list[np.ndarray]:
        th.manual_seed(0)
        return [model.predict(obs, deterministic=True)[0], model.predict(obs, deterministic=False)[0]]

    before = {name: acts(model) for name, model in models.items()}
    assert all(not (actions == worst).all() for name in models for actions in before[name])
    # PPO-Prior's KL of a policy uniform over the valid slots: KL(u ‖ p̃) over them, before the change
    n = valid.sum(axis=1)
    log_u = th.as_tensor(np.where(valid, -np.log(n)[:, None], MASKED_VALUE), dtype=th.float32)
    ppo = models["ppo"]
    with th.no_grad():
        kl_before = ppo.kl_prior(ppo.policy.obs_to_tensor(obs)[0], log_u).numpy()
    assert (kl_before > 1e-3).all()

    monkeypatch.setattr(CandidateSupport, "candidates", _the_prior_s_least_likely_valid_slot)
    for name, model in models.items():
        obs_t = model.policy.obs_to_tensor(obs)[0]
        assert (model.candidates(obs_t).numpy() == (np.arange(5) == worst[:, None])).all(), name
        for actions in acts(model):  # greedy, and exploring: only the rule's slot
            np.testing.assert_array_equal(actions, worst, err_msg=name)
    for name in ("dqn", "cql"):  # the target bootstraps from the rule's slot alone
        model = models[name]
        obs_t = model.policy.obs_to_tensor(obs)[0]
        with th.no_grad():
            q, values = model.q_net_target(obs_t), model.next_state_values(obs_t)
        np.testing.assert_array_equal(values.flatten().numpy(), q.numpy()[np.arange(32), worst], err_msg=name)
    # and after it the KL sums over the rule's slot alone, where p̃ = 1: (1/n)·(log(1/n) − 0)
    with th.no_grad():
        kl_after = ppo.kl_prior(ppo.policy.obs_to_tensor(obs)[0], log_u).numpy()
    np.testing.assert_allclose(kl_after, -np.log(n) / n, rtol=1e-6)


def test_learn_names_its_runs_after_the_algorithm(monkeypatch):
    calls = []

    def base_learn(self, total_timesteps, **kwargs):
        calls.append(kwargs)
        return self

    monkeypatch.setattr(DQN, "learn", base_learn)
    monkeypatch.setattr(PPO, "learn", base_learn)
    env = make_env()
    for algo in (DQNPrior, CQLPrior, PPOPrior):
        model = algo("CandidatePolicy", env, device="cpu")
        assert model.learn(10) is model
        model.learn(10, log_interval=7, tb_log_name="mine", reset_num_timesteps=False, progress_bar=True)
    runs = [(c["tb_log_name"], c.get("log_interval")) for c in calls]
    # log_interval left to SB3's default of the algorithm (4 for DQN's, 1 for PPO's) unless given
    assert runs == [("DQNPrior", None), ("mine", 7)] * 2 + [("PPOPrior", None), ("mine", 7)]
    assert calls[1]["reset_num_timesteps"] is False and calls[1]["progress_bar"] is True
