"""Gymnasium's FrozenLake told in sentences, with the commands "move left/down/right/up"."""

from __future__ import annotations

from typing import Any

from gymnasium.envs.toy_text.frozen_lake import FrozenLakeEnv

from envs.protocol import TextEnv, match_command, normalize_command

# FrozenLake's action indices, in its order (0 left, 1 down, 2 right, 3 up).
COMMANDS: tuple[str, ...] = ("move left", "move down", "move right", "move up")
_OFFSETS = {0: (0, -1), 1: (1, 0), 2: (0, 1), 3: (-1, 0)}
_TILE_WORDS = {"S": "frozen ice", "F": "frozen ice", "H": "a hole", "G": "the goal"}


def _cell(row: int, col: int) -> str:
    return f"row {row + 1}, column {col + 1}"


def _offset_words(d_row: int, d_col: int) -> str:
    parts = []
    if d_row:
        parts.append(f"{abs(d_row)} step{'s' * (abs(d_row) != 1)} {'down' if d_row > 0 else 'up'}")
    if d_col:
        parts.append(f"{abs(d_col)} step{'s' * (abs(d_col) != 1)} {'right' if d_col > 0 else 'left'}")
    return " and ".join(parts)


class TextFrozenLake(TextEnv):
    """FrozenLake (4x4 or 8x8, not slippery by default) described in plain sentences.

    >>> env = TextFrozenLake(map_name="4x4")
    >>> obs, info = env.reset(seed=0)
    >>> info["admissible_commands"]
    ['move left', 'move down', 'move right', 'move up']
    >>> obs, reward, terminated, truncated, info = env.step("move down")
    >>> obs.split(". ")[0]
    'You move down'

    The observation says where the agent stands (rows and columns counted from 1 at the top left), where
    the goal is relative to it, what lies in each of the four directions and where all the holes are. The four
    commands are always admissible (walking into the edge of the lake keeps you in place, as in FrozenLake).
    Reward 1 on reaching the goal, else 0; an episode ends in the goal or in a hole (``terminated``); the
    registered ids add Gymnasium's ``TimeLimit`` (20 steps for 4x4, 60 for 8x8) for ``truncated``.

    An unknown command is a no-op step: reward 0, the agent stays, and the observation starts with
    ``Unknown command "...".`` followed by the list of commands.

    :param map_name: ``"4x4"`` or ``"8x8"``, gymnasium's maps.
    :param is_slippery: gymnasium's slippery ice (the move succeeds with probability 1/3 only).
    :param desc: a custom map (rows of ``S``, ``F``, ``H``, ``G``); overrides ``map_name``.
    :param render_mode: ``None`` or ``"ansi"`` (gymnasium's text grid).
    """

    metadata = {"render_modes": ["ansi"]}
    prompt_example = (
        "Observation: You stand at row 2, column 2 of a frozen lake with 3 rows and 3 columns. The goal is at "
        "row 3, column 3, 1 step down and 1 step right of you. Left: frozen ice. Down: a hole. Right: frozen "
        "ice. Up: frozen ice. Holes: row 3, column 2.\n"
        "Action: move right\n"
        "Observation: You move right. You stand at row 2, column 3 of a frozen lake with 3 rows and 3 columns. "
        "The goal is at row 3, column 3, 1 step down of you. Left: frozen ice. Down: the goal. Right: the edge "
        "of the lake. Up: frozen ice. Holes: row 3, column 2.\n"
        "Action: move down\n"
        "Observation: You move down. You reached the goal at row 3, column 3!"
    )

    def __init__(
        self,
        map_name: str = "4x4",
        is_slippery: bool = False,
        desc: list[str] | None = None,
        render_mode: str | None = None,
    ) -> None:
        super().__init__()
        if desc is None and map_name not in ("4x4", "8x8"):
            raise ValueError(f"map_name must be '4x4' or '8x8' (or pass desc=...), got {map_name!r}")
        if render_mode not in (None, "ansi"):
            raise ValueError(f"render_mode must be None or 'ansi', got {render_mode!r}")
        self.render_mode = render_mode
        self._lake = FrozenLakeEnv(render_mode=render_mode, desc=desc, map_name=map_name, is_slippery=is_slippery)
        self.is_slippery = is_slippery
        # gymnasium annotates desc as its list[str] argument; it holds the np.asarray(desc, dtype="c") bytes
        self._grid = [[c.decode() for c in row] for row in self._lake.desc]  # type: ignore[attr-defined]
        self.nrow, self.ncol = len(self._grid), len(self._grid[0])
        self._goal = next((r, c) for r in range(self.nrow) for c in range(self.ncol) if self._grid[r][c] == "G")
        self._holes = [(r, c) for r in range(self.nrow) for c in range(self.ncol) if self._grid[r][c] == "H"]
        size = f"{self.nrow} rows and {self.ncol} columns"
        self.task = (
            f"Walk across a frozen lake of {size} to the goal at {_cell(*self._goal)} without falling into a hole."
        )

    @property
    def position(self) -> tuple[int, int]:
        """The agent's (row, column), counted from 0 at the top left."""
        return divmod(int(self._lake.s), self.ncol)

    def _tile(self, row: int, col: int) -> str:
        return self._grid[row][col]

    def describe(self) -> str:
        """The sentences that describe the current state (without the feedback of the last command)."""
        row, col = self.position
        tile = self._tile(row, col)
        if tile == "G":
            return f"You reached the goal at {_cell(row, col)}!"
        if tile == "H":
            return f"You fell into a hole at {_cell(row, col)}. The episode is over."
        goal_row, goal_col = self._goal
        sentences = [
            f"You stand at {_cell(row, col)} of a frozen lake with {self.nrow} rows and {self.ncol} columns.",
            f"The goal is at {_cell(goal_row, goal_col)}, {_offset_words(goal_row - row, goal_col - col)} of you.",
        ]
        for action, command in enumerate(COMMANDS):
            d_row, d_col = _OFFSETS[action]
            r, c = row + d_row, col + d_col
            inside = 0 <= r < self.nrow and 0 <= c < self.ncol
            what = _TILE_WORDS[self._tile(r, c)] if inside else "the edge of the lake"
            sentences.append(f"{command.split()[1].capitalize()}: {what}.")
        holes = "; ".join(_cell(r, c) for r, c in self._holes) or "none"
        sentences.append(f"Holes: {holes}.")
        if self.is_slippery:
            sentences.append("The ice is slippery: you may slide sideways.")
        return " ".join(sentences)

    def _info(self) -> dict[str, Any]:
        return {
            "admissible_commands": list(COMMANDS),
            "task": self.task,
            "is_success": self.position == self._goal,
        }

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[str, dict]:
        super().reset(seed=seed)
        self._lake.reset(seed=seed)
        return self.describe(), self._info()

    def step(self, command: str) -> tuple[str, float, bool, bool, dict]:
        text = normalize_command(command)
        matched = match_command(text, COMMANDS)
        if matched is None:
            feedback = f'Unknown command "{text}"; you stay where you are. Commands: {", ".join(COMMANDS)}.'
            return f"{feedback} {self.describe()}", 0.0, self._tile(*self.position) in "GH", False, self._info()

        action = COMMANDS.index(matched)
        before = self.position
        _, reward, terminated, _, _ = self._lake.step(action)
        after = self.position
        intended = (before[0] + _OFFSETS[action][0], before[1] + _OFFSETS[action][1])
        if after == intended:
            feedback = f"You {matched}."
        elif after == before:
            feedback = f"You try to {matched}, but you stay where you are."
        else:  # slippery ice moved the agent somewhere else
            step = (after[0] - before[0], after[1] - before[1])
            moved = next(COMMANDS[a] for a, offset in _OFFSETS.items() if offset == step)
            feedback = f"You try to {matched}, but you slip and {moved}."
        return f"{feedback} {self.describe()}", float(reward), bool(terminated), False, self._info()

    def render(self) -> str | None:
        return self._lake.render() if self.render_mode == "ansi" else None
