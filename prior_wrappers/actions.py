"""What text envs return and what a slot index means: validating env output into a :class:`TextState`, and
resolving a policy's action to the command the env receives (for :class:`~prior_wrappers.core.PriorCore`, the
core of the three wrappers)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Literal, NamedTuple

import numpy as np

from prior_wrappers.prompts import TextState
from prior_wrappers.spaces import ACTION_MASK

if TYPE_CHECKING:
    from prior_wrappers.slots import Slots

InvalidAction = Literal["cycle", "resample", "raise"]
INVALID_ACTIONS: tuple[str, ...] = ("cycle", "resample", "raise")


def check_invalid_action(invalid_action: str) -> None:
    """Raise ``ValueError`` unless ``invalid_action`` is one of :data:`INVALID_ACTIONS`."""
    if invalid_action not in INVALID_ACTIONS:
        raise ValueError(f"invalid_action must be one of {INVALID_ACTIONS}, got {invalid_action!r}")


def validate_actions(actions: Sequence[str] | None) -> list[str] | None:
    """Check the ``actions=[...]`` names of a fixed discrete action set: distinct non-empty strings.

    :param actions: one name per action index of the env, or ``None``.
    :return: the names as a list, or ``None``.
    """
    if actions is None:
        return None
    if isinstance(actions, str):
        raise TypeError(f"actions must be a list of action names, not a single string; wrap it: [{actions!r}]")
    names = list(actions)
    if not names:
        raise ValueError("actions=[] names no action; give one name per action index of the env")
    for i, name in enumerate(names):
        if not isinstance(name, str) or not name.strip():
            raise ValueError(f"actions[{i}] = {name!r} is not a non-empty string")
    if len(set(names)) != len(names):
        dupes = sorted({n for n in names if names.count(n) > 1})
        raise ValueError(f"actions must have distinct names, one per action index of the env; repeated: {dupes}")
    return names


def make_text_state(
    observation: object,
    info: dict,
    *,
    history: Sequence[tuple[str, str]] = (),
    example: str | None = None,
    actions: Sequence[str] | None = None,
) -> TextState:
    """Validate what a text env returned and gather it into a :class:`TextState`.

    Admissible commands come from ``info["admissible_commands"]`` (else from ``actions``); duplicates are
    dropped, keeping the first. ``info["admissible_commands"] is None`` (and no ``actions``) is a free-text env:
    the state has ``free_text=True`` and no admissible commands (only ``prior_mode="propose"`` handles it).
    An empty list is a state with nothing to choose, as some envs report at game over: it gets no valid slot and
    no prior call, and :func:`resolve_action` refuses a choice in it.
    """
    if not isinstance(observation, str):
        raise TypeError(
            f"text envs must return str observations, got {type(observation).__name__}; for an env with "
            "non-text observations pass observation_to_text=... (and actions=[...] for a fixed discrete action "
            "set) to LLMPriorWrapper, VecLLMPrior or GymVectorLLMPrior"
        )
    admissible = info.get("admissible_commands", actions)
    if admissible is None and actions is None and "admissible_commands" in info:  # a free-text env
        return TextState(
            observation=observation,
            admissible=[],
            task=str(info.get("task", "")),
            history=tuple(history),
            example=example,
            free_text=True,
        )
    if admissible is None:
        raise ValueError(
            "the env reported no info['admissible_commands'] and the wrapper was given no actions=[...]; "
            "text envs must list their valid commands (or set it to None to say they take free text)"
        )
    # empty: nothing to choose (game over); resolve_action refuses a choice
    admissible = list(dict.fromkeys(admissible))
    for c in admissible:
        if not isinstance(c, str) or not c.strip():
            raise ValueError(f"admissible command {c!r} is not a non-empty string")
    return TextState(
        observation=observation,
        admissible=admissible,
        task=str(info.get("task", "")),
        history=tuple(history),
        example=example,
    )


class ResolvedAction(NamedTuple):
    """What one slot index means in the current state.

    :param command: the command sent to the env.
    :param invalid: True when the chosen slot was empty (masked).
    :param slot: the valid slot whose command runs (``info["executed_slot"]``); the action itself when valid.
    """

    command: str
    invalid: bool
    slot: int


def resolve_action(
    action: object, slots: Slots, rng: np.random.Generator, invalid_action: InvalidAction
) -> ResolvedAction:
    """The command that slot index ``action`` stands for in the state laid out in ``slots``.

    A valid slot ``j`` runs its own command. An empty (masked) slot ``j`` with ``n`` valid slots:

    - ``"cycle"`` (default): runs valid slot ``j % n``, deterministically. Action ``j`` in state ``s`` always
      means the same command, so a policy that ignores the mask (stock SB3 ``DQN``/``PPO``) stores a real,
      reproducible transition ``(s, j)`` in its buffer.
    - ``"resample"``: runs a slot drawn from the prior over the valid slots with ``rng``. The executed command
      differs from what slot ``j`` means, so a stock algorithm's buffer mislabels that transition; use it only
      with algorithms that never pick empty slots.
    - ``"raise"``: raises ``ValueError``.

    :param action: the slot index chosen by the policy (an int or a one-element array).
    :param slots: the current state's slots.
    :param rng: the generator ``"resample"`` draws from.
    :param invalid_action: ``"cycle"``, ``"resample"`` or ``"raise"``.
    """
    check_invalid_action(invalid_action)
    index = int(np.asarray(action).reshape(-1)[0]) if np.ndim(action) else int(action)  # type: ignore[arg-type, call-overload]
    k = len(slots.observation[ACTION_MASK])
    if not 0 <= index < k:
        raise ValueError(f"action {index} is outside the action space Discrete({k})")
    n = len(slots.candidates)
    if n == 0:
        raise ValueError(
            "the env listed no admissible commands for its current state (info['admissible_commands'] == []), so "
            "there is nothing to choose; an env may do so only where an episode ends (the wrappers then give the "
            "state no valid slot). Call reset(), or fix the env"
        )
    if index < n:
        return ResolvedAction(slots.candidates[index], False, index)
    if invalid_action == "raise":
        raise ValueError(
            f"action {index} selects an empty slot (only {n} admissible commands); use the "
            "observation's action_mask or MaskablePPO, or invalid_action='cycle'"
        )
    if invalid_action == "cycle":
        slot = index % n
    else:
        probs = np.exp(slots.logprobs - slots.logprobs.max())
        slot = int(rng.choice(n, p=probs / probs.sum()))
    return ResolvedAction(slots.candidates[slot], True, slot)
