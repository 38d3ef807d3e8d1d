"""CQLPrior and the offline dataset API."""

from __future__ import annotations

import math
import warnings

import gymnasium as gym
import numpy as np
import pytest
import torch as th
from candidate_env import CandidateChainEnv, success_rate

from stable_baselines3.common.type_aliases import DictReplayBufferSamples
from stable_baselines3.common.utils import polyak_update

from prior_wrappers.sb3 import (
    CommandPolicy,
    CQLPrior,
    OfflineDataset,
    RandomCandidatePolicy,
    collect_dataset,
    collect_expert_mixture,
)
from prior_wrappers.sb3.masking import MASKED_VALUE
from prior_wrappers.spaces import ACTION_MASK, PRIOR_LOGPROBS


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


def test_first_transitions_are_nested_and_keep_whole_episodes_outcomes():
    data = collect_dataset(make_env(), RandomCandidatePolicy(seed=0), n_episodes=6, seed=0, record_text=False)
    ends = np.flatnonzero(np.diff(data.episode_index)) + 1  # the first row of episodes 1, 2, ...
    cut = int(ends[1]) + 1  # episode 2's first transition: three episodes, the last cut short
    first = data.transitions(cut)
    assert len(first) == cut and first.n_episodes == 3
    np.testing.assert_array_equal(first.actions, data.actions[:cut])
    np.testing.assert_array_equal(first.episode_return, data.episode_return[:3])  # whole episodes' returns
    for key in data.observations:
        np.testing.assert_array_equal(first.next_observations[key], data.next_observations[key][:cut])
    whole = data.transitions(int(ends[0]))  # exactly the first episode
    assert whole.n_episodes == 1 and len(whole) == len(data.episodes(1))
    assert len(data.transitions(10 * len(data))) == len(data)  # all of them
    with pytest.raises(ValueError, match="at least one transition"):
        data.transitions(0)


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
    with pytest.raises(ValueError, match="feature_dim: 4 vs None"):
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


class _FixedQ:
    """Stands in for a Q-network: fixed values, whatever the observation."""

    def __init__(self, q: list[list[float]]) -> None:
        self.q = th.tensor(q)

    def __call__(self, obs):
        return self.q


def test_loss_is_td_plus_weighted_cql_term_by_hand():
    env = CandidateChainEnv(k=3, feature_dim=None)
    model = CQLPrior("CandidatePolicy", env, cql_weight=2.0, gamma=0.5, seed=0, device="cpu")
    mask = th.tensor([[1, 1, 0], [1, 1, 1]], dtype=th.int8)
    obs = {PRIOR_LOGPROBS: th.log(th.tensor([[0.5, 0.5, 1.0], [0.2, 0.3, 0.5]])), ACTION_MASK: mask}
    next_obs = {PRIOR_LOGPROBS: obs[PRIOR_LOGPROBS].clone(), ACTION_MASK: th.tensor([[1, 0, 0], [1, 1, 0]], dtype=th.int8)}
    batch = DictReplayBufferSamples(
        observations=obs,
        actions=th.tensor([[1], [0]]),
        next_observations=next_obs,
        dones=th.tensor([[0.0], [1.0]]),
        rewards=th.tensor([[1.0], [0.5]]),
    )
    model.q_net = _FixedQ([[1.0, 3.0, MASKED_VALUE], [0.0, 1.0, 2.0]])
    model.q_net_target = _FixedQ([[4.0, 9.0, MASKED_VALUE], [2.0, 1.0, 7.0]])
    # TD targets: row 1: 1 + 0.5·max(4) = 3 (only slot 0 is valid at s'); row 2: 0.5 (terminal)
    # Huber: row 1 |3 − 3| = 0 → 0; row 2 |0 − 0.5| = 0.5 → 0.5·0.5² = 0.125; mean 0.0625
    td = 0.0625
    # standard CQL: row 1 log(e¹ + e³) − 3, row 2 log(e⁰ + e¹ + e²) − 0
    cql = (math.log(math.e + math.e**3) - 3.0 + math.log(1 + math.e + math.e**2)) / 2
    assert model._loss(batch).item() == pytest.approx(td + 2.0 * cql, rel=1e-6)
    assert model._train_logs["train/td_loss"][-1] == pytest.approx(td, rel=1e-6)
    # the reference's form: row 1 log(e¹) − 3 = −2, row 2 log(e¹ + e²) − 0
    model.include_data_action = False
    cql = (-2.0 + math.log(math.e + math.e**2)) / 2
    assert model._loss(batch).item() == pytest.approx(td + 2.0 * cql, rel=1e-6)


def test_prior_weighted_loss_over_the_prior_mass_candidates_by_hand():
    env = CandidateChainEnv(k=4, feature_dim=None)
    model = CQLPrior("CandidatePolicy", env, cql_weight=2.0, gamma=0.5, conservative="prior_weighted",
                     prior_mass=0.7, seed=0, device="cpu")
    mask = th.tensor([[1, 1, 1, 0], [1, 1, 1, 1]], dtype=th.int8)
    obs = {PRIOR_LOGPROBS: th.log(th.tensor([[0.5, 0.3, 0.2, 1.0], [0.1, 0.2, 0.3, 0.4]])), ACTION_MASK: mask}
    next_obs = {PRIOR_LOGPROBS: th.log(th.tensor([[0.1, 0.8, 0.1, 1.0], [0.25, 0.25, 0.25, 0.25]])),
                ACTION_MASK: th.tensor([[1, 1, 1, 0], [1, 1, 1, 1]], dtype=th.int8)}
    batch = DictReplayBufferSamples(
        observations=obs,
        actions=th.tensor([[2], [3]]),
        next_observations=next_obs,
        dones=th.tensor([[0.0], [0.0]]),
        rewards=th.tensor([[1.0], [0.0]]),
    )
    model.q_net = _FixedQ([[1.0, 3.0, 0.5, MASKED_VALUE], [0.0, 1.0, 2.0, -1.0]])
    model.q_net_target = _FixedQ([[4.0, 2.0, 9.0, MASKED_VALUE], [2.0, 1.0, 7.0, 3.0]])
    # candidates at s' (mass 0.7): row 1 {1} (0.8), row 2 {0, 1, 2} (ties to the lower slots: 0.75)
    # targets: 1 + 0.5·2 = 2; 0 + 0.5·7 = 3.5. Huber: |0.5 − 2| = 1.5 → 1.0; |−1 − 3.5| = 4.5 → 4.0; mean 2.5
    td = 2.5
    # candidates at s: row 1 {0, 1} (0.8), row 2 {3, 2} (0.7); the data actions 2 and 3 join: S = {0, 1, 2}, {2, 3}
    row1 = math.log((0.5 * math.e + 0.3 * math.e**3 + 0.2 * math.exp(0.5)) / 1.0) - 0.5
    row2 = math.log((0.3 * math.e**2 + 0.4 * math.exp(-1.0)) / 0.7) - (-1.0)
    assert model._loss(batch).item() == pytest.approx(td + 2.0 * (row1 + row2) / 2, rel=1e-6)
    assert model._train_logs["train/td_loss"][-1] == pytest.approx(td, rel=1e-6)
    # the same candidates with CQL(H)'s unweighted logsumexp
    model.conservative = "logsumexp"
    row1 = math.log(math.e + math.e**3 + math.exp(0.5)) - 0.5
    row2 = math.log(math.e**2 + math.exp(-1.0)) + 1.0
    assert model._loss(batch).item() == pytest.approx(td + 2.0 * (row1 + row2) / 2, rel=1e-6)


class _FixedLogits(th.nn.Module):
    """Stands in for the imitation network (a module of the policy): fixed logits, whatever the observation."""

    def __init__(self, logits: list[list[float]]) -> None:
        super().__init__()
        self.logits = th.tensor(logits)

    def forward(self, obs):
        return self.logits


def test_behavior_support_joins_the_prior_candidates_by_hand():
    env = CandidateChainEnv(k=4, feature_dim=None)
    model = CQLPrior("CandidatePolicy", env, prior_top_k=1, behavior_threshold=0.5, seed=0, device="cpu")
    assert model.policy.behavior_net is not None
    assert {id(p) for p in model.policy.behavior_net.parameters()} <= {
        id(p) for group in model.policy.optimizer.param_groups for p in group["params"]}  # it trains
    mask = th.tensor([[1, 1, 1, 1], [1, 1, 1, 0]], dtype=th.int8)
    obs = {PRIOR_LOGPROBS: th.log(th.tensor([[0.5, 0.3, 0.1, 0.1], [0.1, 0.2, 0.7, 1.0]])), ACTION_MASK: mask}
    # π_b: row 1 [0.1, 0.2, 0.6, 0.1] → ratios to the max [1/6, 1/3, 1, 1/6] → {2} at τ = 0.5;
    #      row 2 [0.4, 0.35, 0.25] on its valid slots → ratios [1, 0.875, 0.625] → {0, 1, 2}
    model.policy.behavior_net = _FixedLogits([[math.log(0.1), math.log(0.2), math.log(0.6), math.log(0.1)],
                                              [math.log(0.4), math.log(0.35), math.log(0.25), MASKED_VALUE]])
    # the prior's top 1: {0} and {2}; with the data's support: {0, 2} and {0, 1, 2}
    assert model.candidates(obs).tolist() == [[True, False, True, False], [True, True, True, False]]
    model.behavior_threshold = 0.9  # only each row's most likely data action: {2} and {0}
    assert model.candidates(obs).tolist() == [[True, False, True, False], [True, False, True, False]]
    model.behavior_threshold = None
    assert model.candidates(obs).tolist() == [[True, False, False, False], [False, False, True, False]]

    # the loss: TD + β·CQL over the candidates (and a_data) + the imitation term −mean log π_b(a_data|s)
    model.behavior_threshold = 0.5
    batch = DictReplayBufferSamples(observations=obs, actions=th.tensor([[2], [1]]), next_observations=obs,
                                    dones=th.tensor([[1.0], [1.0]]), rewards=th.tensor([[0.0], [0.0]]))
    model.q_net = _FixedQ([[1.0, 2.0, 3.0, 4.0], [0.5, 1.0, 1.5, MASKED_VALUE]])
    model.q_net_target = _FixedQ([[0.0] * 4, [0.0] * 4])
    td = ((3.0 - 0.5) + 0.5 * 1.0**2) / 2  # Huber of Q(s, a_data) = 3 and 1 against the terminal targets 0
    imitation = -(math.log(0.6) + math.log(0.35)) / 2  # data actions 2 and 1
    # S = candidates ∪ {a_data}: {0, 2} and {0, 1, 2} with the data's support; {0, 2} and {1, 2} without
    cql = (math.log(math.e + math.e**3) - 3.0 + math.log(math.exp(0.5) + math.e + math.exp(1.5)) - 1.0) / 2
    assert model._loss(batch).item() == pytest.approx(td + 5.0 * cql + imitation, rel=1e-5)
    assert model._train_logs["train/behavior_loss"][-1] == pytest.approx(imitation, rel=1e-6)
    model.behavior_threshold = None
    cql = (math.log(math.e + math.e**3) - 3.0 + math.log(math.e + math.exp(1.5)) - 1.0) / 2
    assert model._loss(batch).item() == pytest.approx(td + 5.0 * cql, rel=1e-5)


def test_behavior_support_recovers_the_data_action_a_misleading_prior_cuts():
    """The prior ranks the correct command last, so its top-1 cut never acts on it (success 0, whatever the data);
    with the data's support (expert episodes in the data) CQL-Prior acts on it and wins."""

    def train(seed: int, **kwargs) -> float:
        env = CandidateChainEnv(k=6, min_valid=3, length=4, feature_dim=8, prior_strength=-2.0)
        data = collect_expert_mixture(env, lambda obs, info: env.expert_slot(), n_episodes=8, success_ratio=0.5,
                                      seed=seed)
        model = CQLPrior("CandidatePolicy", env, prior_top_k=1, seed=seed, device="cpu", **kwargs)
        model.learn_offline(data, gradient_steps=500, log_interval=0)
        return success_rate(model, env, 20)

    assert [train(seed) for seed in (0, 1)] == [0.0, 0.0]
    with_support = [train(seed, behavior_threshold=0.3) for seed in (0, 1)]
    print(f"misleading prior, top-1 ∪ data support: success {with_support}")
    assert min(with_support) >= 0.7  # measured 0.85 and 0.85


def test_cql_defaults_and_option_checks():
    model = CQLPrior("CandidatePolicy", make_env(), device="cpu")
    assert (model.conservative, model.prior_mass, model.prior_top_k, model.prior_min_logprob) == (
        "logsumexp", None, None, None)
    with pytest.raises(ValueError, match="conservative"):
        CQLPrior("CandidatePolicy", make_env(), conservative="mean", device="cpu")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="include_data_action"):
        CQLPrior("CandidatePolicy", make_env(), conservative="prior_weighted", include_data_action=False,
                 device="cpu")
    for bad in (0.0, 1.5):
        with pytest.raises(ValueError, match="prior_mass"):
            CQLPrior("CandidatePolicy", make_env(), prior_mass=bad, device="cpu")
        with pytest.raises(ValueError, match="behavior_threshold"):
            CQLPrior("CandidatePolicy", make_env(), behavior_threshold=bad, device="cpu")
    assert model.behavior_threshold is None and model.policy.behavior_net is None


def _q_data_over_training(steps: int, stop_above: float, **cql_kwargs) -> tuple[CQLPrior, list[float]]:
    """max |Q(s, a_data)| over a fixed 11-transition dataset, every 100 gradient steps of CQLPrior's loss (AdamW,
    Polyak target, gradient clipping, β = 5), with a tiny network and the whole dataset as the batch."""
    env = CandidateChainEnv(k=4, feature_dim=None, length=2)
    data = collect_dataset(env, RandomCandidatePolicy(seed=0), n_episodes=8, seed=0)
    assert len(data) == 11 and data.rewards.sum() == 2.0
    # a 10x larger step size than the default 5e-4: 2,000 AdamW steps move the weights as far as 20,000 would
    kwargs = dict(learning_rate=5e-3, policy_kwargs=dict(net_arch=[8]), seed=0, device="cpu")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        model = CQLPrior("CandidatePolicy", env, **kwargs, **cql_kwargs)
    batch = data.to_replay_buffer(model.observation_space, model.action_space, "cpu")._get_samples(np.arange(len(data)))
    online, target = list(model.q_net.parameters()), list(model.q_net_target.parameters())
    history = []
    for step in range(steps + 1):
        if step % 100 == 0:
            with th.no_grad():
                history.append(model.q_net(batch.observations).gather(1, batch.actions.long()).abs().max().item())
            if history[-1] > stop_above:
                break
        model._train_logs = {}
        loss = model._loss(batch)
        model.policy.optimizer.zero_grad()
        loss.backward()
        th.nn.utils.clip_grad_norm_(model.policy.parameters(), model.max_grad_norm)
        model.policy.optimizer.step()
        polyak_update(online, target, model.tau)
    return model, history


def test_default_cql_keeps_q_bounded_and_the_reference_form_diverges():
    # rewards are 0 or 1: standard CQL (the default) settles near the TD values
    model, history = _q_data_over_training(steps=2000, stop_above=2.0)
    assert len(history) == 21 and max(history) < 2.0, history
    assert model.include_data_action and model.cql_weight == 5.0
    # the reference's form pushes Q(s, a_data) up by β per sample at any Q: past 2 within a few hundred steps
    _, history = _q_data_over_training(steps=2000, stop_above=2.0, include_data_action=False)
    assert history[-1] > 2.0 and len(history) <= 6, history


def test_reference_form_warns():
    with pytest.warns(UserWarning, match="no minimum"):
        CQLPrior("CandidatePolicy", make_env(), include_data_action=False, device="cpu")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        CQLPrior("CandidatePolicy", make_env(), device="cpu")  # the default does not warn
        CQLPrior("CandidatePolicy", make_env(), include_data_action=False, cql_weight=1.0, device="cpu")


def test_learn_offline_from_a_file(tmp_path):
    env = make_env()
    path = collect_dataset(env, RandomCandidatePolicy(seed=0), n_episodes=10, seed=0).save(tmp_path / "d.npz")
    model = CQLPrior("CandidatePolicy", env, seed=0, device="cpu").learn_offline(str(path), gradient_steps=50)
    assert model.num_timesteps == 50 and model._n_updates == 50


class SignedEnv(gym.Wrapper):
    """Publishes a ``prior_signature`` like LLMPriorWrapper does."""

    def __init__(self, env: gym.Env, **signature) -> None:
        super().__init__(env)
        self.prior_signature = {"k": env.k, "feature_dim": env.feature_dim, **signature}

    def expert_slot(self) -> int:
        return self.env.expert_slot()


class ResamplingEnv(gym.Wrapper):
    """Executes slot 0 when an empty slot is chosen and says so in ``info["executed_slot"]``, as the wrapper does."""

    def step(self, action):
        action = int(action)
        executed = action if self.env.obs[ACTION_MASK][action] else 0
        obs, reward, terminated, truncated, info = self.env.step(executed)
        return obs, reward, terminated, truncated, {**info, "executed_slot": executed}


def _fields(data: OfflineDataset, **changes) -> dict:
    values = {f: getattr(data, f) for f in data.__dataclass_fields__}
    values.update(changes)
    return values


def test_dataset_records_the_executed_slot_not_the_chosen_empty_one():
    env = ResamplingEnv(CandidateChainEnv(k=6, feature_dim=None, length=3, min_valid=2))
    data = collect_dataset(env, lambda obs, info: 5, n_episodes=10, seed=0)  # slot 5: empty unless 6 are valid
    mask = data.observations[ACTION_MASK]
    executed = np.where(mask[:, 5] == 1, 5, 0)
    assert (mask[:, 5] == 0).sum() >= 5  # the policy chose empty slots
    np.testing.assert_array_equal(data.actions, executed)


def test_dataset_from_llm_prior_wrapper_records_the_executed_slot():
    from toy_text_env import CorridorTextEnv

    from prior_wrappers.priors import UniformPrior
    from prior_wrappers.wrappers import LLMPriorWrapper

    env = LLMPriorWrapper(CorridorTextEnv(), UniformPrior(), k=6, encoder=None)  # 3 or 4 commands: slot 5 is empty
    data = collect_dataset(env, lambda obs, info: 5, n_episodes=3, seed=0)
    assert np.all(data.observations[ACTION_MASK][np.arange(len(data)), data.actions] == 1)


def test_dataset_rejects_actions_on_empty_or_missing_slots(tmp_path):
    data = collect_dataset(make_env(), RandomCandidatePolicy(seed=0), n_episodes=10, seed=0)
    mask = data.observations[ACTION_MASK]
    row = int(np.flatnonzero(mask.sum(axis=1) < 6)[0])
    empty = int(np.flatnonzero(mask[row] == 0)[0])
    actions = data.actions.copy()
    actions[row] = empty
    with pytest.raises(ValueError, match=rf"row {row} \(episode \d+\): action {empty} is an empty slot"):
        OfflineDataset(**_fields(data, actions=actions))
    actions = data.actions.copy()
    actions[2] = 6
    with pytest.raises(ValueError, match=r"row 2 \(episode \d+\): action 6 is outside the 6 slots"):
        OfflineDataset(**_fields(data, actions=actions))
    with pytest.raises(ValueError, match="other lengths"):
        OfflineDataset(**_fields(data, rewards=data.rewards[:-1]))
    # a file with such a row (e.g. written before this check) is refused on load, naming the file and the row
    arrays = {"actions": actions, "rewards": data.rewards, "terminated": data.terminated, "truncated": data.truncated,
              "episode_index": data.episode_index, "episode_success": data.episode_success,
              "episode_return": data.episode_return}
    arrays.update({f"observations/{k}": v for k, v in data.observations.items()})
    arrays.update({f"next_observations/{k}": v for k, v in data.next_observations.items()})
    np.savez(tmp_path / "bad.npz", **arrays)
    with pytest.raises(ValueError, match=r"bad.npz: row 2"):
        OfflineDataset.load(tmp_path / "bad.npz")
    arrays["actions"] = data.actions  # the same file with valid actions and no signature loads
    np.savez(tmp_path / "old.npz", **arrays)
    assert OfflineDataset.load(tmp_path / "old.npz").prior_signature is None


def test_dataset_keeps_the_prior_signature_and_refuses_other_wrapper_settings(tmp_path):
    env = SignedEnv(make_env(), encoder="hashing:4", candidate_text="joint", normalization="token")
    data = collect_dataset(env, RandomCandidatePolicy(seed=0), n_episodes=5, seed=0)
    assert data.prior_signature == {"k": 6, "feature_dim": 4, "encoder": "hashing:4", "candidate_text": "joint",
                                    "normalization": "token"}
    loaded = OfflineDataset.load(data.save(tmp_path / "d.npz"))
    assert loaded.prior_signature == data.prior_signature and loaded.episodes(2).prior_signature == data.prior_signature

    same = CQLPrior("CandidatePolicy", SignedEnv(make_env(), encoder="hashing:4", candidate_text="joint",
                                                 normalization="token"), seed=0, device="cpu")
    assert same.prior_signature == data.prior_signature
    same.learn_offline(loaded, gradient_steps=5)
    # another encoder of the same size: same spaces, unrelated features
    other = CQLPrior("CandidatePolicy", SignedEnv(make_env(), encoder="minilm:other", candidate_text="action",
                                                  normalization="token"), seed=0, device="cpu")
    with pytest.raises(ValueError, match=r"candidate_text: 'joint' vs 'action'; encoder: 'hashing:4' vs 'minilm:other'.*"
                                         r"same wrapper settings"):
        other.learn_offline(loaded, gradient_steps=5)
    with pytest.raises(ValueError, match="encoder"):
        loaded.to_replay_buffer(other.observation_space, other.action_space, prior_signature=other.prior_signature)
    # an env without a signature is unknown: only the layout is checked
    CQLPrior("CandidatePolicy", make_env(), seed=0, device="cpu").learn_offline(loaded, gradient_steps=5)
    wider = CQLPrior("CandidatePolicy", CandidateChainEnv(k=8, feature_dim=4), seed=0, device="cpu")
    with pytest.raises(ValueError, match=r"k: 6 vs 8"):
        wider.learn_offline(loaded, gradient_steps=5)
