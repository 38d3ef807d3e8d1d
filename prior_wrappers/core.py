"""What a prior wrapper does, once, for one env or a batch of them: the core under the three wrappers.

:class:`~prior_wrappers.wrappers.LLMPriorWrapper` (one env, a batch of one),
:class:`~prior_wrappers.vec_wrappers.VecLLMPrior` (SB3 vector envs) and
:class:`~prior_wrappers.gym_vector.GymVectorLLMPrior` (Gymnasium vector envs) each hold a :class:`PriorCore` (its
options and attributes pass through :mod:`~prior_wrappers.core_attributes`) and only adapt it to their API. A reset
is :meth:`PriorCore.reset`: every env's first state laid out with one prior call, as in steps 2 and 3 below. One
step flows so:

1. **env → core.** :meth:`PriorCore.resolve` turns each env's action (a slot index) into the command in that slot
   (:func:`~prior_wrappers.actions.resolve_action`; ``invalid_action`` decides what an empty slot runs). The
   wrapper sends the commands (:meth:`PriorCore.env_actions`) to the env(s) and describes what each env did as an
   :class:`EnvStep`: the command that ran, the reward, whether the episode ended (and was terminated), the state
   the env is in now (an :class:`Observed`) and, where the env has already reset (SB3's vector envs, Gymnasium's
   ``SAME_STEP``), the ended episode's last state.
2. **core → prior.** :meth:`PriorCore.step` makes each state a :class:`~prior_wrappers.prompts.TextState`
   (:func:`~prior_wrappers.text_info.text_state`, which validates the env's output with
   :func:`~prior_wrappers.actions.make_text_state`: its text, admissible commands, the env's history of
   (observation, command) pairs, the demonstrations or the env's prompt example) and lays out **all** states of the
   step with **one** :meth:`~prior_wrappers.slots.SlotBuilder.build` call. The builder writes each state's prompt
   (the ``prompt`` function, :class:`~prior_wrappers.prompts.PromptTemplate` by default) and asks the prior once
   for all of them: ``prior.score``, its answer checked by :func:`~prior_wrappers.slots.check_scores` (or
   ``prior.propose`` with ``prior_mode="propose"``). The last state of a terminated episode goes unscored (no valid
   slot, no prior call) unless ``score_terminal``: nothing bootstraps from it.
3. **prior → slots.** The builder keeps each state's ``k`` best commands by prior (``order`` decides the slot order;
   the kept log-probabilities are renormalised over them; :func:`~prior_wrappers.proposals.layout_proposals` with
   proposals), adds the features (the prior's hidden states, or the encoder's vectors of
   :func:`~prior_wrappers.slot_features.feature_text`) and, with ``token_ids``, the token ids, and returns one
   :class:`~prior_wrappers.slots.Slots` per state: the observation dict (``prior_logprobs``, ``action_mask``, ...).
   Only now does each env's :class:`EnvPriorState` change: its history (restarted where the env reset), current
   text and slots; a won episode joins the demonstrations (``learn_from_successes``).
4. **slots → observation.** The wrapper turns each env's :class:`EnvOutcome` into its API's observation (the slots'
   observation dict, stacked by :func:`~prior_wrappers.slots.stack_observations` in the vector wrappers) and info
   (:meth:`Built.prior_info`, :attr:`EnvOutcome.executed`, :attr:`EnvOutcome.ended`).

A reset or step that raises (the prior, the env) runs inside :meth:`PriorCore.failing`: the core then refuses
steps until the next reset (:meth:`PriorCore.ready` says why), and since nothing changed before all slots were
built, :meth:`PriorCore.masks` still describes the last states built.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, NamedTuple, SupportsFloat, cast

import numpy as np

from prior_wrappers.actions import InvalidAction, ResolvedAction, check_invalid_action, resolve_action, validate_actions
from prior_wrappers.demonstrations import Demonstrations, SuccessRecorder, success_recorder
from prior_wrappers.priors.base import ActionPrior, Normalization
from prior_wrappers.prompts import PromptFn, TextState
from prior_wrappers.proposals import PriorMode, ProposalConfig
from prior_wrappers.slot_features import CandidateText, EncoderSpec
from prior_wrappers.slots import SlotBuilder, SlotOrder, Slots
from prior_wrappers.text_info import PROMPT_EXAMPLE, observation_from_info, prior_info, text_state
from prior_wrappers.token_ids import TokenIdSpec

History = deque[tuple[str, str]]
_FINAL, _NOW = 0, 1  # an env's two states in a step: its ended episode's last one, the one it is in now


class Observed(NamedTuple):
    """What an env shows of one state: its observation (text, or what ``observation_to_text`` turns into text),
    its ``info`` (``admissible_commands``, ``task``, ...) and its own prompt example (``None``: none)."""

    observation: Any
    info: dict[str, Any]
    example: str | None = None

    @classmethod
    def from_info(cls, info: dict[str, Any]) -> Observed:
        """A state that travelled in ``info`` (:class:`~prior_wrappers.text_info.TextInInfo`'s keys).

        :raises KeyError: ``info`` has no ``text_observation``.
        """
        return cls(observation_from_info(info), info, info.get(PROMPT_EXAMPLE))


class EnvStep(NamedTuple):
    """What one env did in a step, as its wrapper read it.

    :param resolved: the command that ran; ``None``: none ran (the env reset on this step: Gymnasium's
        ``NEXT_STEP``), so ``now`` starts a new episode.
    :param reward: the env's reward (only the demonstrations' recorder reads it).
    :param done: the episode ended on this step (terminated or truncated).
    :param terminated: it ended in a terminal state (not by a time-out): that state goes unscored unless
        ``score_terminal``.
    :param now: the state the env is in now.
    :param final: where the env has already reset: the ended episode's last state (``now`` is then the next
        episode's first).
    """

    resolved: ResolvedAction | None
    reward: SupportsFloat
    done: bool
    terminated: bool
    now: Observed
    final: Observed | None = None


class Built(NamedTuple):
    """One state laid out: its text state, its slots and the ``info`` the env gave with it."""

    state: TextState
    slots: Slots
    info: dict[str, Any]

    def prior_info(self, env_info: bool = True) -> dict[str, Any]:
        """The prior's ``info`` keys for this state (:func:`~prior_wrappers.text_info.prior_info`), on a copy of
        the env's ``info`` (``env_info=False``: alone, for Gymnasium's batched info, which carries the env's)."""
        return prior_info(self.info if env_info else {}, self.state.observation, self.slots)


class EnvOutcome(NamedTuple):
    """One env's step, laid out: what the wrapper turns into its observation and info.

    :param now: the state the env is in now (its slots are the env's next observation).
    :param final: the ended episode's last state, where the env has already reset.
    :param executed: ``command``, ``executed_slot`` and ``invalid_action`` of the command that ran (empty if none).
    :param ended: ``prior_stats`` where an episode ended by a command on this step (else empty).
    """

    now: Built
    final: Built | None
    executed: dict[str, Any]
    ended: dict[str, Any]

    @property
    def reached(self) -> Built:
        """The state the command led to: the ended episode's last where the env has reset, else the current."""
        return self.final or self.now


@dataclass
class EnvPriorState:
    """One env's prior state between steps.

    :param history: the episode's last (observation, command) pairs, for the prompt.
    :param recorder: follows the episode for ``Demonstrations(learn_from_successes=True)`` (``None``: not learning).
    :param text: the current state's observation text.
    :param slots: the current state's slots (``None``: no reset yet, or it failed).
    :param unscored: the current state, where it was laid out unscored (a terminated episode's last state).
    :param resets_next: the env resets on the next step and ignores its action (Gymnasium's ``NEXT_STEP``).
    """

    history: History
    recorder: SuccessRecorder | None
    text: str = ""
    slots: Slots | None = None
    unscored: TextState | None = None
    resets_next: bool = False


class PriorCore:
    """The prior state of ``n_envs`` envs and the reset and step that update it, with one prior call per step for
    all of them (see the module's docstring for one step's flow).

    The options are the wrappers' (:class:`~prior_wrappers.wrappers.LLMPriorWrapper` documents them); these
    say how the wrapper's envs behave:

    :param n_envs: the number of envs.
    :param states: what a failed core has no slots for, in its error ("the env's current state").
    :param finals_first: in a step's prior call, every ended episode's last state comes before every env's current
        state (else each env's last state just before its current one). Either order gives the same slots; the
        wrappers keep theirs, since a prior that batches (``HFPrior``) may round differently in another order.
    :param autoreset_next: an env whose episode ends without a final state (``EnvStep.final``) resets on the next
        step, ignoring that step's action (Gymnasium's ``NEXT_STEP``); else it goes on until the wrapper resets.
    """

    def __init__(
        self,
        n_envs: int,
        prior: ActionPrior,
        k: int = 16,
        *,
        encoder: EncoderSpec = "minilm",
        prompt: PromptFn | None = None,
        normalization: Normalization = "token",
        order: SlotOrder = "prior",
        candidate_text: CandidateText = "joint",
        actions: Sequence[str] | None = None,
        observation_to_text: Callable[[Any], str] | None = None,
        invalid_action: InvalidAction = "cycle",
        history: int = 2,
        seed: int | None = None,
        builder: SlotBuilder | None = None,
        demonstrations: Demonstrations | str | None = None,
        token_ids: TokenIdSpec | None = None,
        prior_mode: PriorMode = "score",
        proposals: ProposalConfig | int | None = None,
        score_terminal: bool = False,
        states: str = "the env's current state",
        finals_first: bool = False,
        autoreset_next: bool = False,
    ) -> None:
        check_invalid_action(invalid_action)
        self.builder = builder or SlotBuilder(
            prior,
            k,
            encoder=encoder,
            prompt=prompt,
            normalization=normalization,
            order=order,
            candidate_text=candidate_text,
            token_ids=token_ids,
            prior_mode=prior_mode,
            proposals=proposals,
            seed=seed,
        )
        self.actions = validate_actions(actions)
        self.observation_to_text = observation_to_text
        self.invalid_action = invalid_action
        self.score_terminal = score_terminal
        self.demonstrations = demonstrations
        self.rng = np.random.default_rng(seed)  # what invalid_action="resample" draws from
        self.envs = [
            EnvPriorState(deque(maxlen=max(history, 0)), success_recorder(demonstrations)) for _ in range(n_envs)
        ]
        self.failure: str | None = None
        self.states, self.finals_first, self.autoreset_next = states, finals_first, autoreset_next

    def seed(self, seed: int | None) -> None:
        """Re-seed the ``"resample"`` generator and the proposals (``None``: leave both as they are)."""
        if seed is not None:
            self.rng = np.random.default_rng(seed)
            self.builder.seed(seed)

    @contextmanager
    def failing(self, what: str) -> Iterator[None]:
        """Run a reset or step: if it raises, the core refuses steps until the next reset (:meth:`ready`).

        :param what: the failure as :meth:`ready` names it, ``{error}`` standing for the exception.
        """
        try:
            yield
        except Exception as err:
            self.failure = what.format(error=f"{type(err).__name__}: {err}")
            raise

    def ready(self, what: str) -> list[Slots]:
        """Every env's current slots; ``RuntimeError`` (calling for a reset) after a failure or before any reset.

        :param what: what the caller is about to do ("step()"), named in the error.
        """
        if self.failure is not None:
            raise RuntimeError(
                f"{self.failure}, so the wrapper has no valid slots for {self.states}; call reset() before {what}"
            )
        if any(env.slots is None for env in self.envs):
            raise RuntimeError(f"call reset() before {what}")
        return [cast(Slots, env.slots) for env in self.envs]

    def masks(self) -> np.ndarray:
        """``(n_envs, k)`` boolean masks of the valid slots: after a failed step, of the last states built."""
        if any(env.slots is None for env in self.envs):
            self.ready("action_masks()")  # raises: the reason, and to call reset()
        return np.stack([cast(Slots, env.slots).mask for env in self.envs])

    def forget(self) -> None:
        """Before the envs reset: no slots, no failure, no history (an env whose own reset raises leaves the core
        asking for a reset)."""
        self.failure = None
        for env in self.envs:
            env.history.clear()
            env.slots, env.unscored, env.resets_next = None, None, False

    def _state(self, seen: Observed, history: Iterable[tuple[str, str]]) -> TextState:
        return text_state(
            seen.observation,
            seen.info,
            history,
            example=seen.example,
            observation_to_text=self.observation_to_text,
            demonstrations=self.demonstrations,
            actions=self.actions,
        )

    def reset(self, observed: Iterable[Observed]) -> list[Built]:
        """Lay out every env's first state with one prior call (after :meth:`forget` and the envs' reset).

        :param observed: each env's first state; consumed inside :meth:`failing`, so a generator that reads the
            envs' output may raise there too.
        """
        with self.failing("reset() failed ({error})"):
            seen = list(observed)
            states = [self._state(s, ()) for s in seen]
            built = [Built(*b) for b in zip(states, self.builder.build(states), (s.info for s in seen))]
        for env, first in zip(self.envs, built):
            env.text, env.slots = first.state.observation, first.slots
            if env.recorder is not None:
                env.recorder.start(first.state.observation, first.info)
        return built

    def resolve(self, actions: Iterable[Any]) -> list[ResolvedAction | None]:
        """Each env's slot index as the command it runs (``None`` for an env that resets on this step and ignores
        it). A current state laid out unscored (stepping on past a terminated episode without reset) is scored
        first, so its action means what it would with ``score_terminal=True``.

        :param actions: one slot index per env.
        """
        self.ready("step()")
        late = [env for env in self.envs if env.unscored is not None and not env.resets_next]
        if late:
            for env, slots in zip(late, self.builder.build([cast(TextState, env.unscored) for env in late])):
                env.slots, env.unscored = slots, None
        return [
            None if env.resets_next else resolve_action(a, cast(Slots, env.slots), self.rng, self.invalid_action)
            for env, a in zip(self.envs, actions)
        ]

    def env_actions(self, resolved: Sequence[ResolvedAction | None]) -> list[Any]:
        """What each env receives: its command, or with ``actions=[...]`` the command's index. An env that resets on
        this step ignores it but gets a valid one all the same (its last state's first command; where that listed
        none, the first of a fixed action set, or an empty command)."""
        ignored = self.actions[0] if self.actions else ""
        commands = [
            r.command if r is not None else next(iter(cast(Slots, env.slots).candidates), ignored)
            for r, env in zip(resolved, self.envs)
        ]
        return commands if self.actions is None else [self.actions.index(c) for c in commands]

    def scored(self, last: bool, terminated: bool) -> bool:
        """Whether the prior scores a state: every state is scored but the ``last`` state of a ``terminated``
        episode, which nothing bootstraps from (SB3 only on time-outs), unless ``score_terminal``."""
        return self.score_terminal or not (last and terminated)

    def step(self, steps: Sequence[EnvStep]) -> list[EnvOutcome]:
        """Lay out every state the envs reached with **one** prior call (one ``SlotBuilder.build``), then move each
        env to its new state: history, text, slots, demonstrations.

        :param steps: what each env did (:class:`EnvStep`), one per env.
        """
        histories: list[History] = []
        restarted: list[bool] = []  # the env reset: its current state starts a new episode, with a new history
        batch: list[_Entry] = []
        for i, (env, s) in enumerate(zip(self.envs, steps)):
            history = deque(env.history, maxlen=env.history.maxlen)  # the env's own changes once all is built
            if s.resolved is not None:
                history.append((env.text, s.resolved.command))
            if s.final is not None:
                batch.append(_Entry(i, _FINAL, self._state(s.final, history), self.scored(True, s.terminated), s.final))
            restarted.append(s.final is not None or s.resolved is None)
            histories.append(deque(maxlen=history.maxlen) if restarted[i] else history)
            now_scored = self.scored(not restarted[i], s.terminated)
            batch.append(_Entry(i, _NOW, self._state(s.now, histories[i]), now_scored, s.now))
        if self.finals_first:  # else by env, each env's last state just before its current one
            batch.sort(key=lambda entry: entry.which)  # stable: in env order among the last and the current states
        laid_out = self.builder.build([e.state for e in batch], [e.scored for e in batch])  # the one prior call
        built = {(e.env, e.which): Built(e.state, slots, e.seen.info) for e, slots in zip(batch, laid_out)}
        unscored = {e.env: e.state for e in batch if e.which == _NOW and not e.scored}

        outcomes = []  # nothing has changed so far: a failure above leaves every env in its last state
        for i, (env, s) in enumerate(zip(self.envs, steps)):
            now, final = built[(i, _NOW)], built.get((i, _FINAL))
            env.history, env.text, env.slots, env.unscored = (
                histories[i],
                now.state.observation,
                now.slots,
                unscored.get(i),
            )
            env.resets_next = self.autoreset_next and bool(s.done) and final is None
            executed: dict[str, Any] = {}
            if s.resolved is not None:
                r = s.resolved
                executed = {"command": r.command, "executed_slot": r.slot, "invalid_action": r.invalid}
                if env.recorder is not None:  # a won episode joins the demonstrations (learn_from_successes)
                    reached = final or now
                    env.recorder.step(r.command, reached.state.observation, float(s.reward), s.done, reached.info)
            if env.recorder is not None and restarted[i]:
                env.recorder.start(now.state.observation, now.info)
            ended = {"prior_stats": self.builder.stats.as_dict()} if s.done and s.resolved is not None else {}
            outcomes.append(EnvOutcome(now, final, executed, ended))
        return outcomes


class _Entry(NamedTuple):
    """One state of a step's prior call: whose (env), which (_FINAL, _NOW), and whether the prior scores it."""

    env: int
    which: int
    state: TextState
    scored: bool
    seen: Observed
