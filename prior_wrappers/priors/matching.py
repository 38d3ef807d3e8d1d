"""Mapping free-form generations onto admissible commands (used by ``propose``)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Literal

import numpy as np

Fallback = Literal["drop", "uniform", "last", "raise"]
FALLBACKS: tuple[str, ...] = ("drop", "uniform", "last", "raise")

_PUNCT = re.compile(r"[^\w\s]")
_SPACE = re.compile(r"\s+")


def normalize_command(text: str) -> str:
    """Lower-case, drop punctuation, collapse whitespace: ``"Take the Apple!"`` -> ``"take the apple"``."""
    return _SPACE.sub(" ", _PUNCT.sub(" ", text.lower())).strip()


class CommandMatcher:
    """Maps a generated text to one of the admissible commands, or ``None``.

    Only the generation's first line is read (the model's continuation after it is a guess at the next
    observation, not its choice). Rules, first hit wins: (1) the first line, stripped, equals a command;
    (2) it equals one after :func:`normalize_command` (case, punctuation, spacing); (3) the longest
    normalised command that occurs in the normalised first line on word boundaries. Unlike substring
    counting, a generation that mentions no command maps to nothing.

    Duplicates: of equal admissible commands the first gets every match. Of commands equal only after
    normalisation ("Go North", "go north"), a first line equal to one of them goes to that one (rule 1), any
    other match to the first.

    :param admissible: the state's admissible commands, in the order the returned indices refer to.
    """

    def __init__(self, admissible: Sequence[str]) -> None:
        self.admissible = list(admissible)
        self._exact: dict[str, int] = {}
        for i, c in enumerate(self.admissible):
            self._exact.setdefault(c.strip(), i)
        self._normalized: dict[str, int] = {}
        for i, c in enumerate(self.admissible):
            self._normalized.setdefault(normalize_command(c), i)
        by_length = sorted(self._normalized.items(), key=lambda kv: -len(kv[0]))
        self._patterns = [(re.compile(rf"\b{re.escape(n)}\b"), i) for n, i in by_length if n]

    def match_index(self, generation: str) -> int | None:
        """Index in ``admissible`` of the command ``generation`` names, or ``None``."""
        first_line = generation.strip().split("\n", 1)[0].strip() if generation.strip() else ""
        if first_line in self._exact:
            return self._exact[first_line]
        norm = normalize_command(first_line)
        if norm in self._normalized:
            return self._normalized[norm]
        for pattern, i in self._patterns:
            if pattern.search(norm):
                return i
        return None

    def match(self, generation: str) -> str | None:
        """The command ``generation`` names, or ``None``."""
        i = self.match_index(generation)
        return None if i is None else self.admissible[i]


def count_matches(generations: Sequence[str], admissible: Sequence[str], fallback: Fallback) -> tuple[np.ndarray, int]:
    """Count generations per admissible command; returns ``(counts, n_invalid)``.

    ``fallback`` decides what an invalid generation contributes: ``drop`` nothing, ``uniform`` 1/n to every
    command, ``last`` one count to the last command (the reference implementation's behaviour), ``raise``
    a ``ValueError``.
    """
    if fallback not in FALLBACKS:
        raise ValueError(f"fallback must be one of {FALLBACKS}, got {fallback!r}")
    matcher = CommandMatcher(admissible)
    counts = np.zeros(len(admissible), dtype=np.float64)
    invalid = 0
    for g in generations:
        i = matcher.match_index(g)
        if i is not None:
            counts[i] += 1
            continue
        invalid += 1
        if fallback == "uniform":
            counts += 1.0 / len(admissible)
        elif fallback == "last":
            counts[-1] += 1
        elif fallback == "raise":
            raise ValueError(f"generation {g!r} matches none of the admissible commands {list(admissible)}")
    return counts, invalid
