"""ScienceWorld's 30 science tasks as text envs (the ``scienceworld`` extra; needs Java).

ScienceWorld (Wang et al., 2022; Apache-2.0; PyPI ``scienceworld``, import ``scienceworld``) simulates a house
with rooms, devices, substances, plants and animals in Scala; each task (boil water, find a living thing, grow a
plant, ...) has numbered *variations* split into train / dev / test. The simulator lists every valid
action-object combination of a state (hundreds to thousands: mostly ``connect X to Y``, ``move X to Y``) and
generates a gold action sequence per variation.

The env drives the simulator's ``PythonInterface`` over py4j inside a JVM shared by every ScienceWorld env of the
process (:mod:`envs.jvm`). :func:`focused_commands` is the documented way to shrink the candidate set.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from envs.cycling import ShuffledCycle
from envs.jvm import JVMDiedError, SharedJVM, SimulatorHandle, shared_jvm
from envs.protocol import TextEnv, match_command, normalize_command, to_text

SPLITS: tuple[str, ...] = ("train", "dev", "test")
# ScienceWorld 1.2's simplifications; "easy" means all of them (noElectricalAction only where it is allowed).
SIMPLIFICATIONS: tuple[str, ...] = (
    "teleportAction",
    "selfWateringFlowerPots",
    "openContainers",
    "openDoors",
    "noElectricalAction",
)
# Scores run from 0 to 100 (a task failure sets -100); rewards are score changes times this.
REWARD_SCALE = 0.01
# Verb synonyms of ScienceWorld's grammar (its Action* classes), mapped to the verb its valid actions use.
_VERB_ALIASES: tuple[tuple[str, str], ...] = (
    ("turn on", "activate"),
    ("turn off", "deactivate"),
    ("consume", "eat"),
    ("look on", "look at"),
    ("examine", "look at"),
    ("stir", "mix"),
    ("drop", "put down"),
    ("get", "pick up"),
    ("take", "pick up"),
    ("walk to", "go to"),
    ("move to", "go to"),
    ("go into", "go to"),
    ("move into", "go to"),
)
_DOOR = re.compile(r"^(open|close) door to (.+)$")
_STOP_WORDS = frozenset({"in", "on", "to", "the", "a", "an", "containing", "called", "of", "nothing", "with"})
_WORD = re.compile(r"[a-z0-9]+")


def _is_electrical(task: str) -> bool:
    return "power-component" in task or "conductivity" in task


def task_names() -> list[str]:
    """ScienceWorld's task names (from the installed package's ``tasks.json``)."""
    return list(_scienceworld_constants().ID2TASK.values())


def _scienceworld_constants() -> Any:
    try:
        from scienceworld import constants
    except ImportError as err:
        raise ImportError(
            "ScienceWorld is not installed: pip install 'prior-wrappers[scienceworld]' (the PyPI package "
            "scienceworld; it also needs Java)"
        ) from err
    return constants


def resolve_task(task: str) -> str:
    """A task name, task id (``"1-1"``) or paper name (``"Matter Changes of State (Boiling)"``) as a task name.

    :raises ValueError: unknown task.
    """
    constants = _scienceworld_constants()
    name = constants.ID2TASK.get(constants.NAME2ID.get(task, task), task)
    if name not in constants.ID2TASK.values():
        raise ValueError(f"unknown ScienceWorld task {task!r}; the tasks are {task_names()} (or ids 1-1 .. 10-2)")
    return name


def simplification_string(task: str, simplification: str | Sequence[str] | None) -> str:
    """Check simplifications (``"easy"``, a comma-separated string or a list) and return ScienceWorld's string.

    :raises ValueError: an unknown simplification, or ``noElectricalAction`` on an electrical task.
    """
    if simplification is None:
        return ""
    names = simplification.split(",") if isinstance(simplification, str) else list(simplification)
    names = [n.strip() for n in names if n.strip()]
    if names == ["easy"]:
        return "easy"
    for name in names:
        if name not in SIMPLIFICATIONS:
            raise ValueError(
                f"unknown ScienceWorld simplification {name!r}; use 'easy' or some of {list(SIMPLIFICATIONS)}"
            )
    if "noElectricalAction" in names and _is_electrical(task):
        raise ValueError(f"the task {task!r} needs electrical actions: drop the noElectricalAction simplification")
    return ",".join(names)


def scienceworld_jvm() -> SharedJVM:
    """This process's ScienceWorld JVM (started on first use)."""
    constants = _scienceworld_constants()
    return shared_jvm(constants.JAR_PATH, "ScienceWorld", cwd=constants.BASEPATH)


def _words(text: str) -> set[str]:
    return set(_WORD.findall(text.lower()))


def _key_words(obj: str) -> set[str]:
    return _words(obj) - _STOP_WORDS


@dataclass(frozen=True)
class CommandContext:
    """What :func:`focused_commands` (or any ``candidates=`` function) may look at in a state.

    :param observation: the game's answer to the last command.
    :param look: the room description (ScienceWorld's free ``look around``).
    :param inventory: the inventory's description.
    :param task: the task description.
    :param task_name: the task's name.
    :param templates: ScienceWorld's action templates (``"move OBJ to OBJ"``, ...).
    """

    observation: str
    look: str
    inventory: str
    task: str
    task_name: str
    templates: tuple[str, ...]


def _template_patterns(templates: Sequence[str]) -> list[tuple[re.Pattern[str], int]]:
    patterns = []
    for template in sorted(templates, key=lambda t: -len(t.split("OBJ")[0])):  # longest literal prefix first
        parts = [re.escape(p.strip()) for p in template.split("OBJ")]
        n = len(parts) - 1
        body = parts[0]
        for i, literal in enumerate(parts[1:]):
            body += (" " if body else "") + ("(.+?)" if i < n - 1 else "(.+)") + (" " + literal if literal else "")
        patterns.append((re.compile(f"^{body}$"), n))
    return patterns


def command_objects(command: str, templates: Sequence[str]) -> list[str]:
    """The object phrases of a valid action, by ScienceWorld's templates.

    >>> command_objects("move metal pot to stove", ["move OBJ to OBJ", "look around"])
    ['metal pot', 'stove']
    """
    for pattern, _ in _template_patterns(templates):
        match = pattern.match(command)
        if match:
            return list(match.groups())
    return []


def focused_commands(commands: Sequence[str], context: CommandContext) -> list[str]:
    """The valid actions that concern what the agent is dealing with now; the rest are dropped.

    A command is kept when it takes no object (``look around``, ``wait``, ``inventory``); when it takes one
    object that the last observation, the inventory, the task or the room description mentions; when it takes
    two objects of which one is mentioned by the last observation, the inventory or the task and the other
    anywhere including the room. ``connect`` / ``disconnect`` are kept only on the electrical tasks
    (``power-component*``, ``test-conductivity*``). An object is mentioned when each of its words (bar "in",
    "on", "to", "the", "containing", ...) occurs in the text. The room lists everything in it, so this mostly
    prunes the two-object combinations (``connect agent to hallway``) that make up most of ScienceWorld's lists.

    :param commands: the valid actions.
    :param context: the state's texts and ScienceWorld's templates.
    """
    near = _words(" ".join((context.observation, context.inventory, context.task)))
    room = near | _words(context.look)
    electrical = _is_electrical(context.task_name)
    patterns = _template_patterns(context.templates)
    kept = []
    for command in commands:
        if command.startswith(("connect ", "disconnect ")) and not electrical:
            continue
        objects: list[str] = []
        for pattern, _ in patterns:
            match = pattern.match(command)
            if match:
                objects = list(match.groups())
                break
        keys = [_key_words(o) for o in objects]
        if len(keys) == 1 and not keys[0] <= room:
            continue
        if len(keys) >= 2 and not (any(k <= near for k in keys) and all(k <= room for k in keys)):
            continue
        kept.append(command)
    return kept


def gold_as_valid(gold: str, valid: Sequence[str]) -> str:
    """The valid action that a gold action names under another spelling, or the gold action itself.

    Three rewritings of ScienceWorld's grammar: a verb synonym becomes the verb the valid actions use
    (``examine`` -> ``look at``, ``drop`` -> ``put down``, ...), ``X in inventory`` becomes ``X``, and ``open
    door to kitchen`` becomes ``open kitchen door``.

    >>> gold_as_valid("examine substance in metal pot", ["look at substance in metal pot", "look around"])
    'look at substance in metal pot'
    >>> gold_as_valid("open door to kitchen", ["open kitchen door"]), gold_as_valid("open door to kitchen", [])
    ('open kitchen door', 'open door to kitchen')
    """
    if gold in valid:
        return gold
    spelled = gold.replace(" in inventory", "")
    for alias, verb in _VERB_ALIASES:
        if spelled.startswith(alias + " ") and not spelled.startswith(verb + " "):
            spelled = verb + spelled[len(alias) :]
            break
    door = _DOOR.match(spelled)
    for candidate in (spelled, f"{door[1]} {door[2]} door" if door else None):
        if candidate is not None and candidate in valid:
            return candidate
    return gold


CANDIDATE_MODES = ("all", "focused")


class ScienceWorldEnv(TextEnv):
    """A ScienceWorld task as a text env, one variation per episode.

    >>> env = ScienceWorldEnv("lifespan-longest-lived", split="train", variations=[3])
    >>> obs, info = env.reset(seed=0)
    >>> info["task"]
    "Your task is to find the animal with the longest life span.  The animals are in the 'outside' location. ..."
    >>> while not (info["is_success"] or info["failure"]):
    ...     obs, reward, terminated, truncated, info = env.step(env.expert_command())
    >>> info["score"], terminated
    (100, True)

    **Variations.** ``reset`` loads the next variation of a shuffled cycle through the split's variations (or
    ``variations``), drawn from the env's seeded generator; ``reset(options={"variation": v})`` picks one, which
    must belong to the split. ``simplification`` takes ScienceWorld's strings: ``"easy"``, or some of
    :data:`SIMPLIFICATIONS` (a list or ``"openDoors,teleportAction"``).

    **Steps.** Reward is the change of ScienceWorld's score (0..100) times :data:`REWARD_SCALE` (0.01), so a
    won episode's rewards sum to 1 (partial credit comes in steps); ``terminated`` when the task is completed
    (``is_success``) or failed (the score drops below 0, e.g. -100 after focusing on the wrong thing:
    ``info["failure"]``), ``truncated`` after ``max_episode_steps`` steps. ``info["score"]`` is the raw score,
    ``info["look"]`` / ``info["inventory"]`` the room and the inventory. A command is matched to the valid
    actions ignoring case and spacing; any other command reaches ScienceWorld's parser as typed ("No known
    action matches that input.", or a numbered "Ambiguous request" that the next command answers with a
    number) and the step counts. A step after the episode ended changes nothing ("The game is over.").

    **Candidates.** ``info["admissible_commands"]`` holds ScienceWorld's valid action-object combinations
    (``candidates="all"``: hundreds to thousands per state), or those :func:`focused_commands` keeps
    (``candidates="focused"``), or what a function ``(commands, CommandContext) -> commands`` returns; sorted.

    **Expert.** With ``expert=True`` the simulator generates a variation's gold path the first time the env loads it
    (seconds for long tasks; kept for the env's later episodes of that variation). :meth:`expert_command` returns its
    next action, written as the valid action it names when ScienceWorld's grammar has another spelling for it
    (``examine X`` is ``look at X``, ``X in inventory`` is ``X``, ``open door to kitchen`` is ``open kitchen door``);
    many gold actions have no valid twin (re-opening an open door, ScienceWorld's own names for things), and are
    returned as the gold path has them, which the parser accepts. ``info["expert_admissible"]`` says whether the next
    gold action is a candidate; ``add_expert_command=True`` appends it to the candidates when it is not (for imitation
    data and prior evaluation only: it tells the agent the answer). The path is fixed: once the agent leaves it
    (``info["on_gold_path"]`` False) :meth:`expert_command` raises.

    If the JVM dies mid-episode, :meth:`step` raises :class:`~envs.jvm.JVMDiedError`; :meth:`reset` recovers.

    :param task: a task name (:func:`task_names`), id (``"4-1"``) or the paper's name.
    :param split: ``"train"``, ``"dev"`` or ``"test"``.
    :param variations: play only these variations of the split (checked at the first reset).
    :param simplification: ScienceWorld simplifications (above).
    :param candidates: ``"all"``, ``"focused"`` or a function (above).
    :param max_episode_steps: the step cap (``truncated``).
    :param expert: generate gold paths (``expert_command()``).
    :param add_expert_command: put the next gold action among the candidates when it is not there.
    """

    prompt_example = (
        "Observation: This room is called the kitchen. In it, you see: the agent, a substance called air, a "
        "fridge (that is closed), a stove (which is turned off), a metal pot (containing nothing). You also "
        "see: A door to the hallway (that is open)\n"
        "Action: pick up metal pot\n"
        "Observation: You move the metal pot to the inventory.\n"
        "Action: move metal pot to sink\n"
        "Observation: You move the metal pot to the sink.\n"
        "Action: activate sink\n"
        "Observation: The sink is now activated.\n"
        "Action: focus on substance in metal pot"
    )

    def __init__(
        self,
        task: str = "boil",
        split: str = "train",
        variations: Sequence[int] | None = None,
        simplification: str | Sequence[str] | None = None,
        candidates: str | Callable[[Sequence[str], CommandContext], Sequence[str]] = "all",
        max_episode_steps: int = 100,
        expert: bool = True,
        add_expert_command: bool = False,
    ) -> None:
        super().__init__()
        self.task_name = resolve_task(task)
        if split not in SPLITS:
            raise ValueError(f"unknown split {split!r}; ScienceWorld's splits are {list(SPLITS)}")
        self.simplification = simplification_string(self.task_name, simplification)
        if not callable(candidates) and candidates not in CANDIDATE_MODES:
            raise ValueError(f"candidates must be one of {CANDIDATE_MODES} or a function, got {candidates!r}")
        if max_episode_steps < 1:
            raise ValueError(f"max_episode_steps must be >= 1, got {max_episode_steps}")
        if variations is not None:
            variations = [int(v) for v in variations]
            if not variations:
                raise ValueError("variations=[] names no variation")
        self.split = split
        self.candidates = candidates
        self.max_episode_steps = max_episode_steps
        self.expert = expert
        self.add_expert_command = add_expert_command
        self._requested = variations
        self._split_variations: list[int] | None = None
        self._sim = SimulatorHandle(
            scienceworld_jvm(), lambda gateway: gateway.jvm.scienceworld.runtime.pythonapi.PythonInterface()
        )
        self._loaded: int | None = None  # the variation loaded in the simulator
        self._fresh = False
        self._gold_paths: dict[int, list[str]] = {}
        self._templates: tuple[str, ...] = ()
        self._cycle: ShuffledCycle[int] = ShuffledCycle()
        self._variation: int | None = None
        self._state: dict[str, Any] = {}
        self._score = 0
        self._steps = 0
        self._ended = False
        self._gold: list[str] = []
        self._gold_pos = 0
        self._on_gold_path = True
        self.task = ""

    # ----- simulator ---------------------------------------------------------------------------------------
    def _call(self, during: str, method: str, *args: Any) -> Any:
        return self._sim.call(during, method, *args)

    def _load(self, variation: int, gold: bool) -> None:
        """Load (and so start afresh) a variation; with ``gold`` also generate its gold path (seconds on long
        tasks), kept per variation: the variation's world, and so its path, is always the same."""
        gold = gold and variation not in self._gold_paths
        message = self._call("reset()", "load", self.task_name, variation, self.simplification, gold)
        if message:
            self._loaded = None
            raise ValueError(f"ScienceWorld could not load {self.task_name} variation {variation}: {message.strip()}")
        self._loaded = variation
        self._fresh = True  # nothing was played since the load
        if not self._templates:
            templates = json.loads(self._call("reset()", "getPossibleActionsWithIDs"))
            self._templates = tuple(str(t["action_example"]) for t in templates)
        if gold:
            self._gold_paths[variation] = [str(a) for a in self._call("reset()", "getGoldActionSequence")]
        self._gold = self._gold_paths.get(variation, [])

    def _variations_of_split(self) -> list[int]:
        if self._split_variations is None:
            if self._loaded is None:  # the split lists need a loaded task
                self._load(self._requested[0] if self._requested else 0, gold=False)
            method = {"train": "getVariationsTrain", "dev": "getVariationsDev", "test": "getVariationsTest"}
            split = [int(v) for v in self._call("reset()", method[self.split])]
            if self._requested is not None:
                outside = sorted(set(self._requested) - set(split))
                if outside:
                    raise ValueError(
                        f"variations {outside} of {self.task_name} are not in its {self.split} split "
                        f"({split[0]}..{split[-1]})"
                    )
                split = list(self._requested)
            self._split_variations = split
        return self._split_variations

    def _read_state(self, observation: str) -> None:
        call = self._call
        valid = [str(a) for a in call("step()", "getValidActionObjectCombinations")]
        self._state = {
            "observation": to_text(observation).strip(),
            "valid": valid,
            "look": to_text(call("step()", "freeActionLook")).strip(),
            "inventory": to_text(call("step()", "freeActionInventory")).strip(),
            "completed": bool(call("step()", "getCompleted")),
            "score": int(round(100 * float(call("step()", "getScore")))),
            "moves": int(call("step()", "getNumMoves")),
        }

    # ----- candidates and expert ---------------------------------------------------------------------------
    def _context(self) -> CommandContext:
        s = self._state
        return CommandContext(s["observation"], s["look"], s["inventory"], self.task, self.task_name, self._templates)

    def _candidates(self) -> list[str]:
        valid = self._state["valid"]
        if self.candidates == "all":
            commands = list(valid)
        elif self.candidates == "focused":
            commands = focused_commands(valid, self._context())
        else:
            assert callable(self.candidates)  # a mode or a function (checked in __init__)
            commands = [c for c in self.candidates(list(valid), self._context()) if isinstance(c, str) and c.strip()]
        commands = sorted(set(commands)) or sorted(set(valid)) or ["look around"]
        return commands

    def _next_gold(self) -> str | None:
        if not (self.expert and self._on_gold_path) or self._gold_pos >= len(self._gold):
            return None
        return gold_as_valid(self._gold[self._gold_pos], self._state["valid"])

    def _info(self) -> dict[str, Any]:
        s = self._state
        commands = self._candidates()
        info: dict[str, Any] = {
            "admissible_commands": commands,
            "task": self.task,
            "is_success": self._success(),
            "failure": s["score"] < 0,
            "score": s["score"],
            "look": s["look"],
            "inventory": s["inventory"],
            "task_name": self.task_name,
            "variation": self._variation,
            "split": self.split,
            "valid_count": len(s["valid"]),
        }
        if self.expert:
            gold = self._next_gold()
            if gold is not None and self.add_expert_command and gold not in commands:
                commands.append(gold)
            info["expert_admissible"] = gold is not None and gold in commands
            info["on_gold_path"] = self._on_gold_path
            info["policy_commands"] = self._gold[self._gold_pos :] if self._on_gold_path else []
        return info

    def _success(self) -> bool:
        return self._state["completed"] and self._state["score"] >= 0

    # ----- protocol ----------------------------------------------------------------------------------------
    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[str, dict]:
        super().reset(seed=seed)
        options = options or {}
        if self._sim.connect():
            self._loaded = None
        variations = self._variations_of_split()
        if seed is not None:
            self._cycle.restart()
        variation = self._cycle.pick(
            variations,
            self.np_random,
            int(options["variation"]) if "variation" in options else None,
            lambda: (
                f"variation {options['variation']} is not in this env's {self.split} variations of {self.task_name} "
                f"({variations[0]}..{variations[-1]}, {len(variations)} variations)"
            ),
        )
        if variation != self._loaded or not self._fresh or (self.expert and variation not in self._gold_paths):
            self._load(variation, gold=self.expert)  # load() restarts the variation, faster than ScienceWorld's reset()
        self._fresh = False
        self._variation = variation
        self.task = to_text(self._call("reset()", "freeActionTaskDesc")).replace("Task Description:", "").strip()
        observation = self._call("reset()", "step", "look around")  # what ScienceWorld's own reset() does
        self._read_state(observation)
        self._score = self._state["score"]
        self._steps = 0
        self._ended = False
        self._gold_pos = 0
        self._on_gold_path = True
        return self._state["observation"], self._info()

    def step(self, command: str) -> tuple[str, float, bool, bool, dict]:
        text = normalize_command(command)
        if self._sim.failure is not None:
            raise JVMDiedError(self._sim.failure)
        if not self._state:
            raise RuntimeError("call reset() before step()")
        if self._ended:
            return "The game is over.", 0.0, True, False, self._info()
        valid = self._state["valid"]
        action = match_command(text, valid) or text
        if self.expert and self._on_gold_path and self._gold_pos < len(self._gold):
            raw = self._gold[self._gold_pos]
            if action in (raw, gold_as_valid(raw, valid)) or action.casefold() == raw.casefold():
                self._gold_pos += 1
            else:
                self._on_gold_path = False
        observation = self._call("step()", "step", action)
        self._read_state(observation)
        self._steps += 1
        score = self._state["score"]
        reward, self._score = (score - self._score) * REWARD_SCALE, score
        terminated = self._state["completed"] or score < 0
        self._ended = terminated
        truncated = self._steps >= self.max_episode_steps and not terminated
        return self._state["observation"], float(reward), terminated, truncated, self._info()

    def expert_command(self) -> str:
        """The next action of ScienceWorld's gold path, as a valid action when it has a valid twin.

        :raises RuntimeError: ``expert=False``, the agent left the gold path, or the path is exhausted.
        """
        if not self.expert:
            raise RuntimeError("create the env with expert=True to get expert commands")
        if not self._on_gold_path:
            raise RuntimeError(
                "the agent left ScienceWorld's gold path (a fixed plan for the variation), so it no longer "
                "applies; reset() to get a new one"
            )
        gold = self._next_gold()
        if gold is None:
            raise RuntimeError("no gold action left: the episode is over")
        return gold

    def close(self) -> None:
        self._sim.server = None  # the JVM is shared: it stays up for the process's other envs
        self._state = {}
        self._loaded = None
