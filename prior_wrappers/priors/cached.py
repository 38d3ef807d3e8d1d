"""An exact LRU cache in front of any prior."""

from __future__ import annotations

import pickle
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from prior_wrappers.priors.base import ActionPrior, Normalization, PriorScores, Proposals, validate_request


class CachedPrior:
    """Caches :meth:`score` results per ``(prompt, candidates, normalization)``; misses of one call are
    sent to the wrapped prior together, in one batched call.

    Text games revisit the same states often, so most scores are hits after a few episodes.
    ``propose`` is stochastic and is passed through uncached.

    :param prior: the prior to cache.
    :param maxsize: entries kept (least recently used evicted first).
    """

    def __init__(self, prior: ActionPrior, maxsize: int = 100_000) -> None:
        if maxsize < 1:
            raise ValueError("maxsize must be >= 1")
        self.prior = prior
        self.maxsize = maxsize
        self._cache: OrderedDict[tuple[Any, ...], tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray | None]] = (
            OrderedDict()
        )
        self.hits = 0
        self.misses = 0

    @property
    def hit_rate(self) -> float:
        total = self.hits + self.misses
        return self.hits / total if total else 0.0

    def cache_info(self) -> dict[str, float]:
        return {"hits": self.hits, "misses": self.misses, "size": len(self._cache), "hit_rate": self.hit_rate}

    def save(self, path: str | Path) -> None:
        """Write the cached scores to ``path`` (a pickle), so later runs and other seeds reuse them."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(path.suffix + ".tmp")
        with open(tmp, "wb") as f:
            pickle.dump(dict(self._cache), f, protocol=pickle.HIGHEST_PROTOCOL)
        tmp.replace(path)

    def load(self, path: str | Path) -> int:
        """Add the entries saved by :meth:`save` (only load files you wrote: this unpickles); returns how many."""
        with open(path, "rb") as f:
            entries = pickle.load(f)
        self._cache.update(entries)
        while len(self._cache) > self.maxsize:
            self._cache.popitem(last=False)
        return len(entries)

    def clear(self) -> None:
        self._cache.clear()
        self.hits = self.misses = 0

    def score(
        self,
        prompts: Sequence[str],
        candidates: Sequence[Sequence[str]],
        *,
        normalization: Normalization = "token",
        return_features: bool = False,
    ) -> PriorScores:
        validate_request(prompts, candidates)
        keys = [(p, tuple(c), normalization) for p, c in zip(prompts, candidates)]
        results: list[tuple | None] = []
        missing: dict[tuple, list[int]] = {}
        for i, key in enumerate(keys):
            entry = self._cache.get(key)
            if entry is not None and (not return_features or entry[3] is not None):
                self._cache.move_to_end(key)
                self.hits += 1
                results.append(entry)
            else:
                self.misses += 1
                results.append(None)
                missing.setdefault(key, []).append(i)
        if missing:
            miss_keys = list(missing)
            fresh = self.prior.score(
                [k[0] for k in miss_keys],
                [list(k[1]) for k in miss_keys],
                normalization=normalization,
                return_features=return_features,
            )
            for j, key in enumerate(miss_keys):
                feats = fresh.features[j] if fresh.features is not None else None
                entry = (fresh.logprobs[j], fresh.raw_logprobs[j], fresh.num_tokens[j], feats)
                self._cache[key] = entry
                self._cache.move_to_end(key)
                for i in missing[key]:
                    results[i] = entry
            while len(self._cache) > self.maxsize:
                self._cache.popitem(last=False)
        return PriorScores(
            logprobs=[r[0] for r in results],
            raw_logprobs=[r[1] for r in results],
            num_tokens=[r[2] for r in results],
            features=[r[3] for r in results] if return_features else None,
        )

    def propose(self, prompts: Sequence[str], admissible: Sequence[Sequence[str]], k: int = 5, **kwargs: Any) -> Proposals:
        return self.prior.propose(prompts, admissible, k, **kwargs)

    def __getattr__(self, name: str) -> Any:
        # expose the wrapped prior's attributes (tokenizer, model, ...) without re-declaring them
        if name == "prior":
            raise AttributeError(name)
        return getattr(self.prior, name)
