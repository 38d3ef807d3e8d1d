"""Text environments that follow the text-env protocol (:mod:`envs.protocol`), registered with Gymnasium.

``import envs`` registers:

=========================================  ============================================================
id                                         env
=========================================  ============================================================
``prior_wrappers/TextFrozenLake-v0``       :class:`TextFrozenLake` (kwargs ``map_name``, ``is_slippery``,
                                           ``horizon``; TimeLimit 20 steps for 4x4, 60 for 8x8)
``prior_wrappers/OvercookedTomato-v0``     :class:`OvercookedSalad` ``recipe="tomato"``
``prior_wrappers/OvercookedTomatoLettuce-v0``  :class:`OvercookedSalad` ``recipe="tomato-lettuce"``
``prior_wrappers/TextWorld-v0``            :class:`TextWorldEnv` (kwargs ``game_files``, ...)
``prior_wrappers/ALFWorld-v0``             :class:`ALFWorldEnv` (kwargs ``data_dir``, ``task_types``, ``split``)
``prior_wrappers/TWSimple-v0``             :class:`TextWorldChallengeEnv` ``preset="simple"`` (kwargs ``n_games``,
                                           ``game_seed``, ``game_files``, ...; the other presets likewise)
``prior_wrappers/TWCooking-v0``            :class:`TextWorldChallengeEnv` ``preset="cooking"``
``prior_wrappers/TWCookingEasy-v0``        :class:`TextWorldChallengeEnv` ``preset="cooking-easy"``
``prior_wrappers/TWTreasureHunter-v0``     :class:`TextWorldChallengeEnv` ``preset="treasure"``
``prior_wrappers/TWCoinCollector-v0``      :class:`TextWorldChallengeEnv` ``preset="coin"``
=========================================  ============================================================

>>> import gymnasium as gym, envs
>>> env = gym.make("prior_wrappers/TextFrozenLake-v0")
>>> obs, info = env.reset(seed=0)
>>> info["admissible_commands"][0]
'move left'

TextWorld and ALFWorld are imported only when their envs are made (they need the ``textworld`` and
``alfworld`` extras).
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym

from envs.alfworld_env import ALFWorldEnv, alfworld_data_dir, find_alfworld_games
from envs.frozenlake import TextFrozenLake
from envs.overcooked import OvercookedSalad
from envs.protocol import TextEnv, normalize_command
from envs.textworld_env import TextWorldEnv, make_textworld_games, split_games
from envs.textworld_challenges import (
    CHALLENGE_PRESETS,
    TextWorldChallengeEnv,
    challenge_splits,
    make_challenge_games,
)


def _make_frozenlake(map_name: str = "4x4", horizon: int | None = None, **kwargs: Any) -> gym.Env:
    """TextFrozenLake in a TimeLimit whose horizon depends on the map (METHOD.md: 20 for 4x4; 8x8 gets 60,
    four times its shortest path). ``horizon`` overrides it (gym.make's ``max_episode_steps`` can only
    shorten it, as it adds an outer TimeLimit)."""
    steps = horizon or {"4x4": 20, "8x8": 60}.get(map_name, 100)
    return gym.wrappers.TimeLimit(TextFrozenLake(map_name=map_name, **kwargs), max_episode_steps=steps)


def _register() -> None:
    specs = {
        "prior_wrappers/TextFrozenLake-v0": ("envs:_make_frozenlake", {}),
        "prior_wrappers/OvercookedTomato-v0": ("envs.overcooked:OvercookedSalad", {"recipe": "tomato"}),
        "prior_wrappers/OvercookedTomatoLettuce-v0": (
            "envs.overcooked:OvercookedSalad",
            {"recipe": "tomato-lettuce"},
        ),
        "prior_wrappers/TextWorld-v0": ("envs.textworld_env:TextWorldEnv", {}),
        "prior_wrappers/ALFWorld-v0": ("envs.alfworld_env:ALFWorldEnv", {}),
        "prior_wrappers/TWSimple-v0": ("envs.textworld_challenges:TextWorldChallengeEnv", {"preset": "simple"}),
        "prior_wrappers/TWCooking-v0": ("envs.textworld_challenges:TextWorldChallengeEnv", {"preset": "cooking"}),
        "prior_wrappers/TWCookingEasy-v0": (
            "envs.textworld_challenges:TextWorldChallengeEnv",
            {"preset": "cooking-easy"},
        ),
        "prior_wrappers/TWTreasureHunter-v0": (
            "envs.textworld_challenges:TextWorldChallengeEnv",
            {"preset": "treasure"},
        ),
        "prior_wrappers/TWCoinCollector-v0": ("envs.textworld_challenges:TextWorldChallengeEnv", {"preset": "coin"}),
    }
    for env_id, (entry_point, kwargs) in specs.items():
        if env_id not in gym.registry:  # importlib.reload(envs) must not warn about re-registration
            gym.register(id=env_id, entry_point=entry_point, kwargs=kwargs)


_register()

__all__ = [
    "ALFWorldEnv",
    "CHALLENGE_PRESETS",
    "OvercookedSalad",
    "TextEnv",
    "TextFrozenLake",
    "TextWorldChallengeEnv",
    "TextWorldEnv",
    "alfworld_data_dir",
    "challenge_splits",
    "find_alfworld_games",
    "make_challenge_games",
    "make_textworld_games",
    "normalize_command",
    "split_games",
]
