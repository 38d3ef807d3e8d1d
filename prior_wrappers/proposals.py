"""Proposals as the prior (the reference's DQN-Prior): k sampled generations per state, their counts the prior.

:class:`~prior_wrappers.slots.SlotBuilder` uses this module with ``prior_mode="propose"``; the wrappers get it
through their ``prior_mode=`` and ``proposals=`` options. Two cases:

- **with an admissible list**: the k samples are mapped to admissible commands (duplicates kept) and the prior
  is the smoothed empirical distribution :func:`smoothed_logprobs`; unproposed commands keep a floor
  (``unproposed="keep"``) or lose their slot (``"drop"``, the reference: the policy only sees proposals).
- **without one** (``info["admissible_commands"] is None``, a parser game): the distinct generations become the
  candidates, ordered by count then first appearance, and the env receives the chosen text.

Proposals are a function of the state and the wrapper's seed (:func:`state_seed`): revisiting a state gives
the same proposals (as the reference, which labels each state once), so ``CachedPrior`` serves them again.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from prior_wrappers.priors.base import ActionPrior, Proposals, digest, propose_options  # noqa: F401
from prior_wrappers.priors.matching import FALLBACKS, Fallback

PriorMode = Literal["score", "propose"]
PRIOR_MODES: tuple[str, ...] = ("score", "propose")
Unproposed = Literal["keep", "drop"]


@dataclass(frozen=True)
class ProposalConfig:
    """How ``prior_mode="propose"`` samples and turns counts into a prior.

    :param samples: k, the completions sampled per state (the reference uses 5).
    :param smoothing: total pseudo-count beta spread evenly over the state's n candidates:
        ``p(a) = (c_a + beta/n) / (sum_b c_b + beta)``. With ``beta = 1`` all unproposed commands together get at
        most ``1/(k+1)`` of the mass; ``beta = 0`` gives them probability 0 (their slot reads ``LOGPROB_MIN``
        but stays valid). When no sample matched anything the prior is uniform.
    :param unproposed: ``"keep"`` (default): every admissible command keeps a slot (unproposed ones sort last
        with the floor); ``"drop"``: only proposed commands get a slot (all of them when none was proposed).
    :param temperature: sampling temperature (passed to the prior's ``propose`` when it takes one).
    :param max_new_tokens: tokens per completion (ditto).
    :param fallback: what an invalid generation counts as (ditto; ``"drop"``: nothing, the invalid rate says).
    :param free_text_fallback: the one candidate of a free-text state whose k generations were all empty.
    """

    samples: int = 8
    smoothing: float = 1.0
    unproposed: Unproposed = "keep"
    temperature: float = 1.0
    max_new_tokens: int = 10
    fallback: Fallback = "drop"
    free_text_fallback: str = "look"

    def __post_init__(self) -> None:
        if int(self.samples) < 1:
            raise ValueError(f"proposals: samples must be >= 1, got {self.samples}")
        if not self.smoothing >= 0:
            raise ValueError(f"proposals: smoothing must be >= 0, got {self.smoothing}")
        if self.unproposed not in ("keep", "drop"):
            raise ValueError(f"proposals: unproposed must be 'keep' or 'drop', got {self.unproposed!r}")
        if not self.temperature > 0:
            raise ValueError(f"proposals: temperature must be > 0, got {self.temperature}")
        if self.fallback not in FALLBACKS:
            raise ValueError(f"proposals: fallback must be one of {FALLBACKS}, got {self.fallback!r}")
        if not self.free_text_fallback.strip():
            raise ValueError("proposals: free_text_fallback must be a non-empty command")

    def signature(self) -> dict[str, Any]:
        """What observations built with these proposals depend on (JSON-serialisable)."""
        return {
            "samples": int(self.samples),
            "smoothing": float(self.smoothing),
            "unproposed": self.unproposed,
            "temperature": float(self.temperature),
            "max_new_tokens": int(self.max_new_tokens),
        }


def proposal_config(proposals: ProposalConfig | int | None) -> ProposalConfig:
    """``proposals=`` of the wrappers as a :class:`ProposalConfig` (an int is the number of samples).

    :param proposals: a config, a sample count, or ``None`` for the defaults.
    """
    if proposals is None:
        return ProposalConfig()
    if isinstance(proposals, ProposalConfig):
        return proposals
    if isinstance(proposals, (int, np.integer)) and not isinstance(proposals, bool):
        return ProposalConfig(samples=int(proposals))
    raise TypeError(f"proposals must be a ProposalConfig or a number of samples, got {proposals!r}")


def check_mode(prior_mode: str, prior: ActionPrior) -> None:
    """Refuse an unknown ``prior_mode`` or a propose mode whose prior cannot propose, saying what to do.

    :param prior_mode: ``"score"`` or ``"propose"``.
    :param prior: the prior the wrapper was given.
    """
    if prior_mode not in PRIOR_MODES:
        raise ValueError(f"prior_mode must be one of {PRIOR_MODES}, got {prior_mode!r}")
    if prior_mode == "propose" and not callable(getattr(prior, "propose", None)):
        raise TypeError(
            f"prior_mode='propose' needs a prior with a propose(prompts, admissible, k) method; "
            f"{type(prior).__name__} has none. Use prior_mode='score', or a prior that samples (HFPrior, OpenAIPrior)"
        )


def smoothed_logprobs(counts: np.ndarray, smoothing: float) -> np.ndarray:
    """``log((c_a + beta/n) / (sum c + beta))`` over the n candidates; uniform when that is 0/0.

    >>> np.exp(smoothed_logprobs(np.array([3.0, 1.0, 0.0, 0.0]), 1.0)).round(3)
    array([0.65, 0.25, 0.05, 0.05])

    :param counts: how many samples named each candidate.
    :param smoothing: beta, the total pseudo-count (see :class:`ProposalConfig`).
    """
    c = np.asarray(counts, dtype=np.float64) + smoothing / max(len(counts), 1)
    total = c.sum()
    if total <= 0:
        return np.full(len(c), -np.log(len(c)))
    with np.errstate(divide="ignore"):
        return np.log(c / total)


def state_seed(base: int, prompt: str, samples: int) -> int:
    """The seed of one state's proposals: a 31-bit function of the wrapper's seed, the prompt and k.

    :param base: the wrapper's seed (``reset(seed=...)``, ``seed=``, or drawn from OS entropy).
    :param prompt: the state's prompt.
    :param samples: k.
    """
    return int(digest(["propose", int(base), prompt, int(samples)], length=8), 16) & 0x7FFFFFFF


@dataclass
class ProposalLayout:
    """One state's proposals laid out for the slots.

    :param candidates: the commands that get a slot, in slot order.
    :param logprobs: their prior log-probabilities (renormalised over the kept ones).
    :param dropped: candidates beyond the K slots (or unproposed ones with ``unproposed="drop"``).
    :param info: what the wrappers add to ``info``: ``prior_invalid_rate``, ``prior_generations``,
        ``prior_proposal_counts`` (the count of each kept slot).
    """

    candidates: list[str]
    logprobs: np.ndarray
    dropped: int
    info: dict[str, Any]


def layout_proposals(
    proposals: Proposals, index: int, free_text: bool, k: int, config: ProposalConfig, env_order: bool
) -> ProposalLayout:
    """Slots of prompt ``index`` of a ``propose`` answer.

    With an admissible list: the smoothed prior over the admissible commands, ``"drop"`` removes unproposed
    ones, the top-``k`` by prior are kept (ties in the env's order) and renormalised, sorted by prior unless
    ``env_order``. Without one (``free_text``): the distinct generations in the prior's order (count, then first
    appearance), the top-``k`` kept; all-empty generations give the single ``config.free_text_fallback``.

    :param proposals: the prior's answer for all prompts of the call.
    :param index: which prompt.
    :param free_text: the state has no admissible list.
    :param k: number of slots.
    :param config: smoothing and the unproposed rule.
    :param env_order: keep the env's order of the kept commands (``order="env"``).
    """
    commands = list(proposals.commands[index])
    counts = np.asarray(proposals.counts[index], dtype=np.float64)
    generations = list(proposals.generations[index])
    if proposals.invalid is not None:
        invalid = proposals.invalid[index]
        rate = invalid / len(generations) if generations else 0.0
    else:
        rate = float(proposals.invalid_rate)
    if free_text and not commands:
        commands, counts = [config.free_text_fallback], np.ones(1)
    if len(counts) != len(commands):
        raise ValueError(f"the prior's propose returned {len(counts)} counts for {len(commands)} commands")
    logp = smoothed_logprobs(counts, config.smoothing)
    keep = np.arange(len(commands))
    if config.unproposed == "drop" and not free_text and counts.sum() > 0:
        keep = keep[counts > 0]
    ranked = keep[np.argsort(-logp[keep], kind="stable")][:k]  # free text: commands already come by count
    chosen = np.sort(ranked) if env_order and not free_text else ranked
    kept = logp[chosen]
    finite = kept[np.isfinite(kept)]
    if len(chosen) < len(commands) and len(finite):
        m = finite.max()
        kept = kept - (m + np.log(np.sum(np.exp(finite - m))))
    info = {
        "prior_invalid_rate": float(rate),
        "prior_generations": generations,
        "prior_proposal_counts": [float(counts[j]) for j in chosen],
    }
    return ProposalLayout([commands[j] for j in chosen], kept, len(commands) - len(chosen), info)


def describe_free_text_error(prior_mode: str) -> str:
    """The message for a free-text state met in a mode that needs an admissible list.

    :param prior_mode: the wrapper's mode.
    """
    return (
        f"the env lists no admissible commands (info['admissible_commands'] is None: it takes free text), but "
        f"prior_mode={prior_mode!r} scores a list of candidates; use prior_mode='propose' (the prior's k "
        "generations become the candidate slots) with a prior that generates text, or pass actions=[...]"
    )


def per_state_seeds(base: int, prompts: Sequence[str], samples: int) -> list[int]:
    """:func:`state_seed` of every prompt.

    :param base: the wrapper's seed.
    :param prompts: the prompts of one call.
    :param samples: k.
    """
    return [state_seed(base, p, samples) for p in prompts]
