"""LLMPriorWrapper and VecLLMPrior on a toy text env with fast deterministic priors."""

from __future__ import annotations

import warnings

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env as gym_check_env
from stable_baselines3.common.env_checker import check_env as sb3_check_env
from stable_baselines3.common.vec_env import DummyVecEnv, SubprocVecEnv
from toy_text_env import CorridorTextEnv

from prior_wrappers import CachedPrior, FunctionPrior, LLMPriorWrapper, UniformPrior, VecLLMPrior, make_text_vec_env
from prior_wrappers.encoders import CachedEncoder, HashingEncoder, SentenceEncoder
from prior_wrappers.slots import UnreachableCommandsWarning
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
    with pytest.warns(UnreachableCommandsWarning, match=r"3 admissible commands but only k=2 slots.*at least 3"):
        obs, info = env.reset(seed=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # said once per wrapper, not at every step
        env.step(0)
    assert info["prior_candidates"] == ["go east", "go west"]  # 'wait' dropped (shortest)
    assert info["prior_dropped"] == 1
    np.testing.assert_allclose(np.exp(obs["prior_logprobs"]).sum(), 1.0, atol=1e-6)  # renormalised over kept


def test_enough_slots_never_warn_about_unreachable_commands():
    with warnings.catch_warnings():
        warnings.simplefilter("error", UnreachableCommandsWarning)
        LLMPriorWrapper(CorridorTextEnv(), east_prior(), k=3, encoder=None).reset(seed=0)
        vec = VecLLMPrior(make_text_vec_env(CorridorTextEnv, n_envs=2), east_prior(), k=3, encoder=None)
        vec.reset()


def test_vec_wrapper_warns_once_about_unreachable_commands():
    vec = VecLLMPrior(make_text_vec_env(CorridorTextEnv, n_envs=2), east_prior(), k=2, encoder=None)
    with pytest.warns(UnreachableCommandsWarning, match="k=2"):
        vec.reset()
    with warnings.catch_warnings():
        warnings.simplefilter("error", UnreachableCommandsWarning)
        vec.step(np.zeros(2, dtype=int))


def test_env_order_keeps_env_order():
    prior = FunctionPrior(lambda p, c: [float(len(x)) for x in c])
    env = LLMPriorWrapper(CorridorTextEnv(), prior, k=3, encoder=None, order="env")
    _, info = env.reset(seed=0)
    assert info["prior_candidates"] == ["go east", "go west", "wait"]


def test_masked_slot_cycles_by_default_resamples_or_raises():
    env = LLMPriorWrapper(CorridorTextEnv(), east_prior(), k=6, encoder=None)
    _, info0 = env.reset(seed=0)
    _, _, _, _, info = env.step(4)  # empty slot 4 of 3 valid: runs valid slot 4 % 3 = 1, every time
    assert info["invalid_action"] is True and info["executed_slot"] == 1
    assert info["command"] == info0["prior_candidates"][1]
    _, _, _, _, info = env.step(0)
    assert info["invalid_action"] is False and info["executed_slot"] == 0 and info["command"] == "go east"
    resample = LLMPriorWrapper(CorridorTextEnv(), east_prior(), k=6, encoder=None, invalid_action="resample")
    _, info0 = resample.reset(seed=0)
    _, _, _, _, info = resample.step(5)
    assert info["invalid_action"] is True and info["command"] == info0["prior_candidates"][info["executed_slot"]]
    with pytest.raises(ValueError, match="invalid_action"):
        LLMPriorWrapper(CorridorTextEnv(), east_prior(), k=6, encoder=None, invalid_action="ignore")
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
    [("no-key", ValueError, "admissible_commands"), ("not-text", TypeError, "str observations")],
)
def test_bad_env_output_gets_clear_errors(mode, error, match):
    env = LLMPriorWrapper(BrokenEnv(mode), UniformPrior(), k=4, encoder=None)
    with pytest.raises(error, match=match):
        env.reset(seed=0)


def test_a_choice_in_a_state_without_commands_gets_a_clear_error():
    env = LLMPriorWrapper(BrokenEnv("no-commands"), UniformPrior(), k=4, encoder=None)
    obs, info = env.reset(seed=0)  # a state may list nothing (game over): no slot ...
    assert not obs["action_mask"].any() and info["prior_candidates"] == []
    with pytest.raises(ValueError, match=r"no admissible commands.*only where an episode ends"):
        env.step(0)  # ... but choosing in it is the env's bug


class GameOverEnv(CorridorTextEnv):
    """Lists no command once the exit is reached, as TextWorld-style envs may at game over."""

    def _info(self) -> dict:
        info = super()._info()
        if self.pos == self.length - 1:
            info["admissible_commands"] = []
        return info


def test_an_empty_command_list_at_game_over_is_a_state_without_slots_and_costs_no_prior_call():
    prior = CountingPrior()
    env = LLMPriorWrapper(GameOverEnv(length=2), prior, k=4, encoder="hashing")
    _, info = env.reset(seed=0)
    calls = prior.calls
    obs, reward, terminated, _, info = env.step(info["prior_candidates"].index("go east"))
    assert terminated and reward == 1.0 and info["prior_candidates"] == [] and not obs["action_mask"].any()
    assert env.observation_space.contains(obs) and prior.calls == calls  # nothing to score
    env.reset(seed=1)  # and the next episode starts as usual

    venv = VecLLMPrior(make_text_vec_env(lambda: GameOverEnv(length=2), n_envs=2), east_prior(), k=4,
                       encoder="hashing")
    venv.reset()
    _, _, dones, infos = venv.step(np.zeros(2, dtype=int))  # slot 0 is "go east": both episodes end
    assert dones.all() and not infos[0]["terminal_observation"]["action_mask"].any()


@pytest.mark.parametrize("algo", ["DQNPrior", "PPOPrior"])
def test_algorithms_train_through_states_without_commands(algo):
    import prior_wrappers.sb3 as sb3

    env = LLMPriorWrapper(GameOverEnv(length=2, max_steps=3), east_prior(), k=4, encoder="hashing")
    kwargs = dict(learning_starts=20) if algo == "DQNPrior" else dict(n_steps=32, batch_size=16, n_epochs=1)
    model = getattr(sb3, algo)("CandidatePolicy", env, seed=0, device="cpu", **kwargs).learn(96)
    assert model.num_timesteps >= 96


def test_odd_unicode_and_newline_commands_are_kept_verbatim_and_deduplicated():
    env = LLMPriorWrapper(BrokenEnv("odd-commands"), UniformPrior(), k=4, encoder="hashing")
    obs, info = env.reset(seed=0)
    assert sorted(info["prior_candidates"]) == sorted(["go\neast", "go east", "café ☕ order"])
    assert obs["action_mask"].sum() == 3
    # the prompt stays one line per action; the env still receives the command verbatim
    assert "go\neast" not in info["prior_prompt"]


def test_vec_wrapper_makes_one_prior_call_per_step_including_terminal_states():
    prior = CountingPrior()
    # score_terminal: the terminated episodes' terminal states are scored too (test_terminal_states.py: without it)
    venv = VecLLMPrior(make_text_vec_env(lambda: CorridorTextEnv(length=3), 4), prior, k=4, encoder="hashing",
                       score_terminal=True)
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


# ---------------------------------------------------------------- a prior that fails mid-episode


class FailingPrior(FunctionPrior):
    """Raises on its ``fail_on``-th score call (counting from 1), like a prior server going down once."""

    def __init__(self, fail_on: int):
        super().__init__(lambda p, c: [3.0 if x == "go east" else 0.0 for x in c])
        self.fail_on = fail_on
        self.calls = 0

    def score(self, prompts, candidates, **kw):
        self.calls += 1
        if self.calls == self.fail_on:
            raise ConnectionError("prior server unreachable")
        return super().score(prompts, candidates, **kw)


class StepCounter(gym.Wrapper):
    def __init__(self, env):
        super().__init__(env)
        self.steps = 0

    def step(self, action):
        self.steps += 1
        return self.env.step(action)


def test_a_failed_step_refuses_further_steps_until_reset():
    inner = StepCounter(CorridorTextEnv())
    env = LLMPriorWrapper(inner, FailingPrior(fail_on=2), k=4, encoder=None)
    env.reset(seed=0)
    mask = env.action_masks().copy()
    with pytest.raises(ConnectionError):
        env.step(0)  # the env moved to room 2, the prior failed: the slots are those of room 1
    assert inner.steps == 1
    with pytest.raises(RuntimeError, match=r"ConnectionError.*call reset\(\)"):
        env.step(0)
    np.testing.assert_array_equal(env.action_masks(), mask)  # the last built state, not half-updated
    assert inner.steps == 1  # the refused step never reached the env
    obs, info = env.reset(seed=0)
    assert "room 1 of 4" in info["text_observation"]
    _, _, _, _, info = env.step(0)
    assert "room 2 of 4" in info["text_observation"] and inner.steps == 2


def test_a_failed_vector_step_refuses_further_steps_until_reset():
    venv = VecLLMPrior(make_text_vec_env(lambda: StepCounter(CorridorTextEnv()), 2), FailingPrior(fail_on=2), k=4, encoder=None)
    venv.reset()
    masks = venv.action_masks().copy()
    with pytest.raises(ConnectionError):
        venv.step(np.zeros(2, dtype=int))
    assert venv.get_attr("steps") == [1, 1]
    with pytest.raises(RuntimeError, match=r"ConnectionError.*call reset\(\)"):
        venv.step(np.zeros(2, dtype=int))
    np.testing.assert_array_equal(venv.action_masks(), masks)
    assert venv.get_attr("steps") == [1, 1]
    venv.reset()
    _, _, _, infos = venv.step(np.zeros(2, dtype=int))
    assert all("room 2 of 4" in i["text_observation"] for i in infos)


def test_a_failed_reset_leaves_no_stale_slots():
    env = LLMPriorWrapper(CorridorTextEnv(), FailingPrior(fail_on=3), k=4, encoder=None)
    env.reset(seed=0)
    env.step(0)
    with pytest.raises(ConnectionError):
        env.reset(seed=0)
    with pytest.raises(RuntimeError, match=r"reset\(\) failed"):
        env.step(0)
    with pytest.raises(RuntimeError, match=r"reset\(\) failed"):
        env.action_masks()


# ---------------------------------------------------------------- NaN/inf


class NaNPrior(UniformPrior):
    """Like a half-precision model that overflowed: NaN log-probabilities for one state."""

    def score(self, prompts, candidates, **kw):
        scores = super().score(prompts, candidates, **kw)
        for p, lp in zip(prompts, scores.logprobs):
            if "room 2 of 4" in p.split("Observation:")[-1]:
                lp[:] = np.nan
        return scores


def test_nan_prior_scores_never_reach_observations():
    env = LLMPriorWrapper(CorridorTextEnv(), NaNPrior(), k=4, encoder=None)
    env.reset(seed=0)
    with pytest.raises(ValueError, match=r"NaN.*room 2 of 4"):
        env.step(0)  # 'go east' (uniform prior, env order) into room 2
    venv = VecLLMPrior(make_text_vec_env(lambda: CorridorTextEnv(), 2), NaNPrior(), k=4, encoder=None)
    venv.reset()
    with pytest.raises(ValueError, match=r"NaN.*room 2 of 4"):
        venv.step(np.zeros(2, dtype=int))


def test_function_prior_minus_inf_is_zero_probability_nan_and_all_minus_inf_raise():
    def fn(p, cands):
        return [-np.inf if c == "wait" else 0.0 for c in cands]

    env = LLMPriorWrapper(CorridorTextEnv(), FunctionPrior(fn), k=4, encoder=None)
    obs, info = env.reset(seed=0)
    assert info["prior_candidates"][-1] == "wait" and obs["prior_logprobs"][2] == LOGPROB_MIN
    assert np.isfinite(obs["prior_logprobs"]).all() and env.observation_space.contains(obs)
    np.testing.assert_allclose(np.exp(obs["prior_logprobs"][:2]), [0.5, 0.5], atol=1e-6)
    for bad, match in [(lambda p, c: [np.nan] * len(c), "NaN"), (lambda p, c: [-np.inf] * len(c), "every candidate")]:
        with pytest.raises(ValueError, match=match) as err:
            LLMPriorWrapper(CorridorTextEnv(), FunctionPrior(bad), k=4, encoder=None).reset(seed=0)
        assert "room 1 of 4" in str(err.value)


class NaNRewardEnv(CorridorTextEnv):
    def step(self, action):
        obs, _, terminated, truncated, info = super().step(action)
        return obs, float("nan") if self.t == 1 else float("inf"), terminated, truncated, info


def test_nan_and_inf_rewards_pass_through_unchanged():
    from stable_baselines3.common.vec_env import VecCheckNan

    env = LLMPriorWrapper(NaNRewardEnv(), east_prior(), k=4, encoder=None)
    env.reset(seed=0)
    assert np.isnan(env.step(1)[1]) and env.step(1)[1] == np.inf  # the wrapper never alters rewards
    venv = VecLLMPrior(make_text_vec_env(NaNRewardEnv, 2), east_prior(), k=4, encoder=None)
    venv.reset()
    assert np.isnan(venv.step(np.ones(2, dtype=int))[1]).all()
    checked = VecCheckNan(VecLLMPrior(make_text_vec_env(NaNRewardEnv, 1), east_prior(), k=4, encoder=None), raise_exception=True)
    checked.reset()
    with pytest.raises(ValueError, match="nan"):
        checked.step(np.ones(1, dtype=int))


# ---------------------------------------------------------------- non-text envs in the vector wrapper

FROZEN_ACTIONS = ["move left", "move down", "move right", "move up"]


def frozen_text(s) -> str:
    return f"You stand on tile {int(s)} of a 4x4 frozen lake."


def test_vec_wrapper_runs_fixed_action_non_text_envs_like_the_single_wrapper():
    prior = FunctionPrior(lambda p, c: [1.0 if x == "move right" else 0.0 for x in c])
    venv = VecLLMPrior(
        make_text_vec_env("FrozenLake-v1", 2, env_kwargs={"is_slippery": False}),
        prior, k=4, encoder="hashing", actions=FROZEN_ACTIONS, observation_to_text=frozen_text,
    )
    single = LLMPriorWrapper(
        gym.make("FrozenLake-v1", is_slippery=False), prior, k=4, encoder="hashing",
        actions=FROZEN_ACTIONS, observation_to_text=frozen_text,
    )
    obs = venv.reset()
    assert venv.reset_infos[0]["text_observation"] == frozen_text(0)
    single_obs, _ = single.reset(seed=0)
    for action in [0, 1, 0, 3]:
        for key in obs:
            np.testing.assert_allclose(obs[key][0], single_obs[key], atol=1e-6)
        obs, _, _, infos = venv.step(np.array([action, action]))
        single_obs, _, _, _, info = single.step(action)
        assert infos[0]["command"] == info["command"] and infos[0]["text_observation"] == info["text_observation"]
    assert infos[0]["text_observation"] != frozen_text(0)  # the lake was really walked


def test_non_text_observation_error_names_an_option_both_wrappers_take():
    # the error must point at an argument VecLLMPrior accepts
    with pytest.raises(TypeError, match="observation_to_text") as err:
        VecLLMPrior(make_text_vec_env("FrozenLake-v1", 1, env_kwargs={"is_slippery": False}), UniformPrior(), k=4,
                    encoder=None, actions=FROZEN_ACTIONS).reset()
    assert "VecLLMPrior" in str(err.value)
    with pytest.raises(ValueError, match="distinct"):
        LLMPriorWrapper(CorridorTextEnv(), UniformPrior(), k=4, encoder=None, actions=["a", "b", "a"])


# ---------------------------------------------------------------- seeds


def test_resampling_is_seeded_in_both_wrappers():
    def commands(env_factory, seed_call):
        env = env_factory()
        seed_call(env)
        out = []
        for _ in range(8):
            out.append(env.step(5)[-1]["command"] if isinstance(env, LLMPriorWrapper) else env.step(np.array([5]))[-1][0]["command"])
        return out

    def single():
        return LLMPriorWrapper(CorridorTextEnv(length=20, max_steps=100), UniformPrior(), k=6, encoder=None,
                               invalid_action="resample", seed=3)

    a = commands(single, lambda e: e.reset())
    assert a == commands(single, lambda e: e.reset())  # seeded at construction, no reset(seed=) needed
    assert len(set(a)) > 1

    def vec():
        return VecLLMPrior(make_text_vec_env(lambda: CorridorTextEnv(length=20, max_steps=100), 1), UniformPrior(),
                           k=6, encoder=None, invalid_action="resample")

    def seed_then_reset(venv, s):
        venv.seed(s)  # what SB3's set_random_seed does
        venv.reset()

    b = commands(vec, lambda v: seed_then_reset(v, 7))
    assert b == commands(vec, lambda v: seed_then_reset(v, 7))
    assert any(b != commands(vec, lambda v: seed_then_reset(v, s)) for s in (8, 9, 10))


# ---------------------------------------------------------------- signature


class PlainEncoder:
    dim = 8
    unit_norm = True

    def encode(self, texts):
        return np.ones((len(texts), 8), np.float32) / np.sqrt(8)


def test_prior_signature_on_both_wrappers_and_through_get_attr():
    env = LLMPriorWrapper(CorridorTextEnv(), east_prior(), k=5, encoder="hashing", candidate_text="action")
    sig = env.prior_signature
    assert sig == {"k": 5, "feature_dim": 64, "encoder": "hashing:64", "candidate_text": "action",
                   "normalization": "token", "order": "prior"}
    assert DummyVecEnv([lambda: env]).get_attr("prior_signature") == [sig]
    venv = VecLLMPrior(make_text_vec_env(lambda: CorridorTextEnv(), 3), east_prior(), k=5, encoder="hashing",
                       candidate_text="action")
    assert venv.prior_signature == sig
    assert venv.has_attr("prior_signature") and venv.get_attr("prior_signature") == [sig] * 3
    assert venv.get_attr("prior_signature", indices=[1]) == [sig]
    assert LLMPriorWrapper(CorridorTextEnv(), east_prior(), k=3, encoder=None).prior_signature["encoder"] is None
    assert LLMPriorWrapper(CorridorTextEnv(), east_prior(), k=3, encoder=PlainEncoder()).prior_signature["encoder"] == "PlainEncoder:8"
    assert SentenceEncoder.default().name == "minilm:all-MiniLM-L6-v2"


def test_encoder_prior_features_with_tiny_llama(tiny_llama, smollm_tokenizer):
    from prior_wrappers import HFPrior

    prior = CachedPrior(HFPrior(tiny_llama, smollm_tokenizer))
    env = LLMPriorWrapper(CorridorTextEnv(), prior, k=5, encoder="prior")
    obs, info = env.reset(seed=0)
    assert env.observation_space.contains(obs) and obs["candidate_features"].shape == (5, 64)
    n = len(info["prior_candidates"])
    direct = prior.prior.score([info["prior_prompt"]], [info["prior_candidates"]], return_features=True).features[0]
    np.testing.assert_allclose(obs["candidate_features"][:n], direct, atol=1e-5)
    assert not obs["candidate_features"][n:].any()
    # documented: with encoder="prior" the observation features are the mean of the valid slots' features
    np.testing.assert_allclose(obs["observation_features"], direct.mean(0), atol=1e-5)
    assert env.prior_signature["encoder"] == "prior:LlamaForCausalLM" and env.prior_signature["feature_dim"] == 64
    again, _ = env.reset(seed=0)
    assert prior.hits == 1  # features come from the cache too
    np.testing.assert_array_equal(again["candidate_features"], obs["candidate_features"])
    with pytest.raises(ValueError, match="encoder='prior'"):
        LLMPriorWrapper(CorridorTextEnv(), UniformPrior(), k=5, encoder="prior")


class NaNEncoder(PlainEncoder):
    def encode(self, texts):
        out = super().encode(texts)
        out[-1] = np.nan
        return out


def test_nan_encoder_features_never_reach_observations():
    env = LLMPriorWrapper(CorridorTextEnv(), east_prior(), k=4, encoder=NaNEncoder())
    with pytest.raises(ValueError, match=r"NaN/inf features .*Action: wait"):
        env.reset(seed=0)


def test_every_wrapper_rejects_an_unknown_invalid_action_setting_with_the_same_message():
    from prior_wrappers import GymVectorLLMPrior, make_text_gym_vector_env

    builds = [
        lambda: LLMPriorWrapper(CorridorTextEnv(), UniformPrior(), k=4, encoder=None, invalid_action="ignore"),
        lambda: VecLLMPrior(make_text_vec_env(CorridorTextEnv, 1), UniformPrior(), k=4, encoder=None,
                            invalid_action="ignore"),
        lambda: GymVectorLLMPrior(make_text_gym_vector_env(CorridorTextEnv, 1), UniformPrior(), k=4, encoder=None,
                                  invalid_action="ignore"),
    ]
    for build in builds:
        with pytest.raises(ValueError, match=r"invalid_action must be one of \('cycle', 'resample', 'raise'\), got 'ignore'"):
            build()


def test_hashing_encoder_by_name_with_its_dimension():
    """``encoder="hashing:256"`` (the name HashingEncoder gives itself) sets the feature size; a bad size says how."""
    from envs import OvercookedSalad

    env = LLMPriorWrapper(OvercookedSalad(), UniformPrior(), k=8, encoder="hashing:256")
    obs, _ = env.reset(seed=0)
    assert obs["candidate_features"].shape == (8, 256)
    assert LLMPriorWrapper(OvercookedSalad(), UniformPrior(), k=8, encoder="hashing").reset(seed=0)[0][
        "candidate_features"
    ].shape == (8, 64)
    with pytest.raises(ValueError, match="'hashing:DIM'"):
        LLMPriorWrapper(OvercookedSalad(), UniformPrior(), k=8, encoder="hashing:big")
