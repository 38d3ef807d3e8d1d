"""Stock SB3 algorithms ignore ``action_mask`` and store the slot index they chose. Under the wrapper's default
``invalid_action="cycle"`` that index must name the command that really ran, so every stored transition is real."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch
from toy_text_env import CorridorTextEnv

from prior_wrappers import LLMPriorWrapper, UniformPrior, VecLLMPrior, make_text_vec_env
from prior_wrappers.spaces import ACTION_MASK

K = 6  # the corridor offers 2-3 commands: most slots are empty


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)


class CommandLog(gym.Wrapper):
    """Inside the prior wrapper: records the command the text env really receives."""

    def __init__(self, env: gym.Env, log: list[str]) -> None:
        super().__init__(env)
        self.log = log

    def step(self, action):
        self.log.append(action)
        return self.env.step(action)


class SlotLog(gym.Wrapper):
    """Outside the prior wrapper: records, per step, the valid commands of the state the action was taken in."""

    def __init__(self, env: gym.Env, log: list[tuple[list[str], int, dict]]) -> None:
        super().__init__(env)
        self.log = log
        self.current: list[str] = []

    def reset(self, **kwargs):
        obs, info = self.env.reset(**kwargs)
        self.current = list(info["prior_candidates"])
        return obs, info

    def step(self, action):
        before = self.current
        obs, reward, terminated, truncated, info = self.env.step(action)
        self.log.append((before, int(action), info))
        self.current = list(info["prior_candidates"])
        return obs, reward, terminated, truncated, info


def slot_command(candidates: list[str], action: int) -> str:
    """What slot ``action`` means under the documented contract (valid slot j, else valid slot j % n)."""
    return candidates[action % len(candidates)]


def make_env(invalid_action: str, executed: list[str], steps: list) -> gym.Env:
    inner = CommandLog(CorridorTextEnv(n_commands=2), executed)
    return SlotLog(LLMPriorWrapper(inner, UniformPrior(), k=K, encoder=None, invalid_action=invalid_action), steps)


def run_stock(algo: str, invalid_action: str) -> tuple[np.ndarray, np.ndarray, list[str], list]:
    """Train a stock algorithm briefly; return its stored actions and masks with the env's logs."""
    from stable_baselines3 import DQN, PPO

    executed: list[str] = []
    steps: list = []
    env = make_env(invalid_action, executed, steps)
    if algo == "DQN":
        model = DQN("MultiInputPolicy", env, learning_starts=60, buffer_size=1000, train_freq=4, seed=0, device="cpu")
        model.learn(160)
        buf = model.replay_buffer
        actions, masks = buf.actions[: buf.pos, 0, 0], buf.observations[ACTION_MASK][: buf.pos, 0]
    else:
        model = PPO("MultiInputPolicy", env, n_steps=128, batch_size=64, n_epochs=1, seed=0, device="cpu")
        model.learn(128)
        buf = model.rollout_buffer
        # after training the rollout buffer is flattened to (n_steps * n_envs, ...); with one env, in step order
        actions, masks = buf.actions.reshape(-1), buf.observations[ACTION_MASK].reshape(-1, K)
    return actions.astype(int), masks, executed, steps


def labelling_errors(actions, masks, executed, steps) -> int:
    assert len(actions) == len(executed) == len(steps)  # one stored transition per env step, in order
    errors = 0
    for a, mask, command, (candidates, taken, info) in zip(actions, masks, executed, steps):
        assert a == taken and mask.sum() == len(candidates)  # buffer row t is step t
        assert info["command"] == command and candidates[info["executed_slot"]] == command
        errors += slot_command(candidates, a) != command
    return errors


@pytest.mark.parametrize("algo", ["DQN", "PPO"])
def test_stock_algorithm_buffers_hold_the_executed_command_under_cycle(algo):
    actions, masks, executed, steps = run_stock(algo, "cycle")
    n_valid = masks.sum(1)
    assert (actions >= n_valid).sum() > 20  # the stock policy did pick many empty slots
    assert labelling_errors(actions, masks, executed, steps) == 0
    for candidates, a, info in steps:
        assert info["invalid_action"] == (a >= len(candidates))
        assert info["executed_slot"] == a % len(candidates)


@pytest.mark.parametrize("algo", ["DQN", "PPO"])
def test_resample_mislabels_stock_buffers_and_the_check_sees_it(algo):
    actions, masks, executed, steps = run_stock(algo, "resample")
    assert labelling_errors(actions, masks, executed, steps) > 5


def test_vec_wrapper_cycles_identically():
    venv = VecLLMPrior(make_text_vec_env(lambda: CorridorTextEnv(n_commands=2), 2), UniformPrior(), k=K, encoder=None)
    venv.reset()
    single = LLMPriorWrapper(CorridorTextEnv(n_commands=2), UniformPrior(), k=K, encoder=None)
    single.reset(seed=0)
    for action in [5, 3, 2, 4, 0, 1]:
        _, _, _, infos = venv.step(np.array([action, action]))
        _, _, _, _, info = single.step(action)
        for vinfo in infos:
            for key in ("command", "executed_slot", "invalid_action"):
                assert vinfo[key] == info[key]
