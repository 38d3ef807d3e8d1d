"""Text states carried in ``info``: what the vector wrappers (SB3's and Gymnasium's) share.

Vector envs keep observations in numeric buffers (SB3's always, Gymnasium's ``AsyncVectorEnv`` in shared
memory), so a text env's observation travels in ``info["text_observation"]`` instead (:class:`TextInInfo`). On the
wrapper's side :func:`observation_from_info` reads it back, :func:`text_state` makes any env's
:class:`~prior_wrappers.prompts.TextState` (for all three wrappers; :func:`text_state_from_info` from ``info``
alone), and :func:`prior_info` writes the prior's keys into that env's ``info``, the same keys in every wrapper.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

import gymnasium as gym
import numpy as np

from prior_wrappers.actions import make_text_state
from prior_wrappers.demonstrations import Demonstrations, demonstration_text
from prior_wrappers.prompts import TextState
from prior_wrappers.slots import Slots

TEXT_OBSERVATION = "text_observation"
PROMPT_EXAMPLE = "prompt_example"


def env_prompt_example(env: gym.Env) -> str | None:
    """The env's in-domain example episode (attribute ``prompt_example``), if it has one.

    :param env: any Gymnasium env (wrappers are looked through).
    """
    try:
        return env.get_wrapper_attr(PROMPT_EXAMPLE)
    except AttributeError:
        return None


class TextInInfo(gym.Wrapper):
    """Moves an env's observation into ``info["text_observation"]`` and returns a dummy array.

    Vector envs keep observations in numeric buffers, so text cannot travel as the observation; this adapter
    lets a text env live in SB3's ``DummyVecEnv``/``SubprocVecEnv`` under
    :class:`~prior_wrappers.vec_wrappers.VecLLMPrior`, or in Gymnasium's ``SyncVectorEnv``/``AsyncVectorEnv``
    under :class:`~prior_wrappers.gym_vector.GymVectorLLMPrior`; both read the text back from ``info`` (the env's
    ``prompt_example`` travels in ``info["prompt_example"]``). A non-text observation travels unchanged (it must
    pickle for subprocess vector envs); the wrappers' ``observation_to_text=...`` turns it into text in the parent
    process.

    >>> venv = DummyVecEnv([lambda: TextInInfo(gym.make("prior_wrappers/OvercookedTomato-v0"))])

    :param env: a text env (or any env, with ``observation_to_text`` on the vector wrapper).
    """

    def __init__(self, env: gym.Env) -> None:
        super().__init__(env)
        self.observation_space = gym.spaces.Box(0, 1, shape=(1,), dtype=np.uint8)
        self._example = env_prompt_example(env)

    def _move(self, observation: Any, info: dict[str, Any]) -> tuple[np.ndarray, dict[str, Any]]:
        info = dict(info)
        info[TEXT_OBSERVATION] = observation
        info.setdefault(PROMPT_EXAMPLE, self._example)
        return np.zeros(1, dtype=np.uint8), info

    def reset(self, **kwargs: Any):
        return self._move(*self.env.reset(**kwargs))

    def step(self, action: Any):
        observation, reward, terminated, truncated, info = self.env.step(action)
        dummy, info = self._move(observation, info)
        return dummy, reward, terminated, truncated, info


def observation_from_info(info: dict[str, Any]) -> Any:
    """One sub-env's observation, from the ``info`` that :class:`TextInInfo` filled.

    :raises KeyError: ``info`` has no ``text_observation`` (the env was not wrapped in :class:`TextInInfo`).
    """
    if TEXT_OBSERVATION not in info:
        raise KeyError(
            f"a sub-env's info has no {TEXT_OBSERVATION!r}: wrap every env in TextInInfo "
            "(make_text_vec_env and make_text_gym_vector_env do)"
        )
    return info[TEXT_OBSERVATION]


def text_state(
    observation: Any,
    info: dict[str, Any],
    history: Iterable[tuple[str, str]],
    *,
    example: str | None = None,
    observation_to_text: Callable[[Any], str] | None = None,
    demonstrations: Demonstrations | str | None = None,
    actions: Sequence[str] | None = None,
) -> TextState:
    """One env's text state, as every wrapper makes it (:func:`~prior_wrappers.actions.make_text_state`).

    :param observation: the env's observation (text, or what ``observation_to_text`` turns into text).
    :param info: the env's ``info`` (its admissible commands, task, ...).
    :param history: previous (observation, command) pairs of the episode, oldest first.
    :param example: the env's own prompt example (``prompt_example``), if any.
    :param observation_to_text: turns a non-text observation into text.
    :param demonstrations: in-context examples in place of ``example``.
    :param actions: names of a fixed discrete action set (the admissible commands when ``info`` has none).
    """
    if observation_to_text is not None:
        observation = observation_to_text(observation)
    return make_text_state(
        observation,
        info,
        history=tuple(history),
        example=demonstration_text(demonstrations, example),
        actions=actions,
    )


def text_state_from_info(
    info: dict[str, Any],
    history: Sequence[tuple[str, str]],
    *,
    observation_to_text: Callable[[Any], str] | None = None,
    demonstrations: Demonstrations | str | None = None,
    actions: Sequence[str] | None = None,
) -> TextState:
    """One sub-env's text state, from the ``info`` that :class:`TextInInfo` filled.

    :param info: the sub-env's own ``info`` dict (for a Gymnasium vector env: its entries of the batched info).
    :param history: previous (observation, command) pairs of the episode, oldest first.
    :param observation_to_text: turns a non-text observation into text.
    :param demonstrations: in-context examples in place of ``info["prompt_example"]``.
    :param actions: names of a fixed discrete action set (the admissible commands when ``info`` has none).
    :raises KeyError: ``info`` has no ``text_observation`` (the env was not wrapped in :class:`TextInInfo`).
    """
    return text_state(
        observation_from_info(info),
        info,
        history,
        example=info.get(PROMPT_EXAMPLE),
        observation_to_text=observation_to_text,
        demonstrations=demonstrations,
        actions=actions,
    )


def prior_info(info: dict[str, Any], text: str, slots: Slots) -> dict[str, Any]:
    """A copy of one env's ``info`` with the prior's keys: ``text_observation``, ``prior_candidates``,
    ``prior_prompt`` and ``prior_dropped``, and the slots' own keys (``prior_invalid_rate``, ... in propose mode);
    ``prompt_example``, which :class:`TextInInfo` adds, is dropped.

    :param info: the env's ``info``.
    :param text: the state's observation text.
    :param slots: the state's slots.
    """
    info = dict(info)
    info.pop(PROMPT_EXAMPLE, None)
    info.update(
        text_observation=text,
        prior_candidates=slots.candidates,
        prior_prompt=slots.prompt,
        prior_dropped=slots.dropped,
        **slots.info,
    )
    return info
