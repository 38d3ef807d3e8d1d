"""Games from TextWorld's own challenge generators (``tw-simple``, ``tw-cooking``, ``tw-treasure_hunter``,
``tw-coin_collector``) as text envs, with difficulty presets, a game cache and train / unseen splits by seed.

>>> train, unseen = challenge_splits("treasure", n_train=1, n_unseen=1)   # into default_cache_dir()
>>> [game.name for game in train + unseen]
['game-0.z8', 'game-100000.z8']
>>> env = TextWorldChallengeEnv("treasure", game_files=train)
>>> obs, info = env.reset(seed=0)
>>> env.expert_command() in info["admissible_commands"]
True

Each preset names a challenge and the settings its ``make`` receives (the ``tw-make <challenge>`` arguments,
all of them given, so nothing depends on argparse defaults). Measured on these presets with the embedded
SmolLM2 and 100-step episodes (see ``benchmarks/prior_quality.py``): ``cooking`` has 16-35 admissible commands
and a 10-16 step walkthrough, ``simple`` 11-16 commands, ``treasure`` about 7, ``coin`` about 4 (navigation only).
"""

from __future__ import annotations

import os
import shutil
import tempfile
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from envs.textworld_env import TextWorldEnv, default_cache_dir

_COOKING = {
    "recipe": 1,
    "take": 0,
    "go": 1,
    "open": False,
    "cook": False,
    "cut": False,
    "drop": False,
    "recipe_seed": 0,
    "split": None,
}

CHALLENGE_PRESETS: dict[str, tuple[str, dict[str, Any]]] = {
    # tw-simple: a fixed house (6 rooms); find the food and put it on the stove. rewards: how often the score
    # moves (sparse: only at the end); goal: how much of the plan the objective spells out.
    "simple": ("tw-simple", {"rewards": "sparse", "goal": "brief", "test": False}),
    "simple-dense": ("tw-simple", {"rewards": "dense", "goal": "detailed", "test": False}),
    # tw-cooking (the First TextWorld Problems games): read the recipe, fetch `take` of its `recipe`
    # ingredients across `go` rooms, open containers and doors, cook and cut, prepare and eat the meal.
    "cooking-easy": ("tw-cooking", {**_COOKING, "recipe": 1, "take": 1, "go": 1, "open": True}),
    "cooking": ("tw-cooking", {**_COOKING, "recipe": 2, "take": 2, "go": 6, "open": True, "cook": True, "cut": True}),
    "cooking-hard": (
        "tw-cooking",
        {**_COOKING, "recipe": 3, "take": 3, "go": 9, "open": True, "cook": True, "cut": True},
    ),
    # tw-treasure_hunter: find the object the objective names; levels 1-10 easy (5 rooms), 11-20 medium
    # (10 rooms, locked doors and containers), 21-30 hard (20 rooms, distractors).
    "treasure-easy": ("tw-treasure_hunter", {"level": 5}),
    "treasure": ("tw-treasure_hunter", {"level": 15}),
    "treasure-hard": ("tw-treasure_hunter", {"level": 25}),
    # tw-coin_collector: walk to the coin (quest length = level % 100); pure navigation, the control.
    "coin-easy": ("tw-coin_collector", {"level": 5}),
    "coin": ("tw-coin_collector", {"level": 15}),
    "coin-hard": ("tw-coin_collector", {"level": 30}),
}


def _preset(preset: str) -> tuple[str, dict[str, Any]]:
    if preset not in CHALLENGE_PRESETS:
        raise ValueError(f"unknown challenge preset {preset!r}; known presets: {', '.join(CHALLENGE_PRESETS)}")
    challenge, settings = CHALLENGE_PRESETS[preset]
    return challenge, dict(settings)


def _generate(challenge: str, settings: dict[str, Any], game_seed: int, path: Path) -> None:
    """Make and compile one game into a scratch folder next to ``path``, then move it into place: the ``.z8``
    is renamed last, so a ``.z8`` in the cache always has its ``.json`` (an interrupted run leaves no game)."""
    import textworld
    from textworld.challenges import CHALLENGES
    from textworld.generator import compile_game

    _, make, _ = CHALLENGES[challenge]
    scratch = Path(tempfile.mkdtemp(prefix=f".{path.stem}-", dir=path.parent))
    try:
        options = textworld.GameOptions()
        options.seeds = game_seed
        options.path = str(scratch / path.name)
        options.force_recompile = True
        with warnings.catch_warnings():  # generation noise, not the user's concern:
            # jericho on TextWorld's scratch copy while it records the walkthrough
            warnings.filterwarnings("ignore", message=".*is not fully supported.*")
            # the text grammar reusing an adjective for lack of variation
            warnings.filterwarnings("ignore", message="Not enough variation.*")
            game = make(settings=dict(settings), options=options)
            compiled = Path(compile_game(game, options))
        os.replace(compiled.with_suffix(".json"), path.with_suffix(".json"))
        os.replace(compiled, path)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def make_challenge_games(
    preset: str, n_games: int, *, seed: int = 0, cache_dir: str | os.PathLike | None = None
) -> list[Path]:
    """Generate ``n_games`` games of a :data:`CHALLENGE_PRESETS` preset with TextWorld's challenge generator.

    Game ``i`` uses seed ``seed + i`` (the same preset and seed give the same game); it goes to
    ``cache_dir/challenge-<preset>/game-<seed>.z8`` (default cache: :func:`~envs.textworld_env.default_cache_dir`)
    and is reused when it is already there (2-25 s per new game on one core, depending on the preset).

    :param preset: a key of :data:`CHALLENGE_PRESETS`.
    :param n_games: how many games.
    :param seed: seed of the first game.
    :param cache_dir: where the games go.
    :raises ValueError: for an unknown preset (the message lists the presets) or a negative ``n_games``.
    """
    challenge, settings = _preset(preset)
    if n_games < 0:
        raise ValueError(f"n_games must be >= 0, got {n_games}")
    folder = (Path(cache_dir) if cache_dir is not None else default_cache_dir()) / f"challenge-{preset}"
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for game_seed in range(seed, seed + n_games):
        path = folder / f"game-{game_seed}.z8"
        if not (path.is_file() and path.with_suffix(".json").is_file()):
            _generate(challenge, settings, game_seed, path)
        paths.append(path)
    return paths


UNSEEN_SEED_OFFSET = 100_000


def challenge_splits(
    preset: str, n_train: int, n_unseen: int, *, game_seed: int = 0, cache_dir: str | os.PathLike | None = None
) -> tuple[list[Path], list[Path]]:
    """Training and unseen games of a preset, disjoint by construction: training games have seeds
    ``game_seed .. game_seed + n_train - 1``, unseen games seeds from ``game_seed + 100_000``.

    :param preset: a key of :data:`CHALLENGE_PRESETS`.
    :param n_train: training games (at most 100,000).
    :param n_unseen: unseen (evaluation) games.
    :param game_seed: seed of the first training game.
    :param cache_dir: where the games go (see :func:`make_challenge_games`).
    """
    if n_train > UNSEEN_SEED_OFFSET:
        raise ValueError(f"at most {UNSEEN_SEED_OFFSET} training games, got {n_train}")
    train = make_challenge_games(preset, n_train, seed=game_seed, cache_dir=cache_dir)
    unseen = make_challenge_games(preset, n_unseen, seed=game_seed + UNSEEN_SEED_OFFSET, cache_dir=cache_dir)
    assert not set(train) & set(unseen), "training and unseen games overlap"
    return train, unseen


class TextWorldChallengeEnv(TextWorldEnv):
    """A TextWorld challenge preset as a text env: :class:`~envs.textworld_env.TextWorldEnv` over games that
    :func:`make_challenge_games` generates (or over ``game_files``).

    >>> env = TextWorldChallengeEnv("cooking", n_games=1, game_seed=0)
    >>> obs, info = env.reset(seed=0)
    >>> info["task"].startswith("You are hungry")
    True

    ``info["task"]`` is the game's objective; rewards are TextWorld's score changes (dense or sparse as the
    preset says); ``expert_command()`` is TextWorld's optimal remaining plan. Registered as
    ``prior_wrappers/TWSimple-v0``, ``TWCooking-v0``, ``TWCookingEasy-v0``, ``TWTreasureHunter-v0`` and
    ``TWCoinCollector-v0``.

    :param preset: a key of :data:`CHALLENGE_PRESETS`.
    :param n_games: games to generate (seeds ``game_seed .. game_seed + n_games - 1``).
    :param game_seed: seed of the first game.
    :param game_files: play these games instead (e.g. one side of :func:`challenge_splits`).
    :param max_episode_steps: the step cap (``truncated``).
    :param expert: ask TextWorld for the optimal remaining plan at every step.
    :param cache_dir: where generated games go.
    :param admissible_commands: ``False``: a parser game without an admissible list (see
        :class:`~envs.textworld_env.TextWorldEnv`).
    """

    def __init__(
        self,
        preset: str = "cooking",
        n_games: int = 1,
        game_seed: int = 0,
        game_files: str | os.PathLike | Sequence[str | os.PathLike] | None = None,
        max_episode_steps: int = 100,
        expert: bool = True,
        cache_dir: str | os.PathLike | None = None,
        admissible_commands: bool = True,
    ) -> None:
        _preset(preset)
        if game_files is None:
            if n_games < 1:
                raise ValueError(f"n_games must be >= 1, got {n_games}")
            game_files = make_challenge_games(preset, n_games, seed=game_seed, cache_dir=cache_dir)
        super().__init__(
            game_files, max_episode_steps=max_episode_steps, expert=expert, admissible_commands=admissible_commands
        )
        self.preset = preset
        self.challenge = CHALLENGE_PRESETS[preset][0]
