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
    free_text: bool = False  # the env lists no admissible commands (``admissible`` is empty): it takes any text


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


@dataclass(frozen=True)
class TranscriptPrompt:
    """Episode-transcript prompt: instruction, example episode(s), task, then the episode so far, appended to.

    ::

        You are playing a text game. Choose the next action.
        Example:
        <example episode>

        Task: make a tomato salad
        Observation: <first observation>
        Action: <what was done>
        ...                          (every step of the episode since the transcript's start)
        Observation: <current observation>
        Action:

    Unlike :class:`PromptTemplate`, whose history window slides (step t+1's prompt differs from step t's right
    after the task line), step t+1's prompt is step t's prompt followed by `` <action>`` and the new observation:
    with :class:`~prior_wrappers.priors.hf.HFPrior`'s prefix-tree cache each step computes only its new tokens.
    When the shown turns and the current observation would exceed ``max_chars``, the oldest turns are dropped in
    one block, down to ``keep_fraction`` of the budget, and a line ``omitted`` takes their place: the prompt then
    re-anchors (the cache recomputes from the task line on) once per block rather than at every step.

    The prompt is a function of the state alone: where the transcript starts is replayed from the episode's
    first step, so it needs the whole episode in ``TextState.history``. Give the wrappers a ``history`` at least
    as long as the episodes (e.g. ``history=1000``); with a shorter one the oldest turns slide out one by one.

    :param max_chars: budget for the shown turns and the current observation, in characters (about 4 per token
        of English text for SmolLM2's tokenizer: 6000 characters are about 1,500 tokens).
    :param keep_fraction: after a drop, the turns kept fill at most this fraction of ``max_chars``.
    :param instruction: first line of the prompt.
    :param use_example: include the example episode(s) when the state has them.
    :param omitted: the line that stands for dropped turns.
    """

    max_chars: int = 6000
    keep_fraction: float = 0.5
    instruction: str = "You are playing a text game. Choose the next action."
    use_example: bool = True
    omitted: str = "(earlier steps omitted)"

    def __post_init__(self) -> None:
        if self.max_chars < 1:
            raise ValueError(f"max_chars must be >= 1, got {self.max_chars}")
        if not 0.0 <= self.keep_fraction < 1.0:
            raise ValueError(f"keep_fraction must be in [0, 1), got {self.keep_fraction}")

    @staticmethod
    def _turn(obs: str, act: str) -> str:
        return f"Observation: {obs.strip()}\nAction: {one_line(act)}"

    @staticmethod
    def _current(obs: str) -> str:
        return f"Observation: {obs.strip()}\nAction:"

    def start(self, state: TextState) -> int:
        """Index in ``state.history`` of the first turn shown, replayed step by step from the episode's start."""
        history = state.history
        turn_sizes = [len(self._turn(o, a)) + 1 for o, a in history]  # + 1: the newline after each turn
        keep = self.keep_fraction * self.max_chars
        start, shown = 0, 0  # first turn shown, characters of turns[start:m]
        for m in range(len(history) + 1):
            obs = history[m][0] if m < len(history) else state.observation
            current = len(self._current(obs))
            if shown + current > self.max_chars:
                while start < m and shown + current > keep:
                    shown -= turn_sizes[start]
                    start += 1
            if m < len(history):
                shown += turn_sizes[m]
        return start

    def __call__(self, state: TextState) -> str:
        lines = [self.instruction]
        if self.use_example and state.example:
            example = state.example.strip()
            lines += [example, ""] if _NUMBERED_EXAMPLES.match(example) else ["Example:", example, ""]
        if state.task:
            lines.append(f"Task: {one_line(state.task)}")
        start = self.start(state)
        if start:
            lines.append(self.omitted)
        lines += [self._turn(obs, act) for obs, act in state.history[start:]]
        lines.append(self._current(state.observation))
        return "\n".join(lines)


_EXAMPLE_HEADERS = ("Example:\n", "Example 1:\n")
_STATE_STARTS = ("Task:", "Observation:")


def strip_examples(prompt: str, *, omitted: str = TranscriptPrompt.omitted) -> str:
    """``prompt`` without its in-context example block: what :class:`PromptTemplate` and :class:`TranscriptPrompt`
    render with ``use_example=False`` for the same state (a prompt without examples comes back unchanged).

    The block is the ``Example:`` (or ``Example 1:``) line that follows the instruction, the example text, and
    the blank line after it. It ends where the state begins: at the first blank line followed by the ``Task:``
    line, or, in a prompt without a task, at the first blank line followed by an ``Observation:`` line (or
    TranscriptPrompt's ``omitted`` line). Blank lines inside the state's own observations (TextWorld has them)
    are never reached, since they come after that point; blank lines inside the example text are fine unless a
    ``Task:`` line follows one (or, without a task, an ``Observation:`` line), as in an example written with a
    blank line between its steps. The episodes of :func:`format_examples` and
    :meth:`~prior_wrappers.demonstrations.Demonstrations.text` (observations on one line) and the envs'
    ``prompt_example`` texts have none. A prompt in another format comes back unchanged.

    >>> state = TextState("You see a bowl.", ["take bowl"], task="eat", example="Observation: a\\nAction: b")
    >>> strip_examples(PromptTemplate()(state)) == PromptTemplate(use_example=False)(state)
    True

    :param prompt: a prompt built by :class:`PromptTemplate` or :class:`TranscriptPrompt`.
    :param omitted: TranscriptPrompt's line for dropped turns (another state start in a prompt without a task).
    """
    header = -1
    for h in _EXAMPLE_HEADERS:
        at = prompt.find("\n" + h)
        if at >= 0 and (header < 0 or at < header):
            header = at
    if header < 0:
        return prompt
    starts = (*_STATE_STARTS, omitted) if omitted else _STATE_STARTS
    if any(prompt.startswith(s) or f"\n{s}" in prompt[: header + 1] for s in starts):
        return prompt  # the "Example" line is part of the state (an observation), not an example block
    body = header + 1
    end = prompt.find("\n\nTask:", body)
    if end < 0:
        found = [i for i in (prompt.find(f"\n\n{s}", body) for s in starts[1:]) if i >= 0]
        end = min(found) if found else -1
    if end < 0:
        return prompt
    return prompt[:header] + "\n" + prompt[end + 2 :]
