"""The vector-env wrapper: one prior call per vector step for all sub-envs, with the LLM in this process."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import gymnasium as gym
import numpy as np
from stable_baselines3.common.vec_env import DummyVecEnv, SubprocVecEnv, VecEnv, VecEnvWrapper
from stable_baselines3.common.vec_env.base_vec_env import VecEnvObs, VecEnvStepReturn

from prior_wrappers.actions import InvalidAction, ResolvedAction
from prior_wrappers.core import EnvStep, Observed, PriorCore
from prior_wrappers.core_attributes import CoreAttributes, core_options
from prior_wrappers.demonstrations import Demonstrations
from prior_wrappers.priors.base import ActionPrior, Normalization
from prior_wrappers.prompts import PromptFn
from prior_wrappers.proposals import PriorMode, ProposalConfig
from prior_wrappers.slot_features import CandidateText, EncoderSpec
from prior_wrappers.slots import SlotBuilder, SlotOrder, stack_observations
from prior_wrappers.text_info import TEXT_OBSERVATION, TextInInfo
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


class VecLLMPrior(CoreAttributes, VecEnvWrapper):
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
        self._core = PriorCore(  # holds builder, actions, ... (CoreAttributes)
            venv.num_envs, **core_options(locals()), states="the envs' current states", finals_first=True
        )
        super().__init__(
            venv, observation_space=self.builder.observation_space, action_space=gym.spaces.Discrete(self.builder.k)
        )
        self._resolved: list[ResolvedAction | None] = []

    def seed(self, seed: int | None = None) -> Sequence[None | int]:
        """Seed the sub-envs (as SB3's ``VecEnv.seed``) and this wrapper's resampling generator."""
        self._core.seed(seed)
        return self.venv.seed(seed)

    @property
    def prior_signature(self) -> dict[str, Any]:
        """The observation layout: see :meth:`~prior_wrappers.slots.SlotBuilder.signature`."""
        return self.builder.signature()

    def reset(self) -> VecEnvObs:
        self._core.forget()
        self.venv.reset()
        built = self._core.reset(Observed.from_info(info) for info in self.venv.reset_infos)
        self.reset_infos = [first.prior_info() for first in built]
        return stack_observations([first.slots.observation for first in built])

    def step_async(self, actions: np.ndarray) -> None:
        self._core.ready("step()")
        if len(actions) != self.num_envs:
            raise ValueError(f"got {len(actions)} actions for {self.num_envs} envs")
        self._resolved = self._core.resolve(actions)
        with self._core.failing("the last step failed ({error}) while sending its actions to the envs"):
            env_actions = self._core.env_actions(self._resolved)
            self.venv.step_async(np.array(env_actions) if self.actions is not None else env_actions)  # type: ignore[arg-type]

    def step_wait(self) -> VecEnvStepReturn:
        with self._core.failing("the last step failed ({error}) after its actions went to the envs"):
            if not self._resolved:
                raise RuntimeError("step_wait() without step_async(): call step(actions)")
            _, rewards, dones, infos = self.venv.step_wait()
            steps = []
            for resolved, reward, done, info, reset_info in zip(
                self._resolved, rewards, dones, infos, self.venv.reset_infos
            ):  # an ended env has reset already: info holds its episode's last state, reset_info the next one's first
                time_out = bool(info.get("TimeLimit.truncated", False))
                now, last = Observed.from_info(reset_info if done else info), Observed.from_info(info) if done else None
                steps.append(EnvStep(resolved, reward, bool(done), bool(done) and not time_out, now, last))
            outcomes = self._core.step(steps)  # the one prior call of this vector step
        new_infos = []
        for i, out in enumerate(outcomes):
            info = {**out.reached.prior_info(), **out.executed}
            if out.final is not None:
                info["terminal_observation"] = out.final.slots.observation
                self.reset_infos[i] = out.now.prior_info()
            new_infos.append({**info, **out.ended})
        self._resolved = []
        return stack_observations([out.now.slots.observation for out in outcomes]), rewards, dones, new_infos

    @property
    def prior_stats(self) -> dict[str, float]:
        """Calls (one per vector step), states scored, last latency (ms), cache hit rates so far."""
        return self.builder.stats.as_dict()

    def action_masks(self) -> np.ndarray:
        """``(n_envs, k)`` boolean masks of the valid slots (after a failed step: of the last states built)."""
        return self._core.masks()

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
