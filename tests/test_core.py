"""PriorCore, the per-env prior state under the three wrappers, tested directly (no env): histories across
episodes, which states the prior scores, the failure state, and one SlotBuilder.build per step."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pytest

from prior_wrappers import Demonstrations, FunctionPrior
from prior_wrappers.core import EnvStep, Observed, PriorCore
from prior_wrappers.core_attributes import core_options
from prior_wrappers.slots import SlotBuilder
from prior_wrappers.spaces import LOGPROB_MIN, PRIOR_LOGPROBS

COMMANDS = ["go east", "go west", "wait"]


def east(prompt: str, commands: Sequence[str]) -> list[float]:
    return [2.0 if c == "go east" else 0.0 for c in commands]


class Prior(FunctionPrior):
    """Counts score calls and fails on the ones listed in ``fail_on``."""

    def __init__(self, fail_on: tuple[int, ...] = ()) -> None:
        super().__init__(east)
        self.calls: list[list[str]] = []
        self.fail_on = fail_on

    def score(self, prompts, candidates, **kw):
        self.calls.append(list(prompts))
        if len(self.calls) in self.fail_on:
            raise ConnectionError("the LLM server went away")
        return super().score(prompts, candidates, **kw)


def seen(room: int, won: bool = False, commands: list[str] = COMMANDS) -> Observed:
    info = {"admissible_commands": commands, "task": "reach the exit", "is_success": won}
    return Observed(f"room {room}", info, "an example")


def core(n: int = 1, prior: Prior | None = None, **kwargs) -> tuple[PriorCore, list[tuple[list, list]]]:
    """A core on a counting prior; the list records every build call's (states, scored)."""
    c = PriorCore(n, prior or Prior(), k=3, encoder=None, history=kwargs.pop("history", 2), **kwargs)
    builds: list[tuple[list, list]] = []
    build = c.builder.build

    def spy(states, scored=None):
        builds.append((list(states), list(scored) if scored is not None else [True] * len(states)))
        return build(states, scored)

    c.builder.build = spy  # type: ignore[method-assign]
    return c, builds


def step(c: PriorCore, actions, nows, *, done=None, terminated=None, finals=None, rewards=None):
    resolved = c.resolve(actions)
    n = len(resolved)
    done = done or [False] * n
    terminated = terminated or [False] * n
    finals = finals or [None] * n
    rewards = rewards or [0.0] * n
    return c.step([EnvStep(r, rewards[i], done[i], terminated[i], nows[i], finals[i]) for i, r in enumerate(resolved)])


def test_history_grows_within_an_episode_up_to_its_length_and_restarts_where_the_env_reset():
    c, _ = core(2, history=2)
    c.forget()
    c.reset([seen(1), seen(1)])
    out = step(c, [0, 1], [seen(2), seen(1)])
    assert out[0].now.state.history == (("room 1", "go east"),)
    out = step(c, [0, 2], [seen(3), seen(1)])
    out = step(c, [1, 2], [seen(2), seen(1)])
    assert out[0].now.state.history == (("room 2", "go east"), ("room 3", "go west"))  # the last two only
    # env 1's episode ends and it has already reset (SB3, SAME_STEP): its last state still has the episode's
    # history, its current state (the next episode's first) none
    out = step(c, [0, 0], [seen(3), seen(1)], done=[False, True], finals=[None, seen(2, won=True)])
    assert out[1].final is not None and out[1].final.state.history == (("room 1", "wait"), ("room 1", "go east"))
    assert out[1].now.state.history == ()
    out = step(c, [0, 0], [seen(3), seen(2)])
    assert out[1].now.state.history == (("room 1", "go east"),)  # the new episode's own steps only
    c.forget()
    (first, _) = c.reset([seen(1), seen(1)])
    assert first.state.history == () and not c.envs[0].history


def test_an_env_without_autoreset_keeps_its_history_past_the_end_of_an_episode():
    c, _ = core(1, score_terminal=True)
    c.forget()
    c.reset([seen(1)])
    step(c, [0], [seen(2)], done=[True], terminated=[True])
    (out,) = step(c, [0], [seen(3)])  # stepping on without reset (the single-env wrapper's case)
    assert out.now.state.history == (("room 1", "go east"), ("room 2", "go east"))


def test_next_step_autoreset_ignores_the_action_and_starts_a_new_history():
    c, _ = core(2, autoreset_next=True)
    c.forget()
    c.reset([seen(1), seen(1)])
    step(c, [0, 0], [seen(2), seen(2)], done=[True, False], terminated=[True, False])
    assert [env.resets_next for env in c.envs] == [True, False]
    resolved = c.resolve([2, 1])  # env 0 resets on this step: its action (even an empty slot) is ignored
    assert resolved[0] is None and resolved[1] is not None and resolved[1].command == "go west"
    assert c.env_actions(resolved) == ["", "go west"]  # the unscored last state listed no command: an empty one
    out = c.step([EnvStep(None, 0.0, False, False, seen(1)), EnvStep(resolved[1], 0.0, False, False, seen(1))])
    assert out[0].now.state.history == () and out[0].executed == {} and out[0].ended == {}
    assert out[1].now.state.history == (("room 1", "go east"), ("room 2", "go west"))
    assert not c.envs[0].resets_next


def test_env_actions_are_indices_into_a_fixed_action_set():
    c, _ = core(1, actions=["go east", "go west", "wait"])
    c.forget()
    c.reset([Observed("room 1", {}, None)])  # no admissible list: the action names are the commands
    assert c.env_actions(c.resolve([1])) == [1]


@pytest.mark.parametrize("score_terminal", [False, True])
def test_only_a_terminated_episodes_last_state_goes_unscored(score_terminal):
    assert PriorCore.scored.__doc__  # the rule, in one place:
    c, builds = core(3, score_terminal=score_terminal, finals_first=True)
    assert [c.scored(last, term) for last in (False, True) for term in (False, True)] == [
        True, True, True, score_terminal
    ]  # fmt: skip
    c.forget()
    c.reset([seen(1)] * 3)
    builds.clear()
    # env 0 won (terminated), env 1 timed out (truncated), env 2 goes on; 0 and 1 have reset already
    out = step(c, [0, 1, 2], [seen(1), seen(1), seen(1)], done=[True, True, False], terminated=[True, False, False],
               finals=[seen(2, won=True), seen(2), None])  # fmt: skip
    ((states, scored),) = builds
    assert [s.observation for s in states] == ["room 2", "room 2", "room 1", "room 1", "room 1"]  # finals first
    assert scored == [score_terminal, True, True, True, True]
    final = out[0].final
    assert final is not None and final.slots.mask.any() == score_terminal
    assert (final.slots.candidates == []) != score_terminal and final.prior_info()["prior_prompt"]
    if not score_terminal:
        assert (final.slots.observation[PRIOR_LOGPROBS] == LOGPROB_MIN).all()
    assert out[1].final is not None and out[1].final.slots.candidates  # a time-out's last state: scored


def test_a_terminated_state_stepped_on_without_reset_is_scored_before_its_action_is_resolved():
    prior = Prior()
    c, builds = core(1, prior)
    c.forget()
    c.reset([seen(1)])
    (out,) = step(c, [0], [seen(2)], done=[True], terminated=[True])
    assert not out.now.slots.candidates and c.envs[0].unscored is not None
    calls = len(prior.calls)
    (resolved,) = c.resolve([1])  # scored now, as with score_terminal=True
    assert len(prior.calls) == calls + 1 and resolved is not None and resolved.command == "go west"
    assert c.envs[0].unscored is None and c.envs[0].slots is not None and c.envs[0].slots.candidates


def test_one_build_call_per_step_each_env_in_order_its_last_state_before_its_current_one():
    prior = Prior()
    c, builds = core(3, prior)
    c.forget()
    c.reset([seen(1)] * 3)
    assert len(builds) == 1 and len(prior.calls) == 1
    for t in range(4):
        done = [t == 2, False, True]
        step(c, [0, 1, 2], [seen(1)] * 3, done=done, finals=[seen(9) if d else None for d in done])
        assert len(builds) == 2 + t and len(prior.calls) == 2 + t
    states, _ = builds[3]  # the step where envs 0 and 2 ended
    assert [s.observation for s in states] == ["room 9", "room 1", "room 1", "room 9", "room 1"]


def test_a_failed_step_refuses_further_steps_until_reset_and_changes_nothing():
    prior = Prior(fail_on=(3,))
    c, _ = core(2, prior, states="the envs' current states")
    c.forget()
    c.reset([seen(1), seen(1)])
    step(c, [0, 0], [seen(2), seen(2)])
    before = [(list(e.history), e.text, e.slots) for e in c.envs]
    with pytest.raises(ConnectionError):
        with c.failing("the last step failed ({error}) after its actions went to the envs"):
            step(c, [0, 1], [seen(3), seen(1)], done=[True, False], finals=[seen(3, won=True), None])
    assert [(list(e.history), e.text, e.slots) for e in c.envs] == before  # nothing half-updated
    message = (
        r"the last step failed \(ConnectionError: the LLM server went away\) after its actions went to the envs, so "
        r"the wrapper has no valid slots for the envs' current states; call reset\(\) before step\(\)"
    )
    with pytest.raises(RuntimeError, match=message):
        c.resolve([0, 0])
    np.testing.assert_array_equal(c.masks(), [slots.mask for *_, slots in before if slots])  # the last states built
    c.forget()
    c.reset([seen(1), seen(1)])
    assert c.failure is None and c.resolve([0, 0])[0] is not None


def test_a_failed_reset_leaves_no_slots_and_says_why():
    c, _ = core(1, Prior(fail_on=(1,)))
    with pytest.raises(RuntimeError, match=r"call reset\(\) before action_masks\(\)"):
        c.masks()
    c.forget()
    with pytest.raises(ConnectionError):
        c.reset([seen(1)])
    for call in (c.masks, lambda: c.resolve([0])):
        with pytest.raises(RuntimeError, match=r"reset\(\) failed \(ConnectionError.*the env's current state"):
            call()
    with pytest.raises(KeyError, match="TextInInfo"):
        Observed.from_info({"admissible_commands": COMMANDS})


def test_won_episodes_join_the_demonstrations_and_the_next_prompts_show_them():
    demos = Demonstrations([], learn_from_successes=True)
    c, _ = core(2, demonstrations=demos)
    c.forget()
    c.reset([seen(1), seen(1)])
    step(c, [0, 0], [seen(2), seen(2)])
    out = step(c, [0, 1], [seen(1), seen(1)], done=[True, False], rewards=[1.0, 0.0],
               finals=[seen(3, won=True), None])  # fmt: skip
    assert len(demos) == 1 and demos.episodes[0].steps == (("room 1", "go east"), ("room 2", "go east"))
    assert demos.episodes[0].final_observation == "room 3" and demos.episodes[0].episode_return == 1.0
    assert out[0].ended["prior_stats"]["calls"] == 3 and out[1].ended == {}
    assert "an example" in out[0].now.slots.prompt  # built before the episode joined
    (later, _) = step(c, [2, 0], [seen(1), seen(2)])
    assert "room 3" in later.now.slots.prompt and "an example" not in later.now.slots.prompt
    step(c, [0, 0], [seen(2), seen(2)])
    step(c, [0, 0], [seen(1), seen(2)], done=[True, False], finals=[seen(3, won=True), None])
    assert len(demos) == 2  # the next episode, recorded from its own start
    assert demos.episodes[1].steps == (("room 1", "wait"), ("room 1", "go east"), ("room 2", "go east"))


def test_the_wrappers_attributes_live_in_their_core():
    from toy_text_env import CorridorTextEnv

    from prior_wrappers import LLMPriorWrapper

    env = LLMPriorWrapper(CorridorTextEnv(), Prior(), k=3, encoder=None)
    assert isinstance(env.builder, SlotBuilder) and env.builder is env._core.builder
    env.score_terminal = True
    assert env._core.score_terminal is True
    assert core_options({"self": env, "env": None, "__class__": type, "k": 3}) == {"k": 3}
