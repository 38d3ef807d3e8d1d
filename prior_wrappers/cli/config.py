"""Hyperparameter files, ``--hyperparams`` overrides and their checks; the algorithms and env ids the CLI knows.

A file per env (``prior_wrappers/configs/<EnvName>.yml``, else ``default.yml``) holds one section per algorithm:
the algorithm's constructor arguments plus the keys of :data:`RUN_KEYS`, which the command line reads itself.
"""

from __future__ import annotations

import copy
import difflib
import importlib
import inspect
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import yaml  # type: ignore[import-untyped]  # (types-PyYAML is not a dependency)
from stable_baselines3.common.base_class import BaseAlgorithm

from prior_wrappers.sb3 import CQLPrior, DQNPrior, PPOPrior
from prior_wrappers.vec_wrappers import VecLLMPrior

ENV_PREFIX = "prior_wrappers/"


class CLIError(Exception):
    """A mistake in what the user asked for: printed as ``error: <message>`` with exit status 2, no traceback."""


@dataclass(frozen=True)
class Algorithm:
    name: str
    cls: type[BaseAlgorithm]
    baseline: bool  # trained with the uniform prior: the comparison arm of ``name + "-prior"``
    offline: bool  # learns from a dataset (``learn_offline``), ``n_timesteps`` counts gradient steps
    help: str


ALGORITHMS: dict[str, Algorithm] = {
    a.name: a
    for a in (
        Algorithm("dqn-prior", DQNPrior, False, False, "DQN-Prior: acts by sampling p_LLM(a|s)·exp(Q(s,a)/α)"),
        Algorithm("ppo-prior", PPOPrior, False, False, "PPO-Prior: PPO + α·KL(π ‖ p_LLM)"),
        Algorithm("cql-prior", CQLPrior, False, True, "CQL-Prior, offline: a dataset collected by the env's expert"),
        Algorithm("dqn", DQNPrior, True, False, "the DQN baseline: DQN-Prior's network and updates, uniform prior"),
        Algorithm("ppo", PPOPrior, True, False, "the PPO baseline: PPO-Prior with the uniform prior"),
        Algorithm("cql", CQLPrior, True, True, "the offline CQL baseline: CQL-Prior with the uniform prior"),
    )
}

# keys of an algorithm's section that the command line reads itself (the others go to the algorithm's constructor)
RUN_KEYS: dict[str, str] = {
    "n_timesteps": "the budget: environment steps (offline algorithms: gradient steps)",
    "n_envs": "environments stepped together (one prior call per vector step)",
    "policy": "the policy (default CandidatePolicy)",
    "wrapper": "VecLLMPrior / LLMPriorWrapper arguments (k, history, encoder, ...)",
    "env_kwargs": "gym.make arguments",
    "eval_freq": "greedy evaluation every this many steps (0: at the start and the end only)",
    "eval_episodes": "episodes per evaluation",
    "demonstrations": "walkthroughs in the prompt, prior runs only (episodes, shots, max_tokens, seed, env_kwargs)",
    "dataset": "offline algorithms: the collected dataset (episodes, success_ratio)",
}
SUBKEYS: dict[str, tuple[str, ...]] = {
    "demonstrations": ("episodes", "shots", "max_tokens", "seed", "max_steps", "env_kwargs"),
    "dataset": ("episodes", "success_ratio"),
}
# constructor arguments that the command line sets (and the option that does)
SET_BY_CLI = {"env": "--env", "seed": "--seed", "tensorboard_log": "the run folder", "verbose": "--verbose"}
# wrapper arguments that are objects, not YAML values (demonstrations: see the 'demonstrations' key), or set by --seed
WRAPPER_EXCLUDED = (
    "venv", "prior", "builder", "prompt", "actions", "observation_to_text", "demonstrations", "token_ids", "seed",
)  # fmt: skip
SCHEDULE_KEYS = ("learning_rate", "alpha", "clip_range", "clip_range_vf")


def get_algorithm(name: str) -> Algorithm:
    if name not in ALGORITHMS:
        raise CLIError(f"unknown algorithm {name!r}{_did_you_mean(name, ALGORITHMS)}; choose one of: {_algo_list()}")
    return ALGORITHMS[name]


def _algo_list() -> str:
    return ", ".join(ALGORITHMS)


def _did_you_mean(name: str, choices: Iterable[str]) -> str:
    close = difflib.get_close_matches(name, list(choices), n=3, cutoff=0.6)
    return f" (did you mean {' or '.join(repr(c) for c in close)}?)" if close else ""


# ------------------------------------------------------------------------------------------------------- env ids
def text_env_ids() -> list[str]:
    """The registered ids of this package's text envs (``prior_wrappers/...``)."""
    import gymnasium as gym

    import prior_wrappers  # noqa: F401  (registers them)

    return sorted(i for i in gym.registry if i.startswith(ENV_PREFIX))


def resolve_env_id(name: str) -> str:
    """A registered Gymnasium id for ``name``: as given, with ``prior_wrappers/`` in front, or ``module:Id``
    (the module is imported first, as ``gym.make`` does). Raises :class:`CLIError` naming the registered text envs."""
    import gymnasium as gym

    ids = text_env_ids()
    if name in gym.registry:
        return name
    if ENV_PREFIX + name in gym.registry:
        return ENV_PREFIX + name
    if ":" in name:
        module, _, env_id = name.partition(":")
        try:
            importlib.import_module(module)
        except ImportError as err:
            raise CLIError(f"cannot import {module!r} for env id {name!r}: {err}") from err
        if env_id in gym.registry:
            return env_id
    short = [i.removeprefix(ENV_PREFIX) for i in ids]
    hint = _did_you_mean(name.removeprefix(ENV_PREFIX), short)
    raise CLIError(
        f"unknown env id {name!r}{hint}. Registered text envs (the prefix prior_wrappers/ is optional): "
        f"{', '.join(short)}. For an env of your own, register it with Gymnasium in a module and pass "
        "'your_module:YourEnv-v0'."
    )


def env_name(env_id: str) -> str:
    """``OvercookedTomato-v0`` for ``prior_wrappers/OvercookedTomato-v0``: file and folder names."""
    return env_id.rsplit("/", 1)[-1].rsplit(":", 1)[-1]


# ------------------------------------------------------------------------------------------------- config files
def config_dir() -> Path:
    return Path(str(resources.files("prior_wrappers") / "configs"))


def config_path(env_id: str) -> Path:
    """The env's own hyperparameter file, else ``default.yml``."""
    own = config_dir() / f"{env_name(env_id)}.yml"
    return own if own.is_file() else config_dir() / "default.yml"


def dump_yaml(data: dict[str, Any]) -> str:
    return str(yaml.safe_dump(data, sort_keys=False))


def read_yaml(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text())
    except FileNotFoundError as err:
        raise CLIError(f"no such hyperparameter file: {path}") from err
    except yaml.YAMLError as err:
        raise CLIError(f"{path} is not valid YAML: {err}") from err
    if not isinstance(data, dict):
        raise CLIError(f"{path} must hold a mapping of algorithm names to hyperparameters")
    return data


def algorithm_section(data: dict[str, Any], algo: str, path: Path) -> dict[str, Any]:
    """A deep copy of ``data[algo]`` (YAML aliases share objects), or a :class:`CLIError` naming the sections."""
    sections = [k for k in data if k in ALGORITHMS]
    if algo not in data:
        raise CLIError(
            f"{path} has no hyperparameters for {algo!r} (it has: {', '.join(sections) or 'none'}); pick one of "
            f"those, or pass --config with a file that has a section {algo!r}"
        )
    section = data[algo] or {}
    if not isinstance(section, dict):
        raise CLIError(f"{path}: the section {algo!r} must be a mapping of hyperparameters")
    return copy.deepcopy(section)


# ---------------------------------------------------------------------------------------------------- overrides
def parse_value(text: str) -> Any:
    """A ``--hyperparams`` value as YAML (``0.9``, ``true``, ``[64, 64]``, ``{a: 1}``); ``1e-3`` is a float too."""
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise CLIError(f"cannot read {text!r} as a value: {err}") from err
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return value
    return value


def apply_overrides(section: dict[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    """``key=value`` pairs into ``section``; ``wrapper.k=16`` sets a nested key."""
    for item in overrides:
        key, sep, text = item.partition("=")
        if not sep or not key.strip():
            raise CLIError(f"--hyperparams takes key=value pairs (e.g. gamma=0.95 wrapper.k=16), got {item!r}")
        *parents, last = key.strip().split(".")
        node = section
        for part in parents:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise CLIError(f"--hyperparams {item!r}: {part!r} is not a mapping")
            node = child
        node[last] = parse_value(text)
    return section


# --------------------------------------------------------------------------------------------------- validation
def constructor_params(cls: type) -> list[str]:
    """The named arguments of ``cls(...)``, following ``**kwargs`` up the base classes (CQLPrior -> DQNPrior)."""
    names: list[str] = []
    for klass in cls.__mro__:
        init = klass.__dict__.get("__init__")
        if init is None:
            continue
        params = list(inspect.signature(init).parameters.values())[1:]
        names += [p.name for p in params if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL) and p.name not in names]
        if not any(p.kind == p.VAR_KEYWORD for p in params):
            break
    return [n for n in names if not n.startswith("_")]


def algorithm_keys(algo: Algorithm) -> list[str]:
    return [n for n in constructor_params(algo.cls) if n not in SET_BY_CLI and n != "policy"]


def wrapper_keys() -> list[str]:
    return [n for n in constructor_params(VecLLMPrior) if n not in WRAPPER_EXCLUDED]


def _unknown(key: str, where: str, valid: Sequence[str], path: Path | None, parent: str = "") -> CLIError:
    fix = f"fix {path} or --hyperparams" if path is not None else "fix --hyperparams"
    return CLIError(
        f"unknown hyperparameter {parent + key!r} for {where}{_did_you_mean(key, valid)}; valid keys: "
        f"{', '.join(valid)} ({fix})"
    )


def check_hyperparams(algo: Algorithm, section: dict[str, Any], path: Path | None = None) -> None:
    """Every key must be an argument of the algorithm's constructor, of the wrapper, or one of :data:`RUN_KEYS`
    (``dataset`` for the offline algorithms only); ``path`` names the file in the messages."""
    run_keys = [k for k in RUN_KEYS if algo.offline or k != "dataset"]
    valid = [*algorithm_keys(algo), *run_keys]
    for key, value in section.items():
        if key in SET_BY_CLI:
            raise CLIError(f"{key!r} is not a hyperparameter here: it is set by {SET_BY_CLI[key]}")
        if key == "dataset" and not algo.offline:
            raise CLIError(f"'dataset' is for the offline algorithms (cql-prior, cql), not {algo.name}")
        if key not in valid:
            raise _unknown(key, algo.name, valid, path)
        if key in ("wrapper", "env_kwargs", *SUBKEYS) and not isinstance(value, dict):
            raise CLIError(f"{key!r} must be a mapping, got {value!r}")
    for key in section.get("wrapper", {}):
        if key not in wrapper_keys():
            raise _unknown(key, "the wrapper (VecLLMPrior)", wrapper_keys(), path, "wrapper.")
    for name, subkeys in SUBKEYS.items():
        for key in section.get(name) or {}:
            if key not in subkeys:
                raise _unknown(key, f"'{name}'", subkeys, path, f"{name}.")
    for key in ("n_timesteps", "n_envs", "eval_episodes"):
        if key in section and (not isinstance(section[key], int) or section[key] < 1):
            raise CLIError(f"{key} must be a positive integer, got {section[key]!r}")


def resolve_hyperparams(
    algo: Algorithm, env_id: str, config_file: Path | None, overrides: Sequence[str]
) -> tuple[dict[str, Any], Path]:
    """The algorithm's section of ``config_file`` (default: the env's file), with ``overrides``, checked."""
    path = config_file or config_path(env_id)
    section = apply_overrides(algorithm_section(read_yaml(path), algo.name, path), overrides)
    check_hyperparams(algo, section, path)
    return section, path


def model_kwargs(section: dict[str, Any]) -> dict[str, Any]:
    """The constructor arguments of a checked section: ``lin_<x>`` schedules, ``train_freq`` as a tuple,
    ``policy_kwargs.activation_fn`` by name (``ReLU``, ``Tanh``: a ``torch.nn`` class)."""
    from stable_baselines3.common.utils import LinearSchedule

    kwargs = {k: copy.deepcopy(v) for k, v in section.items() if k not in RUN_KEYS}
    for key in SCHEDULE_KEYS:
        value = kwargs.get(key)
        if isinstance(value, str) and value.startswith("lin_"):
            kwargs[key] = LinearSchedule(float(value[4:]), 0.0, 1.0)
    if isinstance(kwargs.get("train_freq"), list):
        kwargs["train_freq"] = tuple(kwargs["train_freq"])
    activation = (kwargs.get("policy_kwargs") or {}).get("activation_fn")
    if isinstance(activation, str):
        import torch

        if not isinstance(getattr(torch.nn, activation, None), type):
            raise CLIError(f"policy_kwargs.activation_fn {activation!r} is not a torch.nn class (e.g. ReLU, Tanh)")
        kwargs["policy_kwargs"]["activation_fn"] = getattr(torch.nn, activation)
    return kwargs
