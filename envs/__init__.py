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
``prior_wrappers/TextWorldExpress-v0``    :class:`TextWorldExpressEnv` (kwargs ``game``, ``game_params``,
                                           ``split``, ...; needs Java); ``TWXCookingWorldSmall-v0``: 1 room
``prior_wrappers/ScienceWorld-v0``        :class:`ScienceWorldEnv` (kwargs ``task``, ``split``,
                                           ``simplification``, ``candidates``, ...; needs Java)
``prior_wrappers/BabyAIText-v0``          :class:`BabyAITextEnv` (kwarg ``level``); ``BabyAIGoToLocal-v0``,
                                           ``BabyAIPickupLoc-v0``, ``BabyAIPutNextLocal-v0``, ``BabyAIOpenDoor-v0``
=========================================  ============================================================

>>> import gymnasium as gym, envs
>>> env = gym.make("prior_wrappers/TextFrozenLake-v0")
>>> obs, info = env.reset(seed=0)
>>> info["admissible_commands"][0]
'move left'

TextWorld, ALFWorld, TextWorldExpress, ScienceWorld and minigrid are imported only when their envs are made
(they need the ``textworld``, ``alfworld``, ``textworld-express``, ``scienceworld`` and ``babyai`` extras).
The ids are also registered by ``import prior_wrappers``, and ``gym.make("envs:prior_wrappers/...")`` works
without any import (see :mod:`envs.registration`).
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym

from envs.alfworld_env import ALFWorldEnv, alfworld_data_dir, find_alfworld_games
from envs.babyai_text import BabyAITextEnv
from envs.frozenlake import TextFrozenLake
from envs.jvm import JavaNotFoundError, JVMDiedError
from envs.overcooked import OvercookedSalad
from envs.protocol import TextEnv, normalize_command
from envs.scienceworld_env import ScienceWorldEnv, focused_commands
from envs.textworld_challenges import (
    CHALLENGE_PRESETS,
    TextWorldChallengeEnv,
    challenge_splits,
    make_challenge_games,
)
from envs.textworld_env import TextWorldEnv, make_textworld_games, split_games
from envs.textworld_express_env import TextWorldExpressEnv


def _make_frozenlake(map_name: str = "4x4", horizon: int | None = None, **kwargs: Any) -> gym.Env:
    """TextFrozenLake in a TimeLimit whose horizon depends on the map (METHOD.md: 20 for 4x4; 8x8 gets 60,
    four times its shortest path). ``horizon`` overrides it (gym.make's ``max_episode_steps`` can only
    shorten it, as it adds an outer TimeLimit)."""
    steps = horizon or {"4x4": 20, "8x8": 60}.get(map_name, 100)
    return gym.wrappers.TimeLimit(TextFrozenLake(map_name=map_name, **kwargs), max_episode_steps=steps)


def _register() -> None:
    # The ids live in envs.registration.ENV_SPECS, the one table that `import prior_wrappers` and the package's
    # entry point register too; register_envs() skips ids already registered (importlib.reload(envs) stays quiet).
    from envs.registration import register_envs

    register_envs()


_register()

__all__ = [
    "ALFWorldEnv",
    "BabyAITextEnv",
    "JVMDiedError",
    "JavaNotFoundError",
    "ScienceWorldEnv",
    "TextWorldExpressEnv",
    "focused_commands",
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
