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

  Zero support is therefore never inferred from the clipped log-probability. Two explicit rules narrow the
  candidates instead: ``min_logprob`` drops the valid slots whose log p is below it (e.g. ``LOGPROB_MIN + 1``
  keeps only the commands that a propose-mode prior named, the reference's "never outside the proposals"),
  and ``top_k`` keeps the prior's ``top_k`` of the remaining ones. The prior's favourite valid slot always
  stays a candidate, so a state with a valid slot always has one.
"""

from __future__ import annotations

import torch as th

from prior_wrappers.spaces import ACTION_MASK, PRIOR_LOGPROBS

# Finite rather than -inf: 0 * MASKED_VALUE stays 0 (entropies, expectations), and softmax gives exactly 0.
MASKED_VALUE = -1e8


def valid_slots(obs: dict[str, th.Tensor]) -> th.Tensor:
    """Boolean ``(batch, K)``: the slot holds an admissible command."""
    return obs[ACTION_MASK] > 0.5


def candidate_slots(
    obs: dict[str, th.Tensor], top_k: int | None = None, min_logprob: float | None = None
) -> th.Tensor:
    """Boolean ``(batch, K)``: the valid slots, narrowed by the explicit support rules if given.

    :param obs: the observation, with ``prior_logprobs`` and ``action_mask``.
    :param top_k: keep only the prior's ``top_k`` (of the slots that pass ``min_logprob``).
    :param min_logprob: drop the valid slots with log p(a|s) < ``min_logprob``, except the prior's favourite.
    """
    log_prior = obs[PRIOR_LOGPROBS]
    valid = valid_slots(obs)
    candidates = valid
    if min_logprob is not None:
        favourite = masked_fill(log_prior, valid).argmax(dim=-1, keepdim=True)
        is_favourite = th.zeros_like(valid).scatter_(-1, favourite, True)
        candidates = valid & ((log_prior >= min_logprob) | is_favourite)
    if top_k is not None and top_k < candidates.shape[-1]:
        ranked = masked_fill(log_prior, candidates).topk(top_k, dim=-1).indices
        in_top_k = th.zeros_like(candidates).scatter_(-1, ranked, True)
        candidates = candidates & in_top_k
    return candidates


def masked_fill(values: th.Tensor, mask: th.Tensor) -> th.Tensor:
    """``values`` where ``mask``, :data:`MASKED_VALUE` elsewhere."""
    return values.masked_fill(~mask, MASKED_VALUE)


def masked_max(values: th.Tensor, mask: th.Tensor) -> th.Tensor:
    """max over the masked slots, ``(batch,)``; 0 for a row without any slot (nothing to bootstrap from)."""
    best = masked_fill(values, mask).max(dim=-1).values
    return th.where(mask.any(dim=-1), best, th.zeros_like(best))


def masked_logsumexp(values: th.Tensor, mask: th.Tensor) -> th.Tensor:
    """log Σ_{masked slots} exp(values), ``(batch,)``; 0 for a row without any slot."""
    lse = values.masked_fill(~mask, float("-inf")).logsumexp(dim=-1)
    return th.where(mask.any(dim=-1), lse, th.zeros_like(lse))


def masked_log_softmax(logits: th.Tensor, mask: th.Tensor) -> th.Tensor:
    """log-softmax over the masked slots; :data:`MASKED_VALUE` in the others."""
    return masked_fill(th.log_softmax(masked_fill(logits, mask), dim=-1), mask)


def sample_masked(logits: th.Tensor, mask: th.Tensor) -> th.Tensor:
    """One slot per row from softmax(logits) over the masked slots (torch's RNG, seeded by SB3)."""
    probs = th.softmax(masked_fill(logits, mask), dim=-1)
    return th.multinomial(probs, num_samples=1).squeeze(-1)
