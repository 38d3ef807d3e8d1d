"""The file format of :class:`~prior_wrappers.priors.cached.CachedPrior`: an ``.npz`` archive of the score arrays
with JSON metadata (format, version, the prior's fingerprint, keys, seeded proposals), read with
``allow_pickle=False`` so that loading it cannot execute code, and checked before anything is trusted."""

from __future__ import annotations

import json
import os
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import cast

import numpy as np

from prior_wrappers.priors.cache_entries import Entry, Key, ProposalEntry, ProposalKey, make_entry, make_proposal

CACHE_FORMAT = "prior_wrappers.CachedPrior"
CACHE_VERSION = 1


def write_cache(
    path: Path,
    fingerprint: str,
    items: list[tuple[Key, Entry]],
    proposals: list[tuple[ProposalKey, ProposalEntry]],
) -> None:
    """Write ``items`` and ``proposals`` (least recently used first, as :func:`read_cache` returns them) to
    ``path``, atomically: a crash leaves the previous file intact."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with_features = [e[3] for _, e in items if e[3] is not None]
    meta = {
        "format": CACHE_FORMAT,
        "version": CACHE_VERSION,
        "fingerprint": fingerprint,
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
            ) in proposals
        ],
    }

    def cat(arrays: list[np.ndarray], dtype: type) -> np.ndarray:
        return (
            np.concatenate([np.asarray(a, dtype=dtype).reshape(-1) for a in arrays]) if arrays else np.zeros(0, dtype)
        )

    arrays: dict[str, np.ndarray] = {
        "meta": np.frombuffer(json.dumps(meta, ensure_ascii=False).encode("utf-8", "surrogatepass"), dtype=np.uint8),
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


def load_cache(
    path: Path, fingerprint: Callable[[], str], *, check_fingerprint: bool
) -> tuple[list[tuple[Key, Entry]], list[tuple[ProposalKey, ProposalEntry]]]:
    """The entries and proposals of the cache file at ``path``, for a CachedPrior whose prior's fingerprint is
    ``fingerprint()`` (computed only to check it, after the file is read: an ``HFPrior`` hashes its weights).

    :raises FileNotFoundError: no file at ``path``.
    :raises ValueError: the file is not a cache file or (``check_fingerprint``) was written for a different prior.
    """
    if not path.is_file():
        raise FileNotFoundError(f"no CachedPrior cache file at {str(path)!r} (write one with CachedPrior.save)")
    meta_fingerprint, keys_entries, proposals = read_cache(path)
    if check_fingerprint and meta_fingerprint != fingerprint():
        raise ValueError(
            f"the cache file {str(path)!r} holds scores of the prior {meta_fingerprint!r}, but this CachedPrior "
            f"wraps {fingerprint()!r}; its scores would be wrong here. Use one cache file per prior "
            "(or load(..., check_fingerprint=False) if you know the scores are still valid)"
        )
    return keys_entries, proposals


def read_cache(path: Path) -> tuple[str, list[tuple[Key, Entry]], list[tuple[ProposalKey, ProposalEntry]]]:
    """``(fingerprint, entries, proposals)`` of the cache file at ``path``, least recently used first.

    :raises ValueError: the file is not a cache file (corrupted, foreign, or an old pickle cache).
    """

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
        entry = make_entry(key, arrays["logprobs"][a:b], arrays["raw_logprobs"][a:b], arrays["num_tokens"][a:b], feats)
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
            proposal = make_proposal(
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
