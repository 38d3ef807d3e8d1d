"""An exact LRU cache in front of any prior, bounded by entries and bytes, saved in a format that cannot run code."""

from __future__ import annotations

import hashlib
import json
import os
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any, cast

import numpy as np

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

CACHE_FORMAT = "prior_wrappers.CachedPrior"
CACHE_VERSION = 1

Key = tuple[str, tuple[str, ...], str]
# logprobs, raw logprobs, token counts, features or None; last, as in ProposalEntry, the bytes the entry holds (with
# its key's texts): what max_bytes bounds
Entry = tuple[np.ndarray, np.ndarray, np.ndarray, "np.ndarray | None", int]
# (prompt, admissible or None, k, seed, digest of the other sampling options) -> commands, counts, generations, invalid,
# bytes
ProposalKey = tuple[str, "tuple[str, ...] | None", int, int, str]
ProposalEntry = tuple[tuple[str, ...], np.ndarray, tuple[str, ...], int, int]


def _text_bytes(texts: Sequence[str]) -> int:
    return sum(len(t.encode("utf-8", "surrogatepass")) for t in texts)


def _proposal(
    key: ProposalKey, commands: Sequence[str], counts: np.ndarray, generations: Sequence[str], invalid: int
) -> ProposalEntry:
    frozen = _frozen(counts, np.float64)
    texts = _text_bytes([key[0], *(key[1] or ()), *commands, *generations])
    return tuple(commands), frozen, tuple(generations), invalid, texts + frozen.nbytes


def _frozen(array: np.ndarray, dtype: type) -> np.ndarray:
    out: np.ndarray = np.array(array, dtype=dtype, copy=True)
    out.setflags(write=False)  # shared by every hit: nobody may change a cached score in place
    return out


def _entry(
    key: Key, logprobs: np.ndarray, raw_logprobs: np.ndarray, num_tokens: np.ndarray, features: np.ndarray | None
) -> Entry:
    arrays = (
        _frozen(logprobs, np.float64),
        _frozen(raw_logprobs, np.float64),
        _frozen(num_tokens, np.int64),
        None if features is None else _frozen(features, np.float32),
    )
    nbytes = _text_bytes([key[0], *key[1]]) + sum(a.nbytes for a in arrays if a is not None)
    return (*arrays, nbytes)


def _size(entry: Entry | ProposalEntry) -> int:
    return entry[4]


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
        self._cache: BoundedLRU[Key, Entry] = BoundedLRU(maxsize, max_bytes, _size)
        self.hits = 0
        self.misses = 0
        self._proposals: BoundedLRU[ProposalKey, ProposalEntry] = BoundedLRU(maxsize, max_bytes, _size)
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
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        items = self._cache.lru_items()  # least recently used first, as load stores them
        with_features = [e[3] for _, e in items if e[3] is not None]
        meta = {
            "format": CACHE_FORMAT,
            "version": CACHE_VERSION,
            "fingerprint": self.fingerprint,
            "keys": [[k[0], list(k[1]), k[2]] for k, _ in items],
            # (prompt, admissible or null, k, seed, options digest, commands, counts, generations, invalid)
            "proposals": [
                [
                    prompt,
                    None if admissible is None else list(admissible),
                    int(k),
                    int(seed),
                    options,
                    list(commands),
                    counts.tolist(),
                    list(generations),
                    int(invalid),
                ]
                for (prompt, admissible, k, seed, options), (
                    commands,
                    counts,
                    generations,
                    invalid,
                    _,
                ) in self._proposals.lru_items()
            ],
        }

        def cat(arrays: list[np.ndarray], dtype: type) -> np.ndarray:
            return (
                np.concatenate([np.asarray(a, dtype=dtype).reshape(-1) for a in arrays])
                if arrays
                else np.zeros(0, dtype)
            )

        arrays: dict[str, np.ndarray] = {
            "meta": np.frombuffer(
                json.dumps(meta, ensure_ascii=False).encode("utf-8", "surrogatepass"), dtype=np.uint8
            ),
            "lengths": np.array([len(e[0]) for _, e in items], dtype=np.int64),
            "logprobs": cat([e[0] for _, e in items], np.float64),
            "raw_logprobs": cat([e[1] for _, e in items], np.float64),
            "num_tokens": cat([e[2] for _, e in items], np.int64),
            "has_features": np.array([e[3] is not None for _, e in items], dtype=bool),
            "features": (
                np.concatenate([np.asarray(f, dtype=np.float32) for f in with_features])
                if with_features
                else np.zeros((0, 0), np.float32)
            ),
        }
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        try:
            with open(tmp, "wb") as f:  # a file object: numpy must not append ".npz" to the name
                np.savez_compressed(f, **arrays)  # type: ignore[arg-type]  # numpy: **kwds could be allow_pickle
            tmp.replace(path)
        finally:
            tmp.unlink(missing_ok=True)

    def load(self, path: str | Path, *, check_fingerprint: bool = True) -> int:
        """Add the scores and proposals saved by :meth:`save`; returns how many entries (both kinds).

        :param path: a file written by :meth:`save`.
        :param check_fingerprint: refuse a file written for a prior with another fingerprint (its scores would
            be silently wrong here). Pass ``False`` only when you know the scores still hold.
        :raises FileNotFoundError: no file at ``path``.
        :raises ValueError: the file is not a cache file (corrupted, foreign, or an old pickle cache) or was
            written for a different prior.
        """
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"no CachedPrior cache file at {str(path)!r} (write one with CachedPrior.save)")
        meta_fingerprint, keys_entries, proposals = self._read(path)
        if check_fingerprint and meta_fingerprint != self.fingerprint:
            raise ValueError(
                f"the cache file {str(path)!r} holds scores of the prior {meta_fingerprint!r}, but this CachedPrior "
                f"wraps {self.fingerprint!r}; its scores would be wrong here. Use one cache file per prior "
                "(or load(..., check_fingerprint=False) if you know the scores are still valid)"
            )
        self._cache.put_all(keys_entries)
        self._proposals.put_all(proposals)
        return len(keys_entries) + len(proposals)

    @staticmethod
    def _read(path: Path) -> tuple[str, list[tuple[Key, Entry]], list[tuple[ProposalKey, ProposalEntry]]]:
        def bad(why: str) -> ValueError:
            return ValueError(
                f"{str(path)!r} is not a CachedPrior cache file ({why}): it may be truncated or corrupted, written by "
                "another program, or by an older prior_wrappers that saved caches as pickles. Delete it; "
                "the cache refills as the prior is queried"
            )

        try:
            with np.load(path, allow_pickle=False) as data:
                arrays = {name: data[name] for name in data.files}
        except (ValueError, OSError, EOFError, zipfile.BadZipFile, KeyError) as err:
            raise bad(f"{type(err).__name__}: {err}") from None
        required = ("meta", "lengths", "logprobs", "raw_logprobs", "num_tokens", "has_features", "features")
        missing = [name for name in required if name not in arrays]
        if missing:
            raise bad(f"missing arrays {missing}")
        try:
            meta = json.loads(arrays["meta"].tobytes().decode("utf-8", "surrogatepass"))
        except (UnicodeDecodeError, json.JSONDecodeError) as err:
            raise bad(f"unreadable metadata: {err}") from None
        if not isinstance(meta, dict) or meta.get("format") != CACHE_FORMAT:
            raise bad("no CachedPrior metadata")
        if meta.get("version") != CACHE_VERSION:
            raise bad(f"format version {meta.get('version')!r}; this prior_wrappers reads version {CACHE_VERSION}")
        keys, lengths = meta.get("keys"), arrays["lengths"]
        features, has_features = arrays["features"], arrays["has_features"]
        n_values = int(lengths.sum()) if lengths.size else 0
        n_feature_rows = int(lengths[has_features].sum()) if lengths.size else 0
        consistent = (
            isinstance(keys, list)
            and len(keys) == len(lengths) == len(has_features)
            and (lengths >= 0).all()
            and all(len(arrays[name]) == n_values for name in ("logprobs", "raw_logprobs", "num_tokens"))
            and features.ndim == 2
            and len(features) == n_feature_rows
        )
        if not consistent:
            raise bad("its arrays and keys do not match")
        out: list[tuple[Key, Entry]] = []
        starts = np.concatenate([[0], np.cumsum(lengths)])
        row = 0
        for i, raw_key in enumerate(cast(list, keys)):  # consistent: a list
            try:
                prompt, cands, normalization = raw_key
                key: Key = (str(prompt), tuple(str(c) for c in cands), str(normalization))
            except (TypeError, ValueError):
                raise bad(f"malformed key {i}") from None
            a, b = int(starts[i]), int(starts[i + 1])
            if len(key[1]) != b - a:
                raise bad(f"key {i} has {len(key[1])} candidates but {b - a} scores")
            feats = None
            if has_features[i]:
                feats = features[row : row + b - a]
                row += b - a
            entry = _entry(key, arrays["logprobs"][a:b], arrays["raw_logprobs"][a:b], arrays["num_tokens"][a:b], feats)
            out.append((key, entry))
        proposals: list[tuple[ProposalKey, ProposalEntry]] = []
        for i, raw in enumerate(meta.get("proposals", [])):  # files written before proposals were saved have none
            try:
                prompt, admissible, k, seed, options, commands, counts, generations, invalid = raw
                proposal_key: ProposalKey = (
                    str(prompt),
                    None if admissible is None else tuple(str(a) for a in admissible),
                    int(k),
                    int(seed),
                    str(options),
                )
                proposal = _proposal(
                    proposal_key,
                    [str(c) for c in commands],
                    np.asarray(counts, dtype=np.float64),
                    [str(g) for g in generations],
                    int(invalid),
                )
            except (TypeError, ValueError):
                raise bad(f"malformed proposal {i}") from None
            if len(proposal[0]) != len(proposal[1]):
                raise bad(f"proposal {i} has {len(proposal[0])} commands but {len(proposal[1])} counts")
            proposals.append((proposal_key, proposal))
        return str(meta.get("fingerprint")), out, proposals

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
                key: _entry(
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
                new[key] = _proposal(key, fresh.commands[j], fresh.counts[j], fresh.generations[j], int(n_invalid))
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
