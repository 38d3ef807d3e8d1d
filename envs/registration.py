"""The Gymnasium ids of the text envs: one table, registered by ``import envs``, ``import prior_wrappers`` and the
package's ``gymnasium.envs`` entry point.

Registering is cheap: it imports Gymnasium and this package's light modules; TextWorld, the suites' Java
bridges (py4j, and the JVM), minigrid and torch load only when an env is made. Three ways to get the ids:

- ``import prior_wrappers`` (or ``import envs``), then ``gym.make("prior_wrappers/...")``;
- ``gym.make("envs:prior_wrappers/...")``: Gymnasium 1.x imports the module named before the colon first;
- the ``[project.entry-points."gymnasium.envs"]`` entry ``prior_wrappers = "envs.registration:register_envs"``,
  which Gymnasium 0.26-0.29 called on ``import gymnasium``. Gymnasium 1.0 removed that plugin hook (its
  ``load_plugin_envs`` is gone), so with the Gymnasium this package supports (>= 1.0) the entry point is only
  discoverable metadata: ``importlib.metadata.entry_points(group="gymnasium.envs")``.
"""

from __future__ import annotations

from typing import Any

# id -> (entry point, default kwargs). Add new envs here: every registration path reads this table.
ENV_SPECS: dict[str, tuple[str, dict[str, Any]]] = {
    "prior_wrappers/TextFrozenLake-v0": ("envs:_make_frozenlake", {}),
    "prior_wrappers/OvercookedTomato-v0": ("envs.overcooked:OvercookedSalad", {"recipe": "tomato"}),
    "prior_wrappers/OvercookedTomatoLettuce-v0": ("envs.overcooked:OvercookedSalad", {"recipe": "tomato-lettuce"}),
    "prior_wrappers/OvercookedTomatoLettuceOnion-v0": (
        "envs.overcooked:OvercookedSalad",
        {"recipe": "tomato-lettuce-onion", "layout_seed": 0},
    ),
    "prior_wrappers/TextWorld-v0": ("envs.textworld_env:TextWorldEnv", {}),
    "prior_wrappers/ALFWorld-v0": ("envs.alfworld_env:ALFWorldEnv", {}),
    "prior_wrappers/TWSimple-v0": ("envs.textworld_challenges:TextWorldChallengeEnv", {"preset": "simple"}),
    "prior_wrappers/TWCooking-v0": ("envs.textworld_challenges:TextWorldChallengeEnv", {"preset": "cooking"}),
    "prior_wrappers/TWCookingEasy-v0": ("envs.textworld_challenges:TextWorldChallengeEnv", {"preset": "cooking-easy"}),
    "prior_wrappers/TWTreasureHunter-v0": ("envs.textworld_challenges:TextWorldChallengeEnv", {"preset": "treasure"}),
    "prior_wrappers/TWCoinCollector-v0": ("envs.textworld_challenges:TextWorldChallengeEnv", {"preset": "coin"}),
    "prior_wrappers/TextWorldExpress-v0": ("envs.textworld_express_env:TextWorldExpressEnv", {}),
    "prior_wrappers/TWXCookingWorldSmall-v0": (
        "envs.textworld_express_env:TextWorldExpressEnv",
        {
            "game": "cookingworld",
            "game_params": {
                "numLocations": 1,
                "numIngredients": 2,
                "numDistractorItems": 2,
                "includeDoors": 0,
                "limitInventorySize": 0,
            },
        },
    ),
    "prior_wrappers/ScienceWorld-v0": ("envs.scienceworld_env:ScienceWorldEnv", {}),
    "prior_wrappers/BabyAIText-v0": ("envs.babyai_text:BabyAITextEnv", {}),
    "prior_wrappers/BabyAIGoToLocal-v0": ("envs.babyai_text:BabyAITextEnv", {"level": "GoToLocal"}),
    "prior_wrappers/BabyAIPickupLoc-v0": ("envs.babyai_text:BabyAITextEnv", {"level": "PickupLoc"}),
    "prior_wrappers/BabyAIPutNextLocal-v0": ("envs.babyai_text:BabyAITextEnv", {"level": "PutNextLocal"}),
    "prior_wrappers/BabyAIOpenDoor-v0": ("envs.babyai_text:BabyAITextEnv", {"level": "OpenDoor"}),
}


def register_envs() -> None:
    """Register every id of :data:`ENV_SPECS` that Gymnasium does not know yet (so calling it twice, or from
    two paths, never re-registers)."""
    from gymnasium.envs.registration import register, registry

    for env_id, (entry_point, kwargs) in ENV_SPECS.items():
        if env_id not in registry:
            register(id=env_id, entry_point=entry_point, kwargs=dict(kwargs))
