"""The vector-env wrapper: one prior call per vector step for all sub-envs, with the LLM in this process."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

import gymnasium as gym
import numpy as np
from stable_baselines3.common.vec_env import DummyVecEnv, VecEnv, VecEnvWrapper
from stable_baselines3.common.vec_env.base_vec_env import VecEnvObs, VecEnvStepReturn

from prior_wrappers.priors.base import ActionPrior, Normalization
from prior_wrappers.prompts import PromptFn
from prior_wrappers.slots import (
    CandidateText,
    EncoderSpec,
    InvalidAction,
    SlotBuilder,
    SlotOrder,
    Slots,
    make_text_state,
    resolve_action,
    stack_observations,
)
from prior_wrappers.wrappers import env_prompt_example

TEXT_OBSERVATION = "text_observation"


class TextInInfo(gym.Wrapper):
    """Moves a text env's ``str`` observation into ``info["text_observation"]`` and returns a dummy array.

    SB3 vector envs keep observations in numeric buffers, so text cannot travel as the observation; this
    adapter lets a text env live in ``DummyVecEnv``/``SubprocVecEnv`` under :class:`VecLLMPrior`, which reads
    the text back from ``info`` (and from ``reset_infos`` after automatic resets).

    >>> venv = DummyVecEnv([lambda: TextInInfo(gym.make("prior_wrappers/OvercookedTomato-v0"))])
    """

    def __init__(self, env: gym.Env) -> None:
        super().__init__(env)
        self.observation_space = gym.spaces.Box(0, 1, shape=(1,), dtype=np.uint8)
        self._example = env_prompt_example(env)

    def _move(self, observation: Any, info: dict[str, Any]) -> tuple[np.ndarray, dict[str, Any]]:
        info = dict(info)
        info[TEXT_OBSERVATION] = observation
        info.setdefault("prompt_example", self._example)
        return np.zeros(1, dtype=np.uint8), info

    def reset(self, **kwargs: Any):
        return self._move(*self.env.reset(**kwargs))

    def step(self, action: Any):
        observation, reward, terminated, truncated, info = self.env.step(action)
        dummy, info = self._move(observation, info)
        return dummy, reward, terminated, truncated, info


def make_text_vec_env(
    env_id: str | Callable[[], gym.Env],
    n_envs: int = 1,
    *,
    seed: int | None = None,
    vec_env_cls: type[VecEnv] = DummyVecEnv,
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

    >>> venv = VecLLMPrior(make_text_vec_env("prior_wrappers/OvercookedTomato-v0", n_envs=8), CachedPrior(HFPrior.default()))
    >>> obs = venv.reset()              # Dict of (8, k, ...) arrays, as LLMPriorWrapper's but stacked

    All states of a step — the current one of every env and, for envs whose episode just ended, the terminal
    state too (SB3 bootstraps from ``infos[i]["terminal_observation"]`` on time-outs) — are scored together.
    The LLM lives in this process, so ``SubprocVecEnv`` workers never hold a model. Observations, actions and
    ``info`` keys are those of :class:`~prior_wrappers.wrappers.LLMPriorWrapper`.

    :param venv: a vector env of text envs wrapped in :class:`TextInInfo` (see :func:`make_text_vec_env`).
    :param prior: the prior (shared by all envs; wrap it in ``CachedPrior`` to reuse scores).
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
        invalid_action: InvalidAction = "resample",
        history: int = 2,
        seed: int | None = None,
        builder: SlotBuilder | None = None,
    ) -> None:
        if not (isinstance(venv.observation_space, gym.spaces.Box) and venv.observation_space.shape == (1,)):
            raise TypeError(
                "VecLLMPrior needs text envs wrapped in TextInInfo (SB3 vector envs cannot carry str observations); "
                "build the vector env with make_text_vec_env(...)"
            )
        self.builder = builder or SlotBuilder(
            prior, k, encoder=encoder, prompt=prompt, normalization=normalization, order=order,
            candidate_text=candidate_text,
        )
        super().__init__(venv, observation_space=self.builder.observation_space, action_space=gym.spaces.Discrete(self.builder.k))
        if invalid_action not in ("resample", "raise"):
            raise ValueError(f"invalid_action must be 'resample' or 'raise', got {invalid_action!r}")
        self.invalid_action = invalid_action
        self._histories = [deque(maxlen=max(history, 0)) for _ in range(self.num_envs)]
        self._slots: list[Slots] = []
        self._texts: list[str] = [""] * self.num_envs
        self._commands: list[str] = [""] * self.num_envs
        self._resampled = [False] * self.num_envs
        self._rng = np.random.default_rng(seed)

    def _state(self, info: dict[str, Any], history: Sequence[tuple[str, str]]):
        return make_text_state(info[TEXT_OBSERVATION], info, history=history, example=info.get("prompt_example"))

    def _info(self, info: dict[str, Any], slots: Slots) -> dict[str, Any]:
        info = dict(info)
        info.pop("prompt_example", None)
        info.update(
            prior_candidates=slots.candidates,
            prior_prompt=slots.prompt,
            prior_dropped=slots.dropped,
        )
        return info

    def reset(self) -> VecEnvObs:
        self.venv.reset()
        infos = self.venv.reset_infos
        for h in self._histories:
            h.clear()
        self._slots = self.builder.build([self._state(info, ()) for info in infos])
        self._texts = [info[TEXT_OBSERVATION] for info in infos]
        self.reset_infos = [self._info(info, s) for info, s in zip(infos, self._slots)]
        return stack_observations([s.observation for s in self._slots])

    def step_async(self, actions: np.ndarray) -> None:
        if not self._slots:
            raise RuntimeError("call reset() before step()")
        resolved = [resolve_action(a, s, self._rng, self.invalid_action) for a, s in zip(actions, self._slots)]
        self._commands = [c for c, _ in resolved]
        self._resampled = [r for _, r in resolved]
        self.venv.step_async(self._commands)

    def step_wait(self) -> VecEnvStepReturn:
        _, rewards, dones, infos = self.venv.step_wait()
        states, terminal_of = [], {}
        for i, info in enumerate(infos):
            self._histories[i].append((self._texts[i], self._commands[i]))
            if dones[i]:
                terminal_of[i] = len(states)
                states.append(self._state(info, self._histories[i]))
                self._histories[i].clear()
        current_at = len(states)
        for i, info in enumerate(infos):
            source = self.venv.reset_infos[i] if dones[i] else info
            states.append(self._state(source, self._histories[i]))
        built = self.builder.build(states)  # the one prior call of this vector step
        self._slots = built[current_at:]
        new_infos = []
        for i, info in enumerate(infos):
            out = self._info(info, built[terminal_of[i]] if dones[i] else self._slots[i])
            out.update(command=self._commands[i], invalid_action=self._resampled[i])
            if dones[i]:
                out["terminal_observation"] = built[terminal_of[i]].observation
                out["prior_stats"] = self.builder.stats.as_dict()
                self.reset_infos[i] = self._info(self.venv.reset_infos[i], self._slots[i])
            new_infos.append(out)
        self._texts = [state.observation for state in states[current_at:]]
        return stack_observations([s.observation for s in self._slots]), rewards, dones, new_infos

    @property
    def prior_stats(self) -> dict[str, float]:
        """Calls (one per vector step), states scored, last latency (ms), cache hit rates so far."""
        return self.builder.stats.as_dict()

    def action_masks(self) -> np.ndarray:
        """``(n_envs, k)`` boolean masks of the valid slots."""
        if not self._slots:
            raise RuntimeError("call reset() before action_masks()")
        return np.stack([s.mask for s in self._slots])

    def env_method(self, method_name: str, *args: Any, indices: Any = None, **kwargs: Any) -> list[Any]:
        # MaskablePPO asks the vector env for "action_masks" per sub-env; they live here, not in the sub-envs
        if method_name == "action_masks":
            masks = self.action_masks()
            return [masks[i] for i in self._get_indices(indices)]
        return self.venv.env_method(method_name, *args, indices=indices, **kwargs)

    def has_attr(self, attr_name: str) -> bool:
        return attr_name == "action_masks" or self.venv.has_attr(attr_name)
