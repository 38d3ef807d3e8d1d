"""``prior-wrappers evaluate``: load a trained model with its prior re-attached and play N episodes."""

from __future__ import annotations

import argparse
import csv
import time
from pathlib import Path
from typing import Any

import numpy as np

from prior_wrappers.cli.build import Builder, add_prior_options, build_prior, describe_prior, set_threads
from prior_wrappers.cli.config import (
    ALGORITHMS,
    CLIError,
    get_algorithm,
    read_yaml,
    resolve_env_id,
    resolve_hyperparams,
)
from prior_wrappers.priors import CachedPrior

DESCRIPTION = """\
Load a model trained by `prior-wrappers train` and play N episodes behind the same wrapper, the prior
re-attached (the model zip never holds the LLM). Prints each episode and the mean return and success rate, and
writes eval.csv (one row per episode) into the run folder.

RUN is a run folder (its config.yml says the env, algorithm, prior and wrapper settings; its prior_cache.npz
saves recomputing the prior's scores), or a model zip together with --env and --algo (the wrapper settings then
come from the env's hyperparameter file, or --config)."""

EPILOG = """\
examples:
  prior-wrappers evaluate runs/dqn-prior_OvercookedTomato-v0_0_1
  prior-wrappers evaluate runs/dqn-prior_OvercookedTomato-v0_0_1 --episodes 50 --prior uniform   # prior ablated
  prior-wrappers evaluate model.zip --env OvercookedTomato-v0 --algo dqn-prior
"""


def add_parser(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "evaluate",
        help="play N episodes with a trained model, its prior re-attached",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("run", type=Path, metavar="RUN", help="a run folder, or a model zip (with --env and --algo)")
    p.add_argument("-e", "--env", help="the env id (a model zip only; a run folder knows it)")
    p.add_argument("-a", "--algo", help=f"the algorithm (a model zip only): {', '.join(ALGORITHMS)}")
    add_prior_options(p)
    p.add_argument("--episodes", type=int, default=10, help="episodes to play (default 10)")
    p.add_argument("--seed", type=int, default=10_000, help="reset seed of the first episode (then +1 each)")
    p.add_argument("--stochastic", action="store_true", help="sample actions instead of acting greedily")
    p.add_argument("-c", "--config", type=Path, help="a hyperparameter file (a model zip only)")
    p.add_argument("-p", "--hyperparams", nargs="+", default=[], metavar="KEY=VALUE", help="overrides (a model zip)")
    p.add_argument(
        "-o",
        "--out",
        type=Path,
        help="the CSV (default: eval.csv in the run, eval_prior-<SOURCE>.csv with --prior)",
    )
    p.set_defaults(func=run)


def load_run(args: argparse.Namespace) -> tuple[Path, str, str, dict[str, Any], dict[str, Any]]:
    """``(model zip, algorithm, env id, run record, hyperparameter section)`` of a run folder or a zip."""
    if args.run.is_dir():
        config = args.run / "config.yml"
        if not config.is_file():
            raise CLIError(f"{args.run} has no config.yml: is it a run folder written by `prior-wrappers train`?")
        data = read_yaml(config)
        record = data.get("run") or {}
        algo = get_algorithm(str(record.get("algo")))
        model = args.run / "model.zip"
        if not model.is_file():
            raise CLIError(f"{args.run} has no model.zip (did its training finish?)")
        return model, algo.name, resolve_env_id(str(record["env"])), record, dict(data[algo.name])
    if not args.run.is_file():
        raise CLIError(f"{args.run}: no such run folder or model zip")
    if not args.env or not args.algo:
        raise CLIError("a model zip needs --env and --algo (a run folder has them in its config.yml)")
    algo, env_id = get_algorithm(args.algo), resolve_env_id(args.env)
    section, _ = resolve_hyperparams(algo, env_id, args.config, args.hyperparams)
    return args.run, algo.name, env_id, {}, section


def run(args: argparse.Namespace) -> int:
    if args.episodes < 1:
        raise CLIError("--episodes must be >= 1")
    model_path, algo_name, env_id, record, section = load_run(args)
    algo = ALGORITHMS[algo_name]
    args.prior = args.prior or record.get("prior") or ("uniform" if algo.baseline else "embedded")
    args.dtype = args.dtype if args.dtype != "auto" else record.get("dtype", "auto")
    set_threads(args.threads)
    prior = build_prior(args)
    saved = model_path.parent / "prior_cache.npz"
    if record and args.prior_cache is None and isinstance(prior, CachedPrior) and saved.is_file():
        try:
            print(f"reused {prior.load(saved)} cached prior scores from {saved}")
        except ValueError as err:  # another prior than the run's (--prior): its scores are not this one's
            print(f"note: not reusing {saved}: {err}")
    print(f"prior: {describe_prior(args.prior, prior)}")
    env = Builder(env_id, section, prior, uniform=args.prior == "uniform").single_env(args.seed)
    try:
        model = algo.cls.load(model_path, env=env)
    except ValueError as err:  # the wrapper settings differ from the model's (k, encoder, ...)
        raise CLIError(f"cannot evaluate {model_path} here: {err}") from err
    rows = []
    start = time.perf_counter()
    for i in range(args.episodes):
        obs, info = env.reset(seed=args.seed + i)
        total, length, done = 0.0, 0, False
        while not done:
            action, _ = model.predict(obs, deterministic=not args.stochastic)
            obs, reward, terminated, truncated, info = env.step(int(action))
            total, length, done = total + float(reward), length + 1, terminated or truncated
        rows.append({"episode": i, "seed": args.seed + i, "return": total, "length": length,
                     "success": bool(info.get("is_success", False))})  # fmt: skip
    env.close()
    ablated = bool(record) and args.prior != record.get("prior")  # another prior than the run's: its own file
    name = "eval_prior-" + "".join(c if c.isalnum() or c in "-_." else "_" for c in args.prior) if ablated else "eval"
    out = args.out or model_path.parent / f"{name}.csv"
    write_rows(rows, out)
    print_table(rows, f"{algo.name} on {env_id}, {'stochastic' if args.stochastic else 'greedy'}")
    print(f"{time.perf_counter() - start:.1f}s; episodes in {out}")
    return 0


def write_rows(rows: list[dict[str, Any]], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["episode", "seed", "return", "length", "success"])
        writer.writeheader()
        for r in rows:
            writer.writerow({**r, "return": f"{r['return']:.4f}", "success": int(r["success"])})


def print_table(rows: list[dict[str, Any]], title: str) -> None:
    print(f"{'episode':>7}  {'seed':>6}  {'return':>8}  {'length':>6}  success")
    for r in rows:
        won = "yes" if r["success"] else "no"
        print(f"{r['episode']:>7}  {r['seed']:>6}  {r['return']:>8.3f}  {r['length']:>6}  {won}")
    returns = np.array([r["return"] for r in rows])
    wins = sum(r["success"] for r in rows)
    print(
        f"{title}: mean return {returns.mean():.3f} ± {returns.std():.3f}, success {wins / len(rows):.2f} "
        f"({wins}/{len(rows)}), mean length {np.mean([r['length'] for r in rows]):.1f} over {len(rows)} episodes"
    )
