"""The vector-env wrapper: one prior call per vector step for all sub-envs, with the LLM in this process."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

import gymnasium as gym
import numpy as np
from stable_baselines3.common.vec_env import DummyVecEnv, SubprocVecEnv, VecEnv, VecEnvWrapper
from stable_baselines3.common.vec_env.base_vec_env import VecEnvObs, VecEnvStepReturn

from prior_wrappers.demonstrations import Demonstrations, success_recorder
from prior_wrappers.priors.base import ActionPrior, Normalization
from prior_wrappers.prompts import PromptFn, TextState
from prior_wrappers.proposals import PriorMode, ProposalConfig
from prior_wrappers.slots import (
    CandidateText,
    EncoderSpec,
    InvalidAction,
    ResolvedAction,
    SlotBuilder,
    SlotOrder,
    Slots,
    check_invalid_action,
    resolve_action,
    stack_observations,
    validate_actions,
)
from prior_wrappers.text_info import TEXT_OBSERVATION, TextInInfo, prior_info, text_state_from_info
from prior_wrappers.token_ids import TokenIdSpec

__all__ = ["TEXT_OBSERVATION", "TextInInfo", "VecLLMPrior", "make_text_vec_env"]


def make_text_vec_env(
    env_id: str | Callable[[], gym.Env],
    n_envs: int = 1,
    *,
    seed: int | None = None,
    vec_env_cls: type[DummyVecEnv | SubprocVecEnv] = DummyVecEnv,
    env_kwargs: dict[str, Any] | None = None,
    vec_env_kwargs: dict[str, Any] | None = None,
) -> VecEnv:
    """``n_envs`` text envs in an SB3 vector env, ready for :class:`VecLLMPrior`.

    :param env_id: a registered Gymnasium id or a function that makes the env.
    :param vec_env_cls: ``DummyVecEnv`` or ``SubprocVecEnv`` (the prior stays in this process either way).
    """
    env_kwargs = env_kwargs or {}

    def make(rank: int) -> Callable[[], gym.Env]:
        def _init() -> gym.Env:
            env = gym.make(env_id, **env_kwargs) if isinstance(env_id, str) else env_id()
            return TextInInfo(env)

        return _init

    venv = vec_env_cls([make(i) for i in range(n_envs)], **(vec_env_kwargs or {}))
    if seed is not None:
        venv.seed(seed)
    return venv


class VecLLMPrior(VecEnvWrapper):
    """Attach an LLM prior to a vector of text envs with **one** prior call per vector step.

    >>> venv = VecLLMPrior(
    ...     make_text_vec_env("prior_wrappers/OvercookedTomato-v0", n_envs=8), CachedPrior(HFPrior.default())
    ... )
    >>> obs = venv.reset()              # Dict of (8, k, ...) arrays, as LLMPriorWrapper's but stacked

    All states of a step — the current one of every env and, for envs whose episode just ended by a time-out
    (``infos[i]["TimeLimit.truncated"]``), the terminal state too (SB3 bootstraps from
    ``infos[i]["terminal_observation"]`` on time-outs) — are scored together. The terminal state of a terminated
    episode, which SB3 never bootstraps from, is not scored unless ``score_terminal=True``: its
    ``terminal_observation`` has no valid slot (``action_mask`` all 0, zero features), as in the single-env
    wrapper (see its **Episode ends**), and that env's ``info`` has ``prior_candidates == []`` but still the
    terminal state's ``text_observation``, ``prior_prompt`` and ``admissible_commands``.
    The LLM lives in this process, so ``SubprocVecEnv`` workers never hold a model. Observations, actions, the
    action contract (``invalid_action``), ``info`` keys (``command``, ``executed_slot``, ``invalid_action``, ...),
    failure handling and reward pass-through are those of :class:`~prior_wrappers.wrappers.LLMPriorWrapper`:
    after a failed :meth:`step_wait` (the prior raised), :meth:`step_async` raises a ``RuntimeError`` until
    :meth:`reset`, and :meth:`action_masks` still describes the last states built.

    Envs with non-text observations and a fixed discrete action set work like in the single-env wrapper:
    :class:`TextInInfo` carries their raw observation in ``info["text_observation"]``, this wrapper turns it into
    text with ``observation_to_text`` (in this process) and sends the sub-envs action indices into ``actions``:

    >>> venv = VecLLMPrior(make_text_vec_env("FrozenLake-v1", 4), prior, actions=["left", "down", "right", "up"],
    ...                    observation_to_text=lambda s: f"You stand on tile {s}.")

    :param venv: a vector env of envs wrapped in :class:`TextInInfo` (see :func:`make_text_vec_env`).
    :param prior: the prior (shared by all envs; wrap it in ``CachedPrior`` to reuse scores).
    :param actions: names of a fixed discrete action set (the sub-envs then receive indices).
    :param observation_to_text: turns a sub-env's raw observation into text.
    :param seed: seed of the generator that ``invalid_action="resample"`` draws from and of the proposals
        (``prior_mode="propose"``: one ``propose`` call per vector step, each state seeded by this seed and its
        prompt); :meth:`seed` (SB3's ``seed=``/``set_random_seed``) re-seeds both.
    :param demonstrations: in-context examples in place of the sub-envs' ``prompt_example``, shared by all
        sub-envs; with ``learn_from_successes=True`` every sub-env's won episodes join it, and the prior
        changes during training (see :class:`~prior_wrappers.wrappers.LLMPriorWrapper`).
    :param score_terminal: also score the terminal state of a terminated episode (default ``False``: no slot, no
        prior call for it). Time-outs' terminal states are always scored.
    Other parameters as :class:`~prior_wrappers.wrappers.LLMPriorWrapper`.
    """

    def __init__(
        self,
        venv: VecEnv,
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
    ) -> None:
        if not (isinstance(venv.observation_space, gym.spaces.Box) and venv.observation_space.shape == (1,)):
            raise TypeError(
                "VecLLMPrior needs envs wrapped in TextInInfo (SB3 vector envs cannot carry str observations); "
                "build the vector env with make_text_vec_env(...)"
            )
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
        super().__init__(
            venv, observation_space=self.builder.observation_space, action_space=gym.spaces.Discrete(self.builder.k)
        )
        self.invalid_action = invalid_action
        self.score_terminal = score_terminal
        self.actions = validate_actions(actions)
        self.observation_to_text = observation_to_text
        self._histories: list[deque[tuple[str, str]]] = [deque(maxlen=max(history, 0)) for _ in range(self.num_envs)]
        self._slots: list[Slots] = []
        self._failure: str | None = None
        self._texts: list[str] = [""] * self.num_envs
        self._resolved: list[ResolvedAction] = []
        self._rng = np.random.default_rng(seed)
        self.demonstrations = demonstrations
        self._recorders = [success_recorder(demonstrations) for _ in range(self.num_envs)]  # None: not learning

    def _state(self, info: dict[str, Any], history: Sequence[tuple[str, str]]) -> TextState:
        return text_state_from_info(
            info,
            history,
            observation_to_text=self.observation_to_text,
            demonstrations=self.demonstrations,
            actions=self.actions,
        )

    def _info(self, info: dict[str, Any], state: TextState, slots: Slots) -> dict[str, Any]:
        return prior_info(info, state.observation, slots)

    def seed(self, seed: int | None = None) -> Sequence[None | int]:
        """Seed the sub-envs (as SB3's ``VecEnv.seed``) and this wrapper's resampling generator."""
        if seed is not None:
            self._rng = np.random.default_rng(seed)
            self.builder.seed(seed)
        return self.venv.seed(seed)

    @property
    def prior_signature(self) -> dict[str, Any]:
        """The observation layout: see :meth:`~prior_wrappers.slots.SlotBuilder.signature`."""
        return self.builder.signature()

    def reset(self) -> VecEnvObs:
        self._slots = []
        self._failure = None
        self.venv.reset()
        infos = self.venv.reset_infos
        for h in self._histories:
            h.clear()
        try:
            states = [self._state(info, ()) for info in infos]
            self._slots = self.builder.build(states)
        except Exception as err:
            self._failure = f"reset() failed ({type(err).__name__}: {err})"
            raise
        self._texts = [state.observation for state in states]
        for recorder, state, info in zip(self._recorders, states, infos):
            if recorder is not None:
                recorder.start(state.observation, info)
        self.reset_infos = [self._info(info, st, sl) for info, st, sl in zip(infos, states, self._slots)]
        return stack_observations([s.observation for s in self._slots])

    def _check_ready(self, what: str) -> list[Slots]:
        if self._failure is not None:
            raise RuntimeError(
                f"{self._failure}, so the wrapper has no valid slots for the envs' current states; "
                f"call reset() before {what}"
            )
        if not self._slots:
            raise RuntimeError(f"call reset() before {what}")
        return self._slots

    def step_async(self, actions: np.ndarray) -> None:
        slots = self._check_ready("step()")
        if len(actions) != self.num_envs:
            raise ValueError(f"got {len(actions)} actions for {self.num_envs} envs")
        self._resolved = [resolve_action(a, s, self._rng, self.invalid_action) for a, s in zip(actions, slots)]
        commands = [r.command for r in self._resolved]
        try:  # self._slots changes only once step_wait has built the new states
            if self.actions is not None:
                self.venv.step_async(np.array([self.actions.index(c) for c in commands]))
            else:
                self.venv.step_async(commands)  # type: ignore[arg-type]  # SB3 types actions as an array
        except Exception as err:
            self._failure = f"the last step failed ({type(err).__name__}: {err}) while sending its actions to the envs"
            raise

    def step_wait(self) -> VecEnvStepReturn:
        try:
            return self._step_wait()
        except Exception as err:
            self._failure = f"the last step failed ({type(err).__name__}: {err}) after its actions went to the envs"
            raise

    def _step_wait(self) -> VecEnvStepReturn:
        if not self._resolved:
            raise RuntimeError("step_wait() without step_async(): call step(actions)")
        _, rewards, dones, infos = self.venv.step_wait()
        states: list[TextState] = []
        terminal_of: dict[int, int] = {}
        scored: list[bool] = []
        for i, info in enumerate(infos):
            self._histories[i].append((self._texts[i], self._resolved[i].command))
            if dones[i]:
                terminal_of[i] = len(states)
                states.append(self._state(info, self._histories[i]))
                # SB3 bootstraps from the terminal observation only on a time-out: else it needs no prior
                scored.append(self.score_terminal or bool(info.get("TimeLimit.truncated", False)))
                self._histories[i].clear()
        current_at = len(states)
        for i, info in enumerate(infos):
            source = self.venv.reset_infos[i] if dones[i] else info
            states.append(self._state(source, self._histories[i]))
        scored += [True] * self.num_envs
        built = self.builder.build(states, scored)  # the one prior call of this vector step
        current = states[current_at:]
        self._slots = built[current_at:]
        new_infos = []
        for i, info in enumerate(infos):
            if dones[i]:
                out = self._info(info, states[terminal_of[i]], built[terminal_of[i]])
            else:
                out = self._info(info, current[i], self._slots[i])
            r = self._resolved[i]
            out.update(command=r.command, executed_slot=r.slot, invalid_action=r.invalid)
            recorder = self._recorders[i]
            if recorder is not None:  # a won episode joins the demonstrations (learn_from_successes)
                reached = states[terminal_of[i]] if dones[i] else current[i]
                recorder.step(r.command, reached.observation, float(rewards[i]), bool(dones[i]), info)
                if dones[i]:
                    recorder.start(current[i].observation, self.venv.reset_infos[i])
            if dones[i]:
                out["terminal_observation"] = built[terminal_of[i]].observation
                out["prior_stats"] = self.builder.stats.as_dict()
                self.reset_infos[i] = self._info(self.venv.reset_infos[i], current[i], self._slots[i])
            new_infos.append(out)
        self._texts = [state.observation for state in current]
        self._resolved = []
        return stack_observations([s.observation for s in self._slots]), rewards, dones, new_infos

    @property
    def prior_stats(self) -> dict[str, float]:
        """Calls (one per vector step), states scored, last latency (ms), cache hit rates so far."""
        return self.builder.stats.as_dict()

    def action_masks(self) -> np.ndarray:
        """``(n_envs, k)`` boolean masks of the valid slots (after a failed step: of the last states built)."""
        if not self._slots:
            self._check_ready("action_masks()")  # raises: the reason, and to call reset()
        return np.stack([s.mask for s in self._slots])

    # attributes that live in this wrapper, not in the sub-envs: answered here for every index
    _OWN_ATTRIBUTES = ("action_masks", "prior_signature", "prior_stats")

    def env_method(self, method_name: str, *args: Any, indices: Any = None, **kwargs: Any) -> list[Any]:
        # MaskablePPO asks the vector env for "action_masks" per sub-env; they live here, not in the sub-envs
        if method_name == "action_masks":
            masks = self.action_masks()
            return [masks[i] for i in self._get_indices(indices)]
        return self.venv.env_method(method_name, *args, indices=indices, **kwargs)

    def get_attr(self, attr_name: str, indices: Any = None) -> list[Any]:
        if attr_name in ("prior_signature", "prior_stats"):
            value = getattr(self, attr_name)
            return [value for _ in self._get_indices(indices)]
        return self.venv.get_attr(attr_name, indices)

    def has_attr(self, attr_name: str) -> bool:
        return attr_name in self._OWN_ATTRIBUTES or self.venv.has_attr(attr_name)
