"""From text states to fixed-size candidate slots: the one place where prior calls, top-K selection,
slot ordering and feature encoding happen, shared by the single-env and the vector wrapper."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
from gymnasium import spaces

from prior_wrappers.encoders import CachedEncoder, HashingEncoder, SentenceEncoder, TextEncoder
from prior_wrappers.priors.base import ActionPrior, Normalization, log_softmax
from prior_wrappers.prompts import PromptFn, PromptTemplate, TextState, one_line
from prior_wrappers.spaces import (
    ACTION_MASK,
    CANDIDATE_FEATURES,
    LOGPROB_MIN,
    OBSERVATION_FEATURES,
    PRIOR_LOGPROBS,
    prior_observation_space,
)

EncoderSpec = TextEncoder | Literal["minilm", "prior", "hashing"] | None
SlotOrder = Literal["prior", "env"]


@dataclass
class Slots:
    """One state's candidate slots: the observation dict and what goes to ``info``."""

    observation: dict[str, np.ndarray]
    candidates: list[str]  # the command in each valid slot, slot order
    logprobs: np.ndarray  # prior log-probs of the valid slots (normalised over them)
    prompt: str
    dropped: int  # admissible commands that did not fit into the K slots

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


def resolve_encoder(encoder: EncoderSpec, prior: ActionPrior) -> tuple[TextEncoder | None, bool, int | None]:
    """Returns ``(encoder, use_prior_hidden_states, feature_dim)``."""
    if encoder is None:
        return None, False, None
    if encoder == "prior":
        model = getattr(prior, "model", None)
        if model is None:
            raise ValueError("encoder='prior' needs a prior with a transformers model (HFPrior); use 'minilm' instead")
        return None, True, int(model.config.hidden_size)
    if encoder == "minilm":
        encoder = SentenceEncoder.default()
    elif encoder == "hashing":
        encoder = HashingEncoder()
    if not isinstance(encoder, TextEncoder):
        raise TypeError(f"encoder must be 'minilm', 'prior', 'hashing', None or a TextEncoder, got {encoder!r}")
    if not isinstance(encoder, CachedEncoder):
        encoder = CachedEncoder(encoder)
    return encoder, False, int(encoder.dim)


CandidateText = Literal["joint", "action"]


def feature_text(observation: str, command: str, candidate_text: CandidateText = "joint") -> str:
    """What the encoder sees for one candidate: the reference's joint "Observation: s Action: a", or the action
    alone (the observation is encoded once into ``observation_features``, and far fewer distinct texts need
    encoding because commands repeat across states)."""
    if candidate_text == "action":
        return f"Action: {one_line(command)}"
    return f"Observation: {one_line(observation)} Action: {one_line(command)}"


class SlotBuilder:
    """Scores many text states with **one** prior call and lays each out in K slots.

    :param prior: any :class:`~prior_wrappers.priors.base.ActionPrior`.
    :param k: number of candidate slots; a state with more admissible commands keeps its top-K by prior.
    :param encoder: ``"minilm"`` (embedded sentence encoder), ``"prior"`` (the LLM's own hidden state at each
        candidate's last token), ``"hashing"`` (fast, no model), any ``TextEncoder``, or ``None`` (no features).
    :param prompt: a ``Callable[[TextState], str]``; default :class:`PromptTemplate`.
    :param normalization: passed to ``prior.score``.
    :param order: ``"prior"`` puts valid slots in descending prior order, ``"env"`` keeps the env's order.
    :param candidate_text: what the encoder embeds per candidate: ``"joint"`` "Observation: s Action: a" (the
        reference's) or ``"action"`` alone (cheaper; policies see the state through ``observation_features``).
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
    ) -> None:
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
        bound = 1.0 if self.encoder is not None and self.encoder.unit_norm else np.inf
        self.observation_space: spaces.Dict = prior_observation_space(k, self.feature_dim, bound)
        self.stats = PriorStats()

    def build(self, states: Sequence[TextState]) -> list[Slots]:
        if not states:
            return []
        prompts = [self.prompt(s) for s in states]
        start = time.perf_counter()
        scores = self.prior.score(
            prompts,
            [s.admissible for s in states],
            normalization=self.normalization,
            return_features=self.prior_features,
        )
        elapsed = (time.perf_counter() - start) * 1000
        self.stats.calls += 1
        self.stats.states += len(states)
        self.stats.latency_ms = elapsed
        self.stats.total_ms += elapsed
        hit_rate = getattr(self.prior, "hit_rate", None)
        if hit_rate is not None:
            self.stats.extra["cache_hit_rate"] = float(hit_rate)

        slots = []
        texts: list[str] = []
        for i, (state, prompt) in enumerate(zip(states, prompts)):
            logp = np.asarray(scores.logprobs[i], dtype=np.float64)
            chosen = self._choose(logp)
            cands = [state.admissible[j] for j in chosen]
            kept = log_softmax(logp[chosen]) if len(chosen) < len(logp) else logp[chosen]
            obs = {
                PRIOR_LOGPROBS: np.full(self.k, LOGPROB_MIN, dtype=np.float32),
                ACTION_MASK: np.zeros(self.k, dtype=np.int8),
            }
            obs[PRIOR_LOGPROBS][: len(chosen)] = np.maximum(kept, LOGPROB_MIN)
            obs[ACTION_MASK][: len(chosen)] = 1
            if self.feature_dim:
                obs[CANDIDATE_FEATURES] = np.zeros((self.k, self.feature_dim), dtype=np.float32)
                if self.prior_features:
                    feats = np.asarray(scores.features[i], dtype=np.float32)[chosen]
                    obs[CANDIDATE_FEATURES][: len(chosen)] = feats
                    obs[OBSERVATION_FEATURES] = feats.mean(0)
                else:
                    texts.append(f"Observation: {one_line(state.observation)}")
                    texts.extend(feature_text(state.observation, c, self.candidate_text) for c in cands)
            slots.append(Slots(obs, cands, kept, prompt, dropped=len(logp) - len(chosen)))
        if self.encoder is not None:
            vectors = self.encoder.encode(texts)
            row = 0
            for s in slots:
                n = len(s.candidates)
                s.observation[OBSERVATION_FEATURES] = vectors[row]
                s.observation[CANDIDATE_FEATURES][:n] = vectors[row + 1 : row + 1 + n]
                row += 1 + n
            self.stats.extra["encoder_hit_rate"] = self.encoder.hits / max(self.encoder.hits + self.encoder.misses, 1)
        return slots

    def _choose(self, logp: np.ndarray) -> np.ndarray:
        """Indices of the admissible commands that get a slot, in slot order."""
        by_prior = np.argsort(-logp, kind="stable")
        if self.order == "prior":
            return by_prior[: self.k]
        return np.sort(by_prior[: self.k])


def stack_observations(observations: Sequence[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    return {key: np.stack([o[key] for o in observations]) for key in observations[0]}


InvalidAction = Literal["resample", "raise"]


def make_text_state(
    observation: object,
    info: dict,
    *,
    history: Sequence[tuple[str, str]] = (),
    example: str | None = None,
    actions: Sequence[str] | None = None,
) -> TextState:
    """Validate what a text env returned and gather it into a :class:`TextState`.

    Admissible commands come from ``info["admissible_commands"]`` (else from ``actions``); duplicates are
    dropped, keeping the first.
    """
    if not isinstance(observation, str):
        raise TypeError(
            f"text envs must return str observations, got {type(observation).__name__}; for an env with "
            "non-text observations pass observation_to_text=... to the wrapper"
        )
    admissible = info.get("admissible_commands", actions)
    if admissible is None:
        raise ValueError(
            "the env reported no info['admissible_commands'] and the wrapper was given no actions=[...]; "
            "text envs must list their valid commands"
        )
    admissible = list(dict.fromkeys(admissible))
    if not admissible:
        raise ValueError("the env reported an empty info['admissible_commands'] list: there is nothing to choose from")
    for c in admissible:
        if not isinstance(c, str) or not c.strip():
            raise ValueError(f"admissible command {c!r} is not a non-empty string")
    return TextState(
        observation=observation,
        admissible=admissible,
        task=str(info.get("task", "")),
        history=tuple(history),
        example=example,
    )


def resolve_action(
    action: object, slots: Slots, rng: np.random.Generator, invalid_action: InvalidAction
) -> tuple[str, bool]:
    """The command in the chosen slot, and whether the choice was an empty slot that had to be resampled.

    An empty (masked) slot is resampled from the prior over the valid slots (``"resample"``) or raises.
    """
    index = int(np.asarray(action).reshape(-1)[0]) if np.ndim(action) else int(action)  # type: ignore[arg-type]
    k = len(slots.observation[ACTION_MASK])
    if not 0 <= index < k:
        raise ValueError(f"action {index} is outside the action space Discrete({k})")
    if index < len(slots.candidates):
        return slots.candidates[index], False
    if invalid_action == "raise":
        raise ValueError(
            f"action {index} selects an empty slot (only {len(slots.candidates)} admissible commands); use the "
            "observation's action_mask or MaskablePPO"
        )
    probs = np.exp(slots.logprobs - slots.logprobs.max())
    return slots.candidates[int(rng.choice(len(probs), p=probs / probs.sum()))], True
