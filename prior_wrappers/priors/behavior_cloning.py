"""A prior learned from expert demonstrations alone (behaviour cloning), with no LLM anywhere.

:class:`BCPrior` (its features, scoring and files) is here; its MLP and the training loop are in
:mod:`prior_wrappers.priors.bc_training`.
"""

from __future__ import annotations

import copy
import hashlib
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from prior_wrappers.demonstrations import Demonstration, Demonstrations
from prior_wrappers.encoders import CachedEncoder, HashingEncoder, TextEncoder, encoder_name
from prior_wrappers.priors.base import (
    NORMALIZATIONS,
    Normalization,
    PriorScores,
    Proposals,
    digest,
    log_softmax,
    validate_request,
)
from prior_wrappers.priors.bc_training import add_negatives, build_mlp, train_mlp, training_episodes, training_states
from prior_wrappers.prompts import PromptFn, one_line, strip_examples

__all__ = ["BCPrior"]

DEFAULT_ENCODER = "minilm:all-MiniLM-L6-v2"  # SentenceEncoder.default()'s name
FILE_FORMAT = "prior_wrappers.BCPrior"
FILE_VERSION = 1
FEATURES = ("joint", "state")  # what each candidate's input row may hold, see BCPrior's ``features``


class BCPrior:
    """p(a|s) learned from expert demonstrations alone: a small MLP over text-encoder features, no LLM.

    >>> demos = Demonstrations.from_expert(env, 16)
    >>> prior = BCPrior(seed=0).fit(demos)
    >>> env = LLMPriorWrapper(text_env, prior, k=16)

    It is the ablation every use of an LLM prior needs: given the same walkthroughs that the LLM arm shows as
    in-context examples (the same :class:`~prior_wrappers.demonstrations.Demonstrations`), does the LLM add
    anything beyond what a plain classifier learns from them? Swap it in for the LLM prior, keep everything else.

    **Model.** Each (state, candidate) pair is encoded as one joint text, the state's prompt followed by the
    command (``"... Observation: <s>\\nAction: <a>"``, the reference method's cross-encoding; a
    :class:`~prior_wrappers.encoders.SentenceEncoder` truncates from the left, so the command survives). With
    ``features=("joint", "state")`` the encoded state text alone is appended to that row. An MLP maps the row to
    a logit; it is trained with softmax cross-entropy over each demonstration step's admissible commands, the
    expert's command being the label. :meth:`score` returns the log-softmax of the logits over the given
    candidates (``raw_logprobs`` are the logits, ``num_tokens`` ones): the scores are per command, so
    ``normalization`` (token/word/sum) changes nothing.

    **Prompts.** The state text is the wrapper's prompt without its in-context example block
    (:func:`~prior_wrappers.prompts.strip_examples`), at training and at scoring time: the scores do not depend on
    whether the env's ``prompt_example`` or a demonstrations text is shown. Train with the prompt function and
    ``history`` the wrapper uses (:meth:`fit`'s ``prompt`` and ``history``; both default to the wrappers').

    **Determinism.** ``seed`` fixes the initial weights, the minibatch order and the choice of negatives, through
    its own ``torch.Generator`` (the global random state is neither used nor changed): the same demonstrations,
    encoder and seed give the same weights and scores (on the same machine and torch build).

    :param encoder: the text encoder (a :class:`~prior_wrappers.encoders.TextEncoder`); default the embedded
        all-MiniLM-L6-v2 (``SentenceEncoder.default()``), loaded on first use. Wrapped in a
        :class:`~prior_wrappers.encoders.CachedEncoder` unless it is one, so no text is encoded twice.
    :param hidden: sizes of the MLP's hidden layers (an int for one layer; ``()`` for a linear scorer).
    :param features: what the MLP sees per candidate: ``"joint"`` (the encoded state + command text, required)
        and optionally ``"state"`` (the encoded state text alone, the same for all of a state's candidates).
    :param updates: gradient steps in all (rounded up to whole passes over the demonstration steps): the
        training cost does not grow with the number of demonstrations unless ``epochs`` is given.
    :param epochs: passes over the demonstration steps; overrides ``updates`` when given.
    :param lr: AdamW learning rate.
    :param weight_decay: AdamW (decoupled) weight decay.
    :param batch_size: demonstration steps per minibatch.
    :param negatives: for a step without recorded admissible commands (episodes from
        :meth:`Demonstrations.from_dataset`, or recorded before ``admissible`` existed), at most this many
        commands of the pool's other steps stand in as the alternatives the expert did not take.
    :param seed: seed of the initial weights, the minibatch order and the negatives.
    """

    def __init__(
        self,
        *,
        encoder: TextEncoder | None = None,
        hidden: int | Sequence[int] = (256,),
        features: Sequence[str] = ("joint", "state"),
        updates: int = 500,
        epochs: int | None = None,
        lr: float = 1e-3,
        weight_decay: float = 1e-2,
        batch_size: int = 32,
        negatives: int = 31,
        seed: int = 0,
    ) -> None:
        hidden = (hidden,) if isinstance(hidden, int) else tuple(int(h) for h in hidden)
        features = (features,) if isinstance(features, str) else tuple(features)
        if any(h < 1 for h in hidden):
            raise ValueError(f"hidden sizes must be >= 1, got {hidden}")
        if "joint" not in features or not set(features) <= set(FEATURES) or len(set(features)) != len(features):
            raise ValueError(f"features must hold 'joint' and may add 'state' (each once), got {features}")
        for name, value in (
            ("updates", updates),
            ("epochs", 1 if epochs is None else epochs),
            ("batch_size", batch_size),
        ):
            if value < 1:
                raise ValueError(f"{name} must be >= 1, got {value}")
        if lr <= 0 or weight_decay < 0 or negatives < 1:
            raise ValueError(
                f"need lr > 0, weight_decay >= 0 and negatives >= 1, got {lr}, {weight_decay}, {negatives}"
            )
        if encoder is not None and not isinstance(encoder, TextEncoder):
            raise TypeError(f"encoder must be a TextEncoder (encode(texts) and dim), got {type(encoder).__name__}")
        self.config: dict[str, Any] = {
            "hidden": list(hidden),
            "features": list(features),
            "updates": int(updates),
            "epochs": None if epochs is None else int(epochs),
            "lr": float(lr),
            "weight_decay": float(weight_decay),
            "batch_size": int(batch_size),
            "negatives": int(negatives),
            "seed": int(seed),
        }
        self._encoder: CachedEncoder | None = _cached(encoder) if encoder is not None else None
        self.encoder_name = encoder_name(encoder) if encoder is not None else DEFAULT_ENCODER
        self.model: nn.Sequential | None = None
        self._scorer64: tuple[nn.Sequential, nn.Sequential] | None = None  # (the model it copies, the copy)
        self.training: dict[str, Any] = {}  # what fit saw: states, episodes, history, final loss

    # ----- parts --------------------------------------------------------------------------------------------------
    @property
    def encoder(self) -> CachedEncoder:
        """The (cached) text encoder; the default one is loaded here, on first use."""
        if self._encoder is None:
            from prior_wrappers.encoders import SentenceEncoder

            self._encoder = CachedEncoder(SentenceEncoder.default())
        return self._encoder

    @property
    def fitted(self) -> bool:
        return self.model is not None

    @property
    def fingerprint(self) -> str:
        """``"BCPrior:<encoder name>:<digest of the weights and config>"`` (``...:unfitted`` before :meth:`fit`)."""
        if self.model is None:
            return f"BCPrior:{self.encoder_name}:unfitted"
        weights = hashlib.sha256()
        for name, tensor in sorted(self.model.state_dict().items()):
            weights.update(f"{name}|{tuple(tensor.shape)}|".encode())
            weights.update(tensor.detach().cpu().contiguous().numpy().tobytes())
        return f"BCPrior:{self.encoder_name}:{digest({'config': self.config, 'weights': weights.hexdigest()})}"

    def __repr__(self) -> str:
        c = self.config
        what = (
            f"fitted on {self.training.get('states', '?')} states of {self.training.get('episodes', '?')} episodes"
            if self.fitted
            else "not fitted"
        )
        return (
            f"BCPrior(encoder={self.encoder_name!r}, hidden={tuple(c['hidden'])}, features={tuple(c['features'])}, "
            f"seed={c['seed']}, {what})"
        )

    @staticmethod
    def state_text(prompt: str) -> str:
        """What the prior reads of a prompt: the prompt without its example block (see the class docstring)."""
        return strip_examples(prompt)

    @staticmethod
    def joint_text(state: str, command: str) -> str:
        """The text encoded for one candidate: the state text (ending in ``Action:``) and the command."""
        return f"{state.rstrip()} {one_line(command)}"

    def _rows(self, states: Sequence[str], candidates: Sequence[Sequence[str]]) -> torch.Tensor:
        """One input row per (state, candidate), states in order: ``(sum of len(candidates), input dim)``."""
        joint = self.encoder.encode([self.joint_text(s, c) for s, cands in zip(states, candidates) for c in cands])
        parts = [torch.from_numpy(np.asarray(joint, dtype=np.float32))]
        if "state" in self.config["features"]:
            per_state = np.asarray(self.encoder.encode(list(states)), dtype=np.float32)
            counts = torch.tensor([len(c) for c in candidates])
            parts.append(torch.from_numpy(per_state).repeat_interleave(counts, dim=0))
        return torch.cat(parts, dim=1)

    # ----- training -----------------------------------------------------------------------------------------------
    def fit(
        self,
        demonstrations: Demonstrations | Sequence[Demonstration] | Any,
        *,
        prompt: PromptFn | None = None,
        history: int = 2,
    ) -> BCPrior:
        """Learn p(a|s) from the demonstrations' steps; replaces any earlier fit. Returns ``self``.

        Every step of every successful episode is a training state (unsuccessful and empty episodes are dropped,
        as :class:`~prior_wrappers.demonstrations.Demonstrations` does), rendered as the wrappers would
        (:meth:`Demonstrations.decision_points`). Its alternatives are its recorded admissible commands; a step
        without them gets up to ``negatives`` commands of the pool's other steps instead.

        :param demonstrations: a :class:`~prior_wrappers.demonstrations.Demonstrations`, a sequence of
            :class:`~prior_wrappers.demonstrations.Demonstration`, or an
            :class:`~prior_wrappers.sb3.OfflineDataset` recorded with text (``record_text=True``).
        :param prompt: the prompt function the wrappers use (default
            :class:`~prior_wrappers.prompts.PromptTemplate`).
        :param history: previous steps shown in the prompt, as the wrappers' ``history=``.
        :raises ValueError: no successful step to learn from, or a step whose expert command is not among its
            admissible commands.
        """
        episodes = training_episodes(demonstrations)
        states, candidates, labels = training_states(episodes, prompt, history, self.state_text)
        generator = torch.Generator().manual_seed(self.config["seed"])
        candidates = add_negatives(candidates, labels, self.config["negatives"], generator)
        if all(len(c) < 2 for c in candidates):
            raise ValueError(
                "every demonstration step has a single candidate command: there is nothing to choose "
                "between, so nothing to learn; record the admissible commands (from_expert does)"
            )
        rows = self._rows(states, candidates)
        self.model, stats = train_mlp(rows, [len(c) for c in candidates], labels, self.config, generator)
        self.training = {"states": len(states), "episodes": len(episodes), "history": history, **stats}
        return self

    # ----- the prior protocol -------------------------------------------------------------------------------------
    def _require_fitted(self) -> nn.Sequential:
        if self.model is None:
            raise RuntimeError("this BCPrior is not trained yet: call fit(demonstrations) or BCPrior.load(path) first")
        return self.model

    def _scorer(self) -> nn.Sequential:
        """A float64 copy of the trained MLP: a prompt's scores then agree to ~1e-12 whatever else is in the call
        (float32 matrix products round differently for different batch shapes)."""
        model = self._require_fitted()
        if self._scorer64 is None or self._scorer64[0] is not model:
            self._scorer64 = (model, copy.deepcopy(model).double().eval())
        return self._scorer64[1]

    def score(
        self,
        prompts: Sequence[str],
        candidates: Sequence[Sequence[str]],
        *,
        normalization: Normalization = "token",
        return_features: bool = False,
    ) -> PriorScores:
        """Log-softmax of the MLP's logits over each prompt's candidates.

        :param prompts: the wrappers' prompts (an example block in them is ignored).
        :param candidates: each prompt's admissible commands.
        :param normalization: accepted for the protocol and ignored: the scores are per command, not per token.
        :param return_features: also return the MLP's last hidden layer for each candidate (``(n, hidden[-1])``;
            the input rows for a linear scorer, ``hidden=()``).
        """
        validate_request(prompts, candidates)
        if normalization not in NORMALIZATIONS:
            raise ValueError(f"normalization must be one of {NORMALIZATIONS}, got {normalization!r}")
        model = self._scorer()
        states = [self.state_text(p) for p in prompts]
        rows = self._rows(states, candidates).double()
        with torch.inference_mode():
            hidden = model[:-1](rows)
            logits = model[-1](hidden).squeeze(-1).numpy()
        bounds = np.cumsum([0] + [len(c) for c in candidates])
        raw = [logits[a:b].copy() for a, b in zip(bounds, bounds[1:])]
        features = None
        if return_features:
            h = hidden.float().numpy()
            features = [h[a:b].copy() for a, b in zip(bounds, bounds[1:])]
        return PriorScores(
            logprobs=[log_softmax(r) for r in raw],
            raw_logprobs=raw,
            num_tokens=[np.ones(len(c), dtype=int) for c in candidates],
            features=features,
        )

    def propose(self, prompts: Sequence[str], admissible: Sequence[Sequence[str]], k: int = 5) -> Proposals:
        """Expected counts ``k * p(a|s)`` over the admissible commands (deterministic, like ``FunctionPrior``)."""
        scores = self.score(prompts, admissible)
        counts = [k * np.exp(lp) for lp in scores.logprobs]
        return Proposals([list(a) for a in admissible], counts, [[] for _ in prompts], invalid_rate=0.0)

    # ----- files --------------------------------------------------------------------------------------------------
    def save(self, path: str | os.PathLike) -> Path:
        """Write the trained prior to one file (``torch.save`` of plain data: weights, config, encoder name,
        format version; no pickled objects). Returns the path."""
        model = self._require_fitted()
        path = Path(path)
        payload = {
            "format": FILE_FORMAT,
            "version": FILE_VERSION,
            "config": self.config,
            "encoder": self.encoder_name,
            "encoder_dim": int(model[0].in_features // len(self.config["features"])),  # type: ignore[operator]  # a Linear
            "training": {k: v for k, v in self.training.items() if isinstance(v, (int, float, str))},
            "state_dict": {k: v.detach().cpu().clone() for k, v in model.state_dict().items()},
        }
        torch.save(payload, path)
        return path

    @classmethod
    def load(cls, path: str | os.PathLike, encoder: TextEncoder | None = None) -> BCPrior:
        """A prior saved by :meth:`save`.

        :param path: the file.
        :param encoder: the encoder it was trained with; default the embedded MiniLM (or, for a prior trained
            with ``HashingEncoder(dim)``, a new one of that dim). Another encoder raises ``ValueError``.
        :raises ValueError: a file that is not a BCPrior file, or another encoder than the saved one.
        """
        path = Path(path)
        try:
            payload = torch.load(path, map_location="cpu", weights_only=True)
        except FileNotFoundError:
            raise
        except Exception as exc:  # noqa: BLE001 (not a torch file, or one holding more than plain data)
            raise ValueError(f"{str(path)!r} is not a BCPrior file ({type(exc).__name__}: {exc})"[:500]) from exc
        if not isinstance(payload, dict) or payload.get("format") != FILE_FORMAT:
            raise ValueError(f"{str(path)!r} is not a BCPrior file (write one with BCPrior.save)")
        if payload.get("version") != FILE_VERSION:
            raise ValueError(
                f"{str(path)!r} is BCPrior file version {payload.get('version')!r}; this version of "
                f"prior_wrappers reads version {FILE_VERSION}"
            )
        saved = str(payload.get("encoder"))
        if encoder is None and saved.startswith("hashing:"):
            encoder = HashingEncoder(int(saved.split(":", 1)[1]))
        elif encoder is None and saved != DEFAULT_ENCODER:
            raise ValueError(f"{str(path)!r} was trained with the encoder {saved!r}: pass it, load(path, encoder=...)")
        if encoder is not None and encoder_name(encoder) != saved:
            raise ValueError(
                f"{str(path)!r} was trained with the encoder {saved!r}, not {encoder_name(encoder)!r}: "
                "its features would mean nothing to the trained scorer; pass the same encoder"
            )
        try:
            config = dict(payload["config"])
            prior = cls(
                encoder=encoder,
                **{
                    k: config[k]
                    for k in (
                        "hidden",
                        "features",
                        "updates",
                        "epochs",
                        "lr",
                        "weight_decay",
                        "batch_size",
                        "negatives",
                        "seed",
                    )
                },
            )
            if encoder is not None and int(encoder.dim) != int(payload["encoder_dim"]):
                raise ValueError(
                    f"the encoder has dim {encoder.dim}, the file's scorer expects {payload['encoder_dim']}"
                )
            prior.encoder_name = saved
            model = build_mlp(int(payload["encoder_dim"]) * len(prior.config["features"]), prior.config["hidden"])
            model.load_state_dict(payload["state_dict"])
        except (KeyError, TypeError, RuntimeError) as exc:
            raise ValueError(f"{str(path)!r} is a damaged BCPrior file ({type(exc).__name__}: {exc})"[:500]) from exc
        prior.model = model.eval()
        prior.training = dict(payload.get("training") or {})
        return prior


def _cached(encoder: TextEncoder) -> CachedEncoder:
    return encoder if isinstance(encoder, CachedEncoder) else CachedEncoder(encoder)
