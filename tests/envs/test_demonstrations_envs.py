"""Demonstrations.from_expert on the envs' experts: TextWorld (policy_commands), Overcooked, ALFWorld's planner."""

from __future__ import annotations

import gymnasium as gym
import pytest

import envs  # noqa: F401  (registers the ids)
from envs import ALFWorldEnv, OvercookedSalad, TextWorldEnv
from prior_wrappers import Demonstrations, FunctionPrior, LLMPriorWrapper


def _replay_wins(env: gym.Env, demo, **reset_kwargs) -> bool:
    """Replaying a demonstration's commands from the same start wins again (the steps are what happened)."""
    obs, info = env.reset(**reset_kwargs)
    for observation, command in demo.steps:
        assert observation == obs
        obs, _, terminated, truncated, info = env.step(command)
    return bool(info["is_success"]) and obs == demo.final_observation


def test_from_expert_on_small_textworld_games(textworld_games):
    games = textworld_games["games"]
    env = TextWorldEnv(games, max_episode_steps=20)
    demos = Demonstrations.from_expert(env, 2, seed=0, shots=2, max_tokens=None)
    assert len(demos) == 2 and all(d.success for d in demos.episodes)
    assert {d.source for d in demos.episodes} == {str(g.resolve()) for g in games}  # game i for episode i
    assert [len(d.steps) for d in demos.episodes] == [1, 2]  # quest lengths 1 and 2
    assert all(d.task and d.episode_return == 1.0 for d in demos.episodes)
    for i, demo in enumerate(demos.episodes):
        assert _replay_wins(env, demo, seed=i, options={"game_index": i})
    assert demos.sources == {str(g.resolve()) for g in games}
    with pytest.raises(ValueError, match="evaluation games"):
        demos.check_no_leakage([games[1]])
    env.close()


def test_from_expert_on_overcooked_and_in_the_prompt():
    env = gym.make("prior_wrappers/OvercookedTomato-v0")
    demos = Demonstrations.from_expert(env, 3, seed=5, shots=1)
    assert len(demos) == 3 and [d.source for d in demos.episodes] == [
        "prior_wrappers/OvercookedTomato-v0:5", "prior_wrappers/OvercookedTomato-v0:6",
        "prior_wrappers/OvercookedTomato-v0:7"]
    assert all(d.steps[-1][1] == "serve bowl with chopped tomato" and d.success for d in demos.episodes)
    assert _replay_wins(env, demos.episodes[1], seed=6)
    again = Demonstrations.from_expert(gym.make("prior_wrappers/OvercookedTomato-v0"), 3, seed=5, shots=1)
    assert again.text() == demos.text()  # deterministic given the seed
    prior = FunctionPrior(lambda p, c: [0.0] * len(c), name="flat")
    wrapped = LLMPriorWrapper(env, prior, k=8, encoder=None, demonstrations=demos)
    _, info = wrapped.reset(seed=100)
    assert demos.text() in info["prior_prompt"] and env.unwrapped.prompt_example not in info["prior_prompt"]


def test_from_expert_refuses_an_expert_that_never_wins():
    env = OvercookedSalad(max_primitive_steps=3)  # too short to serve
    with pytest.raises(RuntimeError, match="won none"):
        Demonstrations.from_expert(env, 2)


def test_from_expert_on_alfworld_synthetic_games(alfworld_data):
    env = ALFWorldEnv(data_dir=alfworld_data, split="train", expert=True, max_episode_steps=20)
    demos = Demonstrations.from_expert(env, 2, seed=0, shots=2, max_tokens=None)
    assert len(demos) == 2 and all(d.success for d in demos.episodes)
    assert {d.source for d in demos.episodes} == set(env.game_files)
    assert all(d.task.startswith("put") for d in demos.episodes)
    assert "Example 2:" in demos.text()
    unseen = ALFWorldEnv(data_dir=alfworld_data, split="valid_unseen")
    demos.check_no_leakage(unseen.game_files)  # train and unseen games are different files
    with pytest.raises(ValueError):
        demos.check_no_leakage(env.game_files[:1])
    env.close()
