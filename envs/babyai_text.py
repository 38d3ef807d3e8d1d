"""BabyAI levels (``minigrid``) as text envs: the agent's partial view and mission in words, six commands.

BabyAI (Chevalier-Boisvert et al., 2019) is maintained in Farama's ``minigrid`` package (MIT; the ``babyai``
extra), which has its levels (``BabyAI-GoToLocal-v0``, ``BabyAI-PickupLoc-v0``, ...) and the BabyAI bot, a
planner that solves them. This env describes what the agent sees in its 7x7 egocentric view, as GLAM's
BabyAI-Text does, and takes the six BabyAI actions as commands.
"""

from __future__ import annotations

import contextlib
import io
import re
from typing import Any

import numpy as np

from envs.protocol import TextEnv, match_command, normalize_command

# The six BabyAI actions, in minigrid's action order (minigrid's 7th, "done", is not offered).
COMMANDS: tuple[str, ...] = ("turn left", "turn right", "go forward", "pick up", "drop", "toggle")
# minigrid's object and colour encodings (minigrid.core.constants), fixed since minigrid 1.0.
_OBJECTS = {2: "wall", 3: "floor", 4: "door", 5: "key", 6: "ball", 7: "box", 8: "goal", 9: "lava"}
_COLORS = {0: "red", 1: "green", 2: "blue", 3: "purple", 4: "yellow", 5: "grey"}
_DOOR_STATES = {0: "open", 1: "closed", 2: "locked"}
_DONE = 6  # minigrid's "done" action: the agent stands still (used for commands it does not know)
# Levels of the four BabyAI families: one room (GoToLocal, PickupLoc, PutNextLocal) or a door next to the agent
# (OpenDoor) run fast; GoTo, Pickup and Open span 3x3 rooms, PutNextS5N2 two rooms.
LEVEL_EXAMPLES: tuple[str, ...] = (
    "GoToLocal",
    "PickupLoc",
    "PutNextLocal",
    "OpenDoor",
    "GoTo",
    "Pickup",
    "PutNextS5N2",
    "Open",
)


def _steps(n: int, direction: str) -> str:
    return f"{n} step{'s' * (n != 1)} {direction}"


def relative_position(forward: int, right: int) -> str:
    """Words for a cell ``forward`` steps ahead and ``right`` steps to the right (negative: left).

    >>> relative_position(2, -1), relative_position(0, 3), relative_position(1, 0)
    ('2 steps forward and 1 step left', '3 steps right', '1 step forward')
    """
    parts = []
    if forward:
        parts.append(_steps(abs(forward), "forward" if forward > 0 else "backward"))
    if right:
        parts.append(_steps(abs(right), "right" if right > 0 else "left"))
    return " and ".join(parts) or "here"


def _name(type_idx: int, color_idx: int, state: int) -> str:
    obj = _OBJECTS.get(int(type_idx), "thing")
    if obj == "wall":
        return "a wall"
    if obj == "door":
        return f"a {_DOOR_STATES.get(int(state), 'closed')} {_COLORS.get(int(color_idx), '')} door"
    if obj in ("goal", "lava"):
        return f"the {obj}" if obj == "goal" else "lava"
    return f"a {_COLORS.get(int(color_idx), '')} {obj}"


def describe_view(image: np.ndarray, carrying: Any = None) -> str:
    """The agent's egocentric view (minigrid's ``obs["image"]``, agent at the bottom middle facing up) in words.

    Every visible object (doors with their state, keys, balls, boxes) is listed by distance, with its position
    in steps forward and left/right; walls only straight ahead, left and right (the nearest one in each
    direction). Then what the agent carries and what is right in front of it.

    :param image: ``(view, view, 3)`` array of (object, colour, state) codes, indexed ``[x, y]``.
    :param carrying: the carried ``WorldObj`` (``env.unwrapped.carrying``) or ``None``.
    """
    view = image.shape[0]
    ax, ay = view // 2, view - 1
    seen: list[tuple[int, int, int, str]] = []
    walls: dict[str, int] = {}
    for x in range(view):
        for y in range(view):
            if (x, y) == (ax, ay):
                continue
            type_idx, color_idx, state = (int(v) for v in image[x, y])
            if type_idx not in _OBJECTS or _OBJECTS[type_idx] == "floor":
                continue
            forward, right = ay - y, x - ax
            if _OBJECTS[type_idx] == "wall":
                direction = "forward" if right == 0 else ("right" if right > 0 else "left") if forward == 0 else None
                if direction is not None:
                    walls[direction] = min(walls.get(direction, view), abs(forward) + abs(right))
                continue
            seen.append((abs(forward) + abs(right), forward, right, _name(type_idx, color_idx, state)))
    parts = [f"{name} {relative_position(f, r)}" for _, f, r, name in sorted(seen, key=lambda s: (s[0], -s[1], s[2]))]
    parts += [
        f"a wall {_steps(n, d)}"
        for d, n in sorted(walls.items(), key=lambda w: ("forward", "left", "right").index(w[0]))
    ]
    sentences = ["You see " + ", ".join(parts) + "." if parts else "You see nothing but the floor."]
    if carrying is not None:
        sentences.append(f"You carry a {carrying.color} {carrying.type}.")
    else:
        sentences.append("You carry nothing.")
    front = image[ax, ay - 1]
    if int(front[0]) in _OBJECTS and _OBJECTS[int(front[0])] not in ("floor",):
        sentences.append(f"Right in front of you is {_name(*front)}.")
    return " ".join(sentences)


def babyai_level_id(level: str) -> str:
    """The Gymnasium id of a BabyAI level name (``"GoToLocal"`` -> ``"BabyAI-GoToLocal-v0"``).

    :raises ImportError: ``minigrid`` is not installed.
    :raises ValueError: no such level.
    """
    try:
        import minigrid  # noqa: F401  (registers the BabyAI ids)
    except ImportError as err:
        raise ImportError("BabyAI needs minigrid: pip install 'prior-wrappers[babyai]'") from err
    import gymnasium as gym

    name = level.removeprefix("BabyAI-")
    env_id = f"BabyAI-{name}" if re.search(r"-v\d+$", name) else f"BabyAI-{name}-v0"
    if env_id not in gym.registry:
        levels = sorted(re.sub(r"-v0$", "", i.removeprefix("BabyAI-")) for i in gym.registry if i.startswith("BabyAI-"))
        raise ValueError(f"unknown BabyAI level {level!r}; minigrid has {levels}")
    return env_id


class BabyAITextEnv(TextEnv):
    """A BabyAI level as a text env.

    >>> env = BabyAITextEnv("GoToLocal")
    >>> obs, info = env.reset(seed=1)
    >>> info["task"], info["admissible_commands"]
    ('go to the purple box', ['turn left', 'turn right', 'go forward', 'pick up', 'drop', 'toggle'])
    >>> while not info["is_success"]:
    ...     obs, reward, terminated, truncated, info = env.step(env.expert_command())
    >>> terminated
    True

    **Observations** (:func:`describe_view`): the objects in the agent's partial view (7x7 cells ahead of it,
    not through walls) with colours, door states and positions in steps ("a red ball 2 steps forward and 1
    step left"), the nearest wall ahead, left and right, what it carries, and what is right in front of it.
    ``info["task"]`` is the mission ("put the red key next to the blue ball").

    **Commands**: ``turn left``, ``turn right``, ``go forward``, ``pick up``, ``drop``, ``toggle`` (opens doors
    and boxes), always all six. Any other command leaves the agent where it is and costs a step (it runs as
    minigrid's ``done`` action, which BabyAI levels do not use); the observation then starts with
    ``Unknown command "..."``. Rewards, ``terminated`` (mission done) and ``truncated`` (minigrid's step limit)
    are the level's own: ``1 - 0.9 * steps / max_steps`` on success, else 0.

    **Expert**: minigrid's BabyAI bot (``minigrid.utils.baby_ai_bot.BabyAIBot``) replans after every step,
    whatever the agent did; :meth:`expert_command` is its suggestion. It solves the original BabyAI levels but
    not e.g. ``PutNext*Carrying`` or ``KeyInBox``; where it fails or is missing, :meth:`expert_command` raises.
    A step after the episode ended changes nothing ("The episode is over.").

    :param level: a BabyAI level (``"GoToLocal"``, ``"PickupLoc"``, ``"PutNextLocal"``, ``"OpenDoor"``,
        ``"GoTo"``, ``"Pickup"``, ``"PutNext"``, ``"Open"``, ... or a full ``"BabyAI-...-v0"`` id).
    :param expert: run the bot at every step (``expert_command()``; it costs a planning step per env step).
    :param level_kwargs: passed to the level (e.g. ``room_size``, ``num_dists``, ``max_steps``).
    """

    prompt_example = (
        "Observation: You see a red ball 2 steps forward and 1 step left, a wall 4 steps forward. You carry "
        "nothing.\n"
        "Action: go forward\n"
        "Observation: You see a red ball 1 step forward and 1 step left, a wall 3 steps forward. You carry "
        "nothing.\n"
        "Action: turn left\n"
        "Observation: You see a red ball 1 step forward and 1 step right, a wall 2 steps right. You carry "
        "nothing.\n"
        "Action: go forward\n"
        "Observation: You see a red ball 1 step right. You carry nothing.\n"
        "Action: turn right"
    )

    def __init__(self, level: str = "GoToLocal", expert: bool = True, **level_kwargs: Any) -> None:
        super().__init__()
        import gymnasium as gym

        self.level_id = babyai_level_id(level)
        self.level = re.sub(r"-v0$", "", self.level_id.removeprefix("BabyAI-"))
        self._env = gym.make(self.level_id, **level_kwargs)
        self.expert = expert
        self._bot: Any = None
        self._suggestion: int | None = None
        self._bot_error: str | None = None
        self._obs: dict[str, Any] | None = None
        self._ended = False
        self._success = False
        self.task = ""

    def _describe(self) -> str:
        assert self._obs is not None
        return describe_view(self._obs["image"], self._env.unwrapped.carrying)  # type: ignore[attr-defined]

    def _info(self, success: bool = False) -> dict[str, Any]:
        carrying = self._env.unwrapped.carrying  # type: ignore[attr-defined]  # MiniGridEnv's, not gym.Env's
        return {
            "admissible_commands": list(COMMANDS),
            "task": self.task,
            "is_success": success,
            "level": self.level,
            "carrying": None if carrying is None else f"{carrying.color} {carrying.type}",
        }

    def _replan(self, action: int | None) -> None:
        if self._bot is None:
            return
        try:
            suggestion = int(self._bot.replan(action))
        except Exception as err:  # the bot gives up on some layouts (e.g. an opened box)
            self._bot, self._suggestion = None, None
            self._bot_error = f"the BabyAI bot failed on this episode ({type(err).__name__}: {err})"
            return
        self._suggestion = suggestion

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[str, dict]:
        super().reset(seed=seed)
        # minigrid prints "Sampling rejected: ..." while it builds levels
        with contextlib.redirect_stdout(io.StringIO()):
            self._obs, _ = self._env.reset(seed=seed, options=options)
        self.task = str(self._obs["mission"])
        self._ended = False
        self._success = False
        self._bot, self._suggestion, self._bot_error = None, None, None
        if self.expert:
            try:
                from minigrid.utils.baby_ai_bot import BabyAIBot
            except ImportError:
                self._bot_error = "this minigrid has no BabyAI bot (minigrid.utils.baby_ai_bot, minigrid >= 2.3)"
            else:
                try:
                    self._bot = BabyAIBot(self._env)
                except Exception as err:
                    self._bot_error = f"the BabyAI bot cannot plan this level ({type(err).__name__}: {err})"
                self._replan(None)
        return self._describe(), self._info()

    def step(self, command: str) -> tuple[str, float, bool, bool, dict]:
        text = normalize_command(command)
        if self._obs is None:
            raise RuntimeError("call reset() before step()")
        if self._ended:
            return f"The episode is over. {self._describe()}", 0.0, True, False, self._info(self._success)
        known = match_command(text, COMMANDS)
        action = COMMANDS.index(known) if known is not None else _DONE
        self._obs, reward, terminated, truncated, _ = self._env.step(action)
        self._success = bool(terminated and float(reward) > 0)
        self._ended = bool(terminated)
        if not self._ended:
            self._replan(action)
        obs = self._describe()
        if known is None:
            obs = f'Unknown command "{text}". The commands are: {", ".join(COMMANDS)}. {obs}'
        return obs, float(reward), bool(terminated), bool(truncated), self._info(self._success)

    def expert_command(self) -> str:
        """The BabyAI bot's next command.

        :raises RuntimeError: ``expert=False``, the bot is missing or failed, or it has nothing left to do.
        """
        if not self.expert:
            raise RuntimeError("create the env with expert=True to get expert commands")
        if self._bot_error is not None:
            raise RuntimeError(self._bot_error)
        if self._suggestion is None or self._suggestion >= len(COMMANDS) or self._ended:
            raise RuntimeError("the BabyAI bot has nothing left to do: the mission is over")
        return COMMANDS[self._suggestion]

    def close(self) -> None:
        self._env.close()
