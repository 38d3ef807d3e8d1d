"""The last state of a terminated episode is not scored (``score_terminal=False``, the default) in all three wrappers:
no prior call, no encoding, no valid slot; a truncated episode's last state is scored (SB3 bootstraps from it);
``score_terminal=True`` scores both. Nothing that trains reads the unscored states: seeded DQN-Prior and PPO-Prior
runs give the same parameters either way, with fewer prompts scored."""

from __future__ import annotations

import numpy as np
import pytest
import torch as th
from gymnasium.vector import AutoresetMode, SyncVectorEnv
from stable_baselines3.common.vec_env import DummyVecEnv
from toy_text_env import CorridorTextEnv, CountingPrior

from prior_wrappers import (
    GymVectorLLMPrior,
    LLMPriorWrapper,
    TextInInfo,
    VecLLMPrior,
    make_text_gym_vector_env,
    make_text_vec_env,
)
from prior_wrappers.encoders import HashingEncoder
from prior_wrappers.gym_vector import sub_env_info
from prior_wrappers.spaces import LOGPROB_MIN

EAST, WEST, WAIT = 0, 1, 2  # slots in room 1 under the prior below: "go east" first, then the env's order
LAST_ROOM = "You are in room 3 of 3. The exit is to the east."


class RecordingEncoder(HashingEncoder):
    """The hashing encoder, remembering every text it was asked to encode."""

    def __init__(self) -> None:
        super().__init__(dim=16)
        self.texts: list[str] = []

    def encode(self, texts):
        self.texts.extend(texts)
        return super().encode(texts)


class EndsBothWays(CorridorTextEnv):
    """Reaching the exit on the last allowed step reports ``terminated`` and ``truncated`` together."""

    def step(self, action):
        obs, reward, terminated, _, info = super().step(action)
        return obs, reward, terminated, self.t >= self.max_steps, info


def corridor(max_steps: int = 3, length: int = 3) -> CorridorTextEnv:
    return CorridorTextEnv(length=length, max_steps=max_steps)


# env 0 walks east (terminated every 2 steps), env 1 waits (time-out after 3 steps), env 2 reaches the exit on its
# last allowed step (terminated and truncated at once)
MIXED_ENDS = [corridor, corridor, lambda: EndsBothWays(length=3, max_steps=2)]
MIXED_ACTIONS = np.array([EAST, WAIT, EAST])


def text_envs() -> list:
    return [lambda make=make: TextInInfo(make()) for make in MIXED_ENDS]


# ---------------------------------------------------------------- LLMPriorWrapper


@pytest.mark.parametrize("score_terminal", [False, True])
def test_single_env_wrapper_scores_a_terminated_last_state_only_when_asked(score_terminal):
    prior, encoder = CountingPrior(), RecordingEncoder()
    env = LLMPriorWrapper(corridor(), prior, k=4, encoder=encoder, score_terminal=score_terminal)
    env.reset(seed=0)
    env.step(EAST)
    calls, texts = len(prior.calls), len(encoder.texts)
    obs, reward, terminated, truncated, info = env.step(EAST)  # the exit: terminated
    assert terminated and not truncated and reward == 1.0
    assert env.observation_space.contains(obs)
    # what users read at the goal state is there either way
    assert info["text_observation"] == LAST_ROOM and LAST_ROOM in info["prior_prompt"]
    assert info["command"] == "go east" and info["admissible_commands"] == ["go east", "go west", "wait"]
    assert info["prior_stats"]["calls"] == len(prior.calls)
    if score_terminal:
        assert len(prior.calls) == calls + 1 and prior.calls[-1] == [info["prior_prompt"]]
        assert info["prior_candidates"][0] == "go east" and obs["action_mask"].sum() == 3
        assert any(LAST_ROOM in t for t in encoder.texts[texts:])
    else:  # no prior call, nothing encoded, no slot
        assert len(prior.calls) == calls and len(encoder.texts) == texts
        assert info["prior_candidates"] == [] and not obs["action_mask"].any() and not env.action_masks().any()
        assert (obs["prior_logprobs"] == LOGPROB_MIN).all()
        assert not obs["observation_features"].any() and not obs["candidate_features"].any()
        # a loop that steps on without reset() (the env allows it) gets the last state scored first, as before
        *_, info = env.step(EAST)
        assert info["command"] == "go east" and len(prior.calls) == calls + 1 and LAST_ROOM in prior.calls[-1][0]
    env.reset(seed=1)  # the next episode starts as usual
    assert env.action_masks().sum() == 3


@pytest.mark.parametrize("score_terminal", [False, True])
def test_single_env_wrapper_always_scores_a_truncated_last_state(score_terminal):
    prior = CountingPrior()
    env = LLMPriorWrapper(corridor(max_steps=2), prior, k=4, encoder="hashing", score_terminal=score_terminal)
    env.reset(seed=0)
    env.step(WAIT)
    obs, _, terminated, truncated, info = env.step(WAIT)  # time-out in room 1
    assert truncated and not terminated
    assert prior.calls[-1] == [info["prior_prompt"]] and len(prior.calls) == 3
    assert info["prior_candidates"][0] == "go east" and obs["action_mask"].sum() == 3


def test_terminated_wins_over_truncated():
    prior = CountingPrior()
    env = LLMPriorWrapper(EndsBothWays(length=3, max_steps=2), prior, k=4, encoder="hashing")
    env.reset(seed=0)
    env.step(EAST)
    obs, _, terminated, truncated, info = env.step(EAST)
    assert terminated and truncated and len(prior.calls) == 2 and not obs["action_mask"].any()


# ---------------------------------------------------------------- VecLLMPrior


@pytest.mark.parametrize("score_terminal", [False, True])
def test_vec_wrapper_scores_time_outs_and_terminated_last_states_only_when_asked(score_terminal):
    """One prior call per vector step, holding every current state, the time-outs' terminal states, and the
    terminated ones' only with ``score_terminal`` (terminated and truncated at once counts as terminated)."""
    prior = CountingPrior()
    venv = VecLLMPrior(DummyVecEnv(text_envs()), prior, k=4, encoder="hashing", score_terminal=score_terminal)
    obs = venv.reset()
    ended = {"terminated": 0, "truncated": 0}
    for t in range(6):
        obs, _, dones, infos = venv.step(MIXED_ACTIONS)
        assert len(prior.calls) == 2 + t  # one call per vector step
        call = prior.calls[-1]
        timeouts = [i for i in np.flatnonzero(dones) if infos[i]["TimeLimit.truncated"]]
        terminated = [i for i in np.flatnonzero(dones) if not infos[i]["TimeLimit.truncated"]]
        assert len(call) == 3 + len(timeouts) + (len(terminated) if score_terminal else 0)
        for i in timeouts:
            assert infos[i]["prior_prompt"] in call and infos[i]["terminal_observation"]["action_mask"].any()
        for i in terminated:
            terminal = infos[i]["terminal_observation"]
            assert set(terminal) == set(obs) and infos[i]["text_observation"] == LAST_ROOM
            assert "prior_stats" in infos[i] and infos[i]["command"] == "go east"
            assert (infos[i]["prior_prompt"] in call) == score_terminal
            assert terminal["action_mask"].any() == score_terminal
            assert (infos[i]["prior_candidates"] == []) != score_terminal
        ended["terminated"] += len(terminated)
        ended["truncated"] += len(timeouts)
    assert ended["terminated"] >= 5 and ended["truncated"] >= 2  # envs 0 and 2 end 3 times each, env 1 twice
    assert obs["action_mask"].any(axis=1).all()  # current states always have their slots


# ---------------------------------------------------------------- GymVectorLLMPrior


@pytest.mark.parametrize("score_terminal", [False, True])
@pytest.mark.parametrize("mode", [AutoresetMode.NEXT_STEP, AutoresetMode.SAME_STEP], ids=lambda m: m.value)
def test_gym_vector_wrapper_scores_time_outs_and_terminated_last_states_only_when_asked(mode, score_terminal):
    prior = CountingPrior()
    envs = GymVectorLLMPrior(SyncVectorEnv(text_envs(), autoreset_mode=mode), prior, k=4, encoder="hashing",
                             score_terminal=score_terminal)
    envs.reset(seed=0)
    ended = {"terminated": 0, "truncated": 0}
    for t in range(7):
        obs, _, terminations, truncations, info = envs.step(MIXED_ACTIONS)
        assert len(prior.calls) == 2 + t  # one call per vector step
        call = prior.calls[-1]
        for i in np.flatnonzero(terminations | truncations):
            if mode == AutoresetMode.NEXT_STEP:  # the last state is the returned one
                last, last_info = {k: v[i] for k, v in obs.items()}, sub_env_info(info, i)
            else:
                last, last_info = info["final_obs"][i], sub_env_info(info["final_info"], i)
            assert envs.single_observation_space.contains(last) and "command" in last_info
            assert "admissible_commands" in last_info and "prior_prompt" in last_info
            expect_scored = score_terminal or not terminations[i]
            assert (last_info["prior_prompt"] in call) == expect_scored
            assert last["action_mask"].any() == expect_scored
            assert (last_info["prior_candidates"] == []) != expect_scored
            if terminations[i]:
                assert last_info["text_observation"] == LAST_ROOM
            ended["terminated" if terminations[i] else "truncated"] += 1
        # the step's states: one per sub-env, the SAME_STEP final states, less the NEXT_STEP unscored last states
        finals = int((terminations | truncations).sum()) if mode == AutoresetMode.SAME_STEP else 0
        unscored = 0 if score_terminal else int(terminations.sum())
        assert len(call) == 3 + finals - unscored
    assert ended["terminated"] >= 4 and ended["truncated"] >= 1


def test_gym_vector_step_where_every_episode_terminates_makes_no_prior_call():
    prior = CountingPrior()
    envs = GymVectorLLMPrior(make_text_gym_vector_env(lambda: corridor(), 2), prior, k=4, encoder="hashing")
    envs.reset(seed=0)
    envs.step(np.array([EAST, EAST]))
    calls = len(prior.calls)
    obs, _, terminations, _, info = envs.step(np.array([EAST, EAST]))  # NEXT_STEP: both last states returned
    assert terminations.all() and len(prior.calls) == calls and not obs["action_mask"].any()
    assert info["prior_stats"]["calls"].tolist() == [calls, calls]
    obs, *_ = envs.step(np.array([3, 3]))  # the resets ignore the actions (none is valid anyway)
    assert len(prior.calls) == calls + 1 and obs["action_mask"].any(axis=1).all()


# ---------------------------------------------------------------- training does not read them


def _train(algo: str, score_terminal: bool) -> tuple[dict[str, th.Tensor], dict[str, float], object]:
    import prior_wrappers.sb3 as sb3

    venv = VecLLMPrior(make_text_vec_env(lambda: corridor(max_steps=4, length=4), 2), CountingPrior(), k=4,
                       encoder="hashing", score_terminal=score_terminal)
    kwargs = (dict(learning_starts=16, batch_size=16, train_freq=1, buffer_size=1000) if algo == "DQNPrior"
              else dict(n_steps=32, batch_size=16, n_epochs=2))
    model = getattr(sb3, algo)("CandidatePolicy", venv, seed=0, device="cpu", **kwargs).learn(160)
    params = {k: v.detach().clone() for k, v in model.policy.state_dict().items()}
    return params, venv.prior_stats, model


@pytest.mark.parametrize("algo", ["DQNPrior", "PPOPrior"])
def test_training_gives_the_same_parameters_with_fewer_prompts_scored(algo):
    unscored, stats, model = _train(algo, score_terminal=False)
    scored, stats_all, model_all = _train(algo, score_terminal=True)
    assert unscored.keys() == scored.keys()
    for key in unscored:
        assert th.equal(unscored[key], scored[key]), key  # bit for bit
    assert stats["calls"] == stats_all["calls"] and stats["states"] < stats_all["states"]
    if algo == "DQNPrior":  # the replay buffers differ only in the next observations of terminated transitions
        buffer, buffer_all = model.replay_buffer, model_all.replay_buffer
        n = buffer.pos
        terminated = (buffer.dones[:n] > 0) & (buffer.timeouts[:n] == 0)
        assert terminated.any() and ((buffer.dones[:n] > 0) & (buffer.timeouts[:n] > 0)).any()
        for key in buffer.observations:
            np.testing.assert_array_equal(buffer.observations[key][:n], buffer_all.observations[key][:n])
            same = (buffer.next_observations[key][:n] == buffer_all.next_observations[key][:n])
            same = same.reshape(n, buffer.n_envs, -1).all(axis=-1)
            assert same[~terminated].all()
        assert not buffer.next_observations["action_mask"][:n][terminated].any()
