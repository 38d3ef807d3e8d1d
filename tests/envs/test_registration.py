"""Registration: one table (envs.registration.ENV_SPECS) behind `import envs`, `import prior_wrappers` and the
package's gymnasium.envs entry point; cheap (no env module, TextWorld, JVM or minigrid imported)."""

from __future__ import annotations

import importlib
import subprocess
import sys
import warnings
from importlib.metadata import entry_points
from pathlib import Path

import gymnasium as gym

import envs
from envs.registration import ENV_SPECS, register_envs

ROOT = Path(__file__).resolve().parents[2]
NEW_SUITES = {
    "prior_wrappers/TextWorldExpress-v0", "prior_wrappers/ScienceWorld-v0", "prior_wrappers/BabyAIText-v0",
    "prior_wrappers/BabyAIGoToLocal-v0", "prior_wrappers/BabyAIPickupLoc-v0", "prior_wrappers/BabyAIPutNextLocal-v0",
    "prior_wrappers/BabyAIOpenDoor-v0", "prior_wrappers/TWXCookingWorldSmall-v0",
}


def test_one_table_holds_every_id():
    ours = {env_id for env_id in gym.registry if env_id.startswith("prior_wrappers/")}
    assert ours == set(ENV_SPECS)  # nothing registered outside the table
    assert NEW_SUITES | {"prior_wrappers/TextFrozenLake-v0", "prior_wrappers/TWCoinCollector-v0"} <= set(ENV_SPECS)
    for env_id, (entry_point, kwargs) in ENV_SPECS.items():
        spec = gym.spec(env_id)
        assert spec.entry_point == entry_point and spec.kwargs == kwargs
        module, attr = entry_point.split(":")
        assert callable(getattr(importlib.import_module(module), attr)), env_id


def test_the_entry_point_names_the_registration_function():
    [ep] = [e for e in entry_points(group="gymnasium.envs") if e.name == "prior_wrappers"]
    assert ep.value == "envs.registration:register_envs" and ep.load() is register_envs


def test_every_path_registers_once_and_quietly():
    ids = list(ENV_SPECS)
    for env_id in ids:
        del gym.registry[env_id]
    with warnings.catch_warnings(record=True) as records:
        warnings.simplefilter("always")
        importlib.reload(importlib.import_module("prior_wrappers"))  # `import prior_wrappers` registers
        assert set(ids) <= set(gym.registry)
        register_envs()
        importlib.reload(envs)
    assert not [r for r in records if "already in registry" in str(r.message) or "Overriding" in str(r.message)]


def test_registering_is_cheap_and_module_syntax_needs_no_import():
    """In a fresh interpreter: the entry point registers every id without importing an env's heavy package, and
    gym.make("envs:prior_wrappers/...") (Gymnasium 1.x's module syntax) works with no import of ours."""
    code = (
        "import sys, gymnasium as gym\n"
        "from importlib.metadata import entry_points\n"
        "[ep] = [e for e in entry_points(group='gymnasium.envs') if e.name == 'prior_wrappers']\n"
        "ep.load()()\n"
        f"assert set({sorted(ENV_SPECS)!r}) <= set(gym.registry)\n"
        "heavy = {'textworld', 'alfworld', 'textworld_express', 'scienceworld', 'py4j', 'minigrid', 'torch',\n"
        "         'transformers', 'prior_wrappers', 'pygame', 'jericho'}\n"
        "loaded = heavy & set(sys.modules)\n"
        "assert not loaded, loaded\n"
        "for e in list(gym.registry):  # start again from nothing: no id, no envs module\n"
        "    if e.startswith('prior_wrappers/'): del gym.registry[e]\n"
        "for m in [m for m in sys.modules if m == 'envs' or m.startswith('envs.')]: del sys.modules[m]\n"
        "env = gym.make('envs:prior_wrappers/TextFrozenLake-v0')\n"
        "print(env.reset(seed=0)[1]['admissible_commands'][0])\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "move left"
