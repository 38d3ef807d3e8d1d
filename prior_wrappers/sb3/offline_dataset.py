"""Offline datasets: transitions of a prior-wrapped env, collected by any policy, stored as ``.npz``.

>>> data = collect_dataset(env, RandomCandidatePolicy(seed=0), n_episodes=100, seed=0)
>>> path = data.save("random.npz")
>>> model = CQLPrior("CandidatePolicy", env).learn_offline(OfflineDataset.load(path), gradient_steps=10_000)

Each transition keeps the full prior observation of s and s' (``prior_logprobs``, ``action_mask`` and the feature
keys), so the candidates of s' that a target maximises over are the ones the prior gave when the data was
collected ("candidates labelled once before training", as in the reference).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch as th
from gymnasium import spaces

from stable_baselines3.common.buffers import DictReplayBuffer

from prior_wrappers.spaces import ACTION_MASK

Observation = dict[str, np.ndarray]
# A data-collecting policy sees the observation and the info of the same step (the info has the slot strings,
# info["prior_candidates"]) and returns a slot index. SB3 models are accepted too (their ``predict`` is used).
DataPolicy = Callable[[Observation, dict[str, Any]], int]


@dataclass
class OfflineDataset:
    """Transitions (s, a, r, s', terminated, truncated) with dict observations, one row per step.

    :param observations: key -> ``(N, ...)`` array, the observation the action was taken in.
    :param actions: ``(N,)`` slot indices.
    :param rewards: ``(N,)`` rewards.
    :param next_observations: key -> ``(N, ...)`` array, the observation after the step (the terminal one at
        the end of an episode).
    :param terminated: ``(N,)`` true terminal states (no bootstrapping).
    :param truncated: ``(N,)`` time-outs (bootstrapped from ``next_observations``).
    :param episode_index: ``(N,)`` the episode each row belongs to, 0..n_episodes-1.
    :param episode_success: ``(n_episodes,)`` ``info["is_success"]`` at the end of each episode.
    :param episode_return: ``(n_episodes,)`` undiscounted return of each episode.
    """

    observations: dict[str, np.ndarray]
    actions: np.ndarray
    rewards: np.ndarray
    next_observations: dict[str, np.ndarray]
    terminated: np.ndarray
    truncated: np.ndarray
    episode_index: np.ndarray
    episode_success: np.ndarray
    episode_return: np.ndarray

    def __len__(self) -> int:
        return len(self.actions)

    @property
    def n_episodes(self) -> int:
        return len(self.episode_success)

    @property
    def success_rate(self) -> float:
        return float(np.mean(self.episode_success)) if self.n_episodes else 0.0

    def episodes(self, n: int) -> OfflineDataset:
        """The first ``n`` episodes, e.g. to compare algorithms across dataset sizes."""
        rows = self.episode_index < n
        return OfflineDataset(
            observations={k: v[rows] for k, v in self.observations.items()},
            actions=self.actions[rows],
            rewards=self.rewards[rows],
            next_observations={k: v[rows] for k, v in self.next_observations.items()},
            terminated=self.terminated[rows],
            truncated=self.truncated[rows],
            episode_index=self.episode_index[rows],
            episode_success=self.episode_success[:n],
            episode_return=self.episode_return[:n],
        )

    def save(self, path: str | Path) -> Path:
        """Write a compressed ``.npz`` (dict observations flattened to ``observations/<key>``); returns the path."""
        arrays: dict[str, np.ndarray] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, dict):
                arrays.update({f"{f.name}/{key}": array for key, array in value.items()})
            else:
                arrays[f.name] = value
        path = Path(path)
        if path.suffix != ".npz":
            path = path.with_name(path.name + ".npz")
        np.savez_compressed(path, **arrays)
        return path

    @classmethod
    def load(cls, path: str | Path) -> OfflineDataset:
        """Read a file written by :meth:`save`."""
        path = Path(path)
        if not path.exists():
            raise FileNotFoundError(f"no dataset at {path} (write one with collect_dataset(...).save(path))")
        with np.load(path) as npz:
            values: dict[str, Any] = {}
            for name in npz.files:
                field, _, key = name.partition("/")
                if key:
                    values.setdefault(field, {})[key] = npz[name]
                else:
                    values[field] = npz[name]
        missing = [f.name for f in fields(cls) if f.name not in values]
        if missing:
            raise ValueError(f"{path} is not an OfflineDataset file: missing {missing}")
        return cls(**values)

    def to_replay_buffer(
        self, observation_space: spaces.Dict, action_space: spaces.Discrete, device: th.device | str = "auto"
    ) -> DictReplayBuffer:
        """SB3's ``DictReplayBuffer`` holding exactly these transitions (``dones`` = terminated)."""
        if set(observation_space.spaces) != set(self.observations):
            raise ValueError(
                f"dataset keys {sorted(self.observations)} differ from the model's observation keys "
                f"{sorted(observation_space.spaces)}: collect the data with the same wrapper settings (encoder, k)"
            )
        if len(self) == 0:
            raise ValueError("the dataset is empty")
        buffer = DictReplayBuffer(
            len(self), observation_space, action_space, device=device, n_envs=1, handle_timeout_termination=False
        )
        for key in buffer.observations:
            buffer.observations[key][:, 0] = self.observations[key]
            buffer.next_observations[key][:, 0] = self.next_observations[key]
        buffer.actions[:, 0, 0] = self.actions
        buffer.rewards[:, 0] = self.rewards
        buffer.dones[:, 0] = self.terminated
        buffer.pos, buffer.full = 0, True
        return buffer


class RandomCandidatePolicy:
    """Uniform over the valid slots of the observation: "random play".

    :param seed: seed of its own generator.
    """

    def __init__(self, seed: int | None = None) -> None:
        self.rng = np.random.default_rng(seed)

    def __call__(self, obs: Observation, info: dict[str, Any]) -> int:
        valid = np.flatnonzero(obs[ACTION_MASK])
        return int(self.rng.choice(valid))


class CommandPolicy:
    """Plays the slot holding the command that ``command_fn()`` names, e.g. a scripted expert:
    ``CommandPolicy(lambda: env.unwrapped.expert_command())``.

    :param command_fn: returns the next command as a string; matched against ``info["prior_candidates"]``
        exactly, then ignoring case and surrounding spaces.
    """

    def __init__(self, command_fn: Callable[[], str]) -> None:
        self.command_fn = command_fn

    def __call__(self, obs: Observation, info: dict[str, Any]) -> int:
        command = self.command_fn()
        slots = list(info.get("prior_candidates", []))
        if command in slots:
            return slots.index(command)
        normalized = [s.strip().lower() for s in slots]
        if command.strip().lower() in normalized:
            return normalized.index(command.strip().lower())
        raise ValueError(
            f"command {command!r} is not among the candidate slots {slots}; "
            "is it admissible, and is the wrapper's k large enough to keep every admissible command?"
        )


def _as_policy(policy: Any) -> DataPolicy:
    if hasattr(policy, "predict"):  # an SB3 model: its greedy action
        return lambda obs, info: int(policy.predict(obs, deterministic=True)[0])
    if not callable(policy):
        raise TypeError(f"policy must be callable (obs, info) -> slot or an SB3 model, got {type(policy).__name__}")
    return policy


def _copy(obs: Observation) -> Observation:
    return {key: np.array(value, copy=True) for key, value in obs.items()}


def _play_episode(env: gym.Env, policy: DataPolicy, seed: int | None) -> tuple[dict[str, list], bool, float]:
    obs, info = env.reset(seed=seed)
    rows: dict[str, list] = {f.name: [] for f in fields(OfflineDataset)}
    done, episode_return = False, 0.0
    while not done:
        action = int(policy(obs, info))
        next_obs, reward, terminated, truncated, info = env.step(action)
        rows["observations"].append(_copy(obs))
        rows["actions"].append(action)
        rows["rewards"].append(float(reward))
        rows["next_observations"].append(_copy(next_obs))
        rows["terminated"].append(bool(terminated))
        rows["truncated"].append(bool(truncated))
        episode_return += float(reward)
        done = terminated or truncated
        obs = next_obs
    return rows, bool(info.get("is_success", False)), episode_return


def _stack(episodes: list[tuple[dict[str, list], bool, float]]) -> OfflineDataset:
    if not episodes:
        raise ValueError("no episodes were collected")
    rows: dict[str, list] = {f.name: [] for f in fields(OfflineDataset)}
    for i, (episode, _, _) in enumerate(episodes):
        for name in ("observations", "actions", "rewards", "next_observations", "terminated", "truncated"):
            rows[name].extend(episode[name])
        rows["episode_index"].extend([i] * len(episode["actions"]))
    keys = rows["observations"][0].keys()
    return OfflineDataset(
        observations={k: np.stack([o[k] for o in rows["observations"]]) for k in keys},
        actions=np.asarray(rows["actions"], dtype=np.int64),
        rewards=np.asarray(rows["rewards"], dtype=np.float32),
        next_observations={k: np.stack([o[k] for o in rows["next_observations"]]) for k in keys},
        terminated=np.asarray(rows["terminated"], dtype=bool),
        truncated=np.asarray(rows["truncated"], dtype=bool),
        episode_index=np.asarray(rows["episode_index"], dtype=np.int64),
        episode_success=np.asarray([s for _, s, _ in episodes], dtype=bool),
        episode_return=np.asarray([r for _, _, r in episodes], dtype=np.float64),
    )


def collect_dataset(env: gym.Env, policy: DataPolicy | Any, n_episodes: int, seed: int | None = None) -> OfflineDataset:
    """Play ``n_episodes`` episodes of a prior-wrapped (single, non-vector) env with ``policy``.

    :param env: a Gymnasium env with the prior observation (``LLMPriorWrapper``); episodes must end by
        themselves (termination or a time limit).
    :param policy: ``policy(obs, info) -> slot`` or an SB3 model (greedy actions).
    :param n_episodes: number of episodes.
    :param seed: seed of the first ``reset`` (the env's own generator continues from there).
    """
    act = _as_policy(policy)
    return _stack([_play_episode(env, act, seed if i == 0 else None) for i in range(n_episodes)])


def collect_expert_mixture(
    env: gym.Env,
    expert: DataPolicy | Any,
    n_episodes: int,
    success_ratio: float = 0.5,
    random_policy: DataPolicy | None = None,
    seed: int | None = None,
    max_attempts: int | None = None,
) -> OfflineDataset:
    """A dataset of which exactly ``round(success_ratio * n_episodes)`` episodes are successful.

    Successful episodes come from ``expert`` play, failed ones from random play; an episode whose outcome is
    no longer needed (an expert failure, a lucky random success) is discarded. The episodes are interleaved.

    :param env: a prior-wrapped single env whose final ``info`` reports ``is_success``.
    :param expert: ``policy(obs, info) -> slot``, e.g. ``CommandPolicy(lambda: env.unwrapped.expert_command())``.
    :param n_episodes: episodes in the dataset.
    :param success_ratio: fraction of successful episodes, in [0, 1].
    :param random_policy: the failing play (default :class:`RandomCandidatePolicy` seeded with ``seed``).
    :param seed: seed of the first ``reset`` and of the default random policy.
    :param max_attempts: give up (``RuntimeError``) after this many episodes (default ``20 * n_episodes``).
    """
    if not 0.0 <= success_ratio <= 1.0:
        raise ValueError(f"success_ratio must be in [0, 1], got {success_ratio}")
    expert_act = _as_policy(expert)
    random_act = _as_policy(random_policy) if random_policy is not None else RandomCandidatePolicy(seed)
    need_success = round(success_ratio * n_episodes)
    need_failure = n_episodes - need_success
    max_attempts = max_attempts or 20 * max(n_episodes, 1)
    kept: list[tuple[dict[str, list], bool, float]] = []
    successes = failures = attempts = 0
    while successes < need_success or failures < need_failure:
        if attempts >= max_attempts:
            raise RuntimeError(
                f"after {attempts} episodes: {successes}/{need_success} successes, {failures}/{need_failure} "
                "failures; does the expert succeed (info['is_success']) and does random play fail?"
            )
        # alternate by what is still missing, so both kinds spread over the dataset
        behind_on_successes = successes * need_failure <= failures * need_success
        use_expert = failures >= need_failure or (successes < need_success and behind_on_successes)
        episode = _play_episode(env, expert_act if use_expert else random_act, seed if attempts == 0 else None)
        attempts += 1
        if episode[1] and successes < need_success:
            kept.append(episode)
            successes += 1
        elif not episode[1] and failures < need_failure:
            kept.append(episode)
            failures += 1
    return _stack(kept)
