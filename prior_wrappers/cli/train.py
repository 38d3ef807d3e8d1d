"""``prior-wrappers train``: train an algorithm on a text env with a prior; one run folder per seed."""

from __future__ import annotations

import argparse
import importlib.util
import shlex
import sys
import time
from pathlib import Path
from typing import Any

from prior_wrappers.cli.build import (
    Builder,
    add_prior_options,
    build_prior,
    describe_prior,
    save_prior_cache,
    set_threads,
)
from prior_wrappers.cli.config import (
    ALGORITHMS,
    Algorithm,
    CLIError,
    dump_yaml,
    env_name,
    get_algorithm,
    model_kwargs,
    read_yaml,
    resolve_env_id,
    resolve_hyperparams,
)
from prior_wrappers.evaluation import LearningCurve, LearningCurveCallback, evaluate_into, plot_curves, write_curves_csv

EVAL_SEED_OFFSET = 10_000  # the evaluation env's seed: run seed + this (start states the training env may not show)
RUN_FILES = "config.yml, model.zip, curves.csv, curves.png, returns.png, tensorboard/, prior_cache.npz"

DESCRIPTION = """\
Train an algorithm on a registered text env, with its hyperparameters from the env's YAML file
(prior_wrappers/configs/<EnvName>.yml, keyed by algorithm; default.yml for envs without one).
Writes a run folder per seed, runs/<algo>_<EnvName>_<seed>_<n>/:
  {files}.

algorithms:
{algos}
""".format(files=RUN_FILES, algos="\n".join(f"  {a.name:<10} {a.help}" for a in ALGORITHMS.values()))

EPILOG = """\
examples:
  prior-wrappers train --algo dqn-prior --env OvercookedTomato-v0 --timesteps 3000
  prior-wrappers train --algo dqn --env OvercookedTomato-v0 --seed 0 1 2      # the uniform-prior baseline
  prior-wrappers train -a ppo-prior -e TextFrozenLake-v0 -p gamma=0.95 wrapper.history=2 alpha=lin_0.2
  prior-wrappers train --config runs/dqn-prior_OvercookedTomato-v0_0_1/config.yml   # reproduce a run
"""


def add_parser(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "train",
        help="train an algorithm with a prior and write a run folder",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("-a", "--algo", help=f"the algorithm: {', '.join(ALGORITHMS)}")
    p.add_argument(
        "-e", "--env", help="a registered env id, e.g. OvercookedTomato-v0 (`prior-wrappers envs` lists them)"
    )
    add_prior_options(p)
    p.add_argument("-s", "--seed", type=int, nargs="+", help="one run per seed (default: 0)")
    p.add_argument("-n", "--timesteps", type=int, help="the budget (environment steps; offline: gradient steps)")
    p.add_argument(
        "-c", "--config", type=Path, help="a hyperparameter file instead of the env's own, or a run's config.yml"
    )
    p.add_argument(
        "-p", "--hyperparams", nargs="+", default=[], metavar="KEY=VALUE", help="overrides: gamma=0.95 wrapper.k=16"
    )
    p.add_argument("-o", "--out", type=Path, help="the run folder (with several seeds: one folder per seed in it)")
    p.add_argument("--runs-dir", type=Path, default=Path("runs"), help="where run folders go (default: runs/)")
    p.add_argument("--dataset", type=Path, help="offline algorithms: this OfflineDataset .npz instead of collecting")
    p.add_argument(
        "--progress-bar", action=argparse.BooleanOptionalAction, default=None, help="default: when stderr is a tty"
    )
    p.add_argument("-v", "--verbose", action="count", default=0, help="SB3's verbosity (-v: training logs)")
    p.set_defaults(func=run)


def run_dir_for(args: argparse.Namespace, algo: str, env_id: str, seed: int, several: bool) -> Path:
    if args.out is not None:
        return args.out / f"{algo}_{env_name(env_id)}_{seed}" if several else args.out
    stem = f"{algo}_{env_name(env_id)}_{seed}_"
    taken = [int(p.name[len(stem) :]) for p in args.runs_dir.glob(stem + "*") if p.name[len(stem) :].isdigit()]
    return args.runs_dir / f"{stem}{max(taken, default=0) + 1}"


def versions() -> dict[str, str]:
    import gymnasium
    import stable_baselines3
    import torch

    import prior_wrappers

    return {
        "prior_wrappers": prior_wrappers.__version__,
        "stable_baselines3": stable_baselines3.__version__,
        "gymnasium": gymnasium.__version__,
        "torch": str(torch.__version__),  # a str subclass YAML cannot write
    }


def write_config(run_dir: Path, run: dict[str, Any], algo: str, section: dict[str, Any]) -> Path:
    path = run_dir / "config.yml"
    header = "# `prior-wrappers train --config <this file>` reproduces this run (in a new run folder)\n"
    path.write_text(header + dump_yaml({"run": run, algo: section}))
    return path


def run(args: argparse.Namespace) -> int:
    recorded: dict[str, Any] = {}
    if args.config is not None:
        recorded = read_yaml(args.config).get("run") or {}
    algo_name, env_arg = args.algo or recorded.get("algo"), args.env or recorded.get("env")
    if not algo_name or not env_arg:
        raise CLIError(f"--algo and --env are required (algorithms: {', '.join(ALGORITHMS)}; `prior-wrappers envs`)")
    algo, env_id = get_algorithm(algo_name), resolve_env_id(env_arg)
    args.prior = args.prior or recorded.get("prior") or ("uniform" if algo.baseline else "embedded")
    args.dtype = args.dtype if args.dtype != "auto" else recorded.get("dtype", "auto")
    if algo.baseline and args.prior != "uniform":
        raise CLIError(
            f"{algo.name} is the baseline: it trains with the uniform prior. For the prior {args.prior!r} use "
            f"--algo {algo.name}-prior"
        )
    section, source = resolve_hyperparams(algo, env_id, args.config, args.hyperparams)
    if args.timesteps is not None:
        section["n_timesteps"] = args.timesteps
    if algo.offline and args.dataset is not None and not args.dataset.is_file():
        raise CLIError(f"--dataset {args.dataset}: no such file")
    set_threads(args.threads)
    seeds = args.seed or [int(recorded.get("seed", 0))]
    print(
        f"hyperparameters: {source} [{algo.name}]" + (f" with {' '.join(args.hyperparams)}" if args.hyperparams else "")
    )
    prior = build_prior(args)
    print(f"prior: {describe_prior(args.prior, prior)}")
    builder = Builder(env_id, section, prior, uniform=args.prior == "uniform")
    for seed in seeds:
        run_dir = run_dir_for(args, algo.name, env_id, seed, len(seeds) > 1)
        run_dir.mkdir(parents=True, exist_ok=True)
        if (run_dir / "model.zip").exists():
            print(f"note: {run_dir} already holds a run; its files are replaced (TensorBoard keeps both logs)")
        record = {
            "algo": algo.name,
            "env": env_id,
            "prior": args.prior,
            "dtype": args.dtype,
            "seed": seed,
            "hyperparams_file": str(source),
            "overrides": list(args.hyperparams),
            "dataset": str(args.dataset) if args.dataset else None,
            "command": shlex.join(["prior-wrappers", *getattr(args, "argv", [])]),
            "versions": versions(),
        }
        write_config(run_dir, record, algo.name, section)
        train_one(args, algo, builder, seed, run_dir)
    save_prior_cache(prior, args.prior_cache)
    return 0


def train_one(args: argparse.Namespace, algo: Algorithm, builder: Builder, seed: int, run_dir: Path) -> LearningCurve:
    section = builder.section
    budget = int(section.get("n_timesteps", 10_000))
    eval_freq = int(section.get("eval_freq", 0)) or budget
    n_eval = int(section.get("eval_episodes", 5))
    progress = sys.stderr.isatty() if args.progress_bar is None else args.progress_bar
    tensorboard = importlib.util.find_spec("tensorboard") is not None
    if not tensorboard:
        print("note: tensorboard is not installed, so no TensorBoard log (pip install tensorboard)")
    print(f"[seed {seed}] {algo.name} on {builder.env_id}, {budget} {'gradient' if algo.offline else 'env'} steps")
    start = time.perf_counter()
    env = builder.vec_env(seed, n_envs=1 if algo.offline else None)
    eval_env = builder.vec_env(seed + EVAL_SEED_OFFSET, n_envs=1)
    model = algo.cls(
        section.get("policy", "CandidatePolicy"),
        env,
        seed=seed,
        verbose=args.verbose,
        tensorboard_log=str(run_dir / "tensorboard") if tensorboard else None,
        **model_kwargs(section),
    )
    curve = LearningCurve(algo.name, seed)
    evaluate_into(curve, model, eval_env, 0, n_eval)
    callback = LearningCurveCallback(curve, eval_env, eval_freq, n_eval)
    if algo.offline:
        dataset = offline_dataset(args, builder, seed, run_dir)
        log_interval = max(1, min(1000, budget // 20))
        model.learn_offline(  # type: ignore[attr-defined]
            dataset, budget, callback=callback, log_interval=log_interval, progress_bar=progress
        )
    else:
        model.learn(budget, callback=callback, progress_bar=progress)
    if curve.steps[-1] < model.num_timesteps:
        evaluate_into(curve, model, eval_env, model.num_timesteps, n_eval)
    model.save(run_dir / "model.zip")
    save_prior_cache(builder.prior, run_dir / "prior_cache.npz")
    write_curves_csv([curve], run_dir / "curves.csv")
    plots = write_plots(curve, run_dir, f"{algo.name} on {env_name(builder.env_id)} (prior: {args.prior})")
    env.close()
    eval_env.close()
    print_curve(curve)
    print(f"[seed {seed}] {time.perf_counter() - start:.0f}s; run folder {run_dir} ({plots})")
    return curve


def offline_dataset(args: argparse.Namespace, builder: Builder, seed: int, run_dir: Path) -> Any:
    """``--dataset``, or episodes of the env's expert mixed with random play (the config's ``dataset:``), saved as
    ``dataset.npz`` in the run folder."""
    from prior_wrappers.sb3 import CommandPolicy, OfflineDataset, collect_expert_mixture

    if args.dataset is not None:
        return OfflineDataset.load(args.dataset)
    spec = builder.section.get("dataset") or {}
    env = builder.single_env(seed)
    expert = getattr(env.unwrapped, "expert_command", None)
    if expert is None:
        raise CLIError(f"{builder.env_id} has no scripted expert to collect a dataset: pass --dataset FILE.npz")
    episodes, ratio = int(spec.get("episodes", 20)), float(spec.get("success_ratio", 0.5))
    data = collect_expert_mixture(env, CommandPolicy(expert), episodes, success_ratio=ratio, seed=seed)
    path = data.save(run_dir / "dataset.npz")
    print(f"[seed {seed}] dataset: {len(data)} transitions, {data.n_episodes} episodes ({data.success_rate:.0%} won)")
    env.close()
    return OfflineDataset.load(path)


def write_plots(curve: LearningCurve, run_dir: Path, title: str) -> str:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return "no PNG: matplotlib is not installed (pip install 'prior-wrappers[plots]')"
    plot_curves([curve], run_dir / "curves.png", title=title)
    plot_curves([curve], run_dir / "returns.png", title=title, values="mean_return", ylabel="mean return (greedy)")
    return "curves.png, returns.png"


def print_curve(curve: LearningCurve) -> None:
    print(f"{'steps':>8}  {'success':>7}  {'return':>8}")
    for steps, success, ret in zip(curve.steps, curve.success_rate, curve.mean_return):
        print(f"{steps:>8}  {success:>7.2f}  {ret:>8.3f}")
