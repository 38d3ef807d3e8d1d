"""Mapping free-form generations onto admissible commands (used by ``propose``)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Literal

import numpy as np

from prior_wrappers.priors.base import Proposals

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


def first_line(generation: str) -> str:
    """The generation's first non-empty line, whitespace collapsed: what a sampled completion proposes."""
    return " ".join(generation.strip().split("\n", 1)[0].split()) if generation.strip() else ""


def count_free_text(generations: Sequence[str]) -> tuple[list[str], np.ndarray, int]:
    """Candidates of an env without an admissible list: the distinct generations and how often each came.

    Generations are grouped by :func:`normalize_command` of their first line (case, punctuation and spacing do
    not make a new command); a group's command is its first member's first line as generated (whitespace
    collapsed), which is what the env receives. Groups are ordered by count (descending), ties by first
    appearance, so the order is a function of the generations alone. A generation whose first line is empty
    after normalisation is invalid.

    :param generations: one prompt's sampled texts.
    :return: ``(commands, counts, n_invalid)``.
    """
    order: dict[str, int] = {}  # normalised form -> index of its group, in order of first appearance
    commands: list[str] = []
    counts: list[int] = []
    invalid = 0
    for g in generations:
        line = first_line(g)
        key = normalize_command(line)
        if not key:
            invalid += 1
            continue
        if key not in order:
            order[key] = len(commands)
            commands.append(line)
            counts.append(0)
        counts[order[key]] += 1
    ranked = sorted(range(len(commands)), key=lambda i: (-counts[i], i))
    return [commands[i] for i in ranked], np.array([counts[i] for i in ranked], dtype=np.float64), invalid


def tally_proposals(
    generations: Sequence[Sequence[str]], admissible: Sequence[Sequence[str] | None], fallback: Fallback = "drop"
) -> Proposals:
    """Turn each prompt's sampled texts into :class:`~prior_wrappers.priors.base.Proposals`: counted against
    the prompt's admissible commands (:func:`count_matches`), or, where its list is ``None`` (a free-text env),
    as the distinct generations (:func:`count_free_text`).

    :param generations: per prompt, its k sampled texts (only the first line of each is read).
    :param admissible: per prompt, its admissible commands or ``None``.
    :param fallback: what an invalid generation counts as when there is an admissible list.
    """
    commands, counts, texts, invalid = [], [], [], []
    for gens, adm in zip(generations, admissible):
        gens = [first_line(g) for g in gens]
        if adm is None:
            cmds, c, bad = count_free_text(gens)
        else:
            cmds, (c, bad) = list(adm), count_matches(gens, adm, fallback)
        commands.append(cmds)
        counts.append(c)
        texts.append(gens)
        invalid.append(bad)
    total = sum(len(g) for g in texts)
    return Proposals(commands, counts, texts, invalid_rate=sum(invalid) / max(total, 1), invalid=invalid)
