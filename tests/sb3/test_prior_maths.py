"""The loss terms and masked reductions against hand computations on small tensors (the support rules:
test_support.py)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch as th

from prior_wrappers.sb3 import cql_penalty, kl_to_prior
from prior_wrappers.sb3.masking import (
    MASKED_VALUE,
    masked_fill,
    masked_log_softmax,
    masked_logsumexp,
    masked_max,
    masked_value,
    sample_masked,
)
from prior_wrappers.sb3.support import floored_log_prior
from prior_wrappers.spaces import LOGPROB_MIN


def test_masked_reductions_ignore_masked_slots():
    values = th.tensor([[1.0, 2.0, 100.0], [5.0, -1.0, 7.0], [3.0, 3.0, 3.0]])
    mask = th.tensor([[True, True, False], [False, True, False], [False, False, False]])
    assert masked_max(values, mask).tolist() == [2.0, -1.0, 0.0]  # empty row: nothing to bootstrap from
    lse = masked_logsumexp(values, mask)
    assert lse[0].item() == pytest.approx(math.log(math.e + math.e**2), rel=1e-6)
    assert lse[1].item() == pytest.approx(-1.0)
    assert lse[2].item() == 0.0
    log_probs = masked_log_softmax(values, mask)
    assert log_probs[0, 2].item() == MASKED_VALUE
    assert log_probs[0, :2].exp().sum().item() == pytest.approx(1.0)


def test_sample_masked_never_returns_masked_slot():
    th.manual_seed(0)
    logits = th.tensor([[0.0, 50.0, 0.0, 0.0]]).repeat(2000, 1)  # the masked slot would win every draw
    mask = th.tensor([True, False, True, True]).repeat(2000, 1)
    draws = sample_masked(logits, mask)
    assert not (draws == 1).any()
    assert set(draws.tolist()) == {0, 2, 3}


def test_cql_penalty_matches_hand_computation():
    q = th.tensor([[1.0, 2.0, 3.0, 50.0], [0.5, -1.0, 0.0, 0.0]])
    actions = th.tensor([[1], [0]])
    candidates = th.tensor([[True, True, True, False], [True, False, False, False]])
    # reference: data action left out; row 2 has no other candidate and contributes 0
    row1 = math.log(math.exp(1.0) + math.exp(3.0)) - 2.0
    assert cql_penalty(q, actions, candidates, include_data_action=False).item() == pytest.approx(
        (row1 + 0.0) / 2, rel=1e-6
    )
    # standard CQL (the default): data action inside the logsumexp
    row1 = math.log(math.exp(1.0) + math.exp(2.0) + math.exp(3.0)) - 2.0
    row2 = math.log(math.exp(0.5)) - 0.5
    assert cql_penalty(q, actions, candidates).item() == pytest.approx((row1 + row2) / 2, rel=1e-6)


def test_cql_penalty_includes_an_out_of_candidate_data_action_only_in_standard_cql():
    q = th.tensor([[1.0, 2.0, 3.0]])
    actions = th.tensor([[2]])  # data action outside the candidate set {0, 1}
    candidates = th.tensor([[True, True, False]])
    assert cql_penalty(q, actions, candidates, include_data_action=False).item() == pytest.approx(
        math.log(math.e + math.e**2) - 3.0
    )
    assert cql_penalty(q, actions, candidates).item() == pytest.approx(math.log(math.e + math.e**2 + math.e**3) - 3.0)


def test_kl_to_prior_matches_hand_computation():
    pi = np.array([0.5, 0.3, 0.2, 0.0])
    log_pi = th.tensor([[math.log(0.5), math.log(0.3), math.log(0.2), MASKED_VALUE]])
    # prior log-probs that do not sum to 1 over the valid slots (e.g. top-k kept): renormalised to [.4, .4, .2]
    prior = th.tensor([[math.log(0.2), math.log(0.2), math.log(0.1), LOGPROB_MIN]])
    valid = th.tensor([[True, True, True, False]])
    p = np.array([0.4, 0.4, 0.2])
    expected = float(np.sum(pi[:3] * np.log(pi[:3] / p)))
    assert kl_to_prior(log_pi, prior, valid).item() == pytest.approx(expected, rel=1e-5)
    # KL(π‖π) = 0, and the gradient is finite despite the masked slot
    logits = th.tensor([[0.3, -0.2, 0.1, MASKED_VALUE]], requires_grad=True)
    log_pi = th.log_softmax(logits, dim=-1)
    kl = kl_to_prior(log_pi, log_pi.detach(), valid)
    assert kl.item() == pytest.approx(0.0, abs=1e-6)
    kl.sum().backward()
    assert th.isfinite(logits.grad).all()


def test_kl_to_prior_charges_a_valid_slot_at_logprob_min_a_finite_price():
    # slot 2 is a valid command at the prior's floor; π puts 0.2 on it
    pi = np.array([0.5, 0.3, 0.2])
    log_pi = th.tensor([[math.log(0.5), math.log(0.3), math.log(0.2), MASKED_VALUE]])
    prior = th.tensor([[math.log(0.7), math.log(0.3), LOGPROB_MIN, LOGPROB_MIN]])
    valid = th.tensor([[True, True, True, False]])
    # p̃ = [0.7, 0.3, e^-30] / (1 + e^-30)
    z = 1.0 + math.exp(LOGPROB_MIN)
    log_p = np.log(np.array([0.7, 0.3, math.exp(LOGPROB_MIN)]) / z)
    expected = float(np.sum(pi * (np.log(pi) - log_p)))
    assert expected == pytest.approx(0.5 * math.log(0.5 / 0.7) + 0.2 * (math.log(0.2) + 30.0), rel=1e-9)
    assert kl_to_prior(log_pi, prior, valid).item() == pytest.approx(expected, rel=1e-5)


def test_prior_weighted_cql_penalty_matches_hand_computation():
    q = th.tensor([[1.0, 2.0, 3.0, 50.0], [0.5, -1.0, 0.0, 0.0]])
    actions = th.tensor([[1], [2]])
    candidates = th.tensor([[True, True, True, False], [True, False, False, False]])
    p = th.tensor([[0.5, 0.2, 0.1, 0.2], [0.6, 0.1, 0.1, 0.2]])
    # row 1: S = {0, 1, 2}, p̃ = [.5, .2, .1] / .8; row 2: S = {0} ∪ {a_data = 2}, p̃ = [.6, .1] / .7
    row1 = math.log((0.5 * math.e + 0.2 * math.e**2 + 0.1 * math.e**3) / 0.8) - 2.0
    row2 = math.log((0.6 * math.exp(0.5) + 0.1 * math.exp(0.0)) / 0.7) - 0.0
    assert cql_penalty(q, actions, candidates, log_prior=th.log(p)).item() == pytest.approx((row1 + row2) / 2, rel=1e-6)
    # a uniform prior gives CQL(H) minus log |S|
    flat = th.zeros_like(q)
    unweighted_rows = [math.log(math.e + math.e**2 + math.e**3) - 2.0, math.log(math.exp(0.5) + 1.0)]
    expected = (unweighted_rows[0] - math.log(3) + unweighted_rows[1] - math.log(2)) / 2
    assert cql_penalty(q, actions, candidates, log_prior=flat).item() == pytest.approx(expected, rel=1e-6)
    with pytest.raises(ValueError, match="include_data_action"):
        cql_penalty(q, actions, candidates, include_data_action=False, log_prior=th.log(p))


def test_prior_weighted_cql_gradient_is_the_prior_weighted_softmax_minus_the_data_action():
    q = th.tensor([[0.3, 1.2, -0.4]], requires_grad=True)
    p = np.array([0.7, 0.2, 0.1])
    cql_penalty(q, th.tensor([[2]]), th.tensor([[True, True, True]]), log_prior=th.log(th.tensor(p[None]))).backward()
    w = p * np.exp([0.3, 1.2, -0.4])
    w /= w.sum()
    # ∂/∂Q_a = w_a − 1[a = a_data]: the data action the prior dislikes (0.1) is pushed up by 1 − w_2 ≈ 0.95
    np.testing.assert_allclose(q.grad.numpy()[0], w - np.array([0.0, 0.0, 1.0]), rtol=1e-5)
    assert 1 - w[2] > 0.94


def test_kl_to_prior_with_a_floor_pulls_towards_the_floored_prior():
    pi = np.array([0.5, 0.3, 0.2])
    log_pi = th.tensor([[math.log(0.5), math.log(0.3), math.log(0.2)]])
    prior = th.tensor([[math.log(0.9), math.log(0.1), LOGPROB_MIN]])
    valid = th.ones(1, 3, dtype=th.bool)
    p = 0.8 * np.array([0.9, 0.1, math.exp(LOGPROB_MIN)]) / (1 + math.exp(LOGPROB_MIN)) + 0.2 / 3
    expected = float(np.sum(pi * np.log(pi / p)))
    assert kl_to_prior(log_pi, prior, valid, floor=0.2).item() == pytest.approx(expected, rel=1e-5)
    assert expected < 1.0 < kl_to_prior(log_pi, prior, valid).item()  # without the floor the ruled-out slot costs 5+ nats


def test_masked_value_is_the_documented_constant_where_the_dtype_holds_it():
    for dtype in (th.float32, th.float64, th.bfloat16):
        assert masked_value(dtype) == MASKED_VALUE
    assert masked_value(th.float16) == th.finfo(th.float16).min / 4  # -1e8 would overflow float16 (max 65504)


@pytest.mark.parametrize("dtype", [th.float16, th.bfloat16], ids=["float16", "bfloat16"])
def test_masked_maths_stays_finite_in_half_precision(dtype):
    # Q-like logits up to 30, a prior at LOGPROB_MIN, a row with one valid slot and a row without any
    logits = th.tensor([[30.0, -2.0, 0.5, 7.0], [1.0, 2.0, 3.0, 4.0], [0.0, 0.0, 0.0, 0.0], [1.0, 1.0, 1.0, 1.0]])
    prior = th.tensor([[math.log(0.6), LOGPROB_MIN, math.log(0.4), LOGPROB_MIN], [-1.0, -2.0, -0.5, LOGPROB_MIN],
                       [0.0, LOGPROB_MIN, LOGPROB_MIN, LOGPROB_MIN], [-1.4, -1.4, -1.4, -1.4]])
    mask = th.tensor([[True, True, True, False], [False, True, True, False], [True, False, False, False],
                      [False, False, False, False]])
    logits, prior = logits.to(dtype), prior.to(dtype)

    filled = masked_fill(logits, mask)
    assert filled.dtype == dtype and th.isfinite(filled).all()
    assert (filled[~mask] == masked_value(dtype)).all()
    assert (th.softmax(filled[:3], dim=-1)[~mask[:3]] == 0).all()  # the all-masked row is uniform, as in float32

    for log_pi in (masked_log_softmax(logits, mask), floored_log_prior(prior, mask, 0.1),
                   floored_log_prior(prior, mask, 0.0)):
        assert log_pi.dtype == dtype and th.isfinite(log_pi).all()
        pi = log_pi.exp()
        assert (pi[~mask] == 0).all()  # masked slots: probability exactly 0
        assert pi[:3].float().sum(dim=-1).tolist() == pytest.approx([1.0] * 3, abs=1e-2)
        # entropy and KL as the plain sums Σ π·log π, Σ π·(log π − log p̃), masked slots included: 0·(finite) = 0
        entropy = -(pi * log_pi).sum(dim=-1)
        kl = (pi * (log_pi - floored_log_prior(prior, mask, 0.1))).sum(dim=-1)
        assert th.isfinite(entropy).all() and th.isfinite(kl).all()
        assert th.isfinite(kl_to_prior(log_pi, prior, mask, 0.1)).all()
    assert masked_log_softmax(logits, mask)[2, 0].item() == 0.0  # the only valid slot: log 1
