"""Every env in envs/ against the text-env protocol: spaces, info keys, terminal commands, bad input."""

from __future__ import annotations

import doctest
import importlib
import warnings

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import envs
from envs import ALFWorldEnv, OvercookedSalad, TextFrozenLake, TextWorldEnv

# Shortest safe paths on gymnasium's maps (4x4: down the left side, then along the bottom row).
WINNING_MOVES = {
    "frozenlake-4x4": ["move down", "move down", "move right", "move down", "move right", "move right"],
    "frozenlake-8x8": ["move right"] * 7 + ["move down"] * 7,
}
ENV_NAMES = [
    "frozenlake-4x4", "frozenlake-8x8", "overcooked-tomato", "overcooked-tomato-lettuce", "textworld", "alfworld"
]


@pytest.fixture
def make_env(request):
    """A factory: name -> (raw env, a function giving the next command of a winning episode)."""

    def make(name: str):
        if name.startswith("frozenlake"):
            env = TextFrozenLake(map_name=name.removeprefix("frozenlake-"))
            plan = iter(WINNING_MOVES[name])
            return env, lambda: next(plan)
        if name.startswith("overcooked"):
            env = OvercookedSalad(recipe=name.removeprefix("overcooked-"))
            return env, env.expert_command
        if name == "textworld":
            games = request.getfixturevalue("textworld_games")["games"]
            env = TextWorldEnv(games[1], max_episode_steps=20)
            return env, env.expert_command
        data = request.getfixturevalue("alfworld_data")
        env = ALFWorldEnv(data_dir=data, split="train", num_games=1, expert=True)
        return env, env.expert_command

    return make


def _check_info(info: dict) -> None:
    commands = info["admissible_commands"]
    assert isinstance(commands, list) and commands, "admissible_commands must be a non-empty list"
    assert all(isinstance(c, str) and c for c in commands)
    assert isinstance(info["task"], str) and info["task"]
    assert isinstance(info["is_success"], bool)


@pytest.mark.parametrize("name", ENV_NAMES)
def test_winning_episode_follows_the_protocol(name, make_env):
    env, next_command = make_env(name)
    obs, info = env.reset(seed=0)
    assert isinstance(obs, str) and obs in env.observation_space
    _check_info(info)
    assert not info["is_success"]
    total, terminated, truncated, steps = 0.0, False, False, 0
    while not (terminated or truncated):
        command = next_command()
        assert command in info["admissible_commands"]
        obs, reward, terminated, truncated, info = env.step(command)
        steps += 1
        assert isinstance(obs, str) and obs in env.observation_space
        assert isinstance(reward, float)
        _check_info(info)  # the final step too: the wrappers score the terminal state's commands
        assert info["is_success"] == terminated  # the only way this episode ends is by winning
        total += reward
    assert terminated and not truncated and info["is_success"] and total > 0.9
    env.close()


@pytest.mark.parametrize("name", ENV_NAMES)
def test_gymnasium_check_env_passes_on_the_raw_env(name, make_env):
    env, _ = make_env(name)
    check_env(env, skip_render_check=True)


@pytest.mark.parametrize("name", ENV_NAMES)
def test_prompt_example_is_a_short_episode(name, make_env):
    env, _ = make_env(name)
    example = env.prompt_example
    assert isinstance(example, str) and len(example) < 2000
    lines = example.splitlines()
    assert lines[0].startswith("Observation: ")
    assert any(line.startswith("Action: ") for line in lines)
    assert all(line.startswith(("Observation: ", "Action: ")) for line in lines)


@pytest.mark.parametrize("name", ENV_NAMES)
def test_non_string_commands_raise_type_error(name, make_env):
    env, _ = make_env(name)
    env.reset(seed=0)
    for bad in (0, np.int64(2), None, b"move left", ["move left"]):
        with pytest.raises(TypeError, match="str commands"):
            env.step(bad)


@pytest.mark.parametrize("name", ENV_NAMES)
def test_newlines_and_spaces_in_a_command_collapse_to_one_command(name, make_env):
    env, next_command = make_env(name)
    env.reset(seed=0)
    command = next_command()
    obs_clean, reward_clean, *_ = env.step(command)
    env.reset(seed=0)
    messy = "\n  " + command.upper().replace(" ", " \t\n ") + "\r\n"
    obs_messy, reward_messy, *_ = env.step(messy)
    assert (obs_messy, reward_messy) == (obs_clean, reward_clean)


@pytest.mark.parametrize("name", ["frozenlake-4x4", "overcooked-tomato", "overcooked-tomato-lettuce"])
def test_odd_unicode_command_is_a_documented_no_op_in_our_envs(name, make_env):
    env, _ = make_env(name)
    obs0, info0 = env.reset(seed=0)
    obs, reward, terminated, truncated, info = env.step("pick up t\u00f6mato \u2603\u200b\U0001f345")
    assert obs.startswith('Unknown command "pick up t\u00f6mato \u2603\u200b\U0001f345"')
    assert obs0 in obs  # the state is described unchanged
    assert not terminated and not truncated
    assert info["admissible_commands"] == info0["admissible_commands"]
    assert reward in (0.0, -0.001)  # FrozenLake: 0; Overcooked: waiting costs one primitive step


def test_numpy_string_commands_are_accepted():
    env = TextFrozenLake()
    env.reset(seed=0)
    obs, *_ = env.step(np.str_("move down"))
    assert obs.startswith("You move down.")
    env.reset(seed=0)
    obs, *_ = env.step(np.array("move down"))
    assert obs.startswith("You move down.")


def test_registered_ids_make_the_envs(textworld_games, alfworld_data):
    registered = [
        ("prior_wrappers/TextFrozenLake-v0", {}, TextFrozenLake),
        ("prior_wrappers/OvercookedTomato-v0", {}, OvercookedSalad),
        ("prior_wrappers/OvercookedTomatoLettuce-v0", {}, OvercookedSalad),
        ("prior_wrappers/TextWorld-v0", {"game_files": textworld_games["games"]}, TextWorldEnv),
        ("prior_wrappers/ALFWorld-v0", {"data_dir": alfworld_data, "task_types": [1], "split": "train"}, ALFWorldEnv),
    ]
    for env_id, kwargs, kind in registered:
        env = gym.make(env_id, **kwargs)
        assert isinstance(env.unwrapped, kind)
        obs, info = env.reset(seed=0)
        _check_info(info)
        assert env.unwrapped.prompt_example
        env.close()
    assert gym.make("prior_wrappers/OvercookedTomatoLettuce-v0").unwrapped.recipe == "tomato-lettuce"
    assert gym.make("prior_wrappers/TextFrozenLake-v0").spec.max_episode_steps == 20
    assert gym.make("prior_wrappers/TextFrozenLake-v0", map_name="8x8").spec.max_episode_steps == 60
    assert gym.make("prior_wrappers/TextFrozenLake-v0", horizon=7).spec.max_episode_steps == 7


def test_textworld_adapter_never_lists_no_commands(textworld_games):
    """If a game ever answered with no admissible command, the always-valid "look" and "inventory" stand in."""
    env = TextWorldEnv(textworld_games["games"][0])
    env.reset(seed=0)
    assert env._info({"admissible_commands": []})["admissible_commands"] == ["look", "inventory"]


def test_reimporting_envs_does_not_reregister():
    with warnings.catch_warnings(record=True) as records:
        warnings.simplefilter("always")
        importlib.reload(envs)
    assert not [r for r in records if "already in registry" in str(r.message)]


@pytest.mark.parametrize(
    "module", ["envs", "envs.protocol", "envs.frozenlake", "envs.overcooked", "envs.overcooked_kitchen"]
)
def test_docstring_examples_run(module):
    result = doctest.testmod(importlib.import_module(module), optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0
