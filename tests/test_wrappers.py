"""LLMPriorWrapper and VecLLMPrior on a toy text env with fast deterministic priors."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env as gym_check_env
from stable_baselines3.common.env_checker import check_env as sb3_check_env
from stable_baselines3.common.vec_env import DummyVecEnv, SubprocVecEnv
from toy_text_env import CorridorTextEnv

from prior_wrappers import CachedPrior, FunctionPrior, LLMPriorWrapper, UniformPrior, VecLLMPrior, make_text_vec_env
from prior_wrappers.encoders import CachedEncoder, HashingEncoder, SentenceEncoder
from prior_wrappers.spaces import LOGPROB_MIN


def east_prior():
    return FunctionPrior(lambda p, c: [3.0 if x == "go east" else 0.0 for x in c])


class CountingPrior(FunctionPrior):
    def __init__(self):
        super().__init__(lambda p, c: [3.0 if x == "go east" else 0.0 for x in c])
        self.calls = 0
        self.prompts_seen: list[str] = []

    def score(self, prompts, candidates, **kw):
        self.calls += 1
        self.prompts_seen.extend(prompts)
        return super().score(prompts, candidates, **kw)


def test_observation_layout_slots_sorted_by_prior():
    env = LLMPriorWrapper(CorridorTextEnv(), east_prior(), k=5, encoder="hashing")
    obs, info = env.reset(seed=0)
    assert info["prior_candidates"][0] == "go east"
    np.testing.assert_array_equal(obs["action_mask"], [1, 1, 1, 0, 0])
    assert obs["prior_logprobs"][3] == LOGPROB_MIN
    np.testing.assert_allclose(np.exp(obs["prior_logprobs"][:3]).sum(), 1.0, atol=1e-6)
    assert obs["candidate_features"].shape == (5, 64) and not obs["candidate_features"][3].any()
    assert env.observation_space.contains(obs)
    assert "Observation: You are in room 1 of 4" in info["prior_prompt"]
    assert env.action_masks().tolist() == [True, True, True, False, False]


@pytest.mark.parametrize("encoder", ["hashing", None])
def test_wrapped_env_passes_gymnasium_and_sb3_checkers(encoder):
    env = LLMPriorWrapper(CorridorTextEnv(), east_prior(), k=4, encoder=encoder)
    gym_check_env(env, skip_render_check=True)
    sb3_check_env(env, warn=False)


def test_more_commands_than_slots_keeps_top_k_by_prior():
    prior = FunctionPrior(lambda p, c: [float(len(x)) for x in c])  # longer = likelier
    env = LLMPriorWrapper(CorridorTextEnv(), prior, k=2, encoder=None)
    obs, info = env.reset(seed=0)
    assert info["prior_candidates"] == ["go east", "go west"]  # 'wait' dropped (shortest)
    assert info["prior_dropped"] == 1
    np.testing.assert_allclose(np.exp(obs["prior_logprobs"]).sum(), 1.0, atol=1e-6)  # renormalised over kept


def test_env_order_keeps_env_order():
    prior = FunctionPrior(lambda p, c: [float(len(x)) for x in c])
    env = LLMPriorWrapper(CorridorTextEnv(), prior, k=3, encoder=None, order="env")
    _, info = env.reset(seed=0)
    assert info["prior_candidates"] == ["go east", "go west", "wait"]


def test_masked_slot_resampled_from_prior_or_raises():
    env = LLMPriorWrapper(CorridorTextEnv(), east_prior(), k=6, encoder=None)
    env.reset(seed=0)
    _, _, _, _, info = env.step(5)  # empty slot
    assert info["invalid_action"] is True and info["command"] in ("go east", "go west", "wait")
    strict = LLMPriorWrapper(CorridorTextEnv(), east_prior(), k=6, encoder=None, invalid_action="raise")
    strict.reset(seed=0)
    with pytest.raises(ValueError, match="empty slot"):
        strict.step(5)
    with pytest.raises(ValueError, match="outside the action space"):
        strict.step(6)


def test_history_enters_the_prompt():
    env = LLMPriorWrapper(CorridorTextEnv(), east_prior(), k=4, encoder=None, history=1)
    env.reset(seed=0)
    _, _, _, _, info = env.step(0)
    assert "Observation: You are in room 1 of 4" in info["prior_prompt"]
    assert "Action: go east\nObservation: You are in room 2 of 4" in info["prior_prompt"]


def test_fixed_action_env_by_naming_actions():
    env = gym.make("FrozenLake-v1", is_slippery=False)
    wrapped = LLMPriorWrapper(
        env,
        FunctionPrior(lambda p, c: [1.0 if x == "move right" else 0.0 for x in c]),
        k=4,
        encoder="hashing",
        actions=["move left", "move down", "move right", "move up"],
        observation_to_text=lambda s: f"You stand on tile {s} of a 4x4 frozen lake.",
    )
    obs, info = wrapped.reset(seed=0)
    assert info["prior_candidates"][0] == "move right"
    _, _, _, _, info = wrapped.step(0)
    assert info["text_observation"] == "You stand on tile 1 of a 4x4 frozen lake."  # moved right


class BrokenEnv(CorridorTextEnv):
    def __init__(self, mode: str):
        super().__init__()
        self.mode = mode

    def reset(self, *, seed=None, options=None):
        obs, info = super().reset(seed=seed)
        if self.mode == "no-commands":
            info["admissible_commands"] = []
        elif self.mode == "no-key":
            del info["admissible_commands"]
        elif self.mode == "not-text":
            obs = 7
        elif self.mode == "odd-commands":
            info["admissible_commands"] = ["go\neast", "go east", "café ☕ order", "go east"]
        return obs, info


@pytest.mark.parametrize(
    ("mode", "error", "match"),
    [("no-commands", ValueError, "empty"), ("no-key", ValueError, "admissible_commands"), ("not-text", TypeError, "str observations")],
)
def test_bad_env_output_gets_clear_errors(mode, error, match):
    env = LLMPriorWrapper(BrokenEnv(mode), UniformPrior(), k=4, encoder=None)
    with pytest.raises(error, match=match):
        env.reset(seed=0)


def test_odd_unicode_and_newline_commands_are_kept_verbatim_and_deduplicated():
    env = LLMPriorWrapper(BrokenEnv("odd-commands"), UniformPrior(), k=4, encoder="hashing")
    obs, info = env.reset(seed=0)
    assert sorted(info["prior_candidates"]) == sorted(["go\neast", "go east", "café ☕ order"])
    assert obs["action_mask"].sum() == 3
    # the prompt stays one line per action; the env still receives the command verbatim
    assert "go\neast" not in info["prior_prompt"]


def test_vec_wrapper_makes_one_prior_call_per_step_including_terminal_states():
    prior = CountingPrior()
    venv = VecLLMPrior(make_text_vec_env(lambda: CorridorTextEnv(length=3), 4), prior, k=4, encoder="hashing")
    venv.reset()
    assert prior.calls == 1
    terminal_seen = 0
    for t in range(6):
        before = prior.calls
        obs, rewards, dones, infos = venv.step(np.zeros(4, dtype=int))  # slot 0 = 'go east'
        assert prior.calls == before + 1
        for i in np.flatnonzero(dones):
            terminal_seen += 1
            term = infos[i]["terminal_observation"]
            assert set(term) == set(obs)
            assert infos[i]["prior_candidates"][0] == "go east"
            assert "prior_stats" in infos[i]
    assert terminal_seen >= 4
    # the terminal states (room 3 of 3) were scored in the same calls as the current states
    assert any("room 3 of 3" in p.split("Observation:")[-1] for p in prior.prompts_seen)


def test_vec_wrapper_matches_single_env_wrappers():
    prior = east_prior()
    venv = VecLLMPrior(make_text_vec_env(lambda: CorridorTextEnv(), 2), prior, k=4, encoder="hashing")
    singles = [LLMPriorWrapper(CorridorTextEnv(), prior, k=4, encoder="hashing") for _ in range(2)]
    obs = venv.reset()
    single_obs = [e.reset(seed=0)[0] for e in singles]
    for t in range(5):
        actions = np.array([t % 3, (t + 1) % 3])
        for key in obs:
            np.testing.assert_allclose(obs[key], np.stack([o[key] for o in single_obs]), atol=1e-6)
        obs, _, dones, _ = venv.step(actions)
        single_obs = [e.step(a)[0] for e, a in zip(singles, actions)]
        assert not dones.any()


def test_vec_wrapper_with_subprocesses_and_maskable_ppo():
    from sb3_contrib import MaskablePPO

    venv = VecLLMPrior(
        make_text_vec_env(lambda: CorridorTextEnv(), 2, vec_env_cls=SubprocVecEnv, vec_env_kwargs={"start_method": "fork"}),
        CachedPrior(east_prior()),
        k=4,
        encoder="hashing",
    )
    try:
        venv.reset()
        assert venv.env_method("action_masks")[0].dtype == bool
        MaskablePPO("MultiInputPolicy", venv, n_steps=32, batch_size=32, n_epochs=1, seed=0).learn(128)
    finally:
        venv.close()


def test_vec_wrapper_refuses_raw_vector_envs():
    venv = DummyVecEnv([lambda: gym.make("CartPole-v1")])
    with pytest.raises(TypeError, match="make_text_vec_env"):
        VecLLMPrior(venv, UniformPrior())


@pytest.mark.parametrize("algo", ["PPO", "DQN", "MaskablePPO"])
def test_stock_sb3_algorithms_train_on_wrapped_env(algo):
    import stable_baselines3
    import sb3_contrib

    cls = getattr(stable_baselines3, algo, None) or getattr(sb3_contrib, algo)
    env = LLMPriorWrapper(CorridorTextEnv(), CachedPrior(east_prior()), k=4, encoder="hashing")
    kwargs = {"learning_starts": 50} if algo == "DQN" else {"n_steps": 64, "batch_size": 32, "n_epochs": 2}
    model = cls("MultiInputPolicy", env, seed=0, **kwargs).learn(300)
    obs, _ = env.reset(seed=1)
    action, _ = model.predict(obs, deterministic=True)
    assert env.action_space.contains(int(action))


def test_encoders_cache_and_embedded_minilm():
    enc = CachedEncoder(HashingEncoder(dim=16))
    a = enc.encode(["go east", "go west", "go east"])
    assert a.shape == (3, 16) and (enc.hits, enc.misses) == (1, 2)
    np.testing.assert_allclose(np.linalg.norm(a, axis=1), 1.0, atol=1e-6)
    minilm = SentenceEncoder.default()
    v = minilm.encode(["Observation: a kitchen. Action: take bowl", "Observation: a kitchen. Action: take bowl"])
    assert v.shape == (2, 384) and np.allclose(v[0], v[1])
    long_text = "word " * 1000 + "Action: take bowl"
    assert not np.allclose(minilm.encode([long_text])[0], minilm.encode(["word " * 1000 + "Action: go north"])[0])


def test_action_only_candidate_text_encodes_commands_once():
    encoder = CachedEncoder(HashingEncoder(dim=16))
    env = LLMPriorWrapper(CorridorTextEnv(), east_prior(), k=4, encoder=encoder, candidate_text="action")
    obs, _ = env.reset(seed=0)
    np.testing.assert_allclose(obs["candidate_features"][0], HashingEncoder(dim=16).encode(["Action: go east"])[0])
    env.step(0)
    env.step(0)  # rooms 2 and 3: new observations, but the commands were all encoded already
    assert encoder.misses == 3 + 1 + 3  # 3 observations, 'look at the painting', 3 commands of room 1
    with pytest.raises(ValueError, match="candidate_text"):
        LLMPriorWrapper(CorridorTextEnv(), east_prior(), k=4, encoder=encoder, candidate_text="both")
