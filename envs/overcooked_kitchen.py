"""The kitchen under the Overcooked text env: grid, items, shortest paths and the rules of handling food.

Our own implementation from the description in METHOD.md (the reference engine is not used). A kitchen is a
grid of floor cells (where the agent walks) and counter cells (where things lie). The agent interacts with a
counter cell from a floor cell next to it (4-neighbourhood). It carries one thing at a time. Ingredients
(tomato, lettuce, onion) are chopped on a cutting board; only chopped ingredients go into the bowl; a bowl is
served at the serving counter.

Layout characters: ``-`` counter, ``B`` cutting board, ``S`` serving counter, ``" "`` floor, and on a counter
``t`` tomato, ``l`` lettuce, ``o`` onion, ``p`` potato, ``f`` fish, ``b`` bowl. :func:`random_layout` draws a kitchen
from a seed.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

import numpy as np

Pos = tuple[int, int]

INGREDIENT_CODES = {"t": "tomato", "l": "lettuce", "o": "onion", "p": "potato", "f": "fish"}
_NEIGHBOURS: tuple[Pos, ...] = ((-1, 0), (1, 0), (0, -1), (0, 1))  # up, down, left, right: the tie-break order

# 7x7 kitchens. The tomato salad has one cutting board; the tomato-lettuce salad two, and an onion as distractor.
TOMATO_LAYOUT: tuple[str, ...] = (
    "--tB---",
    "-     S",
    "-     -",
    "b     -",
    "-     -",
    "-     -",
    "-------",
)
TOMATO_LETTUCE_LAYOUT: tuple[str, ...] = (
    "-tBl-B-",
    "-     S",
    "-     -",
    "b     -",
    "-     o",
    "-     -",
    "-------",
)


def random_layout(seed: int, things: str, rows: int = 7, cols: int = 9) -> tuple[str, ...]:
    """A kitchen drawn from ``seed``: counters around a ``rows - 2`` by ``cols - 2`` floor, and ``things`` (layout
    characters, e.g. ``"tlopfbBBS"``) each on its own wall counter, corners excluded (every one is reachable).

    >>> random_layout(0, "tbBS", rows=4, cols=5)
    ('---B-', 'b   -', 'S   -', '--t--')
    """
    if rows < 3 or cols < 3:
        raise ValueError(f"a kitchen needs at least 3 rows and 3 columns, got {rows}x{cols}")
    walls = [(0, c) for c in range(1, cols - 1)] + [(rows - 1, c) for c in range(1, cols - 1)]
    walls += [(r, 0) for r in range(1, rows - 1)] + [(r, cols - 1) for r in range(1, rows - 1)]
    if len(things) > len(walls):
        raise ValueError(
            f"{len(things)} things do not fit on the {len(walls)} wall counters of a {rows}x{cols} kitchen"
        )
    grid = [["-"] * cols] + [["-"] + [" "] * (cols - 2) + ["-"] for _ in range(rows - 2)] + [["-"] * cols]
    cells = np.random.default_rng(seed).permutation(len(walls))[: len(things)]
    for thing, index in zip(things, cells):
        r, c = walls[int(index)]
        grid[r][c] = thing
    return tuple("".join(row) for row in grid)


@dataclass
class Item:
    """An ingredient or the bowl. ``contents`` holds the chopped ingredients in a bowl."""

    kind: str
    chopped: bool = False
    contents: list[Item] = field(default_factory=list)

    @property
    def is_bowl(self) -> bool:
        return self.kind == "bowl"

    def describe(self) -> str:
        """``tomato``, ``chopped tomato``, ``empty bowl``, ``bowl with chopped tomato and chopped lettuce``."""
        if self.is_bowl:
            if not self.contents:
                return "empty bowl"
            return "bowl with " + " and ".join(item.describe() for item in self.contents)
        return f"chopped {self.kind}" if self.chopped else self.kind

    def noun(self) -> str:
        """How commands name the item: as :meth:`describe`, but an empty bowl is just ``bowl``."""
        return "bowl" if self.is_bowl and not self.contents else self.describe()


class Kitchen:
    """A kitchen grid with its items; the agent's position and what it holds.

    >>> kitchen = Kitchen(TOMATO_LAYOUT)
    >>> kitchen.agent = (3, 3)
    >>> len(kitchen.path_to(kitchen.boards[0]))  # moves to the floor cell below the board
    2

    Shortest paths between floor cells are computed once (breadth-first search from every floor cell), so a
    path query is a table walk.
    """

    def __init__(self, layout: tuple[str, ...]) -> None:
        if len({len(row) for row in layout}) != 1:
            raise ValueError("every row of a kitchen layout must have the same length")
        self.layout = layout
        self.floor: list[Pos] = []
        self.boards: list[Pos] = []
        serving: Pos | None = None
        self.counters: set[Pos] = set()  # every non-floor cell, boards and the serving counter included
        self._initial_items: dict[Pos, str] = {}
        for r, row in enumerate(layout):
            for c, char in enumerate(row):
                if char == " ":
                    self.floor.append((r, c))
                    continue
                self.counters.add((r, c))
                if char == "B":
                    self.boards.append((r, c))
                elif char == "S":
                    serving = (r, c)
                elif char in INGREDIENT_CODES or char == "b":
                    self._initial_items[(r, c)] = INGREDIENT_CODES.get(char, "bowl")
                elif char != "-":
                    raise ValueError(f"unknown layout character {char!r} at row {r}, column {c}")
        if serving is None or not self.boards or not self.floor:
            raise ValueError("a kitchen needs floor, a serving counter and at least one cutting board")
        self.serving: Pos = serving
        self._distances = {start: self._bfs(start) for start in self.floor}
        self.items_at: dict[Pos, Item] = {}
        self.agent: Pos = self.floor[0]
        self.held: Item | None = None
        self.reset_items()

    def _bfs(self, start: Pos) -> dict[Pos, int]:
        floor = set(self.floor)
        distance = {start: 0}
        queue = deque([start])
        while queue:
            r, c = queue.popleft()
            for dr, dc in _NEIGHBOURS:
                nxt = (r + dr, c + dc)
                if nxt in floor and nxt not in distance:
                    distance[nxt] = distance[(r, c)] + 1
                    queue.append(nxt)
        return distance

    def reset_items(self) -> None:
        """Put every item back where the layout has it; empty the agent's hands."""
        self.items_at = {pos: Item(kind) for pos, kind in self._initial_items.items()}
        self.held = None

    @property
    def plain_counters(self) -> list[Pos]:
        """Counters that are neither cutting boards nor the serving counter, in reading order."""
        return sorted(self.counters - set(self.boards) - {self.serving})

    def find(self, kind: str) -> tuple[str, Pos | None]:
        """Where the item of ``kind`` is: ``("held", None)``, ``("counter", pos)``, ``("bowl", pos or None)``
        (in the bowl, which lies at pos or is held) or ``("gone", None)`` (served)."""
        if self.held is not None:
            if self.held.kind == kind:
                return "held", None
            if any(item.kind == kind for item in self.held.contents):
                return "bowl", None
        for pos, item in self.items_at.items():
            if item.kind == kind:
                return "counter", pos
            if any(inner.kind == kind for inner in item.contents):
                return "bowl", pos
        return "gone", None

    def item(self, kind: str) -> Item | None:
        """The item of ``kind`` wherever it is (held, on a counter, in the bowl); ``None`` once served."""
        candidates = list(self.items_at.values()) + ([self.held] if self.held is not None else [])
        for item in candidates:
            if item.kind == kind:
                return item
            for inner in item.contents:
                if inner.kind == kind:
                    return inner
        return None

    def path_to(self, target: Pos) -> list[Pos]:
        """The floor cells to walk through (the agent's cell excluded) to stand next to the counter ``target``.

        Empty when the agent already stands next to it; ties go to the first neighbour in up, down, left,
        right order, so paths are deterministic.
        """
        from_agent = self._distances[self.agent]
        best: Pos | None = None
        for dr, dc in _NEIGHBOURS:
            cell = (target[0] + dr, target[1] + dc)
            if cell in from_agent and (best is None or from_agent[cell] < from_agent[best]):
                best = cell
        if best is None:
            raise ValueError(f"counter {target} cannot be reached from {self.agent}")
        # Step to the neighbour closest to the goal cell until there (distances from the goal are tabulated).
        to_goal = self._distances[best]
        cell = self.agent
        path = []
        while cell != best:
            r, c = cell
            cell = min(
                ((r + dr, c + dc) for dr, dc in _NEIGHBOURS if (r + dr, c + dc) in to_goal),
                key=lambda p: to_goal[p],
            )
            path.append(cell)
        return path

    def nearest_free_counter(self) -> Pos | None:
        """The plain counter with nothing on it that is fewest moves away (``None`` when all are full)."""
        best, best_steps = None, None
        for pos in self.plain_counters:
            if pos in self.items_at:
                continue
            try:
                steps = len(self.path_to(pos))
            except ValueError:
                continue
            if best_steps is None or steps < best_steps:
                best, best_steps = pos, steps
        return best

    def adjacent(self, pos: Pos) -> bool:
        """Whether the agent stands next to ``pos``."""
        return abs(self.agent[0] - pos[0]) + abs(self.agent[1] - pos[1]) == 1

    def visible(self, pos: Pos, radius: int) -> bool:
        """Whether ``pos`` is within ``radius`` cells of the agent in both directions (a square window)."""
        return max(abs(self.agent[0] - pos[0]), abs(self.agent[1] - pos[1])) <= radius
