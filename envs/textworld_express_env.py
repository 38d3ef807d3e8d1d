"""TextWorldExpress's eight games as text envs (the ``textworld-express`` extra; needs Java).

TextWorldExpress (Jansen & Côté, 2022; Apache-2.0; PyPI ``textworld-express``, import ``textworld_express``)
reimplements CookingWorld, TextWorld Commonsense (``twc``) and Coin Collector, and adds five games, in Scala:
games are generated from a seed, each game lists its valid actions in every state and can generate a gold
(winning) action sequence. Seeds are split into train / dev / test folds by the simulator (0-999, 10000-10999,
20000-20999 in 1.x); ``twc`` also draws its objects from the fold.

The env drives the simulator's ``PythonInterface`` over py4j directly (one round trip per step) inside a JVM
shared by every TextWorldExpress env of the process (:mod:`envs.jvm`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

try:  # textworld-express depends on orjson, which parses its step answers ~3x faster than json
    from orjson import loads as _json_loads
except ImportError:  # pragma: no cover
    from json import loads as _json_loads  # type: ignore[assignment]  # orjson's signature is narrower

from envs.cycling import ShuffledCycle
from envs.jvm import JVMDiedError, SharedJVM, SimulatorHandle, shared_jvm
from envs.protocol import TextEnv, match_command, normalize_command, to_text

# Each game's generation parameters (TextWorldExpress 1.1's "Known properties"; a test checks them against the
# jar) with their defaults there. Flags take 0/1 (or bools), the others positive integers.
GAME_PARAMETERS: dict[str, dict[str, int]] = {
    "cookingworld": {
        "numLocations": 11,
        "numIngredients": 3,
        "numDistractorItems": 10,
        "includeDoors": 1,
        "limitInventorySize": 1,
    },
    "twc": {"numLocations": 3, "numItemsToPutAway": 4, "includeDoors": 0, "limitInventorySize": 0},
    "coin": {"numLocations": 11, "numDistractorItems": 0, "includeDoors": 1, "limitInventorySize": 1},
    "mapreader": {
        "numLocations": 15,
        "maxDistanceApart": 4,
        "maxDistractorItemsPerLocation": 3,
        "includeDoors": 0,
        "limitInventorySize": 0,
    },
    "arithmetic": {},
    "sorting": {},
    "simonsays": {"gameLength": 5, "numDistractors": 3, "memorization": 0, "verbose": 0},
    "peckingorder": {},
}
GAMES: tuple[str, ...] = tuple(GAME_PARAMETERS)
_FLAGS = {"includeDoors", "limitInventorySize", "memorization", "verbose"}
SPLITS: tuple[str, ...] = ("train", "dev", "test")
# TextWorldExpress answers a command outside its valid-action list with this, and nothing changes.
UNKNOWN_ACTION = "Unknown action: I'm not sure what you mean."
_ALWAYS_VALID = ["look around", "inventory"]


def game_params_string(game: str, game_params: Mapping[str, int | bool] | str | None) -> str:
    """Check ``game`` and its parameters and return TextWorldExpress' ``"name=value,..."`` string.

    :raises ValueError: unknown game, unknown parameter name, or a value that is not a positive integer
        (0/1 for flags).
    """
    if game not in GAME_PARAMETERS:
        raise ValueError(f"unknown TextWorldExpress game {game!r}; the games are {list(GAMES)}")
    if game_params is None:
        return ""
    if isinstance(game_params, str):
        pairs: dict[str, Any] = {}
        for item in filter(None, (p.strip() for p in game_params.split(","))):
            name, sep, text = item.partition("=")
            if not sep:
                raise ValueError(f"game parameter {item!r} has no value; write name=value")
            pairs[name.strip()] = text.strip()
        game_params = pairs
    known = GAME_PARAMETERS[game]
    parts = []
    for name, value in game_params.items():
        if name not in known:
            raise ValueError(
                f"unknown parameter {name!r} for the TextWorldExpress game {game!r}; its parameters are "
                f"{sorted(known) or 'none'}"
            )
        try:
            number = int(value)
            if isinstance(value, float) or str(value).strip() not in (str(number), "True", "False"):
                raise ValueError
        except (TypeError, ValueError):
            raise ValueError(f"{game} parameter {name}={value!r} must be an integer") from None
        if name in _FLAGS and number not in (0, 1):
            raise ValueError(f"{game} parameter {name} is a flag: 0 or 1, got {value!r}")
        if name not in _FLAGS and number < 1:
            raise ValueError(f"{game} parameter {name} must be >= 1, got {value!r}")
        parts.append(f"{name}={number}")
    return ",".join(parts)


def textworld_express_jvm() -> SharedJVM:
    """This process's TextWorldExpress JVM (started on first use).

    :raises ImportError: the ``textworld-express`` extra is not installed.
    """
    try:
        from textworld_express.constants import BASEPATH, JAR_PATH
    except ImportError as err:
        raise ImportError(
            "TextWorldExpress is not installed: pip install 'prior-wrappers[textworld-express]' "
            "(the PyPI package textworld-express; it also needs Java)"
        ) from err
    return shared_jvm(JAR_PATH, "TextWorldExpress", cwd=BASEPATH, javaopts=("-Xverify:none",))


class TextWorldExpressEnv(TextEnv):
    """A TextWorldExpress game as a text env.

    >>> env = TextWorldExpressEnv("coin", {"numLocations": 2, "includeDoors": 0}, split="train")
    >>> obs, info = env.reset(seed=0)
    >>> info["task"]
    'Your task is to search the environment and find the coin.  Once you find the coin, take it.'
    >>> while not info["is_success"]:
    ...     obs, reward, terminated, truncated, info = env.step(env.expert_command())
    >>> obs, reward, terminated
    ('You take the coin.', 1.0, True)

    **Games.** ``reset`` generates the game of a seed from the split's fold: the next of a shuffled cycle
    through ``game_seeds`` (default: every seed of the fold), drawn from the env's seeded generator, so
    ``reset(seed=s)`` is reproducible; ``reset(options={"game_seed": n})`` picks one (it must belong to the
    split). ``game_params`` sets the generator's parameters (:data:`GAME_PARAMETERS` lists them with
    TextWorldExpress' defaults), e.g. ``{"numLocations": 1, "numIngredients": 2}`` for a small CookingWorld.

    **Steps.** Reward is the change in the game's score (in [0, 1] for most games; a failure can lower it);
    ``terminated`` when the game reports success or failure (``info["is_success"]``, ``info["failure"]``),
    ``truncated`` after ``max_episode_steps`` steps. ``info["admissible_commands"]`` is the game's valid-action
    list, sorted. A command is matched to it ignoring case and spacing; any other command reaches the game as
    typed, which answers ``"Unknown action: I'm not sure what you mean."`` and changes nothing (the step
    counts). A step after the game ended changes nothing: ``"The game is over."``, reward 0, ``terminated``.

    **Expert.** With ``expert=True`` the simulator generates its gold path at each reset;
    :meth:`expert_command` returns its next action and ``info["policy_commands"]`` the rest. A gold action that
    is not among the valid actions (CookingWorld's gold path sometimes opens a container that is already open)
    would only earn the "Unknown action" answer, so the expert skips it; replayed that way the gold path wins
    every game we checked. The path is fixed at reset: once the agent leaves it (``info["on_gold_path"]``
    False) :meth:`expert_command` raises.

    If the JVM dies mid-episode, :meth:`step` raises :class:`~envs.jvm.JVMDiedError` (also on later steps);
    the next :meth:`reset` starts a new JVM.

    :param game: one of :data:`GAMES`.
    :param game_params: generation parameters (a dict, or TextWorldExpress' ``"name=value,..."`` string).
    :param split: ``"train"``, ``"dev"`` or ``"test"``: the fold the game seeds come from.
    :param game_seeds: play only these seeds of the fold (checked at the first reset).
    :param max_episode_steps: the step cap (``truncated``).
    :param expert: generate the gold path at each reset (``expert_command()``).
    """

    _PROMPT_EXAMPLES = {
        "cookingworld": (
            "Observation: You are in the kitchen. In one part of the room you see a fridge that is closed. There "
            "is also a counter that has a knife, and a cookbook.\n"
            "Action: take cookbook\n"
            "Observation: You take the cookbook.\n"
            "Action: read cookbook\n"
            "Observation: Gather all following ingredients and follow the directions to prepare this tasty meal. "
            "Ingredients: red apple. Directions: slice the red apple, prepare meal.\n"
            "Action: open fridge\n"
            "Observation: You open the fridge. The fridge contains a red apple.\n"
            "Action: take red apple"
        ),
        "twc": (
            "Observation: You are in the bedroom. In one part of the room you see a wardrobe that is closed. "
            "There is also a bed, that has a clean white shirt on it.\n"
            "Action: take clean white shirt\n"
            "Observation: You take the clean white shirt.\n"
            "Action: open wardrobe\n"
            "Observation: You open the wardrobe. It's empty inside.\n"
            "Action: put clean white shirt in wardrobe"
        ),
        "coin": (
            "Observation: You are in the kitchen. In one part of the room you see a stove. To the South you see "
            "a closed wooden door.\n"
            "Action: open door to south\n"
            "Observation: You open the door to the south.\n"
            "Action: move south\n"
            "Observation: You are in the pantry. In one part of the room you see a shelf, that has a coin on it.\n"
            "Action: take coin"
        ),
    }
    _GENERIC_EXAMPLE = (
        "Observation: You are in the kitchen. In one part of the room you see a counter that has a book, and "
        "a box.\n"
        "Action: read book\n"
        "Observation: The book says: put the apple in the box.\n"
        "Action: take apple\n"
        "Observation: You take the apple.\n"
        "Action: put apple in box"
    )

    def __init__(
        self,
        game: str = "cookingworld",
        game_params: Mapping[str, int | bool] | str | None = None,
        split: str = "train",
        game_seeds: Sequence[int] | None = None,
        max_episode_steps: int = 100,
        expert: bool = True,
    ) -> None:
        super().__init__()
        self.params_string = game_params_string(game, game_params)
        if split not in SPLITS:
            raise ValueError(f"unknown split {split!r}; TextWorldExpress' folds are {list(SPLITS)}")
        if max_episode_steps < 1:
            raise ValueError(f"max_episode_steps must be >= 1, got {max_episode_steps}")
        if game_seeds is not None:
            game_seeds = [int(s) for s in game_seeds]
            if not game_seeds:
                raise ValueError("game_seeds=[] names no game")
        self.game = game
        self.split = split
        self.max_episode_steps = max_episode_steps
        self.expert = expert
        self.prompt_example = self._PROMPT_EXAMPLES.get(game, self._GENERIC_EXAMPLE)
        self._requested_seeds = game_seeds
        self._fold_seeds: list[int] | None = None
        self._sim = SimulatorHandle(
            textworld_express_jvm(), lambda gateway: gateway.jvm.textworldexpress.runtime.PythonInterface()
        )
        self._cycle: ShuffledCycle[int] = ShuffledCycle()
        self._response: dict[str, Any] = {}
        self._game_seed: int | None = None
        self._score = 0.0
        self._steps = 0
        self._ended = False
        self._gold: list[str] = []
        self._gold_pos = 0
        self._on_gold_path = True
        self.task = ""

    # ----- JVM ---------------------------------------------------------------------------------------------
    def _call(self, during: str, method: str, *args: Any) -> Any:
        return self._sim.call(during, method, *args)

    def _connect(self) -> None:
        """A simulator object in a live JVM, with this env's game loaded."""
        if not self._sim.connect():
            return
        message = self._call("load()", "load", self.game, self.params_string)
        if message:
            self._sim.server = None
            raise ValueError(f"TextWorldExpress rejected {self.game} with {self.params_string!r}: {message.strip()}")

    def _seeds_of_split(self) -> list[int]:
        if self._fold_seeds is None:
            method = {"train": "getSeedsTrain", "dev": "getSeedsDev", "test": "getSeedsTest"}[self.split]
            fold = [int(s) for s in self._call("reset()", method)]
            if self._requested_seeds is not None:
                outside = sorted(set(self._requested_seeds) - set(fold))
                if outside:
                    raise ValueError(
                        f"game seeds {outside[:5]} are not in TextWorldExpress' {self.split} fold "
                        f"({fold[0]}..{fold[-1]})"
                    )
                fold = list(self._requested_seeds)
            self._fold_seeds = fold
        return self._fold_seeds

    @staticmethod
    def _parse(payload: str) -> dict[str, Any]:
        return _json_loads(payload)

    # ----- protocol ----------------------------------------------------------------------------------------
    def _info(self) -> dict[str, Any]:
        r = self._response
        commands = sorted(r.get("validActions") or _ALWAYS_VALID)
        info: dict[str, Any] = {
            "admissible_commands": commands,
            "task": self.task,
            "is_success": bool(r.get("tasksuccess")),
            "failure": bool(r.get("taskfailure")),
            "score": self._score,
            "inventory": to_text(r.get("inventory", "")),
            "game": self.game,
            "game_seed": self._game_seed,
            "split": self.split,
        }
        if self.expert:
            info["policy_commands"] = self._gold[self._gold_pos :] if self._on_gold_path else []
            info["on_gold_path"] = self._on_gold_path
        return info

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[str, dict]:
        super().reset(seed=seed)
        options = options or {}
        self._connect()
        seeds = self._seeds_of_split()
        if seed is not None:
            self._cycle.restart()
        game_seed = self._cycle.pick(
            seeds,
            self.np_random,
            int(options["game_seed"]) if "game_seed" in options else None,
            lambda: (
                f"game seed {options['game_seed']} is not in this env's {self.split} seeds ({seeds[0]}..{seeds[-1]}, "
                f"{len(seeds)} seeds)"
            ),
        )
        self._response = self._parse(self._call("reset()", "generateNewGameJSON", game_seed, self.split, self.expert))
        self.task = to_text(self._call("reset()", "getTaskDescription")).strip()
        self._gold = [str(a) for a in self._call("reset()", "getGoldActionSequence")] if self.expert else []
        self._gold_pos = 0
        self._on_gold_path = True
        self._game_seed = game_seed
        self._score = float(self._response.get("score") or 0.0)
        self._steps = 0
        self._ended = False
        return to_text(self._response.get("observation", "")).strip(), self._info()

    def step(self, command: str) -> tuple[str, float, bool, bool, dict]:
        text = normalize_command(command)
        if self._sim.failure is not None:
            raise JVMDiedError(self._sim.failure)
        if not self._response:
            raise RuntimeError("call reset() before step()")
        if self._ended:
            return "The game is over.", 0.0, True, False, self._info()
        valid = self._response.get("validActions") or []
        action = match_command(text, valid) or text
        if self.expert and self._on_gold_path:
            self._skip_invalid_gold(valid)
            if self._gold_pos < len(self._gold) and action == self._gold[self._gold_pos]:
                self._gold_pos += 1
            elif action in valid:  # a command the game does not know changes nothing: still on the path
                self._on_gold_path = False
        self._response = self._parse(self._call("step()", "stepJSON", action))
        self._steps += 1
        score = float(self._response.get("score") or 0.0)
        reward, self._score = score - self._score, score
        terminated = bool(self._response.get("tasksuccess") or self._response.get("taskfailure"))
        self._ended = terminated
        truncated = self._steps >= self.max_episode_steps and not terminated
        return to_text(self._response.get("observation", "")).strip(), reward, terminated, truncated, self._info()

    def _skip_invalid_gold(self, valid: Sequence[str]) -> None:
        while self._gold_pos < len(self._gold) and self._gold[self._gold_pos] not in valid:
            self._gold_pos += 1

    def expert_command(self) -> str:
        """The next action of TextWorldExpress' gold path (gold actions that are not valid here are skipped).

        :raises RuntimeError: ``expert=False``, the agent left the gold path, or the path is exhausted.
        """
        if not self.expert:
            raise RuntimeError("create the env with expert=True to get expert commands")
        if not self._on_gold_path:
            raise RuntimeError(
                "the agent left TextWorldExpress' gold path (a fixed plan generated at reset), so it no longer "
                "applies; reset() to get a new one"
            )
        self._skip_invalid_gold(self._response.get("validActions") or [])
        if self._gold_pos >= len(self._gold):
            raise RuntimeError("no gold action left: the game is over")
        return self._gold[self._gold_pos]

    def close(self) -> None:
        self._sim.server = None  # the JVM is shared: it stays up for the process's other envs
        self._response = {}
