"""The text-environment protocol that every env in :mod:`envs` follows, and its one shared base class.

A text env is a :class:`gymnasium.Env` with ``str`` observations and ``str`` commands:

- ``reset(seed=..., options=...) -> (observation, info)``, ``step(command) -> (observation, reward,
  terminated, truncated, info)``;
- ``info["admissible_commands"]``: the commands valid now, a non-empty ``list[str]`` after every reset and
  every step, the last step of an episode included (the wrappers score the terminal observation's commands so
  that SB3 can bootstrap on time-outs). A *free-text* env (a parser game that takes any text and lists no
  commands) sets it to ``None`` (:data:`FREE_TEXT`) on every step instead; the key is still present, so that a
  missing list stays an error. The wrappers then need ``prior_mode="propose"``: the prior's generations become
  the candidates;
- ``info["task"]``: the goal, in words; ``info["is_success"]``: ``True`` on the step that wins, else ``False``;
- ``prompt_example``: a short in-domain example episode for the prompt (or ``None``).

Commands are checked the same way everywhere (:func:`normalize_command`): a command that is not a string is a
caller bug and raises :class:`TypeError`; whitespace runs (newlines and tabs included) collapse to one space so
that one step is always one command; what is left is matched against the admissible commands, ignoring case.
A command that matches none (odd unicode included) is *not* an error: our own envs treat it as a no-op step
with a short feedback sentence, TextWorld and ALFWorld answer as their games do ("Nothing happens.").
"""

from __future__ import annotations

import string
from collections.abc import Sequence
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

# Printable ASCII (letters, digits, punctuation, space, tab, newline, carriage return) plus Latin-1's printable
# half, so that observations of generated games and typed commands with accents stay inside the spaces.
TEXT_CHARSET: frozenset[str] = frozenset(string.printable) | frozenset(chr(c) for c in range(0xA0, 0x100))
# Generous bounds: a TextWorld or ALFWorld observation rarely passes 3,000 characters, a command 100.
OBSERVATION_MAX_LENGTH = 16_384
COMMAND_MAX_LENGTH = 256


# The value of ``info["admissible_commands"]`` in a free-text env: it takes any text and lists no commands.
FREE_TEXT = None


def observation_space(max_length: int = OBSERVATION_MAX_LENGTH) -> spaces.Text:
    """The ``Text`` space of our observations (may be empty: a game can answer with nothing)."""
    return spaces.Text(max_length=max_length, min_length=0, charset=TEXT_CHARSET)


def command_space(max_length: int = COMMAND_MAX_LENGTH) -> spaces.Text:
    """The ``Text`` space of commands; a sample from it is a random string, which the envs treat as invalid."""
    return spaces.Text(max_length=max_length, min_length=1, charset=TEXT_CHARSET)


def to_text(text: Any, max_length: int = OBSERVATION_MAX_LENGTH) -> str:
    """``text`` as a string of the observation space: characters outside :data:`TEXT_CHARSET` become ``?``
    (curly quotes, dashes and the like of third-party games), and it is cut to ``max_length`` characters.

    >>> to_text("It\u2019s 5\u00b0C")
    'It?s 5\xb0C'
    """
    text = "" if text is None else str(text)
    if not TEXT_CHARSET.issuperset(text):
        text = "".join(c if c in TEXT_CHARSET else "?" for c in text)
    return text[:max_length]


def normalize_command(command: Any) -> str:
    """Return ``command`` with whitespace runs collapsed to single spaces and the ends stripped.

    :raises TypeError: ``command`` is not a ``str`` (``numpy.str_`` counts as one). An integer action means
        the env was not wrapped (``LLMPriorWrapper`` maps slot indices to commands); saying so beats a
        silent no-op.
    """
    if isinstance(command, np.ndarray) and command.ndim == 0 and command.dtype.kind == "U":
        command = command.item()
    if not isinstance(command, str):
        raise TypeError(
            f"text envs take str commands, got {type(command).__name__} {command!r}; to act with slot "
            "indices, wrap the env (prior_wrappers.LLMPriorWrapper maps Discrete(K) actions to commands)"
        )
    return " ".join(command.split())


def match_command(command: str, admissible: Sequence[str]) -> str | None:
    """The admissible command that the normalised ``command`` names (ignoring case), or ``None``."""
    wanted = command.casefold()
    for candidate in admissible:
        if " ".join(candidate.split()).casefold() == wanted:
            return candidate
    return None


class TextEnv(gym.Env):
    """Base of the text envs in :mod:`envs`: the ``Text`` spaces and the ``prompt_example`` attribute.

    >>> from envs import OvercookedSalad
    >>> env = OvercookedSalad()
    >>> env.action_space.contains("pick up tomato"), env.observation_space.contains("You see a tomato.")
    (True, True)

    Subclasses set ``prompt_example`` and return the ``info`` keys of the protocol (see the module docstring).
    """

    metadata: dict[str, Any] = {"render_modes": []}
    prompt_example: str | None = None

    def __init__(self) -> None:
        self.observation_space = observation_space()
        self.action_space = command_space()
