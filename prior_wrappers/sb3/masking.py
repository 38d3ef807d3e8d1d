"""Which candidate slots an algorithm may choose, and reductions restricted to them.

Every place that takes an argmax, a softmax, a max or a logsumexp over slots goes through these functions,
so an empty slot can never win, never get probability and never enter a target.

Two masks are used, and "valid" is kept apart from "supported by the prior":

- the *valid* slots, ``action_mask == 1``: slots that hold an admissible command. Networks score only
  these (:data:`MASKED_VALUE` elsewhere), and any valid slot may appear as a data action.
- the *candidate* slots: the slots an algorithm acts on, bootstraps from and regularises over. By default
  these are **all the valid slots, whatever their prior**. A valid slot at ``LOGPROB_MIN`` (a long command
  scored with ``normalization="sum"``, or a command that no sampled proposal named) is a command the prior
  gives almost no mass: its posterior weight p·exp(Q/α) is tiny, but its Q can still win a max or an argmax,
  and PPO may still choose it (its KL term charges π(a)·(log π(a) + 30), a finite price).

  Zero support is therefore never inferred from the clipped log-probability. Three explicit rules narrow the
  candidates instead, applied together (a slot must pass all that are given):

  - ``min_logprob`` drops the valid slots whose log p is below it (e.g. ``LOGPROB_MIN + 1`` keeps only the
    commands that a propose-mode prior named, the reference's "never outside the proposals");
  - ``mass=p`` keeps the smallest set of valid slots, taken in the prior's order, that holds at least a
    fraction ``p`` of the prior's mass over the valid slots (p renormalised over them, as a nucleus / top-p
    cut). It adapts to the prior's confidence: one slot where the prior is sure, many where it is not;
  - ``top_k`` keeps the prior's ``top_k``.

  The prior's favourite valid slot passes every rule, so a state with a valid slot always has a candidate.
  Ties in the prior are broken by the slot index (the lower slot first), for all three rules.

A third notion, the *floored prior* (:func:`floored_log_prior`), is what the algorithms act on and regularise
towards: the prior renormalised over the candidates and mixed with the uniform distribution over them,
p̃ = (1 − λ)·p + λ/n. A wrong prior can then slow a learner but not trap it: every candidate keeps a
probability of at least λ/n of being tried (DQN-Prior's posterior sampling, PPO-Prior's initial policy), so
its value is learned, and the ``max`` target never bootstraps from a command the learner would never take.
"""

from __future__ import annotations

import torch as th

from prior_wrappers.spaces import ACTION_MASK, PRIOR_LOGPROBS

# Finite rather than -inf: 0 * MASKED_VALUE stays 0 (entropies, expectations), and softmax gives exactly 0.
# The value of float32, bfloat16 and float64 tensors; float16 cannot hold it (see :func:`masked_value`).
MASKED_VALUE = -1e8

# The default prior_floor of DQN-Prior, CQL-Prior and PPO-Prior: every candidate keeps >= 1/(10n). On the
# misleading-prior chain of benchmarks/misleading_prior.py it does not free a learner alone (PriorTrust does).
PRIOR_FLOOR = 0.1

# prior mass is compared within this tolerance: the prior arrives in float32, so p = [0.6, 0.3, 0.1] holds
# "0.9" in its first two slots whatever the rounding of exp(log 0.6) + exp(log 0.3)
_MASS_TOLERANCE = 1e-6


def valid_slots(obs: dict[str, th.Tensor]) -> th.Tensor:
    """Boolean ``(batch, K)``: the slot holds an admissible command."""
    return obs[ACTION_MASK] > 0.5


def candidate_slots(
    obs: dict[str, th.Tensor],
    top_k: int | None = None,
    min_logprob: float | None = None,
    mass: float | None = None,
) -> th.Tensor:
    """Boolean ``(batch, K)``: the valid slots, narrowed by the explicit support rules if given.

    :param obs: the observation, with ``prior_logprobs`` and ``action_mask``.
    :param top_k: keep only the prior's ``top_k`` valid slots.
    :param min_logprob: drop the valid slots with log p(a|s) < ``min_logprob``, except the prior's favourite.
    :param mass: keep the smallest prefix of the valid slots, ranked by the prior, whose prior mass
        (renormalised over the valid slots) is ``>= mass`` (within 1e-6); ``0 < mass <= 1``, ``1`` keeps every
        valid slot.
    """
    log_prior = obs[PRIOR_LOGPROBS]
    valid = valid_slots(obs)
    # the prior's order of the valid slots, ties to the lower slot; empty slots last
    order = _prior_order(log_prior, valid)
    rank = th.empty_like(order).scatter_(-1, order, th.arange(order.shape[-1], device=order.device).expand_as(order))
    candidates = valid
    if min_logprob is not None:
        candidates = candidates & ((log_prior >= min_logprob) | (rank == 0))
    if mass is not None and mass < 1.0:
        # p renormalised over the valid slots, in float64 so that a cumulative sum of many slots stays exact enough
        log_p = log_prior.double().masked_fill(~valid, float("-inf"))
        p = th.softmax(log_p, dim=-1).nan_to_num(0.0)  # a row without valid slots gives NaN: no mass anywhere
        mass_before = th.cumsum(p.gather(-1, order), dim=-1) - p.gather(-1, order)  # mass of the higher-ranked
        # slot i is needed while the ones before it hold less than ``mass`` (by more than the prior's float32 error)
        in_nucleus_sorted = mass_before < mass - _MASS_TOLERANCE
        in_nucleus = th.zeros_like(valid).scatter_(-1, order, in_nucleus_sorted)
        candidates = candidates & (in_nucleus | (rank == 0))
    if top_k is not None and top_k < candidates.shape[-1]:
        candidates = candidates & (rank < top_k)
    return candidates


def _prior_order(log_prior: th.Tensor, valid: th.Tensor) -> th.Tensor:
    """Slot indices ``(batch, K)`` by decreasing prior, valid slots first, ties to the lower slot."""
    keys = masked_fill(log_prior.double(), valid)
    return th.sort(keys, dim=-1, descending=True, stable=True).indices


def floored_log_prior(log_prior: th.Tensor, candidates: th.Tensor, floor: float) -> th.Tensor:
    """log p̃ over the candidates, p̃ = (1 − ``floor``)·p + ``floor``/n with p the prior renormalised over the
    ``n`` candidates of the row; :func:`masked_value` off the candidates. ``floor=0`` is the renormalised prior,
    ``floor=1`` the uniform distribution over the candidates.

    :param log_prior: ``(batch, K)`` the observation's prior log-probabilities.
    :param candidates: ``(batch, K)`` boolean candidate slots.
    :param floor: λ in [0, 1].
    """
    log_p = masked_log_softmax(log_prior, candidates)
    if floor <= 0.0:
        return log_p
    n = candidates.sum(dim=-1, keepdim=True).clamp(min=1).to(log_p.dtype)
    # log((1 − λ)·p + λ/n), computed as a logsumexp of the two terms so that p ≈ 0 stays exact
    mixed = th.logaddexp(
        log_p + th.log1p(th.tensor(-floor, dtype=log_p.dtype)) if floor < 1.0 else th.full_like(log_p, float("-inf")),
        th.log(floor / n).expand_as(log_p),
    )
    return masked_fill(mixed, candidates)


def check_prior_floor(floor: float) -> float:
    """``floor`` as a float in [0, 1], or a ``ValueError`` that says what it is."""
    if not 0.0 <= float(floor) <= 1.0:
        raise ValueError(
            f"prior_floor is the share of the uniform distribution mixed into the prior, in [0, 1]; got {floor}"
        )
    return float(floor)


def masked_value(dtype: th.dtype) -> float:
    """The finite value that masked slots of a ``dtype`` tensor get: :data:`MASKED_VALUE` where ``dtype`` holds
    it (float32, bfloat16, float64), else a quarter of the dtype's lowest finite value (−16376 for float16, whose
    range ends at −65504). A quarter leaves room for the sums done after it (a log-sum-exp subtracted, a log-prior
    added) without overflowing to −inf, and its ``exp`` is still exactly 0.

    :param dtype: the tensor's dtype (:data:`MASKED_VALUE` for an integer one).
    """
    if not dtype.is_floating_point:
        return MASKED_VALUE
    lowest = th.finfo(dtype).min
    return MASKED_VALUE if MASKED_VALUE >= lowest / 4 else lowest / 4


def masked_fill(values: th.Tensor, mask: th.Tensor) -> th.Tensor:
    """``values`` where ``mask``, :func:`masked_value` of their dtype (:data:`MASKED_VALUE` but in float16)
    elsewhere."""
    return values.masked_fill(~mask, masked_value(values.dtype))


def masked_max(values: th.Tensor, mask: th.Tensor) -> th.Tensor:
    """max over the masked slots, ``(batch,)``; 0 for a row without any slot (nothing to bootstrap from)."""
    best = masked_fill(values, mask).max(dim=-1).values
    return th.where(mask.any(dim=-1), best, th.zeros_like(best))


def masked_logsumexp(values: th.Tensor, mask: th.Tensor) -> th.Tensor:
    """log Σ_{masked slots} exp(values), ``(batch,)``; 0 for a row without any slot."""
    lse = values.masked_fill(~mask, float("-inf")).logsumexp(dim=-1)
    return th.where(mask.any(dim=-1), lse, th.zeros_like(lse))


def masked_log_softmax(logits: th.Tensor, mask: th.Tensor) -> th.Tensor:
    """log-softmax over the masked slots; :func:`masked_value` (:data:`MASKED_VALUE` but in float16) in the
    others."""
    return masked_fill(th.log_softmax(masked_fill(logits, mask), dim=-1), mask)


def sample_masked(logits: th.Tensor, mask: th.Tensor) -> th.Tensor:
    """One slot per row from softmax(logits) over the masked slots (torch's RNG, seeded by SB3)."""
    probs = th.softmax(masked_fill(logits, mask), dim=-1)
    return th.multinomial(probs, num_samples=1).squeeze(-1)
