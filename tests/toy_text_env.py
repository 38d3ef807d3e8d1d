"""A tiny text env for the wrapper tests: walk east along a corridor to the exit."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import gymnasium as gym

from prior_wrappers import FunctionPrior


class CorridorTextEnv(gym.Env):
    """Rooms 0..length-1; "go east" moves towards the exit in the last room. Odd rooms add a distractor command."""

    metadata = {"render_modes": []}
    prompt_example = "Observation: You are in room 1 of 3. The exit is to the east.\nAction: go east"

    def __init__(self, length: int = 4, max_steps: int = 12, n_commands: int = 3) -> None:
        self.length = length
        self.max_steps = max_steps
        self.n_commands = n_commands
        self.observation_space = gym.spaces.Text(max_length=200)
        self.action_space = gym.spaces.Text(max_length=50)
        self.pos = 0
        self.t = 0

    def _info(self) -> dict:
        commands = ["go east", "go west", "wait"][: self.n_commands]
        if self.pos % 2 == 1:
            commands.append("look at the painting")
        return {"admissible_commands": commands, "task": "reach the exit", "is_success": self.pos == self.length - 1}

    def _obs(self) -> str:
        return f"You are in room {self.pos + 1} of {self.length}. The exit is to the east."

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.pos, self.t = 0, 0
        return self._obs(), self._info()

    def step(self, action):
        if not isinstance(action, str):
            raise TypeError("CorridorTextEnv takes str commands")
        self.t += 1
        if action == "go east":
            self.pos = min(self.pos + 1, self.length - 1)
        elif action == "go west":
            self.pos = max(self.pos - 1, 0)
        won = self.pos == self.length - 1
        return self._obs(), float(won), won, self.t >= self.max_steps and not won, self._info()


def east(prompt: str, commands: Sequence[str]) -> list[float]:
    """A prior that knows the way: "go east" far above every other command."""
    return [3.0 if c == "go east" else 0.0 for c in commands]


class CountingPrior(FunctionPrior):
    """A function prior (default :func:`east`) that records every score call: its prompts, one list per call."""

    def __init__(self, fn: Callable[[str, Sequence[str]], Sequence[float]] = east) -> None:
        super().__init__(fn)
        self.calls: list[list[str]] = []

    def score(self, prompts, candidates, **kw):
        self.calls.append(list(prompts))
        return super().score(prompts, candidates, **kw)
