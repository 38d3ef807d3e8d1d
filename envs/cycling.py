"""Which game an env plays next: an explicitly requested one (checked against the env's split), else the next of a
shuffled pass through all of them (reshuffled by the env's ``np_random`` after each pass)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

import numpy as np

T = TypeVar("T")


class ShuffledCycle(Generic[T]):
    """Cycles through an env's games (files, seeds, variations) in shuffled passes, as TextWorld's and ALFWorld's own
    envs do: every game once per pass. ``restart()`` (on ``reset(seed=...)``) starts a new pass."""

    def __init__(self) -> None:
        self._order: list[T] = []

    def restart(self) -> None:
        self._order = []

    def pick(
        self,
        items: Sequence[T],
        rng: np.random.Generator,
        wanted: T | None = None,
        not_found: Callable[[], str] | None = None,
    ) -> T:
        """``wanted`` if given (a ``ValueError`` with ``not_found()``'s message when it is not in ``items``), else
        the next game of the pass; an explicit pick leaves the pass where it was."""
        if wanted is not None:
            if wanted not in items:
                raise ValueError(not_found() if not_found else f"{wanted!r} is not one of this env's games")
            return wanted
        if not self._order:
            self._order = [items[int(i)] for i in rng.permutation(len(items))]
        return self._order.pop(0)
