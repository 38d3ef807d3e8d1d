"""DQNPrior: posterior sampling, masking everywhere, targets, terminal observations."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch as th
from candidate_env import CandidateChainEnv

from stable_baselines3.common.callbacks import BaseCallback

from prior_wrappers.sb3 import DQNPrior
from prior_wrappers.spaces import ACTION_MASK, LOGPROB_MIN, PRIOR_LOGPROBS

# chi-square critical value for 4 degrees of freedom at p = 0.001 (scipy.stats.chi2.ppf(0.999, 4))
CHI2_CRIT_DF4 = 18.467


def one_obs(env: CandidateChainEnv, n_valid: int = 5, seed: int = 3) -> dict[str, np.ndarray]:
    """An observation with exactly ``n_valid`` valid slots and a non-trivial prior."""
    for s in range(seed, seed + 1000):
        obs, _ = env.reset(seed=s)
        if int(obs[ACTION_MASK].sum()) == n_valid:
            obs[PRIOR_LOGPROBS][:n_valid] = np.log(np.array([0.4, 0.25, 0.15, 0.12, 0.08][:n_valid]))
            return obs
    raise AssertionError("no observation with the requested number of valid slots")


def batch_of(obs: dict[str, np.ndarray], n: int) -> dict[str, np.ndarray]:
    return {key: np.repeat(value[None], n, axis=0) for key, value in obs.items()}


def chi_square(counts: np.ndarray, probs: np.ndarray) -> float:
    expected = probs * counts.sum()
    return float(np.sum((counts - expected) ** 2 / expected))


@pytest.fixture
def env():
    return CandidateChainEnv(k=6, feature_dim=4, prior_strength=1.0)


def test_acting_frequencies_match_the_posterior(env):
    model = DQNPrior("CandidatePolicy", env, alpha=0.5, prior_floor=0.2, seed=0, device="cpu")
    obs = one_obs(env)
    th.nn.init.normal_(model.q_net.q_net[-1].weight, std=0.5)  # make Q matter
    with th.no_grad():
        q = model.q_net(model.policy.obs_to_tensor(obs)[0])[0, :5].numpy().astype(np.float64)
    prior = np.exp(obs[PRIOR_LOGPROBS][:5].astype(np.float64))
    floored = 0.8 * prior / prior.sum() + 0.2 / 5  # the prior with its floor, over the 5 valid slots
    logits = q / 0.5 + np.log(floored)
    posterior = np.exp(logits - logits.max())
    posterior /= posterior.sum()
    assert posterior.min() > 0.01 and posterior.max() < 0.9  # both Q and the prior shape it

    th.manual_seed(1)
    n = 20_000
    actions, _ = model.predict(batch_of(obs, n), deterministic=False)
    counts = np.bincount(actions, minlength=6)
    assert counts[5] == 0  # the empty slot is never chosen
    assert chi_square(counts[:5], posterior) < CHI2_CRIT_DF4

    # ε-greedy on top: (1 − ε)·posterior + ε·uniform over the candidates
    model.exploration_rate = 0.3
    actions, _ = model.predict(batch_of(obs, n), deterministic=False)
    counts = np.bincount(actions, minlength=6)
    assert counts[5] == 0
    assert chi_square(counts[:5], 0.7 * posterior + 0.3 / 5) < CHI2_CRIT_DF4


def test_greedy_sampling_explores_with_the_references_epsilon_by_default(env):
    greedy = DQNPrior("CandidatePolicy", env, sampling="greedy", learning_starts=10, seed=0, device="cpu")
    greedy.learn(20)
    assert greedy.exploration_rate == pytest.approx(0.2)  # argmax Q alone would never try another command
    th.nn.init.normal_(greedy.q_net.q_net[-1].weight, std=0.5)
    obs = one_obs(env)
    with th.no_grad():
        best = int(greedy.q_net(greedy.policy.obs_to_tensor(obs)[0])[0, :5].argmax())
    th.manual_seed(0)
    actions, _ = greedy.predict(batch_of(obs, 20_000), deterministic=False)
    assert np.mean(actions != best) == pytest.approx(0.2 * 4 / 5, abs=0.01) and actions.max() < 5
    posterior = DQNPrior("CandidatePolicy", env, learning_starts=10, seed=0, device="cpu")
    posterior.learn(20)
    assert posterior.exploration_rate == 0.0  # the posterior's samples explore
    fixed = DQNPrior("CandidatePolicy", env, sampling="greedy", exploration_initial_eps=0.5,
                     exploration_final_eps=0.05, exploration_fraction=1.0, learning_starts=10, seed=0, device="cpu")
    fixed.learn(20)
    assert fixed.exploration_rate == pytest.approx(0.05)  # given values are kept (decayed to the final one here)


def test_greedy_predict_and_predict_with_prior(env):
    model = DQNPrior("CandidatePolicy", env, alpha=0.5, seed=0, device="cpu")
    th.nn.init.normal_(model.q_net.q_net[-1].weight, std=0.5)
    obs = one_obs(env)
    with th.no_grad():
        q = model.q_net(model.policy.obs_to_tensor(obs)[0])[0].numpy()
    action, _ = model.predict(obs, deterministic=True)
    assert action.shape == () and int(action) == int(np.argmax(q[:5]))
    model.predict_with_prior = True
    action, _ = model.predict(obs, deterministic=True)
    assert int(action) == int(np.argmax(q[:5] + 0.5 * obs[PRIOR_LOGPROBS][:5]))
    # batched observations give batched actions
    actions, _ = model.predict(batch_of(obs, 3), deterministic=True)
    assert actions.shape == (3,)


def test_top_k_and_the_support_rule_limit_acting(env):
    obs = one_obs(env)
    obs[PRIOR_LOGPROBS][1] = LOGPROB_MIN  # admissible, but (almost) no prior mass
    model = DQNPrior("CandidatePolicy", env, alpha=0.5, prior_top_k=3, seed=0, device="cpu")
    model.exploration_rate = 0.5  # ε: uniform over the candidates, so every candidate shows up
    th.manual_seed(0)
    actions, _ = model.predict(batch_of(obs, 5000), deterministic=False)
    assert set(np.unique(actions)) == {0, 2, 3}  # the prior's top 3 of the valid slots
    model = DQNPrior("CandidatePolicy", env, alpha=0.5, prior_min_logprob=LOGPROB_MIN + 1, seed=0, device="cpu")
    model.exploration_rate = 0.5
    actions, _ = model.predict(batch_of(obs, 5000), deterministic=False)
    assert set(np.unique(actions)) == {0, 2, 3, 4}  # every valid slot but the one at the floor
    model = DQNPrior("CandidatePolicy", env, alpha=0.5, seed=0, device="cpu")
    model.exploration_rate = 0.5
    actions, _ = model.predict(batch_of(obs, 5000), deterministic=False)
    assert set(np.unique(actions)) == {0, 1, 2, 3, 4}  # no rule: every valid slot
    with pytest.raises(ValueError, match="prior_min_logprob"):
        DQNPrior("CandidatePolicy", env, prior_min_logprob=0.5)


def test_prior_mass_limits_acting_and_the_target(env):
    obs = one_obs(env)  # prior [0.4, 0.25, 0.15, 0.12, 0.08] on the five valid slots
    model = DQNPrior("CandidatePolicy", env, alpha=0.5, prior_mass=0.75, seed=0, device="cpu")
    model.exploration_rate = 0.5
    th.manual_seed(0)
    actions, _ = model.predict(batch_of(obs, 5000), deterministic=False)
    assert set(np.unique(actions)) == {0, 1, 2}  # 0.4 + 0.25 = 0.65 < 0.75 <= 0.8
    q = th.tensor([[0.0, 1.0, 2.0, 9.0, 9.0, 0.0]])
    model.q_net_target = model.q_net = lambda o: q.expand(len(o[ACTION_MASK]), -1)
    obs_t = {key: th.as_tensor(value[None]) for key, value in obs.items()}
    assert model.next_state_values(obs_t).item() == 2.0  # slots 3 and 4 (Q = 9) are outside the mass
    model.prior_mass = None
    assert model.next_state_values(obs_t).item() == 9.0


def test_a_valid_command_at_logprob_min_can_win_the_argmax_and_the_target():
    """A long command scored with normalization="sum" falls below LOGPROB_MIN and is clipped there: it is
    still admissible, so when its Q is the highest, greedy acting takes it and the max target uses it."""
    from toy_text_env import CorridorTextEnv

    from prior_wrappers.priors import FunctionPrior
    from prior_wrappers.wrappers import LLMPriorWrapper

    # "look at the painting" (odd rooms) gets a log-probability far below LOGPROB_MIN
    prior = FunctionPrior(lambda prompt, commands: [-200.0 if "painting" in c else 0.0 for c in commands])
    wrapped = LLMPriorWrapper(CorridorTextEnv(), prior, k=5, encoder=None, normalization="sum")
    wrapped.reset(seed=0)
    obs, _, _, _, info = wrapped.step(0)  # "go east": room 2, which has the painting
    slot = info["prior_candidates"].index("look at the painting")
    assert obs[ACTION_MASK].tolist() == [1, 1, 1, 1, 0] and obs[PRIOR_LOGPROBS][slot] == LOGPROB_MIN

    model = DQNPrior("CandidatePolicy", wrapped, alpha=0.1, seed=0, device="cpu")
    q = th.tensor([[0.0, 0.1, 0.2, 0.3, 99.0]])
    q[0, slot] = 1.0  # the highest Q of the valid slots; the empty slot's 99 must never count
    obs_t = model.policy.obs_to_tensor(obs)[0]
    model.q_net = model.q_net_target = _FixedQ(q)
    assert model.candidates(obs_t)[0].tolist() == [True, True, True, True, False]
    assert int(model.predict(obs, deterministic=True)[0]) == slot
    assert model.next_state_values(obs_t).item() == pytest.approx(1.0)
    model.double_q = True
    assert model.next_state_values(obs_t).item() == pytest.approx(1.0)
    # without a floor its posterior weight p·exp(Q/α) = e^-30·e^10 is ~0: sampling never picks it, though its Q
    # is the highest and the max target bootstraps from it (the trap of a wrong prior)
    model.double_q = False
    model.prior_floor = 0.0
    th.manual_seed(0)
    actions, _ = model.predict(batch_of(obs, 2000), deterministic=False)
    assert not (actions == slot).any() and (actions < 4).all()
    # the default floor gives it p̃ ≥ 0.1/4, and its Q then wins most draws: (0.025·e^10) against 0.225·e^(0..3)
    model.prior_floor = 0.1
    p = np.full(4, 0.9 / 3 + 0.025)
    p[slot] = 0.025
    weights = p * np.exp(np.array([0.0, 0.1, 0.2, 0.3]) / 0.1)
    weights[slot] = 0.025 * np.exp(10.0)
    actions, _ = model.predict(batch_of(obs, 2000), deterministic=False)
    assert (actions == slot).mean() == pytest.approx(weights[slot] / weights.sum(), abs=0.03)


def test_learning_never_steps_into_an_empty_slot():
    # CandidateChainEnv raises on an empty slot; warm-up, ε and posterior sampling all go through candidates
    env = CandidateChainEnv(k=6, feature_dim=None, min_valid=1, prior_strength=1.0)
    valid: list[int] = []
    step = env.step

    def counting_step(action):
        valid.append(int(env.obs[ACTION_MASK].sum()))  # the slots valid when the action was chosen
        return step(action)

    env.step = counting_step
    model = DQNPrior("CandidatePolicy", env, learning_starts=50, exploration_initial_eps=0.5, seed=0, device="cpu")
    model.learn(300)
    assert len(valid) == 300
    # the test can fail: choices among all k slots would have hit an empty one with probability above 1 - 1e-20
    p_all_valid = float(np.prod(np.asarray(valid) / 6))
    assert p_all_valid < 1e-20


class _FixedQ:
    """Stands in for a Q-network: returns fixed values, *including* large ones in masked slots."""

    def __init__(self, q: th.Tensor) -> None:
        self.q = q

    def __call__(self, obs):
        return self.q


def test_max_soft_and_double_targets_match_hand_computation(env):
    next_obs = {
        PRIOR_LOGPROBS: th.tensor([[math.log(0.5), math.log(0.3), math.log(0.2), LOGPROB_MIN], [0.0, LOGPROB_MIN, -1.0, -2.0]]),
        ACTION_MASK: th.tensor([[1, 1, 1, 0], [1, 0, 0, 0]], dtype=th.int8),
    }
    q_target = th.tensor([[1.0, 2.0, 0.5, 99.0], [-1.0, 99.0, 99.0, 99.0]])
    q_online = th.tensor([[3.0, 1.0, 2.0, 99.0], [0.0, 99.0, 99.0, 99.0]])
    env4 = CandidateChainEnv(k=4, feature_dim=None)
    model = DQNPrior("CandidatePolicy", env4, alpha=0.5, prior_floor=0.0, seed=0, device="cpu")
    model.q_net_target, model.q_net = _FixedQ(q_target), _FixedQ(q_online)

    assert model.next_state_values(next_obs).flatten().tolist() == [2.0, -1.0]

    model.target = "soft"
    soft = model.next_state_values(next_obs).flatten()
    row1 = 0.5 * math.log(0.5 * math.exp(1.0 / 0.5) + 0.3 * math.exp(2.0 / 0.5) + 0.2 * math.exp(0.5 / 0.5))
    assert soft[0].item() == pytest.approx(row1, rel=1e-5)
    assert soft[1].item() == pytest.approx(-1.0, rel=1e-5)  # a single candidate with p = 1
    # with a floor the soft target weighs by the acting prior p̃ = 0.8·p + 0.2/3
    model.prior_floor = 0.2
    w = [0.8 * p + 0.2 / 3 for p in (0.5, 0.3, 0.2)]
    floored = 0.5 * math.log(w[0] * math.exp(1.0 / 0.5) + w[1] * math.exp(2.0 / 0.5) + w[2] * math.exp(0.5 / 0.5))
    assert model.next_state_values(next_obs).flatten()[0].item() == pytest.approx(floored, rel=1e-5)
    model.prior_floor = 0.0

    model.target, model.double_q = "max", True
    # online argmax is slot 0 (3.0), evaluated by the target network: 1.0
    assert model.next_state_values(next_obs).flatten().tolist() == [1.0, -1.0]


def test_soft_target_renormalises_the_prior_over_the_top_k():
    next_obs = {
        PRIOR_LOGPROBS: th.tensor([[math.log(0.5), math.log(0.3), math.log(0.2), LOGPROB_MIN]]),
        ACTION_MASK: th.tensor([[1, 1, 1, 0]], dtype=th.int8),
    }
    q_target = th.tensor([[1.0, 2.0, 0.5, 99.0]])
    model = DQNPrior("CandidatePolicy", CandidateChainEnv(k=4, feature_dim=None), alpha=0.5, target="soft",
                     prior_top_k=2, prior_floor=0.0, seed=0, device="cpu")
    model.q_net_target = model.q_net = _FixedQ(q_target)
    # candidates {0, 1} keep mass 0.8: p̃ = [0.5, 0.3] / 0.8 = [0.625, 0.375]
    expected = 0.5 * math.log(0.625 * math.exp(1.0 / 0.5) + 0.375 * math.exp(2.0 / 0.5))
    assert model.next_state_values(next_obs).item() == pytest.approx(expected, rel=1e-6)
    # (without renormalising, V would be lower by α·log 0.8)
    assert expected - 0.5 * math.log(0.5 * math.exp(2.0) + 0.3 * math.exp(4.0)) == pytest.approx(-0.5 * math.log(0.8))


def test_invalid_arguments_are_rejected(env):
    with pytest.raises(ValueError, match="alpha"):
        DQNPrior("CandidatePolicy", env, alpha=0.0)
    with pytest.raises(ValueError, match="double_q"):
        DQNPrior("CandidatePolicy", env, target="soft", double_q=True)
    with pytest.raises(ValueError, match="target"):
        DQNPrior("CandidatePolicy", env, target="mean")  # type: ignore[arg-type]


class _RecordTerminals(BaseCallback):
    """Remembers, for each episode end, where the transition goes in the buffer and both observations."""

    def __init__(self) -> None:
        super().__init__()
        self.ends: list[tuple[int, dict, dict, bool]] = []

    def _on_step(self) -> bool:
        infos, dones, new_obs = self.locals["infos"], self.locals["dones"], self.locals["new_obs"]
        if dones[0]:
            reset_obs = {k: v[0].copy() for k, v in new_obs.items()}
            self.ends.append(
                (self.model.replay_buffer.pos, infos[0]["terminal_observation"], reset_obs, infos[0]["TimeLimit.truncated"])
            )
        return True


def test_terminal_observation_candidates_are_the_ones_in_the_target():
    # wrong commands keep the agent in place, so episodes end by time-out and SB3 bootstraps from the terminal obs
    env = CandidateChainEnv(k=6, feature_dim=4, length=10, wrong="stay", max_steps=3, prior_strength=0.0)
    model = DQNPrior("CandidatePolicy", env, learning_starts=10_000, seed=0, device="cpu")
    recorder = _RecordTerminals()
    model.learn(90, callback=recorder)
    timeouts = [e for e in recorder.ends if e[3]]
    assert len(timeouts) >= 20
    buffer = model.replay_buffer
    indices = np.array([pos for pos, *_ in timeouts])
    for (pos, terminal, _, _) in timeouts:
        for key in terminal:
            np.testing.assert_array_equal(buffer.next_observations[key][pos, 0], terminal[key])
    samples = buffer._get_samples(indices)
    assert (samples.dones == 0).all()  # time-outs bootstrap

    th.nn.init.normal_(model.q_net_target.q_net[-1].weight, std=1.0)
    with th.no_grad():
        values = model.next_state_values(samples.next_observations).flatten().numpy()
    differs = 0
    for value, (_, terminal, reset_obs, _) in zip(values, timeouts):
        with th.no_grad():
            q_terminal = model.q_net_target(model.policy.obs_to_tensor(terminal)[0])[0].numpy()
            q_reset = model.q_net_target(model.policy.obs_to_tensor(reset_obs)[0])[0].numpy()
        assert value == pytest.approx(q_terminal[terminal[ACTION_MASK] == 1].max(), rel=1e-5)
        differs += not np.isclose(value, q_reset[reset_obs[ACTION_MASK] == 1].max())
    assert differs >= len(timeouts) // 2  # the reset observation would have given another target
