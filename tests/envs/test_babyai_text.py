"""BabyAI as text: the view in words (positions, colours, door states, carried object), the six commands,
the four level families played by minigrid's bot, bad input."""

from __future__ import annotations

import doctest

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

pytest.importorskip("minigrid", reason="needs the babyai extra")

import envs.babyai_text  # noqa: E402
from envs.babyai_text import COMMANDS, BabyAITextEnv, babyai_level_id, describe_view, relative_position  # noqa: E402


def _view(cells: dict[tuple[int, int], tuple[int, int, int]], size: int = 7) -> np.ndarray:
    image = np.zeros((size, size, 3), dtype=np.uint8)  # 0: unseen
    image[:, :, 0] = 1  # empty floor
    for (x, y), code in cells.items():
        image[x, y] = code
    return image


def test_view_is_described_relative_to_the_agent():
    # agent at (3, 6) facing up: x grows to the right, y shrinks forward
    image = _view({
        (2, 4): (6, 0, 0),  # red ball: 2 forward, 1 left
        (3, 3): (4, 2, 2),  # locked blue door: 3 forward
        (3, 1): (2, 5, 0),  # wall 5 forward (straight ahead)
        (6, 6): (2, 5, 0),  # wall 3 right
        (0, 0): (2, 5, 0),  # a wall off the three rays: not mentioned
        (4, 5): (5, 4, 0),  # yellow key right in front? no: 1 forward, 1 right
        (3, 5): (7, 1, 0),  # green box right in front
    })
    text = describe_view(image)
    assert text.startswith("You see a green box 1 step forward, a yellow key 1 step forward and 1 step right, "
                           "a locked blue door 3 steps forward, a red ball 2 steps forward and 1 step left, "
                           "a wall 5 steps forward, a wall 3 steps right.")  # nearest first (in steps)
    assert "You carry nothing." in text and text.endswith("Right in front of you is a green box.")

    class Key:
        color, type = "purple", "key"

    assert "You carry a purple key." in describe_view(_view({}), carrying=Key())
    assert describe_view(_view({})).startswith("You see nothing but the floor.")
    assert relative_position(-1, 0) == "1 step backward"


@pytest.mark.parametrize("level", ["GoToLocal", "PickupLoc", "PutNextLocal", "OpenDoor"])
def test_the_bot_solves_each_family_through_text_commands(level):
    env = BabyAITextEnv(level)
    for seed in range(3):
        obs, info = env.reset(seed=seed)
        assert info["admissible_commands"] == list(COMMANDS) and info["task"]
        assert obs.startswith("You see") and info["task"] not in ("",)
        terminated = truncated = False
        total = 0.0
        while not (terminated or truncated):
            obs, reward, terminated, truncated, info = env.step(env.expert_command())
            total += reward
        assert terminated and info["is_success"] and 0 < total <= 1, (level, seed)


def test_carried_objects_appear_in_the_text():
    env = BabyAITextEnv("PickupLoc")
    obs, info = env.reset(seed=0)
    target = info["task"].removeprefix("pick up the ")  # e.g. "grey key"
    while not info["is_success"]:
        obs, reward, terminated, truncated, info = env.step(env.expert_command())
    assert f"You carry a {target}." in obs and info["carrying"] == target


def test_check_env_and_determinism():
    env = BabyAITextEnv("GoToLocal")
    check_env(env, skip_render_check=True)
    assert env.reset(seed=5)[0] == env.reset(seed=5)[0]


def test_bad_input():
    with pytest.raises(ValueError, match="unknown BabyAI level 'GoToMars'.*GoToLocal"):
        BabyAITextEnv("GoToMars")
    assert babyai_level_id("BabyAI-GoToObjS6-v1") == "BabyAI-GoToObjS6-v1"
    env = BabyAITextEnv("GoToLocal")
    with pytest.raises(RuntimeError, match="reset"):
        env.step("go forward")
    obs0, info0 = env.reset(seed=1)
    with pytest.raises(TypeError, match="str commands"):
        env.step(2)
    obs, reward, terminated, truncated, info = env.step("fly away")
    assert obs.startswith('Unknown command "fly away".') and obs.endswith(obs0)  # the agent stayed put
    assert reward == 0.0 and not terminated and env._env.unwrapped.step_count == 1  # but it cost a step
    obs, *_ = env.step("  GO \t forward ")  # case and spacing do not matter
    assert obs != obs0
    env.reset(seed=1)
    while True:
        obs, reward, terminated, truncated, info = env.step(env.expert_command())
        if terminated:
            break
    obs, reward, terminated, truncated, info = env.step("go forward")
    assert obs.startswith("The episode is over.") and (reward, terminated) == (0.0, True) and info["is_success"]
    with pytest.raises(RuntimeError, match="nothing left to do"):
        env.expert_command()
    with pytest.raises(RuntimeError, match="expert=True"):
        BabyAITextEnv("GoToLocal", expert=False).expert_command()


def test_where_the_bot_fails_the_expert_says_so():
    env = BabyAITextEnv("KeyInBox")  # minigrid documents that its bot cannot solve KeyInBox
    env.reset(seed=0)
    with pytest.raises(RuntimeError, match="BabyAI bot"):
        for _ in range(50):
            env.step(env.expert_command())


def test_registered_ids_and_one_line_wrapping():
    from prior_wrappers import FunctionPrior, LLMPriorWrapper, VecLLMPrior, make_text_vec_env

    prior = FunctionPrior(lambda p, c: [float(x == "go forward") for x in c])
    env = LLMPriorWrapper(gym.make("prior_wrappers/BabyAIGoToLocal-v0"), prior, k=6, encoder="hashing")
    obs, info = env.reset(seed=0)
    assert info["prior_candidates"][0] == "go forward" and obs["action_mask"].sum() == 6
    env.step(0)
    venv = VecLLMPrior(make_text_vec_env("prior_wrappers/BabyAIText-v0", n_envs=2, env_kwargs={"level": "OpenDoor"}),
                       prior, k=6, encoder="hashing")
    assert venv.reset()["action_mask"].shape == (2, 6)
    for env_id, level in [("BabyAIPickupLoc-v0", "PickupLoc"), ("BabyAIPutNextLocal-v0", "PutNextLocal"),
                          ("BabyAIOpenDoor-v0", "OpenDoor"), ("BabyAIText-v0", "GoToLocal")]:
        assert gym.make(f"prior_wrappers/{env_id}").unwrapped.level == level


def test_docstring_examples_run():
    result = doctest.testmod(envs.babyai_text, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0


def test_prompt_example_is_a_short_episode():
    example = BabyAITextEnv("GoToLocal").prompt_example
    lines = example.splitlines()
    assert len(example) < 2000 and lines[0].startswith("Observation: ")
    assert all(line.startswith(("Observation: ", "Action: ")) for line in lines) and "Action: " in example
    assert all(line.removeprefix("Action: ") in COMMANDS for line in lines if line.startswith("Action: "))
