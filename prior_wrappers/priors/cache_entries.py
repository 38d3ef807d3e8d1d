"""What :class:`~prior_wrappers.priors.cached.CachedPrior` keeps per key: frozen score arrays and seeded proposals,
each with the bytes it holds (what ``max_bytes`` bounds)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

Key = tuple[str, tuple[str, ...], str]
# logprobs, raw logprobs, token counts, features or None; last, as in ProposalEntry, the bytes the entry holds (with
# its key's texts): what max_bytes bounds
Entry = tuple[np.ndarray, np.ndarray, np.ndarray, "np.ndarray | None", int]
# (prompt, admissible or None, k, seed, digest of the other sampling options) -> commands, counts, generations, invalid,
# bytes
ProposalKey = tuple[str, "tuple[str, ...] | None", int, int, str]
ProposalEntry = tuple[tuple[str, ...], np.ndarray, tuple[str, ...], int, int]


def text_bytes(texts: Sequence[str]) -> int:
    return sum(len(t.encode("utf-8", "surrogatepass")) for t in texts)


def make_proposal(
    key: ProposalKey, commands: Sequence[str], counts: np.ndarray, generations: Sequence[str], invalid: int
) -> ProposalEntry:
    frozen = frozen_array(counts, np.float64)
    texts = text_bytes([key[0], *(key[1] or ()), *commands, *generations])
    return tuple(commands), frozen, tuple(generations), invalid, texts + frozen.nbytes


def frozen_array(array: np.ndarray, dtype: type) -> np.ndarray:
    out: np.ndarray = np.array(array, dtype=dtype, copy=True)
    out.setflags(write=False)  # shared by every hit: nobody may change a cached score in place
    return out


def make_entry(
    key: Key, logprobs: np.ndarray, raw_logprobs: np.ndarray, num_tokens: np.ndarray, features: np.ndarray | None
) -> Entry:
    arrays = (
        frozen_array(logprobs, np.float64),
        frozen_array(raw_logprobs, np.float64),
        frozen_array(num_tokens, np.int64),
        None if features is None else frozen_array(features, np.float32),
    )
    nbytes = text_bytes([key[0], *key[1]]) + sum(a.nbytes for a in arrays if a is not None)
    return (*arrays, nbytes)


def entry_size(entry: Entry | ProposalEntry) -> int:
    return entry[4]
