"""Reductions over a subset of the slots: every argmax, softmax, max and logsumexp over slots goes through these
functions, so an empty slot can never win, never get probability and never enter a target.

The subsets are the *valid* slots (:func:`valid_slots`, ``action_mask == 1``: what networks score) and the
*candidate* slots an algorithm may take; the rules that decide the candidates, and the floored prior that weighs
them, are those of :class:`~prior_wrappers.sb3.support.CandidateSupport` (:mod:`prior_wrappers.sb3.support`).
"""

from __future__ import annotations

import torch as th

from prior_wrappers.spaces import ACTION_MASK

# Finite rather than -inf: 0 * MASKED_VALUE stays 0 (entropies, expectations), and softmax gives exactly 0.
# The value of float32, bfloat16 and float64 tensors; float16 cannot hold it (see :func:`masked_value`).
MASKED_VALUE = -1e8


def valid_slots(obs: dict[str, th.Tensor]) -> th.Tensor:
    """Boolean ``(batch, K)``: the slot holds an admissible command."""
    return obs[ACTION_MASK] > 0.5


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
