"""Which commands a learner may take: the candidate support, one object shared by DQN-, CQL- and PPO-Prior.

Two sets of slots are kept apart:

- the *valid* slots, ``action_mask == 1``: slots that hold an admissible command. Networks score only these
  (:data:`~prior_wrappers.sb3.masking.MASKED_VALUE` elsewhere), and any valid slot may appear as a data action.
- the *candidate* slots: the slots an algorithm acts on, bootstraps from and regularises over. By default
  these are **all the valid slots, whatever their prior**. A valid slot at ``LOGPROB_MIN`` (a long command
  scored with ``normalization="sum"``, or a command that no sampled proposal named) is a command the prior
  gives almost no mass: its posterior weight p·exp(Q/α) is tiny, but its Q can still win a max or an argmax,
  and PPO may still choose it (its KL term charges π(a)·(log π(a) + 30), a finite price).

What a learner may take is decided at two levels, and every rule of the second lives in this module:

1. **The wrapper's slots** (``LLMPriorWrapper(k=...)`` / ``VecLLMPrior``, not this module): a state's admissible
   commands are ranked by the prior and only its best ``k`` get a slot (the rest are dropped with an
   ``UnreachableCommandsWarning``). This cut happens before the observation exists, so no algorithm can see,
   choose or learn about a dropped command; everything below narrows *within* the ``k`` slots, and a
   ``top_k >= k`` is no cut at all.
2. **The candidate support** (:class:`CandidateSupport`, built by each algorithm from its constructor arguments):

   - ``min_logprob`` (``prior_min_logprob``) drops the valid slots whose log p is below it (e.g.
     ``LOGPROB_MIN + 1`` keeps only the commands that a propose-mode prior named, the reference's "never outside
     the proposals");
   - ``mass=p`` (``prior_mass``) keeps the smallest set of valid slots, taken in the prior's order, that holds at
     least a fraction ``p`` of the prior's mass over the valid slots (p renormalised over them, as a nucleus /
     top-p cut). It adapts to the prior's confidence: one slot where the prior is sure, many where it is not;
   - ``top_k`` (``prior_top_k``) keeps the prior's ``top_k``;
   - ``behavior_threshold`` (CQL-Prior only) *adds* the data's own support, discrete BCQ's rule: every valid
     slot whose behaviour-cloning probability is at least ``τ·max π_b(·|s)`` (Fujimoto et al., 2019);
   - ``floor`` (``prior_floor``) decides nothing about the set, but how the learner weighs it (below).

  Zero support is never inferred from the clipped log-probability. The three prior rules apply together (a slot
  must pass all that are given); the prior's favourite valid slot passes every rule, so a state with a valid
  slot always has a candidate. Ties in the prior are broken by the slot index (the lower slot first), for all
  three rules. The behaviour support is joined after them, so a prior cut never removes what the data did.

The *floored prior* (:func:`floored_log_prior`) is what the algorithms act on and regularise towards: the prior
renormalised over the candidates and mixed with the uniform distribution over them, p̃ = (1 − λ)·p + λ/n. A
wrong prior can then slow a learner but not trap it: every candidate keeps a probability of at least λ/n of
being tried (DQN-Prior's posterior sampling, PPO-Prior's initial policy), so its value is learned, and the
``max`` target never bootstraps from a command the learner would never take.

PPO-Prior has no prior rule (its candidates are the valid slots), only the floor; its policy
(:class:`~prior_wrappers.sb3.policies.CandidateActorCriticPolicy`) holds the same support as the algorithm.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, ClassVar, TypeVar, cast

import torch as th
from stable_baselines3.common.type_aliases import MaybeCallback, PyTorchObs

from prior_wrappers.sb3.masking import masked_fill, masked_log_softmax, valid_slots
from prior_wrappers.spaces import PRIOR_LOGPROBS

SelfSupportMixin = TypeVar("SelfSupportMixin", bound="SupportMixin")

# The default prior_floor of DQN-Prior, CQL-Prior and PPO-Prior: every candidate keeps >= 1/(10n). On the
# misleading-prior chain of benchmarks/misleading_prior.py it does not free a learner alone (PriorTrust does).
PRIOR_FLOOR = 0.1

# prior mass is compared within this tolerance: the prior arrives in float32, so p = [0.6, 0.3, 0.1] holds
# "0.9" in its first two slots whatever the rounding of exp(log 0.6) + exp(log 0.3)
_MASS_TOLERANCE = 1e-6


@dataclasses.dataclass(frozen=True)
class CandidateSupport:
    """The rules that decide which slots a learner may take, and the prior it weighs them with.

    An algorithm builds it from its constructor arguments (``prior_top_k`` → ``top_k``, ``prior_mass`` → ``mass``,
    ``prior_min_logprob`` → ``min_logprob``, ``prior_floor`` → ``floor``; CQL-Prior's ``behavior_threshold``) and
    exposes it as ``model.support``; the arguments stay the saved attributes. ``CandidateSupport()`` is no rule
    at all: every valid slot, the renormalised prior. Invalid values raise ``ValueError`` at construction.

    :param top_k: keep only the prior's ``top_k`` valid slots; ``None`` keeps every valid slot.
    :param mass: keep the smallest prefix of the valid slots, ranked by the prior, whose prior mass (renormalised
        over the valid slots) is ``>= mass`` (within 1e-6); in (0, 1], ``None`` or ``1`` keeps every valid slot.
    :param min_logprob: drop the valid slots with log p(a|s) < ``min_logprob`` (the prior's favourite stays);
        ``<= 0`` or ``None``.
    :param floor: λ in [0, 1], the share of the uniform distribution over the candidates in :meth:`log_prior`.
    :param behavior_threshold: τ in (0, 1]: :meth:`candidates` adds every valid slot with π_b(a|s) ≥ τ·max π_b(·|s),
        π_b the softmax of the behaviour logits it is given; ``None``: the prior's candidates alone.
    """

    top_k: int | None = None
    mass: float | None = None
    min_logprob: float | None = None
    floor: float = 0.0
    behavior_threshold: float | None = None

    def __post_init__(self) -> None:
        # the messages name the algorithms' arguments, which is where these values come from
        if self.top_k is not None and self.top_k < 1:
            raise ValueError(f"prior_top_k must be >= 1 or None, got {self.top_k}")
        if self.min_logprob is not None and self.min_logprob > 0:
            raise ValueError(f"prior_min_logprob is a log-probability threshold, <= 0 or None; got {self.min_logprob}")
        if self.mass is not None and not 0.0 < self.mass <= 1.0:
            raise ValueError(f"prior_mass is a fraction of the prior's mass, in (0, 1] or None; got {self.mass}")
        object.__setattr__(self, "floor", check_prior_floor(self.floor))
        if self.behavior_threshold is not None and not 0 < self.behavior_threshold <= 1:
            raise ValueError(f"behavior_threshold must be in (0, 1] (or None), got {self.behavior_threshold}")

    def candidates(self, obs: PyTorchObs, behavior_logits: th.Tensor | None = None) -> th.Tensor:
        """Boolean ``(batch, K)``: the slots the learner may act on, bootstrap from and regularise over.

        :param obs: the observation, with ``prior_logprobs`` and ``action_mask``.
        :param behavior_logits: ``(batch, K)`` logits of the data's behaviour policy, needed with
            ``behavior_threshold`` (and ignored without it); never differentiated.
        """
        slots = _prior_observation(obs)
        candidates = candidate_slots(slots, top_k=self.top_k, min_logprob=self.min_logprob, mass=self.mass)
        if self.behavior_threshold is None:
            return candidates
        if behavior_logits is None:
            raise ValueError("a support with behavior_threshold needs the behaviour policy's logits")
        return candidates | data_supported_slots(slots, behavior_logits, self.behavior_threshold)

    def log_prior(self, obs: PyTorchObs, candidates: th.Tensor) -> th.Tensor:
        """log p̃(a|s) over ``candidates`` (:func:`floored_log_prior` with this ``floor``), masked off them: what
        DQN-Prior samples with and the soft target weighs by, and what PPO-Prior's KL pulls towards.

        :param obs: the observation, with ``prior_logprobs``.
        :param candidates: ``(batch, K)`` boolean, from :meth:`candidates`.
        """
        return floored_log_prior(_prior_observation(obs)[PRIOR_LOGPROBS], candidates, self.floor)


class SupportMixin:
    """For the prior algorithms (DQN-, CQL-, PPO- and GFlan-Prior): what they share around their support.

    A subclass defines :attr:`support`, built from its saved attributes (``prior_top_k``, ``prior_floor``, ...) at
    each use, so that ``load`` and a changed attribute reach it, and :attr:`run_name`, the default name of its
    ``learn`` runs (TensorBoard).
    """

    run_name: ClassVar[str]

    @property
    def support(self) -> CandidateSupport:
        """This algorithm's :class:`CandidateSupport`."""
        raise NotImplementedError

    def candidates(self, obs: PyTorchObs) -> th.Tensor:
        """Boolean ``(batch, K)``: the slots this algorithm may act on, bootstrap from and regularise over."""
        return self.support.candidates(obs)

    def learn(
        self: SelfSupportMixin,
        total_timesteps: int,
        callback: MaybeCallback = None,
        log_interval: int | None = None,
        tb_log_name: str | None = None,
        reset_num_timesteps: bool = True,
        progress_bar: bool = False,
    ) -> SelfSupportMixin:
        """SB3's ``learn``, its runs named after the algorithm.

        :param total_timesteps: environment steps to train for.
        :param callback: SB3 callback(s), called at every step.
        :param log_interval: write the logs every this many episodes (off-policy) or updates (on-policy);
            ``None``: SB3's default of the algorithm (4 for DQN's, 1 for PPO's).
        :param tb_log_name: name of the TensorBoard run; ``None``: :attr:`run_name` (``"DQNPrior"``, ``"PPOPrior"``).
        :param reset_num_timesteps: restart the step counter (and the TensorBoard run).
        :param progress_bar: show a tqdm/rich progress bar.
        """
        interval: dict[str, Any] = {} if log_interval is None else {"log_interval": log_interval}
        return super().learn(  # type: ignore[misc]
            total_timesteps=total_timesteps,
            callback=callback,
            tb_log_name=self.run_name if tb_log_name is None else tb_log_name,
            reset_num_timesteps=reset_num_timesteps,
            progress_bar=progress_bar,
            **interval,
        )


def candidate_slots(
    obs: dict[str, th.Tensor],
    top_k: int | None = None,
    min_logprob: float | None = None,
    mass: float | None = None,
) -> th.Tensor:
    """Boolean ``(batch, K)``: the valid slots, narrowed by the explicit support rules if given (the rules of
    :class:`CandidateSupport`, without the behaviour support).

    :param obs: the observation, with ``prior_logprobs`` and ``action_mask``.
    :param top_k: keep only the prior's ``top_k`` valid slots.
    :param min_logprob: drop the valid slots with log p(a|s) < ``min_logprob``, except the prior's favourite.
    :param mass: keep the smallest prefix of the valid slots, ranked by the prior, whose prior mass
        (renormalised over the valid slots) is ``>= mass`` (within 1e-6); ``0 < mass <= 1``, ``1`` keeps every
        valid slot.
    """
    log_prior = obs[PRIOR_LOGPROBS]
    valid = valid_slots(obs)
    # the rules that cut anything: a mass below 1, a top_k below the number of slots
    cut_mass = mass if mass is not None and mass < 1.0 else None
    cut_top_k = top_k if top_k is not None and top_k < valid.shape[-1] else None
    if min_logprob is None and cut_mass is None and cut_top_k is None:
        return valid  # no rule: nothing to rank
    # the prior's order of the valid slots, ties to the lower slot; empty slots last
    order = _prior_order(log_prior, valid)
    rank = th.empty_like(order).scatter_(-1, order, th.arange(order.shape[-1], device=order.device).expand_as(order))
    candidates = valid
    if min_logprob is not None:
        candidates = candidates & ((log_prior >= min_logprob) | (rank == 0))
    if cut_mass is not None:
        # p renormalised over the valid slots, in float64 so that a cumulative sum of many slots stays exact enough
        log_p = log_prior.double().masked_fill(~valid, float("-inf"))
        p = th.softmax(log_p, dim=-1).nan_to_num(0.0)  # a row without valid slots gives NaN: no mass anywhere
        mass_before = th.cumsum(p.gather(-1, order), dim=-1) - p.gather(-1, order)  # mass of the higher-ranked
        # slot i is needed while the ones before it hold less than ``mass`` (by more than the prior's float32 error)
        in_nucleus_sorted = mass_before < cut_mass - _MASS_TOLERANCE
        in_nucleus = th.zeros_like(valid).scatter_(-1, order, in_nucleus_sorted)
        candidates = candidates & (in_nucleus | (rank == 0))
    if cut_top_k is not None:
        candidates = candidates & (rank < cut_top_k)
    return candidates


def _prior_observation(obs: PyTorchObs) -> dict[str, th.Tensor]:
    """SB3 types observations as a tensor or a dict of them; a prior observation is always the dict."""
    return cast(dict[str, th.Tensor], obs)


def _prior_order(log_prior: th.Tensor, valid: th.Tensor) -> th.Tensor:
    """Slot indices ``(batch, K)`` by decreasing prior, valid slots first, ties to the lower slot."""
    keys = masked_fill(log_prior.double(), valid)
    return th.sort(keys, dim=-1, descending=True, stable=True).indices


def data_supported_slots(obs: dict[str, th.Tensor], behavior_logits: th.Tensor, threshold: float) -> th.Tensor:
    """Boolean ``(batch, K)``: the valid slots the data's behaviour policy takes with π_b(a|s) ≥ τ·max π_b(·|s)
    (discrete BCQ's support), π_b the softmax of ``behavior_logits`` (detached).

    :param obs: the observation, with ``action_mask``.
    :param behavior_logits: ``(batch, K)`` logits of the behaviour-cloning network.
    :param threshold: τ in (0, 1].
    """
    log_pi_b = behavior_logits.detach().log_softmax(dim=1)
    # π_b(a|s) / max_a' π_b(a'|s) ≥ τ  ⟺  log π_b(a|s) − max log π_b ≥ log τ
    supported = log_pi_b - log_pi_b.max(dim=1, keepdim=True).values >= math.log(threshold)
    return supported & valid_slots(obs)


def floored_log_prior(log_prior: th.Tensor, candidates: th.Tensor, floor: float) -> th.Tensor:
    """log p̃ over the candidates, p̃ = (1 − ``floor``)·p + ``floor``/n with p the prior renormalised over the
    ``n`` candidates of the row; :func:`~prior_wrappers.sb3.masking.masked_value` off the candidates. ``floor=0``
    is the renormalised prior, ``floor=1`` the uniform distribution over the candidates.

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
