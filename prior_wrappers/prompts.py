"""The prompt that turns a text state into the context the LLM scores commands from."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TypeAlias


@dataclass(frozen=True)
class TextState:
    """Everything the prompt may use about one decision point."""

    observation: str
    admissible: list[str]
    task: str = ""
    history: tuple[tuple[str, str], ...] = ()  # (observation, action) pairs, oldest first
    example: str | None = None  # an in-domain example episode (the env's, or Demonstrations.text())


PromptFn: TypeAlias = Callable[[TextState], str]


def one_line(text: str) -> str:
    """Collapse newlines and runs of whitespace: commands must stay on one "Action:" line."""
    return " ".join(text.split())


_NUMBERED_EXAMPLES = re.compile(r"^Example 1:\n")


def format_examples(episodes: Sequence[str]) -> str:
    """Several example episodes as one text: "Example 1:\\n<episode>\\n\\nExample 2:\\n<episode>". The
    template shows such a text as it is (its own "Example:" header is for a single unnumbered example)."""
    return "\n\n".join(f"Example {i}:\n{episode.strip()}" for i, episode in enumerate(episodes, 1))


@dataclass(frozen=True)
class PromptTemplate:
    """The default prompt: instruction, optional example episode, task, recent history, current observation.

    ::

        You are playing a text game. Choose the next action.
        Example:
        <example episode>   (numbered examples, see format_examples, replace these two lines)

        Task: make a tomato salad
        Observation: <older observation>
        Action: <what was done>
        Observation: <current observation>
        Action:

    The engine appends `` <candidate>`` to the final ``Action:``. Any ``Callable[[TextState], str]`` can replace it.

    :param history: how many previous (observation, action) pairs to show.
    :param instruction: first line of the prompt.
    :param use_example: include the env's example episode when it has one (small models rank far better with it).
    """

    history: int = 2
    instruction: str = "You are playing a text game. Choose the next action."
    use_example: bool = True

    def __call__(self, state: TextState) -> str:
        lines = [self.instruction]
        if self.use_example and state.example:
            example = state.example.strip()
            lines += [example, ""] if _NUMBERED_EXAMPLES.match(example) else ["Example:", example, ""]
        if state.task:
            lines.append(f"Task: {one_line(state.task)}")
        recent: Sequence[tuple[str, str]] = state.history[-self.history :] if self.history > 0 else ()
        for obs, act in recent:
            lines += [f"Observation: {obs.strip()}", f"Action: {one_line(act)}"]
        lines += [f"Observation: {state.observation.strip()}", "Action:"]
        return "\n".join(lines)
