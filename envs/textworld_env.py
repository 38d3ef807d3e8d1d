"""TextWorld games as text envs (an adapter over ``textworld.gym``), and offline game generation.

>>> games = make_textworld_games(1, seed=1, nb_objects=3, quest_length=1)  # into default_cache_dir()
>>> train, test = split_games(games + games, test_size=1)
>>> len(train), len(test)
(1, 1)
"""

from __future__ import annotations

import os
import re
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from envs.cycling import ShuffledCycle
from envs.protocol import TextEnv, match_command, normalize_command

# Commands that are valid in every TextWorld state; used only if a game ever lists none (the protocol needs one).
_ALWAYS_VALID = ["look", "inventory"]
# A line with characters but no letter or digit belongs to the ASCII-art banner TextWorld prints at the start.
_BANNER_LINE = re.compile(r"^[^A-Za-z0-9]*[^A-Za-z0-9\s][^A-Za-z0-9]*$")
# The Z-machine echoes its prompt and status bar (">   -= Kitchen =-0/3") at the end of every answer.
_PROMPT_TAIL = re.compile(r"\n>[^\n]*$")
# The Z-machine reads at most this many bytes of a command (jericho's INPUT_BUFFER_SIZE).
_ZMACHINE_INPUT_BYTES = 198
# Z-machine story files, which textworld plays through jericho (a .ulx or .tw-pddl game has other engines).
_ZMACHINE_GAME = re.compile(r"\.z[1-8]$", re.IGNORECASE)


def default_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/prior_wrappers/textworld`` (``~/.cache/...`` when the variable is unset)."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "prior_wrappers" / "textworld"


def _fit_input_buffer(command: str, zmachine: bool) -> str:
    """``command`` as the game's interpreter should read it, cut to the Z-machine's input buffer at a character
    boundary (jericho cuts at a byte and then fails to decode a split UTF-8 character).

    On a Z-machine game (``zmachine=True``) a backslash is doubled: jericho's interpreter, dumb-frotz, reads a
    backslash as the start of a hot key (``\\U`` undo, ``\\N`` restart, ``\\X`` quit), which segfaults or hangs
    inside jericho; a doubled one is a literal backslash. The cut never splits such a pair.
    """
    pieces, size = [], 0
    for char in command:
        piece = "\\\\" if zmachine and char == "\\" else char
        size += len(piece.encode("utf-8"))
        if size > _ZMACHINE_INPUT_BYTES:
            break
        pieces.append(piece)
    return "".join(pieces)


def clean_textworld_text(text: str) -> str:
    """Drop TextWorld's ASCII-art banner and the Z-machine's prompt/status line; keep every sentence."""
    text = _PROMPT_TAIL.sub("", text)
    lines = [line.strip() for line in text.splitlines() if not _BANNER_LINE.match(line)]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()


class TextWorldEnv(TextEnv):
    """Plays TextWorld games (``.z8``/``.ulx`` with their ``.json``, or ``.tw-pddl``) through ``textworld.gym``.

    >>> env = TextWorldEnv(make_textworld_games(1, seed=1, nb_objects=3, quest_length=1))
    >>> obs, info = env.reset(seed=0)
    >>> obs, reward, terminated, truncated, info = env.step(env.expert_command())
    >>> reward, terminated, info["is_success"]
    (1.0, True, True)

    Each ``reset`` starts the next game of a shuffled cycle through ``game_files`` (the order is drawn from the
    env's seeded generator, so ``reset(seed=s)`` is reproducible and every game comes once per cycle);
    ``reset(options={"game_file": path})`` or ``{"game_index": i}`` picks one.

    Reward is the change in TextWorld's score; ``terminated`` when the game is won or lost, ``truncated`` after
    ``max_episode_steps`` steps. ``info`` holds ``admissible_commands`` (TextWorld's, sorted), ``task`` (the
    game's objective), ``is_success`` (won), ``score``, ``max_score``, ``won``, ``lost``, ``game_file`` and, with
    ``expert=True``, ``policy_commands`` (TextWorld's shortest remaining plan). Observations are TextWorld's
    text without the ASCII banner and prompt line.

    A command that is not admissible goes to the game as typed (after whitespace is collapsed, and cut to the
    Z-machine's 198-byte input buffer): TextWorld answers as its parser does (e.g. "That's not a verb I
    recognise.") and the step counts.

    :param game_files: the games to cycle through (a path or a sequence of paths).
    :param max_episode_steps: the step cap (``truncated``).
    :param expert: ask TextWorld for the optimal remaining plan at every step (``expert_command()``).
    :param observe_state: append the room's description and the inventory to every observation (TextWorld
        computes both each step), so that the observation alone says where the agent is and what it holds:
        the game's own text answers only the last command ("You take the carrot."), which leaves the state hidden.
    :param admissible_commands: ``False`` makes it a plain parser game: ``info["admissible_commands"]`` is
        ``None`` (the protocol's free-text env) and any text goes to the parser, which answers unknown commands
        itself ("That's not a verb I recognise.", "You can't see any such thing."). The expert still works.
    """

    prompt_example = (
        "Observation: -= Kitchen =- You find yourself in a kitchen. You make out a closed fridge. You need an "
        "unguarded exit? You should try going east.\n"
        "Action: open fridge\n"
        "Observation: You open the fridge, revealing a carrot.\n"
        "Action: take carrot from fridge\n"
        "Observation: You take the carrot from the fridge. Your score has just gone up by one point."
    )

    def __init__(
        self,
        game_files: str | os.PathLike | Sequence[str | os.PathLike],
        max_episode_steps: int = 50,
        expert: bool = True,
        observe_state: bool = False,
        admissible_commands: bool = True,
    ) -> None:
        super().__init__()
        self.admissible_commands = admissible_commands
        files = [game_files] if isinstance(game_files, (str, os.PathLike)) else list(game_files)
        if not files:
            raise ValueError("no game files given")
        missing = [str(f) for f in files if not Path(f).is_file()]
        if missing:
            raise FileNotFoundError(f"game file(s) not found: {', '.join(missing)}")
        if max_episode_steps < 1:
            raise ValueError(f"max_episode_steps must be >= 1, got {max_episode_steps}")
        self.game_files = [str(Path(f).resolve()) for f in files]
        self.max_episode_steps = max_episode_steps
        self.expert = expert
        self.observe_state = observe_state
        self._game: Any = None  # textworld.gym env of the current game
        self._game_file: str | None = None
        self._cycle: ShuffledCycle[str] = ShuffledCycle()
        self._last_infos: dict[str, Any] = {}
        self._score = 0.0
        self._steps = 0
        self._ended = False
        self.task = ""

    # ----- hooks for subclasses (ALFWorld) -----------------------------------------------------------------
    def _textworld_wrappers(self) -> list:
        return []

    def _clean(self, text: str) -> str:
        return clean_textworld_text(text)

    def _observation(self, text: str, infos: dict[str, Any]) -> str:
        """The game's answer, then (with ``observe_state``) the room and the inventory, each once."""
        parts = [self._clean(text)]
        if self.observe_state:
            for extra in (infos.get("description"), infos.get("inventory")):
                extra = self._clean(extra or "")
                if extra and extra not in parts[0]:
                    parts.append(extra)
        return "\n\n".join(p for p in parts if p)

    def _task(self, first_observation: str, infos: dict[str, Any]) -> str:
        return infos.get("objective") or ""

    # ----- machinery -------------------------------------------------------------------------------------------
    def _request_infos(self):
        import textworld

        return textworld.EnvInfos(
            admissible_commands=True,
            objective=True,
            won=True,
            lost=True,
            score=True,
            max_score=True,
            policy_commands=self.expert,
            description=self.observe_state,
            inventory=self.observe_state,
        )

    def _load(self, game_file: str) -> None:
        from textworld.gym.envs import TextworldGymEnv

        if self._game is not None and game_file == self._game_file:
            return  # resetting reloads the same game from its file
        if self._game is not None:
            self._game.close()
        self._game = TextworldGymEnv([game_file], self._request_infos(), wrappers=self._textworld_wrappers())
        self._game_file = game_file

    def _reset_game(self) -> tuple[str, dict[str, Any]]:
        with warnings.catch_warnings():
            # jericho does not know TextWorld's games and says score tracking is off; TextWorld tracks it.
            warnings.filterwarnings("ignore", message=".*is not fully supported.*")
            return self._game.reset()

    def _next_game(self, options: dict[str, Any] | None) -> str:
        options = options or {}
        wanted = None
        if "game_file" in options:
            wanted = str(Path(options["game_file"]).resolve())
        elif "game_index" in options:
            wanted = self.game_files[int(options["game_index"])]
        return self._cycle.pick(
            self.game_files,
            self.np_random,
            wanted,
            lambda: f"{options['game_file']} is not one of this env's game files",
        )

    def _info(self, infos: dict[str, Any]) -> dict[str, Any]:
        commands = list(infos.get("admissible_commands") or _ALWAYS_VALID) if self.admissible_commands else None
        info = {
            "admissible_commands": commands,
            "task": self.task,
            "is_success": bool(infos.get("won")),
            "won": bool(infos.get("won")),
            "lost": bool(infos.get("lost")),
            "score": self._score,
            "max_score": infos.get("max_score"),
            "game_file": self._game_file,
        }
        if self.expert:
            info["policy_commands"] = list(infos.get("policy_commands") or [])
        return info

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[str, dict]:
        super().reset(seed=seed)
        if seed is not None:
            self._cycle.restart()  # a new seed starts a new cycle through the games
        self._load(self._next_game(options))
        obs, infos = self._reset_game()
        self._last_infos = infos
        self._score = float(infos.get("score") or 0)
        self._steps = 0
        self._ended = False
        self.task = self._task(obs, infos)
        return self._observation(obs, infos), self._info(infos)

    def step(self, command: str) -> tuple[str, float, bool, bool, dict]:
        if self._game is None:
            raise RuntimeError("call reset() before step()")
        text = normalize_command(command)
        if self._ended:  # TextWorld ignores commands once a game is over; say so instead of replaying its text
            return "The game is over.", 0.0, True, False, self._info(self._last_infos)
        text = match_command(text, self._last_infos.get("admissible_commands") or []) or _fit_input_buffer(
            text, zmachine=_ZMACHINE_GAME.search(self._game_file or "") is not None
        )
        obs, score, done, infos = self._game.step(text)
        self._last_infos = infos
        self._steps += 1
        score = float(score or 0)
        reward, self._score = score - self._score, score
        terminated = bool(infos.get("won") or infos.get("lost"))
        self._ended = terminated
        truncated = self._steps >= self.max_episode_steps and not terminated
        return self._observation(obs, infos), reward, terminated, truncated, self._info(infos)

    def expert_command(self) -> str:
        """The first command of TextWorld's optimal remaining plan (needs ``expert=True``)."""
        if not self.expert:
            raise RuntimeError("create the env with expert=True to get expert commands")
        plan = self._last_infos.get("policy_commands") or []
        if not plan:
            raise RuntimeError("no remaining plan: the game is over (or has no quest)")
        return plan[0]

    def close(self) -> None:
        if self._game is not None:
            self._game.close()
            self._game = None
            self._game_file = None


def make_textworld_games(
    n_games: int,
    *,
    seed: int = 0,
    world_size: int = 2,
    nb_objects: int = 4,
    quest_length: int = 2,
    cache_dir: str | os.PathLike | None = None,
) -> list[Path]:
    """Generate ``n_games`` TextWorld games offline with TextWorld's own generator; return their ``.z8`` paths.

    Game ``i`` uses seed ``seed + i``, so the same arguments give the same games; files that already exist in
    the cache are reused, not regenerated (about 5 s per new game on one CPU core). Games go to
    ``cache_dir/rooms{world_size}-objects{nb_objects}-quest{quest_length}/game-{seed}.z8`` (default cache:
    :func:`default_cache_dir`).

    :param n_games: how many games.
    :param seed: seed of the first game.
    :param world_size: number of rooms.
    :param nb_objects: number of objects in the world (at least what the quest needs).
    :param quest_length: number of commands of the winning walkthrough, 1 to 3 for small worlds.
    :param cache_dir: where to write the games.
    """
    if n_games < 0:
        raise ValueError(f"n_games must be >= 0, got {n_games}")
    if not 1 <= quest_length <= 10:
        raise ValueError(f"quest_length must be between 1 and 10, got {quest_length}")
    if world_size < 1 or nb_objects < 1:
        raise ValueError("world_size and nb_objects must be >= 1")
    import textworld
    from textworld.generator import compile_game, make_game

    folder = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    folder = folder / f"rooms{world_size}-objects{nb_objects}-quest{quest_length}"
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for game_seed in range(seed, seed + n_games):
        path = folder / f"game-{game_seed}.z8"
        if not (path.is_file() and path.with_suffix(".json").is_file()):
            options = textworld.GameOptions()
            options.seeds = game_seed
            options.nb_rooms = world_size
            options.nb_objects = nb_objects
            options.quest_length = quest_length
            options.path = str(path)
            options.force_recompile = True  # a half-written file from an interrupted run is replaced
            compile_game(make_game(options), options)
        paths.append(path)
    return paths


def split_games(
    game_files: Sequence[str | os.PathLike], test_size: int | float, seed: int = 0
) -> tuple[list[Path], list[Path]]:
    """Split games into (train, test) at random, deterministically by ``seed``; test games are unseen in training.

    :param test_size: a count of test games, or a fraction of the games (between 0 and 1).
    """
    files = [Path(f) for f in game_files]
    n_test = round(test_size * len(files)) if isinstance(test_size, float) else int(test_size)
    if not 0 <= n_test <= len(files):
        raise ValueError(f"cannot take {n_test} test games out of {len(files)}")
    order = np.random.default_rng(seed).permutation(len(files))
    test = sorted(files[i] for i in order[:n_test])
    train = sorted(files[i] for i in order[n_test:])
    return train, test
