"""CQLPrior and the offline dataset API."""

from __future__ import annotations

import numpy as np
import pytest
import torch as th
from candidate_env import CandidateChainEnv

from prior_wrappers.sb3 import (
    CommandPolicy,
    CQLPrior,
    OfflineDataset,
    RandomCandidatePolicy,
    collect_dataset,
    collect_expert_mixture,
)
from prior_wrappers.sb3.cql_prior import cql_penalty
from prior_wrappers.spaces import ACTION_MASK


def make_env(**kwargs):
    return CandidateChainEnv(k=6, feature_dim=4, length=3, **kwargs)


def test_collect_save_load_round_trip(tmp_path):
    env = make_env()
    data = collect_dataset(env, RandomCandidatePolicy(seed=0), n_episodes=20, seed=0)
    assert data.n_episodes == 20 and len(data) == len(data.actions) == len(data.episode_index)
    assert np.all(data.observations[ACTION_MASK][np.arange(len(data)), data.actions] == 1)  # valid data actions
    assert data.terminated[-1] or data.truncated[-1]
    path = data.save(tmp_path / "random")
    assert path.name == "random.npz"
    loaded = OfflineDataset.load(path)
    for key in data.observations:
        np.testing.assert_array_equal(loaded.observations[key], data.observations[key])
        np.testing.assert_array_equal(loaded.next_observations[key], data.next_observations[key])
    np.testing.assert_array_equal(loaded.actions, data.actions)
    np.testing.assert_array_equal(loaded.episode_success, data.episode_success)
    first = loaded.episodes(5)
    assert first.n_episodes == 5 and set(first.episode_index) == set(range(5))
    with pytest.raises(FileNotFoundError):
        OfflineDataset.load(tmp_path / "missing.npz")


def test_replay_buffer_holds_the_transitions():
    env = make_env()
    data = collect_dataset(env, RandomCandidatePolicy(seed=1), n_episodes=10, seed=1)
    model = CQLPrior("CandidatePolicy", env, seed=0, device="cpu")
    buffer = data.to_replay_buffer(model.observation_space, model.action_space, "cpu")
    samples = buffer._get_samples(np.arange(len(data)))
    assert samples.actions.flatten().tolist() == data.actions.tolist()
    assert samples.dones.flatten().tolist() == data.terminated.astype(float).tolist()
    np.testing.assert_array_equal(samples.next_observations[ACTION_MASK].numpy(), data.next_observations[ACTION_MASK])
    no_features = CandidateChainEnv(k=6, feature_dim=None, length=3)
    with pytest.raises(ValueError, match="keys"):
        data.to_replay_buffer(no_features.observation_space, no_features.action_space)


def test_expert_mixture_has_the_requested_success_ratio():
    env = make_env()
    expert = CommandPolicy(lambda: f"command {env.expert_slot()} (correct)")
    data = collect_expert_mixture(env, expert, n_episodes=10, success_ratio=0.3, seed=0)
    assert data.n_episodes == 10 and data.success_rate == pytest.approx(0.3)
    assert np.diff(np.flatnonzero(data.episode_success)).max() > 1  # interleaved, not one block
    with pytest.raises(ValueError, match="success_ratio"):
        collect_expert_mixture(env, expert, n_episodes=4, success_ratio=1.5)
    with pytest.raises(ValueError, match="not among the candidate slots"):
        CommandPolicy(lambda: "dance")(env.reset(seed=0)[0], env._info())


def test_loss_is_td_plus_weighted_cql_term():
    env = make_env()
    data = collect_dataset(env, RandomCandidatePolicy(seed=0), n_episodes=10, seed=0)
    model = CQLPrior("CandidatePolicy", env, cql_weight=5.0, seed=0, device="cpu")
    model.replay_buffer = data.to_replay_buffer(model.observation_space, model.action_space, "cpu")
    batch = model.replay_buffer._get_samples(np.arange(len(data)))
    with th.no_grad():
        td_loss, q_values = model._td_loss(batch)
        penalty = cql_penalty(q_values, batch.actions, model.candidates(batch.observations))
        assert model._loss(batch).item() == pytest.approx(td_loss.item() + 5.0 * penalty.item(), rel=1e-5)


def test_learn_offline_from_a_file(tmp_path):
    env = make_env()
    path = collect_dataset(env, RandomCandidatePolicy(seed=0), n_episodes=10, seed=0).save(tmp_path / "d.npz")
    model = CQLPrior("CandidatePolicy", env, seed=0, device="cpu").learn_offline(str(path), gradient_steps=50)
    assert model.num_timesteps == 50 and model._n_updates == 50
