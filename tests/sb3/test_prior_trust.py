"""PriorTrust: which training episodes explore with the prior, against hand computations."""

from __future__ import annotations

import math

import numpy as np
import pytest

from prior_wrappers.sb3.prior_trust import PriorTrust


def finish(trust: PriorTrust, returns: list[float], with_prior: bool) -> None:
    """End one episode of env 0 per return, as the given kind."""
    for r in returns:
        trust.with_prior[0] = with_prior
        trust.step(np.array([r]), np.array([True]))


def test_a_fixed_trust_is_the_probability_of_an_episode_with_the_prior():
    always, never = PriorTrust(1.0, n_envs=64, seed=0), PriorTrust(0.0, n_envs=64, seed=0)
    assert always.with_prior.all() and not never.with_prior.any()
    half = PriorTrust(0.5, n_envs=4000, seed=0)
    assert half.with_prior.mean() == pytest.approx(0.5, abs=0.03)
    finish(always, [0.0, 0.0, 0.0], with_prior=True)
    assert always.probability() == 1.0


def test_adaptive_trust_starts_at_three_quarters_until_the_returns_tell_the_kinds_apart():
    trust = PriorTrust("adaptive", n_envs=4000, seed=0)
    assert trust.probability() == 0.75
    assert trust.with_prior.mean() == pytest.approx(0.75, abs=0.03)
    trust = PriorTrust("adaptive", n_envs=1, seed=0)
    finish(trust, [0.0, 0.0], with_prior=True)
    finish(trust, [0.0], with_prior=False)
    assert trust.probability() == 0.75  # one kind has fewer than two episodes
    finish(trust, [0.0], with_prior=False)
    assert trust.probability() == 0.75  # all zero: nothing to tell them apart
    assert PriorTrust("adaptive", n_envs=1, start=0.5).probability() == 0.5


def test_adaptive_trust_matches_the_normal_approximation_and_keeps_both_kinds():
    trust = PriorTrust("adaptive", n_envs=1, seed=0, min_share=0.05)
    finish(trust, [1.0, 0.0, 1.0, 1.0], with_prior=True)  # mean 0.75, var 0.1875
    finish(trust, [0.0, 1.0, 0.0, 0.0], with_prior=False)  # mean 0.25, var 0.1875
    z = 0.5 / math.sqrt(0.1875 / 4 + 0.1875 / 4)
    assert trust.probability() == pytest.approx(0.5 * (1 + math.erf(z / math.sqrt(2))), rel=1e-9)
    # a wrong prior: its episodes return nothing, the others sometimes win: the prior's share falls to the floor
    wrong = PriorTrust("adaptive", n_envs=1, seed=0, min_share=0.05)
    finish(wrong, [0.0] * 10, with_prior=True)
    finish(wrong, [0.0, 1.0, 0.0, 1.0, 1.0], with_prior=False)
    assert wrong.probability() == 0.05
    finish(wrong, [1.0] * 3, with_prior=True)  # the kind with no spread at all still compares by its mean
    assert 0.05 < wrong.probability() < 0.95


def test_each_env_draws_its_kind_when_its_own_episode_ends():
    trust = PriorTrust(0.5, n_envs=3, seed=1)
    before = trust.with_prior.copy()
    for _ in range(20):  # only env 1's episodes end: envs 0 and 2 keep their kind, their returns add up
        trust.step(np.array([1.0, 2.0, 3.0]), np.array([False, True, False]))
    assert trust.with_prior[[0, 2]].tolist() == before[[0, 2]].tolist()
    assert trust.episode_return.tolist() == [20.0, 0.0, 60.0]
    assert len(trust.returns[True]) + len(trust.returns[False]) == 20
    assert 0 < len(trust.returns[True]) < 20  # env 1 drew both kinds


def test_bad_trust_is_refused():
    for bad in (1.5, -0.1, "always", True):
        with pytest.raises(ValueError, match="prior_trust"):
            PriorTrust(bad, n_envs=1)  # type: ignore[arg-type]
