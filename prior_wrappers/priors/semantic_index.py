"""The states a :class:`~prior_wrappers.priors.semantic.SemanticCachedPrior` holds: each state's scores, its
texts (found by exact look-up) and its embedding (found by cosine similarity, in one matrix of slots)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

Record = tuple[float, float, int, "np.ndarray | None"]  # logprob (set records only), raw logprob, tokens, feature


@dataclass
class StateEntry:
    """One cached state: its embedding slot, the texts answered by it, and its scores."""

    id: int
    group: int
    slot: int
    text: str
    aliases: list[str] = field(default_factory=list)  # other state texts that matched it (exact look-up)
    commands: dict[str, Record] = field(default_factory=dict)  # per-command raw scores ("subset"/"rescore")
    sets: dict[tuple[str, ...], dict[str, Record]] = field(default_factory=dict)  # per candidate multiset ("same")
    pending: set[Any] = field(default_factory=set)  # commands / sets being scored in the current call
    nbytes: int = 0  # embedding, texts, scores, features: what max_bytes bounds


def text_bytes(text: str) -> int:
    return len(text.encode("utf-8", "surrogatepass"))


def record_bytes(command: str, record: Record) -> int:
    return text_bytes(command) + 24 + (record[3].nbytes if record[3] is not None else 0)


class StateIndex:
    """Every cached state by id, by ``(group, state text)`` and by embedding.

    Embeddings are L2-normalised rows of one matrix (grown by doubling); each row (slot) knows its group (context
    and normalisation) and its state, and a forgotten state frees its slot for the next.

    :param dim: the encoder's embedding size.
    """

    def __init__(self, dim: int) -> None:
        self.entries: dict[int, StateEntry] = {}  # every state by id
        self.exact: dict[tuple[int, str], int] = {}  # (group, state text) -> entry id
        self._vectors = np.zeros((64, dim), np.float32)
        self._slot_group = np.full(64, -1, np.int64)
        self._slot_entry = np.full(64, -1, np.int64)
        self._free: list[int] = list(range(63, -1, -1))
        self._next_id = 0

    def __len__(self) -> int:
        return len(self.entries)

    def add(self, group: int, text: str, vector: np.ndarray) -> StateEntry:
        """A new state of ``group`` with state text ``text`` and embedding ``vector``."""
        if not self._free:
            n = len(self._slot_group)
            self._vectors = np.concatenate([self._vectors, np.zeros_like(self._vectors)])
            self._slot_group = np.concatenate([self._slot_group, np.full(n, -1, np.int64)])
            self._slot_entry = np.concatenate([self._slot_entry, np.full(n, -1, np.int64)])
            self._free = list(range(2 * n - 1, n - 1, -1))
        slot = self._free.pop()
        entry_id, self._next_id = self._next_id, self._next_id + 1
        self._vectors[slot], self._slot_group[slot], self._slot_entry[slot] = vector, group, entry_id
        entry = StateEntry(entry_id, group, slot, text, nbytes=self._vectors[slot].nbytes + text_bytes(text))
        self.entries[entry_id] = entry
        self.exact[(group, text)] = entry_id
        return entry

    def alias(self, entry: StateEntry, text: str) -> None:
        """Remember ``text`` as another state text of ``entry``: found by look-up next time."""
        entry.aliases.append(text)
        self.exact[(entry.group, text)] = entry.id
        entry.nbytes += text_bytes(text)

    def forget(self, entry_id: int, entry: StateEntry) -> None:
        """An evicted state: drop its texts and free its embedding slot."""
        del self.entries[entry_id]
        for text in [entry.text, *entry.aliases]:
            self.exact.pop((entry.group, text), None)
        self._slot_group[entry.slot] = self._slot_entry[entry.slot] = -1
        self._free.append(entry.slot)

    def neighbours(self, group: int, vector: np.ndarray, threshold: float) -> list[int]:
        """Entry ids of the group's states with cosine >= ``threshold`` to ``vector``, most similar first (at most
        8)."""
        sims = self._vectors @ vector
        sims[self._slot_group != group] = -np.inf
        above = np.flatnonzero(sims >= threshold - 1e-6)
        order = above[np.argsort(-sims[above], kind="stable")][:8]
        return [int(self._slot_entry[s]) for s in order]
