"""An exact LRU cache in front of any prior, bounded by entries and bytes, saved in a format that cannot run code."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from prior_wrappers.lru import BoundedLRU
from prior_wrappers.priors.base import (
    ActionPrior,
    Normalization,
    PriorScores,
    Proposals,
    digest,
    prior_fingerprint,
    prompt_seeds,
    propose_options,
    validate_request,
)

# what an entry is lives in cache_entries.py, the file format in cache_files.py; re-exported here (`X as X`)
from prior_wrappers.priors.cache_entries import Entry as Entry
from prior_wrappers.priors.cache_entries import Key as Key
from prior_wrappers.priors.cache_entries import ProposalEntry as ProposalEntry
from prior_wrappers.priors.cache_entries import ProposalKey as ProposalKey
from prior_wrappers.priors.cache_entries import entry_size, make_entry, make_proposal
from prior_wrappers.priors.cache_files import CACHE_FORMAT as CACHE_FORMAT
from prior_wrappers.priors.cache_files import CACHE_VERSION as CACHE_VERSION
from prior_wrappers.priors.cache_files import load_cache, read_cache, write_cache


class CachedPrior:
    """Caches :meth:`score` results per ``(prompt, candidates, normalization)``; misses of one call are
    sent to the wrapped prior together, in one batched call.

    Text games revisit the same states often, so most scores are hits after a few episodes.

    Seeded :meth:`propose` calls are cached too, per ``(prompt, admissible list or None, k, seed, other
    sampling options)``, when the seed is given per prompt (a sequence, as the wrappers' ``prior_mode="propose"``
    passes it) or the call has one prompt: then a prompt's samples do not depend on the rest of the call. Misses
    go to the wrapped prior in one call. Unseeded calls (and one int seed for several prompts) are stochastic
    and pass through uncached. Proposals have their own LRU under the same bounds, are counted in
    ``proposal_hits``/``proposal_misses``; :meth:`save` writes them next to the scores.

    A file written by :meth:`save` holds the wrapped prior's :attr:`fingerprint` (model, weights, tokenizer,
    separator, ... for ``HFPrior``; see :func:`~prior_wrappers.priors.base.prior_fingerprint`), and
    :meth:`load` refuses a file made by a different prior. The file is an ``.npz`` archive with JSON
    metadata, read with ``allow_pickle=False``: loading it cannot execute code.

    :param prior: the prior to cache.
    :param maxsize: entries kept (least recently used evicted first).
    :param max_bytes: bytes kept (scores, features, prompt and candidate texts), least recently used evicted
        first. Default 1 GiB; hidden-state features (``encoder="prior"``) take ``4 × hidden size`` bytes per
        candidate, so they fill it far sooner than scores alone.
    """

    def __init__(self, prior: ActionPrior, maxsize: int = 100_000, max_bytes: int = 2**30) -> None:
        if maxsize < 1:
            raise ValueError("maxsize must be >= 1")
        if max_bytes < 1:
            raise ValueError("max_bytes must be >= 1")
        self.prior = prior
        self.maxsize = maxsize
        self.max_bytes = max_bytes
        self._cache: BoundedLRU[Key, Entry] = BoundedLRU(maxsize, max_bytes, entry_size)
        self.hits = 0
        self.misses = 0
        self._proposals: BoundedLRU[ProposalKey, ProposalEntry] = BoundedLRU(maxsize, max_bytes, entry_size)
        self.proposal_hits = 0
        self.proposal_misses = 0

    @property
    def fingerprint(self) -> str:
        """The wrapped prior's fingerprint (a cache is transparent)."""
        return prior_fingerprint(self.prior)

    def file_for(self, directory: str | Path, stem: str) -> Path:
        """``directory/<stem>-<12 hex digits of the fingerprint>.npz``: a cache file of this prior's own, so that
        another prior (another model, dtype or prompt setting) writes its own file instead of being refused by
        :meth:`load`.

        :param directory: where the cache files live.
        :param stem: what the scores are of (a game, a benchmark).
        """
        digest = hashlib.sha256(self.fingerprint.encode()).hexdigest()[:12]
        return Path(directory) / f"{stem}-{digest}.npz"

    @property
    def hit_rate(self) -> float:
        total = self.hits + self.misses
        return self.hits / total if total else 0.0

    @property
    def proposal_hit_rate(self) -> float:
        """Share of cacheable (seeded) proposals served from the cache."""
        total = self.proposal_hits + self.proposal_misses
        return self.proposal_hits / total if total else 0.0

    @property
    def nbytes(self) -> int:
        """Bytes held by the cached entries."""
        return int(self._cache.currsize)

    def cache_info(self) -> dict[str, float]:
        """``hits``, ``misses``, ``hit_rate``, ``size`` (entries), ``bytes``, and the bounds
        ``maxsize``/``max_bytes``."""
        return {
            "hits": self.hits,
            "misses": self.misses,
            "size": len(self._cache),
            "hit_rate": self.hit_rate,
            "bytes": self.nbytes,
            "maxsize": self.maxsize,
            "max_bytes": self.max_bytes,
            "proposal_hits": self.proposal_hits,
            "proposal_misses": self.proposal_misses,
            "proposal_size": len(self._proposals),
            "proposal_hit_rate": self.proposal_hit_rate,
        }

    # ------------------------------------------------------------------ storage
    def save(self, path: str | Path) -> None:
        """Write the cached scores and seeded proposals to ``path`` (an ``.npz`` archive whatever its name), so
        later runs and other seeds reuse them. The write is atomic: a crash leaves the previous file intact."""
        # least recently used first, as load stores them
        write_cache(Path(path), self.fingerprint, self._cache.lru_items(), self._proposals.lru_items())

    def load(self, path: str | Path, *, check_fingerprint: bool = True) -> int:
        """Add the scores and proposals saved by :meth:`save`; returns how many entries (both kinds).

        :param path: a file written by :meth:`save`.
        :param check_fingerprint: refuse a file written for a prior with another fingerprint (its scores would
            be silently wrong here). Pass ``False`` only when you know the scores still hold.
        :raises FileNotFoundError: no file at ``path``.
        :raises ValueError: the file is not a cache file (corrupted, foreign, or an old pickle cache) or was
            written for a different prior.
        """
        keys_entries, proposals = load_cache(Path(path), lambda: self.fingerprint, check_fingerprint=check_fingerprint)
        self._cache.put_all(keys_entries)
        self._proposals.put_all(proposals)
        return len(keys_entries) + len(proposals)

    @staticmethod
    def _read(path: Path) -> tuple[str, list[tuple[Key, Entry]], list[tuple[ProposalKey, ProposalEntry]]]:
        """``(fingerprint, entries, proposals)`` of a cache file, unchecked against any prior (see
        :func:`~prior_wrappers.priors.cache_files.read_cache`)."""
        return read_cache(path)

    def clear(self) -> None:
        """Drop every cached score and proposal and reset the counters."""
        self._cache.clear()
        self.hits = self.misses = 0
        self._proposals.clear()
        self.proposal_hits = self.proposal_misses = 0

    # ------------------------------------------------------------------ the prior protocol
    def score(
        self,
        prompts: Sequence[str],
        candidates: Sequence[Sequence[str]],
        *,
        normalization: Normalization = "token",
        return_features: bool = False,
    ) -> PriorScores:
        validate_request(prompts, candidates)
        keys: list[Key] = [(p, tuple(c), normalization) for p, c in zip(prompts, candidates)]
        results: list[Entry | None] = []
        missing: dict[Key, list[int]] = {}
        for i, key in enumerate(keys):
            entry = self._cache.peek(key)
            if entry is not None and (not return_features or entry[3] is not None):
                self.hits += 1
                results.append(self._cache[key])  # a look-up: now the most recently used
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
            new = {
                key: make_entry(
                    key,
                    fresh.logprobs[j],
                    fresh.raw_logprobs[j],
                    fresh.num_tokens[j],
                    fresh.features[j] if fresh.features is not None else None,
                )
                for j, key in enumerate(miss_keys)
            }
            for key, entry in new.items():
                for i in missing[key]:
                    results[i] = entry
            self._cache.put_all(new.items())
        done = [r for r in results if r is not None]
        return PriorScores(
            logprobs=[r[0] for r in done],
            raw_logprobs=[r[1] for r in done],
            num_tokens=[r[2] for r in done],
            features=[r[3] for r in done] if return_features else None,  # type: ignore[misc]
        )

    def propose(
        self, prompts: Sequence[str], admissible: Sequence[Sequence[str] | None], k: int = 5, **kwargs: Any
    ) -> Proposals:
        """The wrapped prior's proposals, from the cache where the call is seeded per prompt (see the class).

        :param prompts: one prompt per state.
        :param admissible: each prompt's admissible commands, or ``None`` (free text).
        :param k: samples per prompt.
        :param kwargs: ``seed`` and the sampling options of the wrapped prior's ``propose``; those it does not
            take are not passed (nor part of the key): a prior without ``seed`` is passed through uncached.
        """
        kwargs = propose_options(self.prior, **kwargs)
        seed = kwargs.pop("seed", None)
        seeds = prompt_seeds(seed, len(prompts))
        if seeds is None and seed is not None and len(prompts) == 1:
            seeds = [int(seed)]
        if seeds is None:  # stochastic: nothing to key on
            return self.prior.propose(prompts, admissible, k, **({} if seed is None else {"seed": seed}), **kwargs)
        validate_request(prompts, admissible, free_text=True)
        options = digest(sorted(kwargs.items()))
        keys: list[ProposalKey] = [
            (p, None if a is None else tuple(a), int(k), s, options) for p, a, s in zip(prompts, admissible, seeds)
        ]
        missing: dict[ProposalKey, list[int]] = {}
        results: list[ProposalEntry | None] = []
        for i, key in enumerate(keys):
            entry = self._proposals.get(key)  # a hit is now the most recently used
            if entry is not None:
                self.proposal_hits += 1
            else:
                self.proposal_misses += 1
                missing.setdefault(key, []).append(i)
            results.append(entry)
        if missing:
            miss = list(missing)
            fresh = self.prior.propose(
                [key[0] for key in miss],
                [None if key[1] is None else list(key[1]) for key in miss],
                k,
                seed=[key[3] for key in miss],  # type: ignore[call-arg]  # propose_options: this prior takes seed=
                **kwargs,
            )
            new: dict[ProposalKey, ProposalEntry] = {}
            for j, key in enumerate(miss):
                n_invalid = fresh.invalid[j] if fresh.invalid is not None else round(fresh.invalid_rate * k)
                new[key] = make_proposal(key, fresh.commands[j], fresh.counts[j], fresh.generations[j], int(n_invalid))
                for i in missing[key]:
                    results[i] = new[key]
            self._proposals.put_all(new.items())
        done = [r for r in results if r is not None]
        invalid = [r[3] for r in done]
        return Proposals(
            [list(r[0]) for r in done],
            [r[1] for r in done],
            [list(r[2]) for r in done],
            invalid_rate=sum(invalid) / (k * len(done)),
            invalid=invalid,
        )

    def __getattr__(self, name: str) -> Any:
        # expose the wrapped prior's attributes (tokenizer, model, ...) without re-declaring them
        if name == "prior":
            raise AttributeError(name)
        return getattr(self.prior, name)
