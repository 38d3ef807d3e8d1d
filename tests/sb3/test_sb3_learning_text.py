"""Learning on the text envs through LLMPriorWrapper: a hand-written domain-knowledge prior (a fast, deterministic
stand-in for the LLM) against UniformPrior, same algorithm, network, budget and seed.

Metrics: the greedy policy's success rate after training (``predict(deterministic=True)``, the paper's
evaluation) and the success rate of the training episodes (SB3's ``rollout/success_rate`` window). PPO-Prior's
residual policy starts at the prior, whose greedy choice already solves these envs, so its test also checks
that training sharpens the policy along the greedy path (which a policy that never learns cannot).
"""

from __future__ import annotations

import re

import gymnasium as gym
import numpy as np
import pytest
import torch as th
from candidate_env import success_rate

import envs  # noqa: F401  (registers the text envs)
from prior_wrappers.priors import FunctionPrior, UniformPrior
from prior_wrappers.sb3 import CommandPolicy, CQLPrior, DQNPrior, PPOPrior, collect_expert_mixture
from prior_wrappers.wrappers import LLMPriorWrapper


def current_observation(prompt: str) -> str:
    return prompt.rsplit("Observation:", 1)[1]


def lake_knowledge(prompt: str, commands: list[str]) -> list[float]:
    """Walk towards the goal, never into a hole or against the edge."""
    obs = current_observation(prompt)
    goal = re.search(r"The goal is at [^,]+, [^,]+, (.*?) of you\.", obs)
    towards = set(re.findall(r"steps? (down|right|up|left)", goal.group(1))) if goal else set()
    scores = []
    for command in commands:
        direction = command.split()[-1]
        tile = re.search(rf"{direction.capitalize()}: ([^.]*)\.", obs)
        tile = tile.group(1) if tile else ""
        score = -3.0 if "hole" in tile else -2.0 if "edge" in tile else 1.5 if direction in towards else 0.0
        scores.append(score + (3.0 if "goal" in tile else 0.0))
    return scores


KITCHEN = [
    ("serve bowl with chopped tomato", 3.0),
    ("chop tomato", 3.0),
    ("in bowl", 3.0),
    ("put tomato on cutting board", 2.0),
    ("pick up tomato", 1.5),
    ("take bowl", 1.0),
    ("walk to", -1.0),
    ("put down", -1.0),
    ("chop nothing", -2.0),
    ("wait", -2.0),
]


def kitchen_knowledge(prompt: str, commands: list[str]) -> list[float]:
    """A salad recipe by keywords: chop, fill the bowl, serve; do not wander."""
    return [next((score for key, score in KITCHEN if key in command), 0.0) for command in commands]


ENVS = {
    "FrozenLake": ("prior_wrappers/TextFrozenLake-v0", 4, lake_knowledge, 5),
    "OvercookedTomato": ("prior_wrappers/OvercookedTomato-v0", 5, kitchen_knowledge, 20),
}


def make(env_name: str, informative: bool) -> gym.Env:
    env_id, k, knowledge, _ = ENVS[env_name]
    prior = FunctionPrior(knowledge) if informative else UniformPrior()
    return LLMPriorWrapper(gym.make(env_id), prior, k=k, encoder="hashing")


def compare(env_name: str, train) -> dict[str, tuple[float, float]]:
    """(greedy success, training success) with the informative and the uniform prior; ``train(env, informative)``."""
    results = {}
    for name, informative in (("prior", True), ("uniform", False)):
        model = train(make(env_name, informative), informative)
        greedy = success_rate(model, make(env_name, informative), ENVS[env_name][3])
        training = float(np.mean(model.ep_success_buffer)) if model.ep_success_buffer else float("nan")  # offline: none
        results[name] = (greedy, training)
    print(f"{env_name}: greedy/training success, prior {results['prior']} vs uniform {results['uniform']}")
    return results


def assert_prior_wins(results: dict[str, tuple[float, float]], check_training: bool = True) -> None:
    (greedy, training), (base_greedy, base_training) = results["prior"], results["uniform"]
    assert greedy >= 0.9
    assert greedy >= base_greedy + 0.5
    if check_training:
        assert training >= base_training + 0.3


@pytest.mark.parametrize("env_name", list(ENVS))
def test_dqn_prior_beats_uniform_prior_dqn(env_name):
    def train(env, informative):
        return DQNPrior("CandidatePolicy", env, learning_starts=100, train_freq=1, seed=0, device="cpu").learn(1000)

    assert_prior_wins(compare(env_name, train))


@pytest.mark.parametrize("env_name", list(ENVS))
def greedy_path_probability(model: PPOPrior, env: gym.Env, n_episodes: int, seed: int = 1000) -> float:
    """Mean over episodes of Π_t π(a_t|s_t) along the greedy policy's episode, 0 when it fails: the chance that
    the stochastic policy replays the greedy success."""
    values = []
    for i in range(n_episodes):
        obs, info = env.reset(seed=seed + i)
        done, log_p = False, 0.0
        while not done:
            with th.no_grad():
                probs = model.policy.get_distribution(model.policy.obs_to_tensor(obs)[0]).distribution.probs[0]
            action = int(probs.argmax())
            log_p += float(th.log(probs[action]))
            obs, _, terminated, truncated, info = env.step(action)
            done = terminated or truncated
        values.append(np.exp(log_p) if info.get("is_success") else 0.0)
    return float(np.mean(values))


@pytest.mark.parametrize("env_name", list(ENVS))
def test_ppo_prior_beats_uniform_prior_ppo(env_name):
    sharpening: dict[bool, tuple[float, float]] = {}

    def train(env, informative):
        model = PPOPrior("CandidatePolicy", env, n_steps=128, n_epochs=4, learning_rate=1e-3, seed=0, device="cpu")
        episodes = ENVS[env_name][3]
        before = greedy_path_probability(model, make(env_name, informative), episodes)
        model.learn(1024)
        sharpening[informative] = (before, greedy_path_probability(model, make(env_name, informative), episodes))
        return model

    assert_prior_wins(compare(env_name, train))
    before, after = sharpening[True]
    print(f"{env_name}: greedy-path probability {before:.3f} -> {after:.3f}")
    assert before > 0.05 and after >= 1.5 * before


def test_cql_prior_beats_cql_on_four_overcooked_episodes():
    # 2 expert episodes and 2 random ones; the same expert, budget and seed for both priors
    def train(env, informative):
        expert = CommandPolicy(lambda: env.unwrapped.expert_command())
        data = collect_expert_mixture(env, expert, n_episodes=4, success_ratio=0.5, seed=0)
        model = CQLPrior("CandidatePolicy", env, seed=0, device="cpu")
        return model.learn_offline(data, gradient_steps=500, log_interval=0)

    assert_prior_wins(compare("OvercookedTomato", train), check_training=False)
