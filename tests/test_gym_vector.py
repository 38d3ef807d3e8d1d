"""GymVectorLLMPrior on Gymnasium 1.x SyncVectorEnv/AsyncVectorEnv of toy text envs, with fast deterministic priors:
one prior call per vector step, next-step and same-step autoreset, the single-env wrapper's observations."""

from __future__ import annotations

import doctest
import pickle

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.vector import AutoresetMode
from toy_text_env import CorridorTextEnv, CountingPrior, east

import prior_wrappers.gym_vector as gym_vector
from prior_wrappers import (
    Demonstrations,
    FunctionPrior,
    GymVectorLLMPrior,
    LLMPriorWrapper,
    TextInInfo,
    UniformPrior,
    make_text_gym_vector_env,
)
from prior_wrappers.gym_vector import sub_env_info

MODES = [AutoresetMode.NEXT_STEP, AutoresetMode.SAME_STEP]
FROZEN_ACTIONS = ["move left", "move down", "move right", "move up"]


def episode(prompt: str) -> str:
    """The prompt after the in-context example: the task, the history and the current observation."""
    return prompt.split("Task:", 1)[1]


def corridor(length: int = 3, n: int = 3, mode: AutoresetMode = AutoresetMode.NEXT_STEP, vec: str = "sync"):
    return make_text_gym_vector_env(lambda: CorridorTextEnv(length=length, max_steps=5), n,
                                    vectorization_mode=vec, autoreset_mode=mode)


def rows(obs: dict[str, np.ndarray], i: int) -> dict[str, np.ndarray]:
    return {key: value[i] for key, value in obs.items()}


def assert_same_obs(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> None:
    assert set(a) == set(b)
    for key in a:
        np.testing.assert_allclose(a[key], b[key], atol=1e-6, err_msg=key)


def test_docstring_example_runs():
    failures, tried = doctest.testmod(gym_vector, extraglobs={}, optionflags=doctest.ELLIPSIS)[:2]
    assert tried >= 5 and failures == 0


@pytest.mark.parametrize("mode", MODES, ids=lambda m: m.value)
def test_observations_and_prompts_equal_the_single_env_wrappers(mode):
    """Sub-env i seeded s + i gives what LLMPriorWrapper gives for its env seeded s + i, episode after episode
    (the history in the prompts included: autoresets must not leak the last episode into the next)."""
    n, rng = 3, np.random.default_rng(0)
    envs = GymVectorLLMPrior(corridor(mode=mode, n=n), FunctionPrior(east), k=4, encoder="hashing", history=2)
    singles = [LLMPriorWrapper(CorridorTextEnv(length=3, max_steps=5), FunctionPrior(east), k=4, encoder="hashing",
                               history=2) for _ in range(n)]
    obs, info = envs.reset(seed=7)
    expected = [s.reset(seed=7 + i) for i, s in enumerate(singles)]
    pending_reset = np.zeros(n, dtype=bool)
    episodes_ended = 0
    for t in range(25):
        for i, (single_obs, single_info) in enumerate(expected):
            assert_same_obs(rows(obs, i), single_obs)
            assert info["prior_prompt"][i] == single_info["prior_prompt"]
            assert info["prior_candidates"][i] == single_info["prior_candidates"]
        actions = rng.integers(0, 4, size=n)
        obs, rewards, terminations, truncations, info = envs.step(actions)
        for i, single in enumerate(singles):
            if pending_reset[i]:  # NEXT_STEP: this step reset sub-env i; its action was ignored
                expected[i] = single.reset()
                assert rewards[i] == 0 and not terminations[i] and not truncations[i] and not info["_command"][i]
                continue
            s_obs, s_reward, s_term, s_trunc, s_info = single.step(actions[i])
            assert (rewards[i], terminations[i], truncations[i]) == (s_reward, s_term, s_trunc)
            assert info["command"][i] == s_info["command"]
            expected[i] = (s_obs, s_info)
            if s_term or s_trunc:
                episodes_ended += 1
                if mode == AutoresetMode.SAME_STEP:  # the final state is in info, obs is the next episode's first
                    assert_same_obs(info["final_obs"][i], s_obs)
                    assert info["final_info"]["prior_prompt"][i] == s_info["prior_prompt"]
                    expected[i] = single.reset()
        pending_reset = (terminations | truncations) if mode == AutoresetMode.NEXT_STEP else pending_reset
    assert episodes_ended >= 6  # the comparison went through many autoresets


@pytest.mark.parametrize("vec", ["sync", "async"])
@pytest.mark.parametrize("mode", MODES, ids=lambda m: m.value)
def test_exactly_one_prior_call_per_vector_step_through_autoresets(mode, vec):
    prior = CountingPrior()
    # score_terminal: the terminated episodes' last states are scored too (test_terminal_states.py: without it)
    envs = GymVectorLLMPrior(corridor(n=4, mode=mode, vec=vec), prior, k=4, encoder="hashing", score_terminal=True)
    try:
        envs.reset(seed=0)
        assert len(prior.calls) == 1 and len(prior.calls[0]) == 4
        ended = 0
        actions = np.array([0, 0, 1, 0])  # slot 0 is "go east": three sub-envs win every 2 steps, one times out
        for t in range(12):
            obs, _, terminations, truncations, info = envs.step(actions)
            dones = terminations | truncations
            assert len(prior.calls) == 2 + t  # one call for the whole step
            # NEXT_STEP scores every sub-env's current state; SAME_STEP also the final states of those that ended
            extra = int(dones.sum()) if mode == AutoresetMode.SAME_STEP else 0
            assert len(prior.calls[-1]) == 4 + extra
            ended += int(dones.sum())
            assert envs.prior_stats["calls"] == len(prior.calls)
            for i in np.flatnonzero(dones):
                assert info["_prior_stats"][i] and info["prior_stats"]["calls"][i] == len(prior.calls)
        assert ended >= 12  # NEXT_STEP: 3 winners every 3 steps (2 moves, 1 reset), the time-out after 5 moves
    finally:
        envs.close()


def test_next_step_autoreset_returns_the_new_episode_with_reward_0_and_an_empty_history():
    prior = CountingPrior()
    envs = GymVectorLLMPrior(corridor(n=2), prior, k=4, encoder=None, history=2, invalid_action="raise",
                             score_terminal=True)
    envs.reset(seed=0)
    envs.step(np.array([0, 1]))
    obs, rewards, terminations, _, info = envs.step(np.array([0, 1]))  # sub-env 0 reaches the exit
    assert terminations.tolist() == [True, False] and rewards[0] == 1.0
    assert info["text_observation"][0] == "You are in room 3 of 3. The exit is to the east."  # the last state
    assert "room 3 of 3" in episode(prior.calls[-1][0])  # the last state, scored on the step that ended
    # slot 3 is empty: with invalid_action="raise" it would raise, but sub-env 0 ignores its action on this step
    obs, rewards, terminations, truncations, info = envs.step(np.array([3, 1]))
    assert rewards[0] == 0.0 and not terminations[0] and not truncations[0]
    assert info["text_observation"][0] == "You are in room 1 of 3. The exit is to the east."
    assert not info["_command"][0] and info["command"][1] == "go west"
    # the new episode's first state alone: no history of the ended one, and the stale last state is not rescored
    assert episode(prior.calls[-1][0]).count("Observation:") == 1 and len(prior.calls[-1]) == 2
    *_, info = envs.step(np.array([0, 1]))
    assert info["command"][0] == "go east"
    assert episode(prior.calls[-1][0]).count("Observation:") == 2  # now the new episode's own first step


def test_same_step_autoreset_puts_the_final_state_in_final_obs_and_final_info():
    envs = GymVectorLLMPrior(corridor(n=2, mode=AutoresetMode.SAME_STEP), FunctionPrior(east), k=4, encoder="hashing",
                             score_terminal=True)
    envs.reset(seed=0)
    envs.step(np.array([0, 1]))
    obs, rewards, terminations, _, info = envs.step(np.array([0, 1]))
    assert terminations.tolist() == [True, False] and rewards[0] == 1.0
    assert info["text_observation"][0] == "You are in room 1 of 3. The exit is to the east."  # already reset
    assert info["_final_obs"].tolist() == [True, False] and info["final_obs"][1] is None
    assert envs.single_observation_space.contains(info["final_obs"][0])
    final = sub_env_info(info["final_info"], 0)
    assert final["is_success"] and final["command"] == "go east" and final["prior_candidates"][0] == "go east"
    assert final["text_observation"] == "You are in room 3 of 3. The exit is to the east."
    assert "prompt_example" not in final and sub_env_info(info["final_info"], 1) == {}
    assert info["command"].tolist() == ["go east", "go west"]  # every sub-env ran its command on this step


@pytest.mark.parametrize("mode", MODES, ids=lambda m: m.value)
def test_spaces_contain_every_observation_and_seeds_repeat(mode):
    """check_env-style: the (single_)observation_space contains what reset and step return, action_space samples
    are valid steps, and the same seed gives the same rollout."""

    def rollout(seed: int) -> list[dict[str, np.ndarray]]:
        envs = GymVectorLLMPrior(corridor(n=3, mode=mode), FunctionPrior(east), k=4, encoder="hashing",
                                 invalid_action="resample", seed=seed)
        assert envs.single_action_space == gym.spaces.Discrete(4) and envs.action_space.shape == (3,)
        envs.action_space.seed(seed)
        obs, _ = envs.reset(seed=seed)
        seen = [obs]
        for _ in range(12):
            obs, *_ , info = envs.step(envs.action_space.sample())
            seen.append(obs)
            for final in info.get("final_obs", []):
                assert final is None or envs.single_observation_space.contains(final)
        for batch in seen:
            assert envs.observation_space.contains(batch)
            assert all(envs.single_observation_space.contains(rows(batch, i)) for i in range(3))
        assert envs.action_masks().shape == (3, 4) and envs.action_masks().dtype == bool
        assert envs.metadata["autoreset_mode"] == mode
        return seen

    first, again = rollout(3), rollout(3)
    for a, b in zip(first, again):
        assert_same_obs(a, b)


def test_fixed_action_non_text_envs_through_async_like_the_single_wrapper():
    def text(s) -> str:
        return f"You stand on tile {int(s)} of a 4x4 frozen lake."

    prior = FunctionPrior(lambda p, c: [1.0 if x == "move right" else 0.0 for x in c])
    options = dict(k=4, encoder="hashing", actions=FROZEN_ACTIONS, observation_to_text=text)
    envs = GymVectorLLMPrior(make_text_gym_vector_env("FrozenLake-v1", 2, vectorization_mode="async",
                                                      env_kwargs={"is_slippery": False}), prior, **options)
    single = LLMPriorWrapper(gym.make("FrozenLake-v1", is_slippery=False), prior, **options)
    try:
        obs, info = envs.reset(seed=0)
        single_obs, single_info = single.reset(seed=0)
        for action in [0, 1, 0, 3]:
            assert_same_obs(rows(obs, 0), single_obs)
            assert info["text_observation"][0] == single_info["text_observation"]
            obs, *_, info = envs.step(np.array([action, action]))
            single_obs, *_, single_info = single.step(action)
            assert info["command"][0] == single_info["command"]
        assert info["text_observation"][0] != text(0)  # the lake was really walked
    finally:
        envs.close()


def test_env_functions_pickle_for_async_workers():
    fn = make_text_gym_vector_env("FrozenLake-v1", 1).env_fns[0]
    env = pickle.loads(pickle.dumps(fn))()
    assert isinstance(env, TextInInfo) and env.observation_space.shape == (1,)


def test_bad_input_gets_clear_errors():
    envs = GymVectorLLMPrior(corridor(n=2), UniformPrior(), k=4, encoder=None)
    with pytest.raises(RuntimeError, match="call reset"):
        envs.step(np.zeros(2, dtype=int))
    envs.reset(seed=0)
    with pytest.raises(ValueError, match=r"shape \(2,\)"):
        envs.step(np.zeros(3, dtype=int))
    with pytest.raises(ValueError, match=r"shape \(2,\)"):
        envs.step(0)
    with pytest.raises(TypeError, match="integer"):
        envs.step(np.array([0.5, 1.0]))
    with pytest.raises(ValueError, match="outside the action space"):
        envs.step(np.array([0, 4]))
    with pytest.raises(ValueError, match="reset_mask"):
        envs.reset(options={"reset_mask": np.array([True, False])})
    with pytest.raises(ValueError, match="NEXT_STEP"):
        GymVectorLLMPrior(corridor(n=2, mode=AutoresetMode.DISABLED), UniformPrior(), k=4, encoder=None)
    with pytest.raises(TypeError, match="observation_to_text"):  # no text, and no way to make some
        GymVectorLLMPrior(gym.make_vec("CartPole-v1", 2), UniformPrior(), k=4, encoder=None)
    with pytest.raises(TypeError, match="observation_to_text"):  # an env without text, no way to make some
        GymVectorLLMPrior(make_text_gym_vector_env("FrozenLake-v1", 1), UniformPrior(), k=4, encoder=None,
                          actions=FROZEN_ACTIONS).reset(seed=0)
    with pytest.raises(ValueError, match="vectorization_mode"):
        make_text_gym_vector_env("FrozenLake-v1", 1, vectorization_mode="subproc")


def test_a_failed_step_refuses_further_steps_until_reset():
    fail = {"now": False}

    def flaky(prompt: str, commands: list[str]) -> list[float]:
        if fail["now"]:
            raise RuntimeError("the LLM server went away")
        return east(prompt, commands)

    envs = GymVectorLLMPrior(corridor(n=2), FunctionPrior(flaky), k=4, encoder=None)
    envs.reset(seed=0)
    masks = envs.action_masks()
    fail["now"] = True
    with pytest.raises(RuntimeError, match="went away"):
        envs.step(np.zeros(2, dtype=int))
    fail["now"] = False
    with pytest.raises(RuntimeError, match="LLM server went away.*call reset"):
        envs.step(np.zeros(2, dtype=int))
    np.testing.assert_array_equal(envs.action_masks(), masks)  # the last states built, nothing half-updated
    envs.reset(seed=0)
    envs.step(np.zeros(2, dtype=int))


def test_won_episodes_join_the_demonstrations_in_both_modes():
    for mode in MODES:
        demos = Demonstrations(shots=1, learn_from_successes=True, max_tokens=None)
        envs = GymVectorLLMPrior(make_text_gym_vector_env(lambda: TextEnvOfLength2(), 2, autoreset_mode=mode),
                                 FunctionPrior(east), k=4, encoder=None, demonstrations=demos)
        envs.reset(seed=0)
        _, _, terminations, _, _ = envs.step(np.zeros(2, dtype=int))
        assert terminations.all() and demos.version == 1  # the same won episode twice is added once
        [learnt] = demos.episodes
        assert [c for _, c in learnt.steps] == ["go east"]
        *_, info = envs.step(np.zeros(2, dtype=int))
        assert all(demos.text() in p for p in info["prior_prompt"])


class TextEnvOfLength2(CorridorTextEnv):
    def __init__(self) -> None:
        super().__init__(length=2)


class GameOverEnv(CorridorTextEnv):
    """Lists no command once the exit is reached, as TextWorld-style envs may at game over."""

    def _info(self) -> dict:
        info = super()._info()
        if self.pos == self.length - 1:
            info["admissible_commands"] = []
        return info


@pytest.mark.parametrize("mode", MODES, ids=lambda m: m.value)
def test_a_final_state_without_commands_has_no_slot_and_the_next_episode_starts(mode):
    envs = GymVectorLLMPrior(make_text_gym_vector_env(lambda: GameOverEnv(length=2), 2, autoreset_mode=mode),
                             FunctionPrior(east), k=4, encoder="hashing")
    envs.reset(seed=0)
    obs, _, terminations, _, info = envs.step(np.zeros(2, dtype=int))  # "go east": both episodes end
    assert terminations.all()
    final = obs if mode == AutoresetMode.NEXT_STEP else info["final_obs"][0]
    assert not final["action_mask"].any()
    obs, _, terminations, _, _ = envs.step(np.zeros(2, dtype=int))  # NEXT_STEP: the reset ignores this action
    assert obs["action_mask"].any(axis=1).all()  # a new episode's first state either way
    assert terminations.all() == (mode == AutoresetMode.SAME_STEP)  # SAME_STEP: the new episodes' first move won
