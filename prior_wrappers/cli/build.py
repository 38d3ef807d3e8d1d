"""What the commands build from a checked config: the prior, the wrapped envs, the expert's walkthroughs."""

from __future__ import annotations

import argparse
import importlib
import inspect
from pathlib import Path
from typing import Any

import gymnasium as gym
from stable_baselines3.common.vec_env import VecEnv, VecMonitor

from prior_wrappers.cli.config import CLIError
from prior_wrappers.demonstrations import Demonstrations, approximate_token_count, token_counter
from prior_wrappers.encoders import CachedEncoder, SentenceEncoder
from prior_wrappers.priors import ActionPrior, CachedPrior, FunctionPrior, HFPrior, UniformPrior
from prior_wrappers.proposals import ProposalConfig
from prior_wrappers.vec_wrappers import VecLLMPrior, make_text_vec_env
from prior_wrappers.wrappers import LLMPriorWrapper

PRIOR_HELP = (
    "where the prior comes from: 'embedded' (the bundled SmolLM2-135M-Instruct), 'uniform' (no LLM: the "
    "baseline), a local model directory or .gguf file (transformers causal LM), or 'module:name' naming an "
    "ActionPrior, a factory of one, or a function (prompt, commands) -> scores"
)


def add_prior_options(parser: argparse.ArgumentParser, *, default: str | None = None) -> None:
    parser.add_argument("--prior", default=default, metavar="SOURCE", help=PRIOR_HELP)
    parser.add_argument(
        "--dtype",
        default="auto",
        help="the LLM's dtype: auto (bf16 on CUDA and CPUs with native bf16, else fp32), float32, bfloat16",
    )
    parser.add_argument("--device", default=None, help="the LLM's device (default: cuda if available, else cpu)")
    parser.add_argument(
        "--prior-cache",
        type=Path,
        default=None,
        metavar="FILE",
        help="reuse the LLM's scores from FILE (.npz) if it exists, and save them there at the end",
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch threads (default 1: the networks' small matmuls run far slower with more on a busy CPU; "
        "0: torch's default)",
    )


def set_threads(threads: int) -> None:
    """``--threads``: 1 by default. On a loaded 2-core machine a 1,000-step DQN-Prior run took 72 s with one thread
    and 614 s with torch's default (two), the same curve."""
    if threads > 0:
        import torch

        torch.set_num_threads(threads)


def _import_prior(spec: str) -> ActionPrior:
    module_name, _, attr = spec.partition(":")
    try:
        obj = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as err:
        raise CLIError(f"--prior {spec!r}: cannot import {attr!r} from {module_name!r} ({err})") from err
    if hasattr(obj, "score") and not isinstance(obj, type):
        return obj  # an ActionPrior
    if callable(obj):
        required = [
            p
            for p in inspect.signature(obj).parameters.values()
            if p.default is p.empty and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
        ]
        if not isinstance(obj, type) and len(required) == 2:
            return FunctionPrior(obj, name=spec)  # scores commands: fn(prompt, commands)
        if not required:
            made = obj()
            if hasattr(made, "score"):
                return made
    raise CLIError(
        f"--prior {spec!r} names neither an ActionPrior, nor a class or function with no arguments that returns "
        "one, nor a function (prompt, commands) -> scores"
    )


def build_prior(args: argparse.Namespace) -> ActionPrior:
    """The prior of ``args.prior`` in a :class:`CachedPrior` (the uniform one as it is), with ``--prior-cache``
    loaded."""
    spec = args.prior
    if spec == "uniform":
        return UniformPrior()
    if spec == "embedded" or Path(spec).exists():
        print(f"loading the LLM prior ({spec}, dtype {args.dtype}) ...", flush=True)
    if spec == "embedded":
        base: ActionPrior = HFPrior.default(dtype=args.dtype, device=args.device)
    elif Path(spec).exists():
        base = HFPrior.from_pretrained(spec, dtype=args.dtype, device=args.device)
    elif ":" in spec and not spec.startswith((".", "/")):
        base = _import_prior(spec)
    else:
        raise CLIError(
            f"--prior {spec!r}: no such model directory or file. Use 'embedded', 'uniform', a local model directory "
            "or .gguf file (the CLI never downloads: fetch a hub model first, e.g. `hf download ID --local-dir DIR`, "
            "and pass DIR), or 'module:name'"
        )
    prior = CachedPrior(base)
    cache = getattr(args, "prior_cache", None)
    if cache is not None and Path(cache).is_file():
        try:
            n = prior.load(cache)
        except ValueError as err:
            raise CLIError(f"--prior-cache {cache}: {err}. Pass another file, or delete this one") from err
        print(f"reused {n} cached prior scores from {cache}")
    return prior


def save_prior_cache(prior: ActionPrior, path: Path | None) -> None:
    if path is not None and isinstance(prior, CachedPrior):
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        prior.save(path)


def describe_prior(spec: str, prior: ActionPrior) -> str:
    inner = prior.prior if isinstance(prior, CachedPrior) else prior
    model = getattr(inner, "model", None)
    if model is not None:
        dtype = str(next(model.parameters()).dtype).removeprefix("torch.")
        return f"{spec} ({type(inner).__name__}, {model.config.model_type}, {dtype}, {inner.device})"  # type: ignore[attr-defined]
    return f"{spec} ({type(inner).__name__})"


class Builder:
    """Builds the prior-wrapped envs of one config; the MiniLM encoder is loaded once and shared by them all."""

    def __init__(self, env_id: str, section: dict[str, Any], prior: ActionPrior, uniform: bool) -> None:
        self.env_id, self.section, self.prior, self.uniform = env_id, section, prior, uniform
        self._encoder: CachedEncoder | None = None
        self._demonstrations: Demonstrations | None = None

    def wrapper_kwargs(self, **changes: Any) -> dict[str, Any]:
        kwargs = {**self.section.get("wrapper", {}), **changes}
        if kwargs.get("encoder", "minilm") == "minilm":  # the default encoder, loaded once
            if self._encoder is None:
                self._encoder = CachedEncoder(SentenceEncoder.default())
            kwargs["encoder"] = self._encoder
        if isinstance(kwargs.get("proposals"), dict):
            kwargs["proposals"] = ProposalConfig(**kwargs["proposals"])
        if self.section.get("demonstrations") and not self.uniform:
            kwargs["demonstrations"] = self.demonstrations()
        return kwargs

    def make_raw(self, **env_kwargs: Any) -> gym.Env:
        return gym.make(self.env_id, **{**(self.section.get("env_kwargs") or {}), **env_kwargs})

    def vec_env(self, seed: int, n_envs: int | None = None) -> VecEnv:
        """``n_envs`` (default: the config's) envs behind one :class:`VecLLMPrior`, with episode statistics."""
        n = n_envs or int(self.section.get("n_envs", 1))
        venv = make_text_vec_env(self.env_id, n, seed=seed, env_kwargs=self.section.get("env_kwargs"))
        try:
            return VecMonitor(VecLLMPrior(venv, self.prior, **self.wrapper_kwargs(), seed=seed))
        except TypeError as err:
            raise CLIError(f"the wrapper settings {self.section.get('wrapper')} were refused: {err}") from err

    def single_env(self, seed: int | None = None, **changes: Any) -> LLMPriorWrapper:
        return LLMPriorWrapper(self.make_raw(), self.prior, **self.wrapper_kwargs(**changes), seed=seed)

    def demonstrations(self) -> Demonstrations:
        """The expert's walkthroughs of other games for the prompt (``demonstrations:`` in the config), made once."""
        if self._demonstrations is None:
            spec = dict(self.section["demonstrations"])
            env = self.make_raw(**(spec.pop("env_kwargs", None) or {}))
            if not hasattr(env.unwrapped, "expert_command"):
                raise CLIError(f"'demonstrations' needs an env with a scripted expert; {self.env_id} has none")
            tokenizer = getattr(getattr(self.prior, "prior", self.prior), "tokenizer", None)
            count = token_counter(tokenizer) if tokenizer is not None else approximate_token_count
            seed = int(spec.pop("seed", 0))
            demos = Demonstrations.from_expert(
                env,
                int(spec.pop("episodes", 2)),
                seed=seed,
                max_steps=int(spec.pop("max_steps", 100)),
                count_tokens=count,
                **spec,
            )
            env.close()
            target = self.make_raw()
            games = getattr(target.unwrapped, "game_files", None)
            target.close()
            if games:  # never a walkthrough of a game the agent plays
                demos.check_no_leakage([str(g) for g in games])
            self._demonstrations = demos
        return self._demonstrations
