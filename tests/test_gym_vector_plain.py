"""GymVectorLLMPrior over plain Gymnasium vector envs of text envs (no TextInInfo): a text env written as the README
describes wraps in one line, with one prior call per vector step, and gives what the TextInInfo path gives."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.vector import AutoresetMode, SyncVectorEnv
from toy_text_env import CountingPrior

import envs  # noqa: F401  (registers the ids)
from prior_wrappers import FunctionPrior, GymVectorLLMPrior, make_text_gym_vector_env


class LampRoom(gym.Env):
    """A text env written the README's way: a Text observation, the admissible commands in info, str actions."""

    prompt_example = "Observation: A dark room with a lamp.\nAction: switch on the lamp"

    def __init__(self) -> None:
        self.observation_space = gym.spaces.Text(max_length=100)
        self.action_space = gym.spaces.Text(max_length=40)
        self.lit, self.t = False, 0

    def _info(self) -> dict:
        commands = ["switch off the lamp", "leave"] if self.lit else ["switch on the lamp", "wait"]
        return {"admissible_commands": commands, "is_success": self.lit}

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.lit, self.t = False, 0
        return "A dark room with a lamp.", self._info()

    def step(self, action):
        self.t += 1
        self.lit = self.lit or action == "switch on the lamp"
        text = "The room is bright." if self.lit else "It is still dark."
        return text, float(self.lit), self.lit, self.t >= 3 and not self.lit, self._info()


def make_my_text_env() -> gym.Env:
    return LampRoom()


def lamp(prompt: str, commands: list[str]) -> list[float]:
    return [2.0 if "lamp" in c else 0.0 for c in commands]


def test_a_plain_sync_vector_env_of_text_envs_wraps_in_one_line_with_one_prior_call_per_step():
    prior = CountingPrior(lamp)
    vec = GymVectorLLMPrior(gym.vector.SyncVectorEnv([make_my_text_env] * 4), prior)
    obs, info = vec.reset(seed=0)
    assert obs["action_mask"].shape == (4, 16) and obs["action_mask"].sum(1).tolist() == [2, 2, 2, 2]
    assert info["prior_candidates"][0] == ["switch on the lamp", "wait"]  # sorted by the prior
    assert "A dark room with a lamp." in info["prior_prompt"][0]
    assert LampRoom.prompt_example in info["prior_prompt"][0]  # the sub-env's example reaches the prompt
    assert len(prior.calls) == 1 and len(prior.calls[0]) == 4
    rng = np.random.default_rng(0)
    for t in range(8):
        obs, rewards, terminations, truncations, info = vec.step(rng.integers(0, 2, size=4))
        assert len(prior.calls) == 2 + t or (not prior.calls[-1] and len(prior.calls) <= 2 + t)
    assert vec.prior_stats["calls"] == len(prior.calls)
    vec.close()


@pytest.mark.parametrize("mode", [AutoresetMode.NEXT_STEP, AutoresetMode.SAME_STEP], ids=lambda m: m.value)
def test_plain_and_text_in_info_vector_envs_give_the_same_observations_and_prompts(mode):
    plain = GymVectorLLMPrior(SyncVectorEnv([make_my_text_env] * 3, autoreset_mode=mode), FunctionPrior(lamp), k=4,
                              encoder="hashing", score_terminal=True)
    carried = GymVectorLLMPrior(make_text_gym_vector_env(make_my_text_env, 3, autoreset_mode=mode),
                                FunctionPrior(lamp), k=4, encoder="hashing", score_terminal=True)
    (a, a_info), (b, b_info) = plain.reset(seed=3), carried.reset(seed=3)
    rng = np.random.default_rng(1)
    ended = 0
    for _ in range(10):
        for key in a:
            np.testing.assert_array_equal(a[key], b[key])
        assert list(a_info["prior_prompt"]) == list(b_info["prior_prompt"])
        actions = rng.integers(0, 2, size=3)
        a, a_r, a_term, a_trunc, a_info = plain.step(actions)
        b, b_r, b_term, b_trunc, b_info = carried.step(actions)
        np.testing.assert_array_equal(a_r, b_r)
        np.testing.assert_array_equal(a_term | a_trunc, b_term | b_trunc)
        ended += int((a_term | a_trunc).sum())
        if mode == AutoresetMode.SAME_STEP and "final_obs" in a_info:
            assert list(a_info["final_info"]["prior_prompt"]) == list(b_info["final_info"]["prior_prompt"])
            for i in np.flatnonzero(a_term | a_trunc):
                np.testing.assert_array_equal(a_info["final_obs"][i]["action_mask"],
                                              b_info["final_obs"][i]["action_mask"])
    assert ended >= 3


def test_make_vec_of_a_registered_id_and_async_without_shared_memory_wrap_as_they_are():
    vec = GymVectorLLMPrior(gym.make_vec("prior_wrappers/OvercookedTomato-v0", 2, vectorization_mode="sync"),
                             FunctionPrior(lambda p, c: [0.0] * len(c)), k=8, encoder="hashing")
    obs, info = vec.reset(seed=0)
    assert obs["action_mask"].sum() > 0 and "tomato" in info["prior_prompt"][0].lower()
    vec.step(np.zeros(2, dtype=np.int64))
    vec.close()
    prior = CountingPrior(lamp)
    async_envs = GymVectorLLMPrior(gym.vector.AsyncVectorEnv([make_my_text_env] * 2, shared_memory=False), prior,
                                   k=4, encoder="hashing")
    try:
        _, info = async_envs.reset(seed=0)
        assert "A dark room with a lamp." in info["prior_prompt"][1]
        async_envs.step(np.ones(2, dtype=np.int64))  # "wait": the episodes go on, their states are scored
        assert len(prior.calls) == 2 and "It is still dark." in prior.calls[-1][0]
    finally:
        async_envs.close()
