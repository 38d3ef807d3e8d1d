"""The prior wrapper settings that a model or a dataset was made with, and checks against another env.

A model trained behind one wrapper reads its observation slot by slot: the number of slots ``k``, the feature
size, the encoder (two encoders of the same size give unrelated vectors), the candidate text and the
log-probability normalisation must all be the same when it is loaded, given a new env, or trained on a dataset.
The wrappers publish these settings as ``prior_signature``, e.g. ``{"k": 8, "feature_dim": 384, "encoder":
"minilm:all-MiniLM-L6-v2", "candidate_text": "joint", "normalization": "token"}``; models store it in their zip
(attribute ``prior_signature``) and datasets in their ``.npz``. An env, model or file without one is unknown and
only its observation space is checked.
"""

from __future__ import annotations

import io
import json
import pathlib
import zipfile
from typing import Any

import gymnasium as gym
from gymnasium import spaces
from stable_baselines3.common.save_util import json_to_data, open_path
from stable_baselines3.common.vec_env import VecEnv

from prior_wrappers.spaces import CANDIDATE_FEATURES, PRIOR_LOGPROBS

PRIOR_SIGNATURE = "prior_signature"
Signature = dict[str, Any]

_ADVICE = "use the same wrapper settings (k, encoder, candidate_text, normalization) as when it was made"


def normalize_signature(signature: Any) -> Signature | None:
    """``signature`` as a plain JSON dict (so that a saved and a live one compare equal), or ``None``."""
    if signature is None:
        return None
    if not isinstance(signature, dict):
        raise TypeError(f"prior_signature must be a dict, got {type(signature).__name__}")
    return json.loads(json.dumps(signature, sort_keys=True, default=str))


def env_prior_signature(env: gym.Env | VecEnv | None) -> Signature | None:
    """The ``prior_signature`` of a prior-wrapped env or vector env (of its first sub-env), ``None`` if unknown.

    :param env: a Gymnasium env, an SB3 ``VecEnv`` (e.g. ``VecLLMPrior`` or a ``DummyVecEnv`` of
        ``LLMPriorWrapper``), or ``None``.
    """
    if env is None:
        return None
    if isinstance(env, VecEnv):
        signature = getattr(env, PRIOR_SIGNATURE, None)  # VecLLMPrior (or a VecEnvWrapper above it)
        if signature is None and env.has_attr(PRIOR_SIGNATURE):
            signature = env.get_attr(PRIOR_SIGNATURE)[0]
        return normalize_signature(signature)
    try:
        return normalize_signature(env.get_wrapper_attr(PRIOR_SIGNATURE))
    except AttributeError:
        return normalize_signature(getattr(env, PRIOR_SIGNATURE, None))


def space_layout(observation_space: spaces.Space | None) -> dict[str, Any] | None:
    """``{"k": ..., "feature_dim": ...}`` of a prior observation space (``feature_dim`` None without features);
    ``None`` for any other space."""
    if not isinstance(observation_space, spaces.Dict) or PRIOR_LOGPROBS not in observation_space.spaces:
        return None
    features = observation_space.spaces.get(CANDIDATE_FEATURES)
    return {
        # gymnasium types Space.shape as Optional; a Box's is a tuple
        "k": int(observation_space[PRIOR_LOGPROBS].shape[0]),  # type: ignore[index]
        "feature_dim": int(features.shape[-1]) if features is not None else None,  # type: ignore[index]
    }


def _differences(expected: dict[str, Any], actual: dict[str, Any]) -> list[str]:
    return [
        f"{key}: {expected[key]!r} vs {actual[key]!r}"
        for key in sorted(set(expected) & set(actual))
        if expected[key] != actual[key]
    ]


def check_prior_match(
    what: str,
    expected_space: spaces.Space | None,
    expected_signature: Signature | None,
    actual_space: spaces.Space | None,
    actual_signature: Signature | None,
    target: str = "this env",
) -> None:
    """Raise ``ValueError`` naming the differing fields when ``what`` (a model, a dataset) was made behind other
    wrapper settings than ``target``. Fields missing on either side, and unknown signatures, are not compared.

    :param what: what was made earlier, for the message (e.g. ``"the saved model"``).
    :param expected_space: its observation space.
    :param expected_signature: its ``prior_signature`` (``None``: unknown).
    :param actual_space: the observation space it is about to be used with.
    :param actual_signature: the ``prior_signature`` of that env (``None``: unknown).
    :param target: the other side, for the message.
    """
    expected_layout, actual_layout = space_layout(expected_space), space_layout(actual_space)
    if expected_layout is not None and actual_layout is not None:
        differences = _differences(expected_layout, actual_layout)
        if differences:
            raise ValueError(
                f"{what} was made behind a prior wrapper with another observation layout than {target} "
                f"({'; '.join(differences)}; its value first): {_ADVICE}"
            )
    expected_signature = normalize_signature(expected_signature)
    actual_signature = normalize_signature(actual_signature)
    if expected_signature is not None and actual_signature is not None:
        differences = _differences(expected_signature, actual_signature)
        if differences:
            raise ValueError(
                f"{what} was made behind a prior wrapper with other settings than {target} "
                f"({'; '.join(differences)}; its value first): {_ADVICE}"
            )


def _saved_data(path: str | pathlib.Path | io.BufferedIOBase, custom_objects: dict[str, Any] | None) -> dict | None:
    """The ``data`` entry of an SB3 zip (class attributes, spaces), without its tensors; a file-like ``path`` is
    left where it was."""
    start = path.tell() if isinstance(path, io.IOBase) else None
    file = open_path(path, "r", verbose=0, suffix="zip")
    try:
        with zipfile.ZipFile(file) as archive:
            if "data" not in archive.namelist():
                return None
            return json_to_data(archive.read("data").decode(), custom_objects)
    finally:
        if start is None:
            file.close()
        else:
            path.seek(start)  # type: ignore[union-attr]


class PriorSignatureMixin:
    """For SB3 algorithms: remember the env's ``prior_signature`` (saved in the zip as ``self.prior_signature``)
    and check it, and the observation layout, in ``load(path, env=...)`` and ``set_env``.

    Subclasses call :meth:`_remember_prior_signature` at the end of ``__init__``.
    """

    prior_signature: Signature | None = None

    def _remember_prior_signature(self) -> None:
        self.prior_signature = env_prior_signature(getattr(self, "env", None))

    def set_env(self, env: Any, force_reset: bool = True) -> None:
        """SB3's ``set_env``, after checking that ``env`` has the model's prior wrapper settings.

        :param env: the new environment (a prior-wrapped env or vector env).
        :param force_reset: reset the env before the next training.
        :raises ValueError: when ``env`` has another observation layout or ``prior_signature``.
        """
        signature = env_prior_signature(env)
        space = self.observation_space  # type: ignore[attr-defined]
        check_prior_match("the model", space, self.prior_signature, env.observation_space, signature)
        super().set_env(env, force_reset)  # type: ignore[misc]
        if self.prior_signature is None:
            self.prior_signature = signature

    @classmethod
    def load(
        cls,
        path: str | pathlib.Path | io.BufferedIOBase,
        env: Any = None,
        device: Any = "auto",
        custom_objects: dict[str, Any] | None = None,
        print_system_info: bool = False,
        force_reset: bool = True,
        **kwargs: Any,
    ) -> Any:
        """SB3's ``load``; with ``env``, first checks that it has the saved model's prior wrapper settings.

        :param path: the zip written by ``save`` (path or file object).
        :param env: the environment to run the loaded model on (``None``: predictions only, no check).
        :param device: the device of the loaded model.
        :param custom_objects: objects to use instead of the saved ones (see SB3).
        :param print_system_info: print the system info of the saved model and of this one.
        :param force_reset: reset the env before the next training.
        :param kwargs: attributes to change on the loaded model.
        :raises ValueError: when ``env`` has another observation layout or ``prior_signature`` than the model.
        """
        if env is not None:
            data = _saved_data(path, custom_objects)
            if data is not None:
                check_prior_match(
                    "the saved model",
                    data.get("observation_space"),
                    data.get(PRIOR_SIGNATURE),
                    env.observation_space,
                    env_prior_signature(env),
                )
        return super().load(  # type: ignore[misc]
            path,
            env=env,
            device=device,
            custom_objects=custom_objects,
            print_system_info=print_system_info,
            force_reset=force_reset,
            **kwargs,
        )
