"""An approximate (semantic) cache in front of any prior: states whose text embeddings are close share scores."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from operator import attrgetter
from typing import Any, Literal, cast

import numpy as np

from prior_wrappers.encoders import TextEncoder, encoder_name
from prior_wrappers.lru import BoundedLRU
from prior_wrappers.priors.base import (
    ActionPrior,
    Normalization,
    PriorScores,
    Proposals,
    normalize_scores,
    prior_fingerprint,
    validate_request,
)

# the cached states, their texts and embeddings live in semantic_index.py; re-exported here (`X as X`)
from prior_wrappers.priors.semantic_index import Record as Record
from prior_wrappers.priors.semantic_index import StateEntry, StateIndex, record_bytes

CandidateRule = Literal["same", "subset", "rescore"]
CANDIDATE_RULES: tuple[str, ...] = ("same", "subset", "rescore")


def split_prompt(prompt: str) -> tuple[str, str]:
    """Split a prompt into ``(context, state)`` at the end of its last ``Task:`` line.

    With :class:`~prior_wrappers.prompts.PromptTemplate` and :class:`~prior_wrappers.prompts.TranscriptPrompt` the
    context is the instruction, the example episodes and the task, the state the history and the current
    observation. A prompt without a ``Task:`` line is all state (context ``""``).

    :param prompt: the prompt the wrapper built.
    """
    start = 0 if prompt.startswith("Task:") else prompt.rfind("\nTask:") + 1
    if start == 0 and not prompt.startswith("Task:"):
        return "", prompt
    end = prompt.find("\n", start)
    return (prompt, "") if end < 0 else (prompt[: end + 1], prompt[end + 1 :])


class SemanticCachedPrior:
    """Reuses a prior's scores across *similar* states, not only identical ones.

    Text games revisit states that differ only in a counter or an unimportant sentence. This cache embeds the
    state part of each prompt and answers a query from a cached state whose embedding is similar enough,
    querying the wrapped prior only for what it cannot answer.

    **What is embedded.** ``split(prompt)`` gives ``(context, state)`` (default :func:`split_prompt`: the context is
    everything up to the last ``Task:`` line: instruction, example episodes, task). The context must match
    *exactly* (another task or other walkthroughs never share scores); only the state (history and current
    observation) is embedded, so the long shared example text does not make every prompt look alike.

    **Similarity.** Cosine of L2-normalised embeddings, a numpy matrix product against every cached state of the
    same context and normalisation; a query reuses a cached state when the cosine is ``>= threshold``. An
    identical state text is found by a dictionary look-up first (and is not encoded again); texts that matched a
    cached state are remembered as its aliases. A match is never chained: fresh scores obtained for a near
    state are added to the cached state it matched, not stored as a new state, so reuse cannot drift from state
    to state. ``threshold=1.0`` reuses identical state texts only (no encoder call) and returns the wrapped
    prior's scores (to float precision, up to renormalisation, see below).

    **Candidates.** ``candidates`` says when scores of a cached state answer a query with other commands:

    - ``"same"``: only for the same multiset of commands (in any order: scores are reordered to the query's);
      another set is scored in full by the wrapped prior. Safe for every prior.
    - ``"subset"``: also when every queried command has a cached score under that state: the per-command raw
      log-probabilities (``raw_logprobs``, ``num_tokens``) are renormalised over the queried commands with
      :func:`~prior_wrappers.priors.base.normalize_scores`, exactly what the prior computes for that set.
    - ``"rescore"`` (default): as ``"subset"``, and when some commands are missing only those are sent to the
      wrapped prior, on the *query's* prompt, then merged with the cached raw scores and renormalised.

    ``"subset"`` and ``"rescore"`` assume a command's raw score does not depend on the other candidates, true of
    :class:`~prior_wrappers.priors.hf.HFPrior` and :class:`~prior_wrappers.priors.remote.OpenAIPrior` (each
    candidate is scored by its own tokens after the prompt), of :class:`UniformPrior` and of a
    :class:`FunctionPrior` whose function scores each command alone. It is false of a prior whose prompt lists
    the candidates: use ``"same"`` there. Every fresh result is checked to be ``normalize_scores`` of its raw
    scores; one that is not raises ``ValueError`` (e.g. a ``FunctionPrior``, which ignores
    ``normalization="word"``).

    **Bounds and counters.** Least recently used states are evicted beyond ``max_entries`` states or
    ``max_bytes`` (embeddings, texts, scores, features). Per prompt, :attr:`hits` (nothing sent to the wrapped
    prior; :attr:`semantic_hits` of them answered by a different state text), :attr:`partial` (some commands
    re-scored), :attr:`misses` (every command scored); :attr:`queries` counts prompts sent to the wrapped prior
    (``partial + misses`` less duplicates within one call), :attr:`inner_calls` its ``score`` calls and
    :attr:`scored_commands` the commands in them. :meth:`cache_info` has them all.

    **Features.** ``return_features=True`` is forwarded for the commands it must score; a cached command without
    features counts as missing. Reused features are those of the similar state. A prior without hidden states
    raises its own error.

    **Composition.** The scores are approximate, so :attr:`fingerprint` names the wrapped prior's fingerprint,
    the encoder, the threshold, the rule and the split: a ``CachedPrior`` file of this cache is never taken for
    the exact prior's. ``CachedPrior(SemanticCachedPrior(prior, ...))`` puts an exact cache (with ``save``/``load``)
    in front; ``SemanticCachedPrior(CachedPrior(prior), ...)`` keeps the exact scores underneath. Either goes to
    :class:`~prior_wrappers.wrappers.LLMPriorWrapper` and :class:`~prior_wrappers.vec_wrappers.VecLLMPrior` like
    any prior. ``propose`` (sampling, stochastic) is passed through uncached. This cache is kept in memory only.

    >>> from prior_wrappers import FunctionPrior, HashingEncoder
    >>> inner = FunctionPrior(lambda p, cands: [1.0 if "take" in c else 0.0 for c in cands], name="take")
    >>> prior = SemanticCachedPrior(inner, encoder=HashingEncoder(256), threshold=0.8)
    >>> cands = [["take apple", "go north"]]
    >>> _ = prior.score(["Task: eat\\nObservation: A kitchen. You have 3 coins.\\nAction:"], cands)
    >>> _ = prior.score(["Task: eat\\nObservation: A kitchen. You have 4 coins.\\nAction:"], cands)
    >>> prior.cache_info()["semantic_hits"], prior.queries
    (1, 1)

    :param prior: the prior to cache.
    :param encoder: a :class:`~prior_wrappers.encoders.TextEncoder` for the state texts, e.g.
        ``SentenceEncoder.default()`` (the embedded MiniLM); ``HashingEncoder`` for tests.
    :param threshold: least cosine similarity for reuse, in ``(0, 1]``; ``1.0`` reuses identical states only.
    :param candidates: ``"same"``, ``"subset"`` or ``"rescore"`` (see above).
    :param max_entries: cached states kept (least recently used evicted first).
    :param max_bytes: bytes kept (embeddings, texts, scores, features). Default 256 MiB.
    :param split: ``split(prompt) -> (context, state)``; default :func:`split_prompt`.
    """

    def __init__(
        self,
        prior: ActionPrior,
        encoder: TextEncoder,
        *,
        threshold: float = 0.95,
        candidates: CandidateRule = "rescore",
        max_entries: int = 50_000,
        max_bytes: int = 256 * 2**20,
        split: Callable[[str], tuple[str, str]] = split_prompt,
    ) -> None:
        if not hasattr(prior, "score"):
            raise TypeError(f"prior must be an ActionPrior (with a score method), got {type(prior).__name__}")
        if not hasattr(encoder, "encode") or not isinstance(getattr(encoder, "dim", None), int):
            raise TypeError(
                f"encoder must be a TextEncoder (encode(texts) and an int dim), got {type(encoder).__name__}; "
                "e.g. SentenceEncoder.default() or HashingEncoder()"
            )
        if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not 0.0 < threshold <= 1.0:
            raise ValueError(f"threshold must be a cosine similarity in (0, 1], got {threshold!r}")
        if candidates not in CANDIDATE_RULES:
            raise ValueError(f"candidates must be one of {CANDIDATE_RULES}, got {candidates!r}")
        if max_entries < 1 or max_bytes < 1:
            raise ValueError(f"max_entries and max_bytes must be >= 1, got {max_entries} and {max_bytes}")
        if not callable(split):
            raise TypeError("split must be a function prompt -> (context, state)")
        self.prior, self.encoder, self.split = prior, encoder, split
        self.threshold, self.candidates = float(threshold), candidates
        self.max_entries, self.max_bytes = max_entries, max_bytes
        self._index = StateIndex(encoder.dim)  # every state, stored in _lru or not yet
        # the stored states, least recently used first, and those used since: a call that completes stores these
        # (their sizes final), evicting the least recently used beyond the bounds
        self._lru: BoundedLRU[int, StateEntry] = BoundedLRU(
            max_entries, max_bytes, attrgetter("nbytes"), self._index.forget
        )
        self._used: dict[int, StateEntry] = {}
        self._groups: dict[tuple[str, str], int] = {}  # (context, normalization) -> group id
        self.hits = self.semantic_hits = self.partial = self.misses = 0
        self.queries = self.inner_calls = self.scored_commands = 0

    # ------------------------------------------------------------------ reporting
    @property
    def fingerprint(self) -> str:
        """Wrapped prior, encoder, threshold, candidate rule and split: what the approximate scores depend on."""
        split = getattr(self.split, "__qualname__", type(self.split).__name__)
        return (
            f"SemanticCachedPrior[{prior_fingerprint(self.prior)}|{encoder_name(self.encoder)}|"
            f"threshold={self.threshold!r}|candidates={self.candidates}|split={split}]"
        )

    @property
    def hit_rate(self) -> float:
        """Fraction of prompts answered without the wrapped prior."""
        total = self.hits + self.partial + self.misses
        return self.hits / total if total else 0.0

    @property
    def nbytes(self) -> int:
        """Bytes held by the cached states."""
        if self._used:  # a call failed before storing the states it used: count them as they are now
            return sum(entry.nbytes for entry in self._index.entries.values())
        return int(self._lru.currsize)

    def __len__(self) -> int:
        return len(self._index)

    def cache_info(self) -> dict[str, float]:
        """Counters (see the class docstring), ``hit_rate``, ``size`` (states), ``bytes`` and the bounds."""
        return {
            "hits": self.hits,
            "semantic_hits": self.semantic_hits,
            "partial": self.partial,
            "misses": self.misses,
            "queries": self.queries,
            "inner_calls": self.inner_calls,
            "scored_commands": self.scored_commands,
            "hit_rate": self.hit_rate,
            "size": len(self),
            "bytes": self.nbytes,
            "max_entries": self.max_entries,
            "max_bytes": self.max_bytes,
            "threshold": self.threshold,
        }

    def clear(self) -> None:
        """Forget every cached state and reset the counters."""
        self.__init__(  # type: ignore[misc]
            self.prior,
            self.encoder,
            threshold=self.threshold,
            candidates=self.candidates,
            max_entries=self.max_entries,
            max_bytes=self.max_bytes,
            split=self.split,
        )

    # ------------------------------------------------------------------ look-up
    def _missing(self, entry: StateEntry, cands: Sequence[str], features: bool) -> list[str]:
        """Commands of ``cands`` the entry cannot answer (unique, in query order); for "same", all or none."""
        if self.candidates == "same":
            key = tuple(sorted(cands))
            record = entry.sets.get(key)
            with_features = record is not None and (not features or all(r[3] is not None for r in record.values()))
            ok = key in entry.pending or with_features
            return [] if ok else list(dict.fromkeys(cands))
        have = entry.commands
        return [
            c
            for c in dict.fromkeys(cands)
            if c not in entry.pending and (c not in have or (features and have[c][3] is None))
        ]

    def _find(self, group: int, text: str, vector: np.ndarray | None, cands: Sequence[str], features: bool):
        """``(entry, missing commands, semantic)``; ``entry`` is ``None`` when no cached state is close enough."""
        entry_id = self._index.exact.get((group, text))
        if entry_id is not None:
            entry = self._index.entries[entry_id]
            return entry, self._missing(entry, cands, features), False
        if vector is None:
            return None, list(dict.fromkeys(cands)), False
        best: tuple[StateEntry, list[str]] | None = None
        for entry_id in self._index.neighbours(group, vector, self.threshold):
            entry = self._index.entries[entry_id]
            missing = self._missing(entry, cands, features)
            if best is None or len(missing) < len(best[1]):
                best = (entry, missing)
            if not missing:
                break
        if best is None:
            return None, list(dict.fromkeys(cands)), False
        return best[0], best[1], True

    # ------------------------------------------------------------------ the prior protocol
    def score(
        self,
        prompts: Sequence[str],
        candidates: Sequence[Sequence[str]],
        *,
        normalization: Normalization = "token",
        return_features: bool = False,
    ) -> PriorScores:
        """Scores of each prompt's candidates, from the cache where a similar state holds them.

        :param prompts: one prompt per state.
        :param candidates: the commands to score, one list per prompt.
        :param normalization: forwarded to the wrapped prior; states are cached per normalisation.
        :param return_features: also return (and cache) the prior's hidden-state features.
        """
        validate_request(prompts, candidates)
        splits = [self.split(p) for p in prompts]
        groups = [self._groups.setdefault((ctx, normalization), len(self._groups)) for ctx, _ in splits]
        vectors: list[np.ndarray | None] = [None] * len(prompts)
        if self.threshold < 1.0:
            todo = [i for i, (g, (_, s)) in enumerate(zip(groups, splits)) if (g, s) not in self._index.exact]
            texts = list(dict.fromkeys(splits[i][1] for i in todo))
            if texts:
                encoded = np.asarray(self.encoder.encode(texts), dtype=np.float32).reshape(len(texts), -1)
                norms = np.linalg.norm(encoded, axis=1, keepdims=True)
                by_text = dict(zip(texts, encoded / np.where(norms > 0, norms, 1.0)))
                for i in todo:
                    vectors[i] = by_text[splits[i][1]]
        entries: list[StateEntry] = []
        requests: list[tuple[int, StateEntry, list[str]]] = []  # (prompt index, entry to fill, commands)
        for i, (cands, group, (_, text)) in enumerate(zip(candidates, groups, splits)):
            entry, missing, semantic = self._find(group, text, vectors[i], cands, return_features)
            if entry is None:
                vector = (
                    cast(np.ndarray, vectors[i]) if vectors[i] is not None else np.zeros(self.encoder.dim, np.float32)
                )
                entry = self._index.add(group, text, vector)
            elif semantic and (group, text) not in self._index.exact:  # remembered: found by look-up next time
                self._index.alias(entry, text)
            self._used.pop(entry.id, None)  # now the most recently used
            self._used[entry.id] = entry
            if not missing:
                self.hits += 1
                self.semantic_hits += int(text != entry.text)
            elif len(missing) < len(set(cands)):
                self.partial += 1
            else:
                self.misses += 1
            if missing:
                requests.append((i, entry, missing))
                entry.pending.update([tuple(sorted(cands))] if self.candidates == "same" else missing)
            entries.append(entry)
        try:
            if requests:
                self._fill(prompts, candidates, requests, normalization, return_features)
        finally:
            for entry in entries:
                entry.pending.clear()
        out = [self._answer(e, c, normalization, return_features) for e, c in zip(entries, candidates)]
        self._lru.put_all(self._used.items())
        self._used.clear()
        return PriorScores(
            logprobs=[o[0] for o in out],
            raw_logprobs=[o[1] for o in out],
            num_tokens=[o[2] for o in out],
            features=[o[3] for o in out] if return_features else None,
        )

    def _fill(self, prompts, candidates, requests, normalization: Normalization, features: bool) -> None:
        """Send the missing commands to the wrapped prior in one call and store the results."""
        fresh = self.prior.score(
            [prompts[i] for i, _, _ in requests],
            [cmds for _, _, cmds in requests],
            normalization=normalization,
            return_features=features,
        )
        self.inner_calls += 1
        self.queries += len(requests)
        self.scored_commands += sum(len(cmds) for _, _, cmds in requests)
        for j, (i, entry, cmds) in enumerate(requests):
            lp = np.asarray(fresh.logprobs[j], np.float64)
            raw = np.asarray(fresh.raw_logprobs[j], np.float64)
            ntok = np.asarray(fresh.num_tokens[j], np.int64)
            feats = fresh.features[j] if features and fresh.features is not None else None
            records = {
                c: (
                    float(lp[k]),
                    float(raw[k]),
                    int(ntok[k]),
                    None if feats is None else np.array(feats[k], np.float32),
                )
                for k, c in enumerate(cmds)
            }
            if self.candidates == "same":
                entry.sets[tuple(sorted(candidates[i]))] = records
            else:
                if not np.allclose(normalize_scores(raw, ntok, cmds, normalization), lp, rtol=0, atol=1e-6):
                    raise ValueError(
                        f"{type(self.prior).__name__}'s logprobs are not normalize_scores(raw_logprobs, num_tokens, "
                        f"normalization={normalization!r}), so its per-command raw scores cannot be renormalised over "
                        "another candidate set (a FunctionPrior ignores normalization='word'). Use "
                        "SemanticCachedPrior(..., candidates='same'), or normalization='token'"
                    )
                entry.commands.update(records)
            entry.nbytes += sum(record_bytes(c, r) for c, r in records.items())

    def _answer(self, entry: StateEntry, cands: Sequence[str], normalization: Normalization, features: bool):
        if self.candidates == "same":
            records = entry.sets[tuple(sorted(cands))]
            rows = [records[c] for c in cands]
            logprobs = np.array([r[0] for r in rows], np.float64)
        else:
            rows = [entry.commands[c] for c in cands]
        raw = np.array([r[1] for r in rows], np.float64)
        ntok = np.array([r[2] for r in rows], np.int64)
        if self.candidates != "same":
            logprobs = normalize_scores(raw, ntok, cands, normalization)
        feats = np.stack([cast(np.ndarray, r[3]) for r in rows]).astype(np.float32) if features else None
        return logprobs, raw, ntok, feats

    def propose(
        self, prompts: Sequence[str], admissible: Sequence[Sequence[str]], k: int = 5, **kwargs: Any
    ) -> Proposals:
        """Passed through to the wrapped prior, uncached (sampling is stochastic).

        :param prompts: one prompt per state.
        :param admissible: the admissible commands per prompt.
        :param k: samples per prompt.
        """
        return self.prior.propose(prompts, admissible, k, **kwargs)

    def __getattr__(self, name: str) -> Any:
        # expose the wrapped prior's attributes (tokenizer, model, ...) like CachedPrior
        if name in ("prior", "encoder", "split"):
            raise AttributeError(name)
        return getattr(self.prior, name)
