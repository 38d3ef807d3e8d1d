"""Offline data, then online fine-tuning: ``CQLPrior.learn_offline(dataset)`` followed by ``learn(total_timesteps)``."""

from __future__ import annotations

import gc
import tracemalloc

import numpy as np
import pytest
from candidate_env import CandidateChainEnv

from stable_baselines3.common.buffers import ReplayBuffer
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.vec_env import DummyVecEnv

from prior_wrappers.sb3 import CQLPrior, OfflineDataset, RandomCandidatePolicy, collect_dataset
from prior_wrappers.spaces import ACTION_MASK, CANDIDATE_FEATURES


def make_env(**kwargs) -> CandidateChainEnv:
    return CandidateChainEnv(k=6, feature_dim=4, length=3, **kwargs)


def timeout_env() -> CandidateChainEnv:
    """A wrong command leaves the agent where it is; episodes of random play mostly end by the time limit."""
    return make_env(wrong="stay", max_steps=4)


def odd_dataset(env: CandidateChainEnv) -> OfflineDataset:
    data = collect_dataset(env, RandomCandidatePolicy(seed=0), n_episodes=12, seed=0)
    n = data.n_episodes if len(data) % 2 else data.n_episodes - 1
    data = data.episodes(n)
    assert len(data) % 2 == 1  # the last row of a 2-env buffer is only half filled by the dataset
    return data


def _dataset_slots(n: int, n_envs: int) -> tuple[np.ndarray, np.ndarray]:
    t = np.arange(n)
    return t // n_envs, t % n_envs


def test_learn_offline_then_learn_on_two_envs_keeps_the_dataset_and_adds_online_data():
    data = odd_dataset(make_env())
    model = CQLPrior("CandidatePolicy", DummyVecEnv([make_env, make_env]), buffer_size=2_000, learning_starts=20,
                     seed=0, device="cpu")
    model.learn_offline(data, gradient_steps=20, log_interval=0)
    buffer = model.replay_buffer
    rows = (len(data) + 1) // 2
    assert buffer.n_envs == 2 and buffer.pos == rows and not buffer.full
    model.learn(total_timesteps=320)  # 160 steps of the two envs
    assert model.num_timesteps == 320
    assert model.replay_buffer is buffer and buffer.pos == rows + 160 and not buffer.full
    # the dataset is still there, transition t at [t // 2, t % 2], untouched by the online steps
    r, e = _dataset_slots(len(data), 2)
    np.testing.assert_array_equal(buffer.observations[CANDIDATE_FEATURES][r, e], data.observations[CANDIDATE_FEATURES])
    np.testing.assert_array_equal(buffer.next_observations[ACTION_MASK][r, e], data.next_observations[ACTION_MASK])
    np.testing.assert_array_equal(buffer.actions[r, e, 0], data.actions)
    np.testing.assert_array_equal(buffer.rewards[r, e], data.rewards)
    # the online transitions follow; every slot that sampling can draw holds a real transition (the dataset's
    # half-filled last row is completed with its first transition, not left as an empty observation)
    assert np.all(buffer.observations[ACTION_MASK][: buffer.pos].sum(axis=-1) > 0)
    np.testing.assert_array_equal(buffer.actions[rows - 1, 1, 0], data.actions[0])
    online = buffer.observations[CANDIDATE_FEATURES][rows : buffer.pos]
    assert online.shape[:2] == (160, 2) and np.abs(online).sum() > 0
    assert buffer.actions[rows : buffer.pos].min() >= 0


def test_online_time_outs_are_stored_as_time_outs_after_learn_offline():
    env = timeout_env()
    data = collect_dataset(env, RandomCandidatePolicy(seed=0), n_episodes=10, seed=0)
    assert data.truncated.any() and data.terminated.any()
    model = CQLPrior("CandidatePolicy", DummyVecEnv([timeout_env, timeout_env]), learning_starts=20, seed=0,
                     device="cpu")
    model.learn_offline(data, gradient_steps=5, log_interval=0)
    buffer = model.replay_buffer
    assert buffer.handle_timeout_termination  # SB3's default, as for a buffer that learn() would have made
    # the dataset's time-outs: done, but bootstrapped (timeouts), as SB3 stores a VecEnv's time-out
    r, e = _dataset_slots(len(data), 2)
    np.testing.assert_array_equal(buffer.dones[r, e], data.terminated | data.truncated)
    np.testing.assert_array_equal(buffer.timeouts[r, e], data.truncated & ~data.terminated)
    rows = buffer.pos
    model.learn(total_timesteps=200)
    online_timeouts = buffer.timeouts[rows : buffer.pos]
    assert online_timeouts.sum() > 0
    assert np.all(buffer.dones[rows : buffer.pos][online_timeouts > 0] == 1)
    # what the loss sees: a time-out is not terminal
    samples = buffer._get_samples(np.arange(buffer.pos))
    assert samples.dones.sum() < buffer.dones[: buffer.pos].sum()


def test_the_models_buffer_size_and_replay_buffer_kwargs_are_honoured():
    data = odd_dataset(make_env())
    n = len(data)
    vec = DummyVecEnv([make_env, make_env])
    roomy = CQLPrior("CandidatePolicy", vec, buffer_size=1_000, seed=0, device="cpu")
    roomy.learn_offline(data, gradient_steps=2, log_interval=0)
    assert roomy.replay_buffer.buffer_size * roomy.replay_buffer.n_envs == 1_000  # room for online data
    assert roomy.replay_buffer.pos == (n + 1) // 2 and not roomy.replay_buffer.full
    # a buffer_size below the dataset's size still holds the whole dataset (its oldest go first once online)
    small = CQLPrior("CandidatePolicy", vec, buffer_size=10, seed=0, device="cpu")
    small.learn_offline(data, gradient_steps=2, log_interval=0)
    assert small.replay_buffer.buffer_size == (n + 1) // 2 and small.replay_buffer.full and small.replay_buffer.pos == 0
    # handle_timeout_termination=False: time-outs are terminal, as SB3 stores them online with that setting
    env = timeout_env()
    timeouts = collect_dataset(env, RandomCandidatePolicy(seed=0), n_episodes=10, seed=0)
    plain = CQLPrior("CandidatePolicy", env, replay_buffer_kwargs={"handle_timeout_termination": False}, seed=0,
                     device="cpu")
    plain.learn_offline(timeouts, gradient_steps=2, log_interval=0)
    assert not plain.replay_buffer.handle_timeout_termination and plain.replay_buffer.timeouts.sum() == 0
    np.testing.assert_array_equal(plain.replay_buffer.dones[: len(timeouts), 0],
                                  timeouts.terminated | timeouts.truncated)


def test_to_replay_buffer_explains_bad_settings():
    data = collect_dataset(make_env(), RandomCandidatePolicy(seed=0), n_episodes=4, seed=0)
    model = CQLPrior("CandidatePolicy", make_env(), seed=0, device="cpu")
    spaces = (model.observation_space, model.action_space)
    with pytest.raises(ValueError, match="n_envs must be >= 1"):
        data.to_replay_buffer(*spaces, n_envs=0)
    with pytest.raises(ValueError, match="buffer_size must be >= 1"):
        data.to_replay_buffer(*spaces, buffer_size=0)
    with pytest.raises(ValueError, match="DictReplayBuffer subclass"):
        data.to_replay_buffer(*spaces, replay_buffer_class=ReplayBuffer)
    with pytest.raises(ValueError, match="optimize_memory_usage"):
        data.to_replay_buffer(*spaces, replay_buffer_kwargs={"optimize_memory_usage": True})
    # fewer transitions than envs: the one row cycles through the dataset
    one = data.episodes(1)
    assert len(one) < 8
    buffer = one.to_replay_buffer(*spaces, n_envs=8)
    assert buffer.buffer_size == 1 and buffer.full and buffer.pos == 0
    np.testing.assert_array_equal(buffer.actions[0, :, 0], one.actions[np.arange(8) % len(one)])
    assert np.all(buffer.observations[ACTION_MASK][0].sum(axis=-1) > 0)


class _DatasetsAlive(BaseCallback):
    """Counts the ``OfflineDataset`` objects alive at the first training step."""

    def __init__(self) -> None:
        super().__init__()
        self.alive: int | None = None

    def _on_step(self) -> bool:
        if self.alive is None:
            gc.collect()
            self.alive = sum(type(o) is OfflineDataset for o in gc.get_objects())
        return True


def test_replay_buffer_memory_one_copy_and_no_temporaries(tmp_path):
    from prior_wrappers.sb3.offline_dataset import transition_nbytes

    env = CandidateChainEnv(k=6, feature_dim=64, length=3)  # features dominate, as with a sentence encoder
    data = collect_dataset(env, RandomCandidatePolicy(seed=0), n_episodes=30, seed=0)
    model = CQLPrior("CandidatePolicy", env, seed=0, device="cpu")
    # the documented cost: 2 x (k x D x 4) bytes of features per transition, and the rest of both observations
    k, d = data.observations[CANDIDATE_FEATURES].shape[1:]
    per_transition = transition_nbytes(model.observation_space)
    assert per_transition == 2 * (k * d * 4 + d * 4 + k * 4 + k * 1) + 8 + 3 * 4
    features = data.observations[CANDIDATE_FEATURES].nbytes
    tracemalloc.start()
    try:
        buffer = data.to_replay_buffer(model.observation_space, model.action_space, "cpu", buffer_size=300, n_envs=3)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    arrays = [*buffer.observations.values(), *buffer.next_observations.values(), buffer.actions, buffer.rewards,
              buffer.dones, buffer.timeouts]
    assert sum(a.nbytes for a in arrays) == 300 * per_transition
    assert peak < 300 * per_transition + features / 2  # filled in place: not even a temporary copy of one key
    # learn_offline(path): the loaded dataset is not kept next to the buffer while training
    path = data.save(tmp_path / "d.npz")
    del data
    callback = _DatasetsAlive()
    model.learn_offline(str(path), gradient_steps=3, log_interval=0, callback=callback)
    assert callback.alive == 0
