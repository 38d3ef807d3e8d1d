"""The Gymnasium 1.x vector wrapper: ``SyncVectorEnv``/``AsyncVectorEnv`` of text envs with **one** prior call per
vector step, the LLM in this process (CleanRL-style loops; SB3 users have :class:`~prior_wrappers.VecLLMPrior`)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import gymnasium as gym
import numpy as np
from gymnasium.vector import AsyncVectorEnv, SyncVectorEnv, VectorEnv, VectorWrapper
from gymnasium.vector.utils import batch_space

from prior_wrappers.actions import InvalidAction
from prior_wrappers.core import EnvOutcome, EnvStep, Observed, PriorCore
from prior_wrappers.core_attributes import CoreAttributes, core_options
from prior_wrappers.demonstrations import Demonstrations
from prior_wrappers.priors.base import ActionPrior, Normalization
from prior_wrappers.prompts import PromptFn
from prior_wrappers.proposals import PriorMode, ProposalConfig
from prior_wrappers.slot_features import CandidateText, EncoderSpec
from prior_wrappers.slots import SlotBuilder, SlotOrder, stack_observations
from prior_wrappers.text_info import PROMPT_EXAMPLE, TEXT_OBSERVATION, TextInInfo, env_prompt_example
from prior_wrappers.token_ids import TokenIdSpec

__all__ = ["GymVectorLLMPrior", "SUPPORTED_AUTORESET_MODES", "make_text_gym_vector_env", "sub_env_info"]

# The values of gymnasium.vector.AutoresetMode (Gymnasium >= 1.1); Gymnasium 1.0 always autoresets on the next step.
NEXT_STEP, SAME_STEP = "NextStep", "SameStep"
SUPPORTED_AUTORESET_MODES: tuple[str, ...] = (NEXT_STEP, SAME_STEP)
_OWN_KEYS = (PROMPT_EXAMPLE, TEXT_OBSERVATION)  # TextInInfo's transport keys, replaced by the wrapper's own


def autoreset_mode_of(env: VectorEnv) -> str:
    """The vector env's autoreset mode as ``AutoresetMode``'s value (``"NextStep"``, ``"SameStep"``).

    Read from ``env.metadata["autoreset_mode"]``; a vector env without the key is taken to reset on the next step,
    as Gymnasium 1.0's do and Gymnasium's own vector wrappers assume.

    :param env: a Gymnasium vector env.
    :raises ValueError: the mode is ``DISABLED`` or unknown.
    """
    mode = env.metadata.get("autoreset_mode", NEXT_STEP)
    value = getattr(mode, "value", mode)
    if value not in SUPPORTED_AUTORESET_MODES:
        raise ValueError(
            f"GymVectorLLMPrior supports the autoreset modes NEXT_STEP (Gymnasium's default) and SAME_STEP, got "
            f"{mode!r}: build the vector env with autoreset_mode=gymnasium.vector.AutoresetMode.NEXT_STEP "
            "(partial resets with options['reset_mask'], which DISABLED needs, are not supported)"
        )
    return value


def sub_env_info(infos: dict[str, Any], index: int) -> dict[str, Any]:
    """One sub-env's ``info`` out of a Gymnasium vector env's batched one: each key whose ``_key`` mask is set
    for ``index`` (nested dicts, such as ``final_info``, recursively; the masks themselves are left out).

    :param infos: the batched ``info`` (``info["key"]`` arrays with ``info["_key"]`` masks).
    :param index: the sub-env.
    """
    out: dict[str, Any] = {}
    for key, value in infos.items():
        if key.startswith("_") and key[1:] in infos:
            continue
        mask = infos.get(f"_{key}")
        if mask is not None and not mask[index]:
            continue
        out[key] = sub_env_info(value, index) if isinstance(value, dict) else value[index]
    return out


def _prompt_examples(env: VectorEnv) -> list[str | None]:
    """Each sub-env's ``prompt_example`` attribute, read in this process from a ``SyncVectorEnv``'s envs (``None``
    where a sub-env has none). Other vector envs give ``None`` for all: asking an ``AsyncVectorEnv`` worker for an
    attribute its env lacks shuts the worker down; there :class:`~prior_wrappers.TextInInfo` carries the example."""
    sub_envs = getattr(env.unwrapped, "envs", None)
    if not isinstance(sub_envs, (list, tuple)) or len(sub_envs) != env.num_envs:
        return [None] * env.num_envs
    return [env_prompt_example(sub) for sub in sub_envs]


@dataclass(frozen=True)
class _TextEnvFn:
    """Makes one sub-env in :class:`TextInInfo` (a picklable env function for ``AsyncVectorEnv``)."""

    env_id: str | Callable[[], gym.Env]
    env_kwargs: dict[str, Any] = field(default_factory=dict)

    def __call__(self) -> gym.Env:
        env = gym.make(self.env_id, **self.env_kwargs) if isinstance(self.env_id, str) else self.env_id()
        return TextInInfo(env)


def make_text_gym_vector_env(
    env_id: str | Callable[[], gym.Env],
    num_envs: int = 1,
    *,
    vectorization_mode: Literal["sync", "async"] = "sync",
    autoreset_mode: Any = None,
    env_kwargs: dict[str, Any] | None = None,
    vector_kwargs: dict[str, Any] | None = None,
) -> VectorEnv:
    """``num_envs`` text envs, each in :class:`TextInInfo`, in a Gymnasium ``SyncVectorEnv`` or ``AsyncVectorEnv``,
    ready for :class:`GymVectorLLMPrior`. Seed them as any Gymnasium vector env: ``reset(seed=s)`` gives sub-env
    ``i`` the seed ``s + i``.

    :param env_id: a registered Gymnasium id or a function that makes the env (a lambda works with ``"async"``:
        Gymnasium sends env functions to its workers with cloudpickle).
    :param num_envs: number of sub-envs.
    :param vectorization_mode: ``"sync"`` (one process) or ``"async"`` (a process per sub-env; the prior stays in
        this one).
    :param autoreset_mode: a ``gymnasium.vector.AutoresetMode`` (or its value); ``None`` keeps Gymnasium's default,
        ``NEXT_STEP``.
    :param env_kwargs: keyword arguments of ``gym.make`` (with a registered id).
    :param vector_kwargs: keyword arguments of the vector env (``context="spawn"``, ``daemon=...`` for async).
    """
    if vectorization_mode not in ("sync", "async"):
        raise ValueError(f"vectorization_mode must be 'sync' or 'async', got {vectorization_mode!r}")
    if not isinstance(env_id, str) and not callable(env_id):
        raise TypeError(f"env_id must be a registered id or a function that makes the env, got {env_id!r}")
    kwargs = dict(vector_kwargs or {})
    if autoreset_mode is not None:
        kwargs["autoreset_mode"] = autoreset_mode
    fns = [_TextEnvFn(env_id, dict(env_kwargs or {})) for _ in range(num_envs)]
    return (SyncVectorEnv if vectorization_mode == "sync" else AsyncVectorEnv)(fns, **kwargs)


class GymVectorLLMPrior(CoreAttributes, VectorWrapper):
    """Attach an LLM prior to a Gymnasium vector env of text envs with **one** prior call per vector step.

    >>> import numpy as np
    >>> from prior_wrappers import CachedPrior, FunctionPrior, GymVectorLLMPrior, make_text_gym_vector_env
    >>> envs = GymVectorLLMPrior(make_text_gym_vector_env("prior_wrappers/OvercookedTomato-v0", 4),
    ...                          CachedPrior(FunctionPrior(lambda prompt, commands: [0.0] * len(commands))),
    ...                          k=8, encoder="hashing")
    >>> obs, info = envs.reset(seed=0)           # Dict of (4, 8, ...) arrays; sub-env i is seeded 0 + i
    >>> obs, rewards, terminations, truncations, info = envs.step(np.zeros(4, dtype=np.int64))
    >>> envs.prior_stats["calls"]                # one for the reset, one for the step
    2

    **Spaces.** ``single_observation_space`` is :class:`~prior_wrappers.LLMPriorWrapper`'s ``Dict``
    (``prior_logprobs`` (k,), ``action_mask`` (k,), with an encoder ``candidate_features`` (k, D) and
    ``observation_features`` (D,)); ``observation_space`` batches it (arrays with a leading ``num_envs`` axis).
    ``single_action_space`` is ``Discrete(k)`` (a slot index), ``action_space`` ``MultiDiscrete([k] * num_envs)``:
    ``step`` takes an integer array of shape ``(num_envs,)``. Slots, the action contract (``invalid_action``: an
    empty slot ``j`` runs valid slot ``j % n`` by default), history, demonstrations and failure handling (after a
    failed step, :meth:`step` raises ``RuntimeError`` until :meth:`reset`) are those of the single-env wrapper,
    whose observations this wrapper reproduces sub-env for sub-env.

    **Info** follows Gymnasium's batched convention (``info["key"][i]`` is valid where ``info["_key"][i]``):
    ``text_observation``, ``prior_candidates`` (each valid slot's command), ``prior_prompt`` and ``prior_dropped``
    for every sub-env; ``command``, ``executed_slot`` and ``invalid_action`` for the sub-envs that ran a command this
    step; ``prior_stats`` (calls, states, latency, cache hit rates) for those whose episode ended; the sub-envs' own
    keys (``admissible_commands``, ``is_success``, ...) pass through.

    **Autoreset.** ``NEXT_STEP`` (Gymnasium's default): the step that ends an episode returns its last state
    (scored with everyone else's where the episode was truncated, for bootstrapping; see **Episode ends**); on the
    next step that sub-env resets, its
    action is ignored (no command runs, its ``_command`` mask is False), the reward is 0 and the observation is
    the new episode's first, with an empty history. ``SAME_STEP``: the sub-env resets within the ending step;
    the returned observation is the new episode's first and ``info["final_obs"][i]`` / ``info["final_info"]`` hold
    the last state's slots and info (with the prior's keys and ``command``), scored in the same prior call.
    ``DISABLED`` (and partial resets with ``options["reset_mask"]``) raise ``ValueError``.

    **Episode ends.** The last state of a *terminated* episode (``terminations[i]``, whatever ``truncations[i]``
    says), which no TD target or GAE bootstraps from, is not scored unless ``score_terminal=True``: its observation
    (``NEXT_STEP``: the returned one; ``SAME_STEP``: ``final_obs[i]``) has no valid slot (``action_mask`` all 0,
    zero features), as in :class:`~prior_wrappers.LLMPriorWrapper`, and its info has ``prior_candidates == []``
    but still ``text_observation``, ``prior_prompt``, ``admissible_commands`` and ``command``. A policy that acts
    on it (``NEXT_STEP``: the ignored action of the reset step) must accept a row without valid slots (mask with
    a finite value, not ``-inf``). A step in which every sub-env's state goes unscored makes no prior call.

    **Sub-envs.** A plain Gymnasium vector env of text envs wraps as it is:
    ``GymVectorLLMPrior(gym.vector.SyncVectorEnv([make_env] * 4), prior)`` or
    ``gym.make_vec("prior_wrappers/OvercookedTomato-v0", 4)``: the wrapper reads each sub-env's text from the
    batched observation (a tuple of strings), and a ``SyncVectorEnv``'s sub-envs' ``prompt_example`` once. Where
    observations cannot travel as they are (``AsyncVectorEnv`` with shared memory, its default, cannot hold a
    ``Text`` space), or an async sub-env's ``prompt_example`` should reach the prompt, wrap each env in
    :class:`~prior_wrappers.TextInInfo` (:func:`make_text_gym_vector_env` does): the observation and the example
    then travel in ``info``. Envs with non-text observations work with
    ``actions=[...]`` and ``observation_to_text=...`` as in the single-env wrapper.

    :param env: a Gymnasium vector env of text envs (``Text`` observations), of
        :class:`~prior_wrappers.TextInInfo` sub-envs, or of other envs with ``observation_to_text``.
    :param prior: the prior, shared by all sub-envs (wrap it in ``CachedPrior`` to reuse scores).
    :param k: number of candidate slots.
    :param encoder: candidate features: ``"minilm"``, ``"prior"``, ``"hashing"``, a ``TextEncoder`` or ``None``.
    :param prompt: ``Callable[[TextState], str]``; default :class:`~prior_wrappers.prompts.PromptTemplate`.
    :param normalization: ``"token"``, ``"word"`` or ``"sum"``.
    :param order: ``"prior"`` (slots sorted by prior) or ``"env"`` (env's order).
    :param candidate_text: ``"joint"`` or ``"action"`` (see :class:`~prior_wrappers.LLMPriorWrapper`).
    :param actions: names of a fixed discrete action set (the sub-envs then receive indices).
    :param observation_to_text: turns a sub-env's raw observation into text (in this process).
    :param invalid_action: what choosing an empty slot does: ``"cycle"``, ``"resample"`` or ``"raise"``.
    :param history: how many previous (observation, command) pairs of its episode each sub-env's prompt shows.
    :param seed: seed of the generator that ``invalid_action="resample"`` draws from (``reset(seed=...)``
        re-seeds it).
    :param builder: a ready :class:`~prior_wrappers.slots.SlotBuilder` (then the layout options are ignored).
    :param demonstrations: in-context examples in place of the sub-envs' ``prompt_example``, shared by all.
    :param prior_mode: ``"score"`` or ``"propose"`` (sampled proposals as the prior, one ``propose`` call per
        vector step; see :class:`~prior_wrappers.wrappers.LLMPriorWrapper`).
    :param proposals: the sampling and smoothing of ``"propose"``: a ``ProposalConfig`` or the number of samples.
    :param token_ids: a :class:`~prior_wrappers.token_ids.TokenIdSpec`: the observation also holds the prompt's
        and each slot's token ids (for LLM policies, :mod:`prior_wrappers.sb3.gflan_prior`).
    :param score_terminal: also score the last state of a terminated episode (default ``False``: no slot, no
        prior call for it; above). Truncated episodes' last states are always scored.
    :raises TypeError: the sub-envs' observations are not text, not in :class:`~prior_wrappers.TextInInfo`, and no
        ``observation_to_text`` is given.
    :raises ValueError: an unsupported autoreset mode.
    """

    def __init__(
        self,
        env: VectorEnv,
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
        prior_mode: PriorMode = "score",
        proposals: ProposalConfig | int | None = None,
        token_ids: TokenIdSpec | None = None,
        score_terminal: bool = False,
    ) -> None:
        options = core_options(locals())  # holds builder, actions, ... (CoreAttributes)
        super().__init__(env)
        self.autoreset_mode = autoreset_mode_of(env)
        inner = env.single_observation_space
        # TextInInfo's dummy observation: the text travels in info; else it is the sub-envs' observation itself
        self._text_in_info = isinstance(inner, gym.spaces.Box) and inner.shape == (1,)
        if not self._text_in_info and not isinstance(inner, gym.spaces.Text) and observation_to_text is None:
            raise TypeError(
                f"GymVectorLLMPrior needs text: sub-envs with a Text observation space, observation_to_text=... for "
                f"other observations, or sub-envs wrapped in TextInInfo (make_text_gym_vector_env(...)); got a "
                f"vector env whose single_observation_space is {inner}"
            )
        self._examples = [None] * env.num_envs if self._text_in_info else _prompt_examples(env)
        states, next_step = "the sub-envs' current states", self.autoreset_mode == NEXT_STEP
        self._core = PriorCore(env.num_envs, **options, states=states, autoreset_next=next_step)
        self.k = self.builder.k
        self.single_observation_space = self.builder.observation_space
        self.observation_space = batch_space(self.single_observation_space, self.num_envs)
        self.single_action_space = gym.spaces.Discrete(self.k)
        self.action_space = batch_space(self.single_action_space, self.num_envs)

    @property
    def prior_stats(self) -> dict[str, float]:
        """Calls (one per vector step, one per reset), states scored, last latency (ms), cache hit rates so far."""
        return self.builder.stats.as_dict()

    @property
    def prior_signature(self) -> dict[str, Any]:
        """The observation layout: see :meth:`~prior_wrappers.slots.SlotBuilder.signature`."""
        return self.builder.signature()

    def action_masks(self) -> np.ndarray:
        """``(num_envs, k)`` boolean masks of the valid slots (after a failed step: of the last states built)."""
        return self._core.masks()

    def _check_actions(self, actions: Any) -> np.ndarray:
        array = np.asarray(actions)
        if array.shape != (self.num_envs,):
            raise ValueError(
                f"step() takes one slot index per sub-env, an integer array of shape ({self.num_envs},) in "
                f"{self.action_space}; got shape {array.shape}"
            )
        if not np.issubdtype(array.dtype, np.integer):
            raise TypeError(f"step() takes integer slot indices, got dtype {array.dtype}: {array!r}")
        return array

    def _observed(self, infos: dict[str, Any], index: int, observations: Any) -> Observed:
        """Sub-env ``index``'s state, its text observation (and prompt example) read from the batched observation
        where it did not travel in info (plain text sub-envs, not in TextInInfo)."""
        info = sub_env_info(infos, index)
        if self._text_in_info:
            return Observed.from_info(info)
        return Observed(observations[index], info, info.get(PROMPT_EXAMPLE, self._examples[index]))

    def _vector_info(self, infos: dict[str, Any]) -> dict[str, Any]:
        """The sub-envs' batched info without TextInInfo's transport keys (the wrapper writes its own)."""
        return {key: value for key, value in infos.items() if key.lstrip("_") not in _OWN_KEYS}

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        """Reset every sub-env (sub-env ``i`` gets ``seed + i``) and score all first states with one prior call.

        :param seed: the vector env's seed; also re-seeds the ``"resample"`` generator.
        :param options: passed to the sub-envs; ``options["reset_mask"]`` (partial resets) is not supported.
        """
        if options is not None and "reset_mask" in options:
            raise ValueError("GymVectorLLMPrior resets all sub-envs at once; options['reset_mask'] is not supported")
        self._core.seed(seed)
        self._core.forget()
        observations, infos = self.env.reset(seed=seed, options=options)
        built = self._core.reset(self._observed(infos, i, observations) for i in range(self.num_envs))
        out = self._vector_info(infos)
        for i, first in enumerate(built):
            self._add_info(out, first.prior_info(env_info=False), i)
        return stack_observations([first.slots.observation for first in built]), out

    def step(self, actions: Any) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        """Run each sub-env's slot and score every resulting state (final states of ``SAME_STEP`` resets included;
        a terminated episode's last state only with ``score_terminal``) with **one** prior call.

        :param actions: an integer array of shape ``(num_envs,)``: each sub-env's slot index (ignored for the
            sub-envs that ``NEXT_STEP`` resets on this step).
        """
        self._core.ready("step()")
        resolved = self._core.resolve(self._check_actions(actions))
        env_actions = self._core.env_actions(resolved)
        same_step = self.autoreset_mode == SAME_STEP
        with self._core.failing("the last step() failed ({error}) after its actions went to the envs"):
            observations, rewards, terminations, truncations, infos = self.env.step(
                np.array(env_actions) if self.actions else tuple(env_actions)
            )
            dones, finals = terminations | truncations, infos.get("final_info", {})
            steps = [
                EnvStep(
                    r,
                    rewards[i],
                    bool(dones[i]),
                    bool(terminations[i]),
                    self._observed(infos, i, observations),
                    self._observed(finals, i, infos.get("final_obs")) if same_step and dones[i] else None,
                )
                for i, r in enumerate(resolved)
            ]
            outcomes = self._core.step(steps)  # the one prior call of this vector step
            out = self._step_info(outcomes, infos, finals)
        return stack_observations([o.now.slots.observation for o in outcomes]), rewards, terminations, truncations, out

    def _step_info(self, outcomes: list[EnvOutcome], infos: dict[str, Any], finals: dict[str, Any]) -> dict[str, Any]:
        """The batched info of a step (with ``SAME_STEP`` resets: ``final_info`` and ``final_obs``)."""
        out = self._vector_info(infos)
        final_out = self._vector_info(finals)
        final_obs = np.full(self.num_envs, None, dtype=object)
        for i, o in enumerate(outcomes):
            self._add_info(out, o.now.prior_info(env_info=False), i)
            if o.executed:
                self._add_info(out, o.executed, i)
            if o.final is not None:
                self._add_info(final_out, {**o.final.prior_info(env_info=False), **o.executed}, i)
                final_obs[i] = o.final.slots.observation
            if o.ended:
                self._add_info(out, o.ended, i)
        if any(o.final is not None for o in outcomes):
            out["final_info"], out["final_obs"] = final_out, final_obs
        return out
