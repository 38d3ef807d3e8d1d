"""Offline datasets: transitions of a prior-wrapped env, collected by any policy, stored as ``.npz``.

>>> data = collect_dataset(env, RandomCandidatePolicy(seed=0), n_episodes=100, seed=0)
>>> path = data.save("random.npz")
>>> model = CQLPrior("CandidatePolicy", env).learn_offline(OfflineDataset.load(path), gradient_steps=10_000)

Each transition keeps the full prior observation of s and s' (``prior_logprobs``, ``action_mask`` and the feature
keys), so the candidates of s' that a target maximises over are the ones the prior gave when the data was
collected ("candidates labelled once before training", as in the reference). The action of a row is the slot
whose command the env executed (``info["executed_slot"]`` when the wrapper reports it, e.g. after an empty slot
was chosen and resampled), and every action must be a valid slot of its observation: the dataset checks this when
it is built or loaded, so a masked slot's Q (``MASKED_VALUE``) can never enter a loss. The file also keeps the
wrapper's ``prior_signature``; :meth:`OfflineDataset.to_replay_buffer` refuses a model made behind other settings.

The policies and collectors (``collect_dataset``, ``collect_expert_mixture``, ``RandomCandidatePolicy``,
``CommandPolicy``) live in :mod:`prior_wrappers.sb3.collection`; they stay importable from here.
"""

from __future__ import annotations

import json
from dataclasses import MISSING, dataclass, fields, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch as th
from gymnasium import spaces
from stable_baselines3.common.buffers import DictReplayBuffer

from prior_wrappers.sb3.signature import Signature, check_prior_match, normalize_signature
from prior_wrappers.spaces import ACTION_MASK, CANDIDATE_FEATURES, LOGPROB_MIN, PRIOR_LOGPROBS, prior_observation_space


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
    :param prior_signature: the collecting wrapper's ``prior_signature`` (``None``: unknown, not checked).
    :param text_observations: ``(N,)`` str, the text of each row's observation (``record_text=True``; else
        ``None``), e.g. for
        :meth:`Demonstrations.from_dataset <prior_wrappers.demonstrations.Demonstrations.from_dataset>`.
    :param commands: ``(N,)`` str, the command each row executed (``record_text=True``).
    :param episode_task: ``(n_episodes,)`` str, each episode's ``info["task"]`` (``record_text=True``).
    :param episode_source: ``(n_episodes,)`` str, each episode's ``info["game_file"]`` or ``""``
        (``record_text=True``).
    :raises ValueError: when an action is outside ``[0, K)`` or selects an empty slot of its observation
        (``action_mask == 0``), or the arrays disagree in length.
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
    prior_signature: Signature | None = None
    text_observations: np.ndarray | None = None
    commands: np.ndarray | None = None
    episode_task: np.ndarray | None = None
    episode_source: np.ndarray | None = None

    def __post_init__(self) -> None:
        self.prior_signature = normalize_signature(self.prior_signature)
        self.actions = np.asarray(self.actions)
        if ACTION_MASK not in self.observations:
            raise ValueError(f"observations have no {ACTION_MASK!r} key: record them behind LLMPriorWrapper")
        n = len(self.actions)
        lengths = {
            "rewards": len(self.rewards),
            "terminated": len(self.terminated),
            "truncated": len(self.truncated),
            "episode_index": len(self.episode_index),
        }
        lengths.update({f"observations/{k}": len(v) for k, v in self.observations.items()})
        lengths.update({f"next_observations/{k}": len(v) for k, v in self.next_observations.items()})
        lengths.update(
            {
                name: len(getattr(self, name))
                for name in ("text_observations", "commands")
                if getattr(self, name) is not None
            }
        )
        wrong = {name: length for name, length in lengths.items() if length != n}
        if wrong:
            raise ValueError(f"the dataset has {n} actions but these arrays have other lengths: {wrong}")
        if n == 0:
            return
        if not np.issubdtype(self.actions.dtype, np.integer):
            raise ValueError(f"actions must be integer slot indices, got dtype {self.actions.dtype}")
        mask = np.asarray(self.observations[ACTION_MASK])
        k = mask.shape[-1]
        outside = np.flatnonzero((self.actions < 0) | (self.actions >= k))
        if outside.size:
            row = int(outside[0])
            raise ValueError(
                f"row {row} (episode {int(self.episode_index[row])}): action {int(self.actions[row])} is outside "
                f"the {k} slots ({outside.size} such rows): the data does not belong to this observation layout"
            )
        empty = np.flatnonzero(mask[np.arange(n), self.actions] == 0)
        if empty.size:
            row = int(empty[0])
            raise ValueError(
                f"row {row} (episode {int(self.episode_index[row])}): action {int(self.actions[row])} is an empty "
                f"slot (action_mask == 0; {empty.size} such rows). Record the slot the env executed: "
                "collect_dataset uses info['executed_slot'] when the wrapper reports it; a policy should choose "
                "among the observation's valid slots"
            )

    def __len__(self) -> int:
        return len(self.actions)

    @property
    def n_episodes(self) -> int:
        return len(self.episode_success)

    @property
    def success_rate(self) -> float:
        return float(np.mean(self.episode_success)) if self.n_episodes else 0.0

    def with_uniform_prior(self) -> OfflineDataset:
        """The same transitions with the prior replaced by the uniform one over each state's valid slots: the plain
        (CQL) baseline's view of the data, same states, actions, features and rewards, no LLM."""

        def uniform(obs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
            obs = dict(obs)
            valid = obs[ACTION_MASK] > 0.5
            n_valid = np.maximum(valid.sum(axis=1, keepdims=True), 1)
            logp = np.where(valid, -np.log(n_valid), LOGPROB_MIN)
            obs[PRIOR_LOGPROBS] = logp.astype(obs[PRIOR_LOGPROBS].dtype)
            return obs

        return replace(self, observations=uniform(self.observations), next_observations=uniform(self.next_observations))

    def episodes(self, n: int) -> OfflineDataset:
        """The first ``n`` episodes, e.g. to compare algorithms across dataset sizes."""
        return self._first(self.episode_index < n, n)

    def transitions(self, n: int) -> OfflineDataset:
        """The first ``n`` transitions (all of them when there are fewer): datasets of a given size, nested. The
        last episode may be cut short; its success and return stay those of the whole episode it came from.

        :raises ValueError: when ``n < 1``.
        """
        if n < 1:
            raise ValueError(f"a dataset needs at least one transition, got n={n}")
        rows = np.arange(len(self)) < n
        return self._first(rows, int(self.episode_index[min(n, len(self)) - 1]) + 1)

    def _first(self, rows: np.ndarray, n: int) -> OfflineDataset:
        """The rows of the boolean mask ``rows``: the first ``n`` episodes, the last possibly cut short."""
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
            prior_signature=self.prior_signature,
            text_observations=self.text_observations[rows] if self.text_observations is not None else None,
            commands=self.commands[rows] if self.commands is not None else None,
            episode_task=self.episode_task[:n] if self.episode_task is not None else None,
            episode_source=self.episode_source[:n] if self.episode_source is not None else None,
        )

    def save(self, path: str | Path) -> Path:
        """Write a compressed ``.npz`` (dict observations flattened to ``observations/<key>``, the prior
        signature as a JSON string); returns the path."""
        arrays: dict[str, np.ndarray] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name == "prior_signature":
                if value is not None:
                    arrays[f.name] = np.array(json.dumps(value, sort_keys=True))
            elif value is None:  # optional text fields that were not recorded
                continue
            elif isinstance(value, dict):
                arrays.update({f"{f.name}/{key}": array for key, array in value.items()})
            else:
                arrays[f.name] = value
        path = Path(path)
        if path.suffix != ".npz":
            path = path.with_name(path.name + ".npz")
        np.savez_compressed(path, **arrays)  # type: ignore[arg-type]  # numpy: **kwds could be allow_pickle
        return path

    @classmethod
    def load(cls, path: str | Path) -> OfflineDataset:
        """Read a file written by :meth:`save` (and check its actions, see the class)."""
        path = Path(path)
        if not path.exists():
            raise FileNotFoundError(f"no dataset at {path} (write one with collect_dataset(...).save(path))")
        with np.load(path) as npz:
            values: dict[str, Any] = {}
            for name in npz.files:
                field, _, key = name.partition("/")
                if key:
                    values.setdefault(field, {})[key] = npz[name]
                elif field == "prior_signature":
                    values[field] = json.loads(str(npz[name]))
                else:
                    values[field] = npz[name]
        missing = [f.name for f in fields(cls) if f.name not in values and f.default is MISSING]
        if missing:
            raise ValueError(f"{path} is not an OfflineDataset file: missing {missing}")
        try:
            return cls(**values)
        except ValueError as error:
            raise ValueError(f"{path}: {error}") from None

    @property
    def observation_space(self) -> spaces.Dict:
        """The prior observation space these observations were recorded in (``k`` and feature size)."""
        features = self.observations.get(CANDIDATE_FEATURES)
        return prior_observation_space(
            int(self.observations[PRIOR_LOGPROBS].shape[-1]), int(features.shape[-1]) if features is not None else None
        )

    def to_replay_buffer(
        self,
        observation_space: spaces.Dict,
        action_space: spaces.Discrete,
        device: th.device | str = "auto",
        prior_signature: Signature | None = None,
        *,
        buffer_size: int | None = None,
        n_envs: int = 1,
        replay_buffer_class: type[DictReplayBuffer] | None = None,
        replay_buffer_kwargs: dict[str, Any] | None = None,
    ) -> DictReplayBuffer:
        """SB3's ``DictReplayBuffer`` holding these transitions as its oldest ones, ready for online ``add`` calls.

        The rows are stored as ``add`` stores a VecEnv's steps: ``dones = terminated | truncated`` and, with
        ``handle_timeout_termination=True`` (SB3's default), ``timeouts = truncated & ~terminated``, so a time-out
        is bootstrapped from ``next_observations`` (with ``False`` it is terminal, as online). Transition t lies at
        ``[t // n_envs, t % n_envs]``; when ``len(self)`` is not a multiple of ``n_envs``, the last row is completed
        with the dataset's first transitions (fewer than ``n_envs`` repeated), since SB3 samples every env slot of
        the rows before ``pos``: an empty slot would be an observation without valid actions. ``pos`` and ``full``
        point after the dataset, so online transitions are added behind it and sampled together with it; once the
        buffer is full they overwrite the oldest, the dataset's first (SB3's ring buffer).

        Memory: the buffer is a copy of the data, written in place (no temporary arrays), and holds
        :func:`transition_nbytes` bytes per transition of its capacity, each observation twice (``observations``
        and ``next_observations``): 2·k·D·4 bytes of candidate features alone. SB3's ``DictReplayBuffer`` has no
        ``optimize_memory_usage`` (the single-array variant), and it could not serve here anyway: it derives s'
        from the next row, while a time-out's s' must be kept. The dataset's own arrays are not referenced by the
        buffer; drop the dataset after this call to hold one copy (``CQLPrior.learn_offline(path)`` does).

        :param observation_space: the model's observation space.
        :param action_space: the model's ``Discrete(K)`` action space.
        :param device: where the sampled tensors go.
        :param prior_signature: the model's ``prior_signature`` (``model.prior_signature``), compared with the
            dataset's; ``None`` compares only the observation layout.
        :param buffer_size: capacity in transitions, as SB3's ``buffer_size`` (the model's, for online
            fine-tuning); raised to the dataset's size when smaller, so that no transition is dropped. ``None``:
            the dataset's size (no room for more).
        :param n_envs: the number of envs that will ``add`` transitions (the model's ``n_envs``).
        :param replay_buffer_class: a ``DictReplayBuffer`` subclass (``None``: ``DictReplayBuffer``).
        :param replay_buffer_kwargs: its other keyword arguments (the model's ``replay_buffer_kwargs``), e.g.
            ``handle_timeout_termination``.
        :raises ValueError: when the data was collected behind other wrapper settings than the model's, or the
            buffer settings cannot hold it.
        """
        if PRIOR_LOGPROBS in self.observations:
            check_prior_match(
                "the dataset",
                self.observation_space,
                self.prior_signature,
                observation_space,
                prior_signature,
                target="the model",
            )
        if set(observation_space.spaces) != set(self.observations):
            raise ValueError(
                f"dataset keys {sorted(self.observations)} differ from the model's observation keys "
                f"{sorted(observation_space.spaces)}: collect the data with the same wrapper settings (encoder, k)"
            )
        n = len(self)
        if n == 0:
            raise ValueError("the dataset is empty")
        if n_envs < 1:
            raise ValueError(f"n_envs must be >= 1 (the number of envs that add transitions), got {n_envs}")
        if buffer_size is not None and buffer_size < 1:
            raise ValueError(f"buffer_size must be >= 1 transitions (or None: the dataset's size), got {buffer_size}")
        buffer_class = replay_buffer_class or DictReplayBuffer
        if not (isinstance(buffer_class, type) and issubclass(buffer_class, DictReplayBuffer)):
            raise ValueError(
                f"replay_buffer_class must be a DictReplayBuffer subclass (dict observations), got {buffer_class!r}: "
                "use None (SB3's DictReplayBuffer)"
            )
        kwargs = dict(replay_buffer_kwargs or {})
        if kwargs.get("optimize_memory_usage"):
            raise ValueError(
                "SB3's DictReplayBuffer does not support optimize_memory_usage: remove it from replay_buffer_kwargs "
                "(a buffer stores each observation twice, see to_replay_buffer's memory note)"
            )
        kwargs.pop("optimize_memory_usage", None)
        rows = -(-n // n_envs)  # rows the dataset fills, the last one completed by repeats
        capacity_rows = max((buffer_size or n) // n_envs, rows)
        buffer = buffer_class(
            capacity_rows * n_envs, observation_space, action_space, device=device, n_envs=n_envs, **kwargs
        )
        # transition t at [t // n_envs, t % n_envs]; slots n.. of the last row repeat transitions 0, 1, ...
        slot = np.arange(rows * n_envs)
        row, env, source = slot // n_envs, slot % n_envs, slot % n
        head, tail = (row[:n], env[:n]), (row[n:], env[n:])

        def fill(target: np.ndarray, values: np.ndarray) -> None:
            values = np.asarray(values)
            target[head] = values  # written in place, no temporary copy of the data
            target[tail] = values[source[n:]]  # fewer than n_envs rows

        for key in buffer.observations:
            fill(buffer.observations[key], self.observations[key])
            fill(buffer.next_observations[key], self.next_observations[key])
        terminated, truncated = np.asarray(self.terminated, dtype=bool), np.asarray(self.truncated, dtype=bool)
        fill(buffer.actions[..., 0], self.actions)
        fill(buffer.rewards, self.rewards)
        fill(buffer.dones, terminated | truncated)
        if buffer.handle_timeout_termination:
            fill(buffer.timeouts, truncated & ~terminated)
        buffer.pos, buffer.full = rows % capacity_rows, rows == capacity_rows
        return buffer


def transition_nbytes(observation_space: spaces.Dict) -> int:
    """Bytes one transition takes in SB3's ``DictReplayBuffer`` (which has no ``optimize_memory_usage``): the
    observation twice (s and s'), an int64 action (``Discrete``), and float32 reward, done and time-out flags. For
    the prior observation that is 2·(k·D·4 + D·4 + k·4 + k) + 20 bytes, k slots of D-dimensional float32 features:
    multiply by ``buffer_size`` to size a buffer (k = 20, D = 384: about 65 kB, 6.5 GB per 100k transitions)."""
    observation = sum(
        int(np.prod(space.shape)) * np.dtype(space.dtype).itemsize  # type: ignore[arg-type, misc]  # Optional shape
        for space in observation_space.spaces.values()
    )
    return 2 * observation + np.dtype(np.int64).itemsize + 3 * np.dtype(np.float32).itemsize


# Names that moved to prior_wrappers.sb3.collection, still importable from here.
