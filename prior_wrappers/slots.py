"""From text states to fixed-size candidate slots: the one place where prior calls, top-K selection,
slot ordering and feature encoding happen, for the three wrappers (through :class:`~prior_wrappers.core.PriorCore`).
Which encoder and what text it embeds: :mod:`~prior_wrappers.slot_features`."""

from __future__ import annotations

import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, cast

import numpy as np
from gymnasium import spaces

from prior_wrappers.encoders import encoder_name, model_basename
from prior_wrappers.priors.base import ActionPrior, Normalization, PriorScores, log_softmax
from prior_wrappers.prompts import PromptFn, PromptTemplate, TextState, one_line
from prior_wrappers.proposals import (
    PriorMode,
    ProposalConfig,
    check_mode,
    describe_free_text_error,
    layout_proposals,
    per_state_seeds,
    proposal_config,
    propose_options,
)
from prior_wrappers.slot_features import CandidateText, EncoderSpec, encode_checked, feature_text, resolve_encoder
from prior_wrappers.spaces import (
    ACTION_MASK,
    CANDIDATE_FEATURES,
    LOGPROB_MIN,
    OBSERVATION_FEATURES,
    PRIOR_LOGPROBS,
    prior_observation_space,
)
from prior_wrappers.token_ids import TokenIdSpec

# one state's slots before encoding: commands, their log-probs, dropped count, hidden-state features, info entries
Layout = tuple[list[str], np.ndarray, int, "np.ndarray | None", dict[str, Any]]
SlotOrder = Literal["prior", "env"]


@dataclass
class Slots:
    """One state's candidate slots: the observation dict and what goes to ``info``."""

    observation: dict[str, np.ndarray]
    candidates: list[str]  # the command in each valid slot, slot order
    logprobs: np.ndarray  # prior log-probs of the valid slots (normalised over them)
    prompt: str
    dropped: int  # admissible commands that did not fit into the K slots
    info: dict[str, Any] = field(default_factory=dict)  # prior_mode="propose": invalid rate, generations, counts

    @property
    def mask(self) -> np.ndarray:
        return self.observation[ACTION_MASK].astype(bool)


@dataclass
class PriorStats:
    """Counters of a wrapper's prior calls, reported in ``info["prior_stats"]`` on the last step of each episode
    (like SB3's ``info["episode"]``: per-step latencies in every ``info`` would make steps non-deterministic)."""

    calls: int = 0
    states: int = 0
    latency_ms: float = 0.0
    total_ms: float = 0.0
    extra: dict[str, float] = field(default_factory=dict)

    def as_dict(self) -> dict[str, float]:
        return {"calls": self.calls, "states": self.states, "latency_ms": self.latency_ms, **self.extra}


class SlotBuilder:
    """Scores many text states with **one** prior call and lays each out in K slots.

    :param prior: any :class:`~prior_wrappers.priors.base.ActionPrior`.
    :param k: number of candidate slots; a state with more admissible commands keeps its top-K by prior.
    :param encoder: ``"minilm"`` (embedded sentence encoder), ``"prior"`` (the LLM's own hidden state at each
        candidate's last token), ``"hashing"`` (fast, no model; ``"hashing:256"`` for 256 dimensions), any
        ``TextEncoder``, or ``None`` (no features).
        With a text encoder ``observation_features`` encodes "Observation: s" alone; with ``"prior"`` there is no
        separate forward pass for the observation, and ``observation_features`` is the mean of the valid slots'
        ``candidate_features`` (a summary of the state through its kept candidates, computed from the same
        forward that scores them).
    :param prompt: a ``Callable[[TextState], str]``; default :class:`PromptTemplate`.
    :param normalization: passed to ``prior.score``.
    :param order: ``"prior"`` puts valid slots in descending prior order, ``"env"`` keeps the env's order.
    :param candidate_text: what the encoder embeds per candidate: ``"joint"`` "Observation: s Action: a" (the
        reference's) or ``"action"`` alone (cheaper; policies see the state through ``observation_features``).
    :param token_ids: a :class:`~prior_wrappers.token_ids.TokenIdSpec`: the observation also holds the token ids
        of the prompt and of each slot's command (for LLM policies); ``None``: it does not.
    :param prior_mode: ``"score"`` (exact log-probabilities of the admissible commands) or ``"propose"`` (k
        sampled generations per state, their smoothed counts the prior; see :mod:`prior_wrappers.proposals`).
        Free-text states (no admissible list) need ``"propose"``.
    :param proposals: a :class:`~prior_wrappers.proposals.ProposalConfig` or the number of samples k.
    :param seed: seed of the proposals (:meth:`seed`); ``None`` draws one from OS entropy.
    """

    def __init__(
        self,
        prior: ActionPrior,
        k: int,
        *,
        encoder: EncoderSpec = "minilm",
        prompt: PromptFn | None = None,
        normalization: Normalization = "token",
        order: SlotOrder = "prior",
        candidate_text: CandidateText = "joint",
        token_ids: TokenIdSpec | None = None,
        prior_mode: PriorMode = "score",
        proposals: ProposalConfig | int | None = None,
        seed: int | None = None,
    ) -> None:
        check_mode(prior_mode, prior)
        self.prior_mode = prior_mode
        self.proposals = proposal_config(proposals)
        self.seed(seed)
        if candidate_text not in ("joint", "action"):
            raise ValueError(f"candidate_text must be 'joint' or 'action', got {candidate_text!r}")
        self.candidate_text = candidate_text
        if order not in ("prior", "env"):
            raise ValueError(f"order must be 'prior' or 'env', got {order!r}")
        self.prior = prior
        self.k = k
        self.prompt = prompt or PromptTemplate()
        self.normalization = normalization
        self.order = order
        self.encoder, self.prior_features, self.feature_dim = resolve_encoder(encoder, prior)
        if self.prior_features and prior_mode == "propose":
            raise ValueError(
                "encoder='prior' reads hidden states from scoring; with prior_mode='propose' use a text "
                "encoder ('minilm', 'hashing') or None"
            )
        if self.prior_features:
            model = prior.model  # type: ignore[attr-defined]
            self.encoder_name: str | None = (
                f"prior:{model_basename(getattr(model, 'name_or_path', '')) or type(model).__name__}"
            )
        else:
            self.encoder_name = encoder_name(self.encoder) if self.encoder is not None else None
        bound = 1.0 if self.encoder is not None and self.encoder.unit_norm else np.inf
        self.observation_space: spaces.Dict = prior_observation_space(k, self.feature_dim, bound)
        self.token_ids = token_ids
        if token_ids is not None:
            self.observation_space = spaces.Dict({**self.observation_space.spaces, **token_ids.spaces(k)})
        self.stats = PriorStats()
        self._invalid_total = 0.0
        self._warned_dropped = False

    def seed(self, seed: int | None) -> None:
        """Seed the proposals: a state's k samples are drawn with :func:`~prior_wrappers.proposals.state_seed`
        of this seed and its prompt, so the same seed gives the same proposals for the same state.

        :param seed: an int, or ``None`` for a seed from OS entropy.
        """
        self._seed = int(seed) if seed is not None else int(np.random.SeedSequence().entropy % 2**32)  # type: ignore[operator]

    def signature(self) -> dict[str, Any]:
        """What a policy or dataset trained on these observations depends on: ``k``, ``feature_dim``,
        ``encoder`` (an encoder's ``name``: ``"minilm:all-MiniLM-L6-v2"``, ``"hashing:64"``,
        ``"prior:<model>"``, ``"<Class>:<dim>"``; ``None`` without features), ``candidate_text``,
        ``normalization``, ``order`` (and ``token_ids``, the :meth:`TokenIdSpec.signature`, with that option).
        JSON-serialisable; equal signatures mean interchangeable observations
        (the prior itself may differ)."""
        signature: dict[str, Any] = {
            "k": int(self.k),
            "feature_dim": int(self.feature_dim) if self.feature_dim else None,
            "encoder": self.encoder_name,
            "candidate_text": self.candidate_text if self.encoder is not None else None,
            "normalization": self.normalization,
            "order": self.order,
        }
        if self.token_ids is not None:
            signature["token_ids"] = self.token_ids.signature()
        return signature

    def build(self, states: Sequence[TextState], scored: Sequence[bool] | None = None) -> list[Slots]:
        """Score ``states`` with one prior call and lay each out in ``k`` slots.

        :param states: the text states, in any number.
        :param scored: per state, whether the prior scores it (default: all). A state with ``False`` is laid out
            as one whose admissible list is empty: no valid slot, no prior call, and no encoded features (zeros);
            its prompt is still written (``Slots.prompt``). The wrappers pass ``False`` for the terminal state of
            a terminated episode, which no algorithm bootstraps from.
        :raises ValueError: when the prior returns NaN/+inf scores or features (see :func:`check_scores`).
        """
        if not states:
            return []
        if scored is None:
            scored = [True] * len(states)
        elif len(scored) != len(states):
            raise ValueError(f"scored has {len(scored)} entries for {len(states)} states")
        if self.prior_mode == "score" and any(s.free_text for s, on in zip(states, scored) if on):
            raise ValueError(describe_free_text_error(self.prior_mode))
        prompts = [self.prompt(s) for s in states]
        # a state with an empty command list (game over in some envs) has nothing to score: no slot, no prior call
        live = [i for i, s in enumerate(states) if scored[i] and (s.free_text or s.admissible)]
        empty_features = np.zeros((0, cast(int, self.feature_dim)), dtype=np.float32) if self.prior_features else None
        layouts: list[Layout] = [([], np.zeros(0), 0, empty_features, {}) for _ in states]
        if live:
            start = time.perf_counter()
            live_states, live_prompts = [states[i] for i in live], [prompts[i] for i in live]
            laid_out = (
                self._score(live_states, live_prompts)
                if self.prior_mode == "score"
                else self._propose(live_states, live_prompts)
            )
            for i, layout in zip(live, laid_out):
                layouts[i] = layout
            elapsed = (time.perf_counter() - start) * 1000
            self.stats.calls += 1
            self.stats.states += len(live)
            self.stats.latency_ms = elapsed
            self.stats.total_ms += elapsed
            hit_rate = getattr(self.prior, "hit_rate" if self.prior_mode == "score" else "proposal_hit_rate", None)
            if hit_rate is not None:
                self.stats.extra["cache_hit_rate"] = float(hit_rate)

        slots = []
        texts: list[str] = []
        encoded: list[Slots] = []  # the slots whose features the text encoder fills, in the order of texts
        for state, prompt, on, (cands, kept, dropped, feats, info) in zip(states, prompts, scored, layouts):
            chosen = range(len(cands))
            obs: dict[str, np.ndarray] = {
                PRIOR_LOGPROBS: np.full(self.k, LOGPROB_MIN, dtype=np.float32),
                ACTION_MASK: np.zeros(self.k, dtype=np.int8),
            }
            obs[PRIOR_LOGPROBS][: len(chosen)] = np.maximum(kept, LOGPROB_MIN)
            obs[ACTION_MASK][: len(chosen)] = 1
            if self.token_ids is not None:
                obs.update(self.token_ids.encode(prompt, cands, self.k, self.normalization))
            if self.feature_dim:
                obs[CANDIDATE_FEATURES] = np.zeros((self.k, self.feature_dim), dtype=np.float32)
                if feats is not None:
                    obs[CANDIDATE_FEATURES][: len(chosen)] = feats
                    obs[OBSERVATION_FEATURES] = (
                        feats.mean(0) if len(feats) else np.zeros(self.feature_dim, dtype=np.float32)
                    )
                elif not on:  # not scored: nothing encoded either
                    obs[OBSERVATION_FEATURES] = np.zeros(self.feature_dim, dtype=np.float32)
                else:
                    texts.append(f"Observation: {one_line(state.observation)}")
                    texts.extend(feature_text(state.observation, c, self.candidate_text) for c in cands)
            slots.append(Slots(obs, cands, kept, prompt, dropped=dropped, info=info))
            if self.encoder is not None and on:
                encoded.append(slots[-1])
        if texts:
            assert self.encoder is not None  # texts to encode only with a text encoder
            vectors = encode_checked(self.encoder, texts)
            row = 0
            for s in encoded:
                n = len(s.candidates)
                s.observation[OBSERVATION_FEATURES] = vectors[row]
                s.observation[CANDIDATE_FEATURES][:n] = vectors[row + 1 : row + 1 + n]
                row += 1 + n
            self.stats.extra["encoder_hit_rate"] = self.encoder.hits / max(self.encoder.hits + self.encoder.misses, 1)
        return slots

    def _score(self, states: Sequence[TextState], prompts: list[str]) -> list[Layout]:
        """One ``score`` call; each state's top-K admissible commands by prior."""
        candidates = [s.admissible for s in states]
        scores = self.prior.score(
            prompts, candidates, normalization=self.normalization, return_features=self.prior_features
        )
        check_scores(self.prior, scores, prompts, candidates, self.prior_features)
        layouts: list[Layout] = []
        for i, state in enumerate(states):
            logp = np.asarray(scores.logprobs[i], dtype=np.float64)
            chosen = self._choose(logp)
            kept = log_softmax(logp[chosen]) if len(chosen) < len(logp) else logp[chosen]
            # check_scores: features are there when prior_features
            feats = (
                np.asarray(cast(list, scores.features)[i], dtype=np.float32)[chosen] if self.prior_features else None
            )
            layouts.append(([state.admissible[j] for j in chosen], kept, len(logp) - len(chosen), feats, {}))
        self._warn_dropped(max(len(s.admissible) for s in states))
        return layouts

    def _warn_dropped(self, most: int) -> None:
        """Say once that commands beyond the k slots are unreachable: no algorithm can choose them."""
        if most <= self.k or self._warned_dropped:
            return
        self._warned_dropped = True
        warnings.warn(
            f"a state has {most} admissible commands but only k={self.k} slots: the {most - self.k} the prior ranks "
            f"lowest get no slot, so no algorithm can ever choose them (a wrong prior can hide the right command "
            f"this way). Pass k >= the most admissible commands your env lists (here at least {most}); "
            "info['prior_dropped'] counts the dropped commands at every step. Said once per wrapper.",
            UnreachableCommandsWarning,
            stacklevel=2,
        )

    def _propose(self, states: Sequence[TextState], prompts: list[str]) -> list[Layout]:
        """One ``propose`` call, each state seeded by its prompt (:func:`~prior_wrappers.proposals.state_seed`)."""
        cfg = self.proposals
        options = propose_options(
            self.prior,
            seed=per_state_seeds(self._seed, prompts, cfg.samples),
            temperature=cfg.temperature,
            max_new_tokens=cfg.max_new_tokens,
            fallback=cfg.fallback,
        )
        admissible = [None if s.free_text else s.admissible for s in states]
        proposals = self.prior.propose(prompts, admissible, cfg.samples, **options)
        if len(proposals.counts) != len(prompts):
            raise ValueError(
                f"{type(self.prior).__name__}.propose returned {len(proposals.counts)} answers for "
                f"{len(prompts)} prompts"
            )
        layouts: list[Layout] = []
        for i, state in enumerate(states):
            lay = layout_proposals(proposals, i, state.free_text, self.k, cfg, self.order == "env")
            layouts.append((lay.candidates, lay.logprobs, lay.dropped, None, lay.info))
            self._invalid_total += lay.info["prior_invalid_rate"]
        self.stats.extra["invalid_rate"] = self._invalid_total / (self.stats.states + len(states))
        return layouts

    def _choose(self, logp: np.ndarray) -> np.ndarray:
        """Indices of the admissible commands that get a slot, in slot order."""
        by_prior = np.argsort(-logp, kind="stable")
        if self.order == "prior":
            return by_prior[: self.k]
        return np.sort(by_prior[: self.k])


class UnreachableCommandsWarning(UserWarning):
    """A state had more admissible commands than the wrapper has slots (``k``): the prior's lowest ones were
    dropped and no algorithm can choose them. Silence it with ``warnings.filterwarnings("ignore",
    category=UnreachableCommandsWarning)`` where a top-k cut is intended."""


def check_scores(
    prior: ActionPrior,
    scores: PriorScores,
    prompts: Sequence[str],
    candidates: Sequence[Sequence[str]],
    features: bool = False,
) -> None:
    """Refuse prior scores that must not become observations, naming the prompt.

    One log-probability per candidate is required. ``-inf`` is a legitimate zero probability for some of a
    prompt's candidates (they sort last, are dropped first, and show as ``LOGPROB_MIN``), but not for all of them.
    NaN and ``+inf`` (a half-precision overflow, a bug in a ``FunctionPrior``) raise ``ValueError``, as do
    non-finite hidden-state features.

    :param prior: the prior that produced ``scores`` (named in errors).
    :param scores: its answer.
    :param prompts: the prompts it scored (quoted in errors).
    :param candidates: each prompt's candidates.
    :param features: whether hidden-state features were asked for (then they are checked too).
    """
    name = type(prior).__name__
    if len(scores.logprobs) != len(prompts):
        raise ValueError(f"{name}.score returned {len(scores.logprobs)} score arrays for {len(prompts)} prompts")
    for i, (prompt, cands) in enumerate(zip(prompts, candidates)):
        logp = np.asarray(scores.logprobs[i], dtype=np.float64)
        where = f"for the prompt ending {prompt[-300:]!r}"
        if logp.shape != (len(cands),):
            raise ValueError(f"{name}.score returned shape {logp.shape} for {len(cands)} candidates {where}")
        bad = np.isnan(logp) | (logp == np.inf)
        if bad.any():
            listed = {c: float(v) for c, v in zip(cands, logp) if np.isnan(v) or v == np.inf}
            raise ValueError(
                f"{name} returned NaN/+inf log-probabilities {listed} {where}; a half-precision model can "
                "overflow (load it in float32/bfloat16), a FunctionPrior must return finite scores or -inf"
            )
        if np.all(logp == -np.inf):
            raise ValueError(
                f"{name} gave every candidate zero probability (-inf) {where}; at least one admissible "
                "command must have a finite score"
            )
        if features and scores.features is not None and not np.isfinite(scores.features[i]).all():
            raise ValueError(f"{name} returned NaN/inf hidden-state features {where}; load the model in float32")


def stack_observations(observations: Sequence[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    return {key: np.stack([o[key] for o in observations]) for key in observations[0]}
