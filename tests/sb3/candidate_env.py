"""A synthetic env that emits the prior wrapper's observation directly (no text, no LLM): fast and fully known.

The agent walks a chain of ``length`` decisions. Each step offers between 2 and ``k`` commands; exactly one is
correct. The correct command's features carry a fixed direction ``signal`` (so a network can learn to spot
it), the others are noise. A wrong command ends the episode (``wrong="terminate"``) or leaves the agent where it
is (``wrong="stay"``). Reaching the end pays 1 and sets ``is_success``.

The prior is ``softmax(prior_strength · [slot is correct or a decoy])`` over the valid slots: ``prior_strength=0``
is ``UniformPrior``, a positive value an informative LLM, a negative one a misleading LLM. ``decoys`` wrong
slots share the correct slot's prior: with a misleading prior the correct command is then one of several
equally unlikely ones, not a unique outlier that a Q-network fed with log p could pick by extrapolation.
``room_signals`` marks the correct command by a different feature direction at each position.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np

from prior_wrappers.spaces import (
    ACTION_MASK,
    CANDIDATE_FEATURES,
    LOGPROB_MIN,
    OBSERVATION_FEATURES,
    PRIOR_LOGPROBS,
    prior_observation_space,
)


class CandidateChainEnv(gym.Env):
    metadata = {"render_modes": []}

    def __init__(
        self,
        k: int = 5,
        feature_dim: int | None = 8,
        length: int = 4,
        prior_strength: float = 2.0,
        wrong: str = "terminate",
        max_steps: int | None = None,
        min_valid: int = 2,
        emit_prior_stats: bool = False,
        decoys: int = 0,
        room_signals: bool = False,
    ) -> None:
        self.k = k
        self.feature_dim = feature_dim
        self.length = length
        self.prior_strength = prior_strength
        self.wrong = wrong
        self.max_steps = max_steps or (length if wrong == "terminate" else 3 * length)
        self.min_valid = min_valid
        self.emit_prior_stats = emit_prior_stats
        self.decoys = decoys
        self.observation_space = prior_observation_space(k, feature_dim)
        self.action_space = gym.spaces.Discrete(k)
        # one direction marks the correct command everywhere, or (room_signals) one direction per position: then a
        # randomly initialised network does not pick the right command in every room by luck, it must learn them
        signals = np.random.default_rng(12345).normal(size=(length if room_signals else 1, feature_dim or 1))
        self.signals = (signals / np.linalg.norm(signals, axis=1, keepdims=True)).astype(np.float32)
        self.signal = self.signals[0]
        self.calls = 0
        self.pos = self.t = self.correct = 0
        self.n_valid = k
        self.obs: dict[str, np.ndarray] = {}

    def _make_obs(self) -> dict[str, np.ndarray]:
        rng = self.np_random
        self.n_valid = int(rng.integers(self.min_valid, self.k + 1))
        is_correct = np.zeros(self.n_valid, dtype=bool)
        is_correct[rng.integers(self.n_valid)] = True
        marked = is_correct.copy()
        if self.decoys:
            wrong = np.flatnonzero(~is_correct)
            marked[rng.choice(wrong, size=min(self.decoys, wrong.size), replace=False)] = True
        scores = self.prior_strength * marked
        # valid slots first, sorted by descending prior (ties keep the random order)
        order = np.argsort(-scores, kind="stable")
        is_correct, scores = is_correct[order], scores[order]
        self.correct = int(np.flatnonzero(is_correct)[0])
        logp = scores - np.log(np.exp(scores - scores.max()).sum()) - scores.max()
        obs = {
            PRIOR_LOGPROBS: np.full(self.k, LOGPROB_MIN, dtype=np.float32),
            ACTION_MASK: np.zeros(self.k, dtype=np.int8),
        }
        obs[PRIOR_LOGPROBS][: self.n_valid] = np.maximum(logp, LOGPROB_MIN)
        obs[ACTION_MASK][: self.n_valid] = 1
        if self.feature_dim:
            feats = np.zeros((self.k, self.feature_dim), dtype=np.float32)
            feats[: self.n_valid] = rng.normal(scale=0.5, size=(self.n_valid, self.feature_dim))
            feats[self.correct] += 1.5 * self.signals[min(self.pos, len(self.signals) - 1)]
            obs[CANDIDATE_FEATURES] = feats
            position = np.zeros(self.feature_dim, dtype=np.float32)
            position[self.pos % self.feature_dim] = 1.0
            obs[OBSERVATION_FEATURES] = position
        self.calls += 1
        self.obs = obs
        return obs

    def _info(self) -> dict[str, Any]:
        info: dict[str, Any] = {
            "prior_candidates": [f"command {i}" + (" (correct)" if i == self.correct else "") for i in range(self.n_valid)],
            "prior_prompt": f"step {self.pos}",
            "is_success": self.pos >= self.length,
        }
        return info

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        self.pos = self.t = 0
        return self._make_obs(), self._info()

    def step(self, action: Any):
        action = int(np.asarray(action).reshape(-1)[0])
        if not self.obs[ACTION_MASK][action]:
            raise ValueError(f"slot {action} is empty (n_valid={self.n_valid}): an algorithm chose a masked slot")
        self.t += 1
        terminated, reward = False, 0.0
        if action == self.correct:
            self.pos += 1
            if self.pos >= self.length:
                terminated, reward = True, 1.0
        elif self.wrong == "terminate":
            terminated = True
        truncated = not terminated and self.t >= self.max_steps
        obs = self._make_obs()
        info = self._info()
        if self.emit_prior_stats and (terminated or truncated):
            info["prior_stats"] = {"calls": self.calls, "cache_hit_rate": 0.25, "latency_ms": 1.5}
        return obs, reward, terminated, truncated, info

    def action_masks(self) -> np.ndarray:
        return self.obs[ACTION_MASK].astype(bool)

    def expert_slot(self) -> int:
        return self.correct


def success_rate(model: Any, env: gym.Env, n_episodes: int = 50, seed: int = 1000, deterministic: bool = True) -> float:
    """Fraction of successful episodes of ``model.predict`` on a single env."""
    wins = 0
    for i in range(n_episodes):
        obs, info = env.reset(seed=seed + i)
        done = False
        while not done:
            action, _ = model.predict(obs, deterministic=deterministic)
            obs, _, terminated, truncated, info = env.step(action)
            done = terminated or truncated
        wins += bool(info.get("is_success"))
    return wins / n_episodes
