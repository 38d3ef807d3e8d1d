"""Collecting offline datasets: policies that act on a prior-wrapped env's candidate slots, and the collectors that
play them into an :class:`~prior_wrappers.sb3.offline_dataset.OfflineDataset`.

>>> data = collect_dataset(env, RandomCandidatePolicy(seed=0), n_episodes=100, seed=0)
>>> expert = CommandPolicy(lambda: env.unwrapped.expert_command())
>>> mixture = collect_expert_mixture(env, expert, n_episodes=100, success_ratio=0.5, seed=0)

The action of a row is the slot whose command the env executed (``info["executed_slot"]`` when the wrapper reports
it, e.g. after an empty slot was chosen and resampled); the dataset checks that every action is a valid slot.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import fields
from typing import Any

import gymnasium as gym
import numpy as np

from prior_wrappers.sb3.offline_dataset import OfflineDataset
from prior_wrappers.sb3.signature import Signature, env_prior_signature
from prior_wrappers.spaces import ACTION_MASK

Observation = dict[str, np.ndarray]
# A data-collecting policy sees the observation and the info of the same step (the info has the slot strings,
# info["prior_candidates"]) and returns a slot index. SB3 models are accepted too (their ``predict`` is used).
DataPolicy = Callable[[Observation, dict[str, Any]], int]


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


def _play_episode(
    env: gym.Env, policy: DataPolicy, seed: int | None, record_text: bool = False
) -> tuple[dict[str, list], bool, float]:
    obs, info = env.reset(seed=seed)
    rows: dict[str, list] = {f.name: [] for f in fields(OfflineDataset)}
    if record_text:
        rows["episode_task"].append(str(info.get("task", "")))
        rows["episode_source"].append(str(info.get("game_file") or ""))
    done, episode_return = False, 0.0
    while not done:
        action = int(policy(obs, info))
        text = info.get("text_observation")
        next_obs, reward, terminated, truncated, info = env.step(action)
        if record_text:
            if text is None or "command" not in info:
                raise ValueError(
                    "record_text=True needs the wrapper's info['text_observation'] and info['command']: "
                    "collect behind LLMPriorWrapper"
                )
            rows["text_observations"].append(str(text))
            rows["commands"].append(str(info["command"]))
        rows["observations"].append(_copy(obs))
        # the slot whose command was executed (an empty slot chosen by a stock policy is resampled by the wrapper)
        rows["actions"].append(int(info.get("executed_slot", action)))
        rows["rewards"].append(float(reward))
        rows["next_observations"].append(_copy(next_obs))
        rows["terminated"].append(bool(terminated))
        rows["truncated"].append(bool(truncated))
        episode_return += float(reward)
        done = terminated or truncated
        obs = next_obs
    return rows, bool(info.get("is_success", False)), episode_return


def _stack(episodes: list[tuple[dict[str, list], bool, float]], prior_signature: Signature | None) -> OfflineDataset:
    if not episodes:
        raise ValueError("no episodes were collected")
    rows: dict[str, list] = {f.name: [] for f in fields(OfflineDataset)}
    for i, (episode, _, _) in enumerate(episodes):
        for name in (
            "observations",
            "actions",
            "rewards",
            "next_observations",
            "terminated",
            "truncated",
            "text_observations",
            "commands",
            "episode_task",
            "episode_source",
        ):
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
        prior_signature=prior_signature,
        **{
            name: np.asarray(rows[name], dtype=str) if rows["episode_task"] else None
            for name in ("text_observations", "commands", "episode_task", "episode_source")
        },
    )


def collect_dataset(
    env: gym.Env, policy: DataPolicy | Any, n_episodes: int, seed: int | None = None, *, record_text: bool = False
) -> OfflineDataset:
    """Play ``n_episodes`` episodes of a prior-wrapped (single, non-vector) env with ``policy``.

    :param env: a Gymnasium env with the prior observation (``LLMPriorWrapper``); episodes must end by
        themselves (termination or a time limit).
    :param policy: ``policy(obs, info) -> slot`` or an SB3 model (greedy actions).
    :param n_episodes: number of episodes.
    :param seed: seed of the first ``reset`` (the env's own generator continues from there).
    :param record_text: also keep the observations' text, the commands, and each episode's task and game file
        (``text_observations``, ``commands``, ``episode_task``, ``episode_source``).
    """
    act = _as_policy(policy)
    episodes = [_play_episode(env, act, seed if i == 0 else None, record_text) for i in range(n_episodes)]
    return _stack(episodes, env_prior_signature(env))


def collect_expert_mixture(
    env: gym.Env,
    expert: DataPolicy | Any,
    n_episodes: int,
    success_ratio: float = 0.5,
    random_policy: DataPolicy | None = None,
    seed: int | None = None,
    max_attempts: int | None = None,
    *,
    record_text: bool = False,
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
    :param record_text: keep the text too (see :func:`collect_dataset`).
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
        policy = expert_act if use_expert else random_act
        episode = _play_episode(env, policy, seed if attempts == 0 else None, record_text)
        attempts += 1
        if episode[1] and successes < need_success:
            kept.append(episode)
            successes += 1
        elif not episode[1] and failures < need_failure:
            kept.append(episode)
            failures += 1
    return _stack(kept, env_prior_signature(env))
