"""The ``prior-wrappers`` command line, in the spirit of rl-baselines3-zoo.

    prior-wrappers prior-report OvercookedTomato-v0               # how well the prior ranks the expert's commands
    prior-wrappers train --algo dqn-prior --env OvercookedTomato-v0 # a run folder under runs/
    prior-wrappers evaluate runs/dqn-prior_OvercookedTomato-v0_0_1  # N episodes, the prior re-attached
    prior-wrappers plot runs/dqn-prior_* runs/dqn_*                 # learning curves side by side
    prior-wrappers envs                                             # the env ids and their hyperparameter files

Also ``python -m prior_wrappers ...``. See ``docs/cli.md``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any

from prior_wrappers.cli import evaluate, plot, report, train
from prior_wrappers.cli.config import CLIError, config_path, read_yaml, text_env_ids

__all__ = ["CLIError", "build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="prior-wrappers",
        description="Train, evaluate and inspect RL agents with an LLM action prior on text environments.",
        epilog="`prior-wrappers COMMAND --help` describes each command.",
    )
    from prior_wrappers import __version__

    parser.add_argument("--version", action="version", version=f"prior-wrappers {__version__}")
    subparsers = parser.add_subparsers(title="commands", dest="command", metavar="COMMAND", required=True)
    train.add_parser(subparsers)
    evaluate.add_parser(subparsers)
    report.add_parser(subparsers)
    plot.add_parser(subparsers)
    envs = subparsers.add_parser(
        "envs", help="list the registered text envs and their hyperparameter files", description=list_envs.__doc__
    )
    envs.set_defaults(func=list_envs)
    return parser


def list_envs(args: argparse.Namespace) -> int:
    """List the registered text env ids, each with its hyperparameter file and the algorithms it has settings for."""
    ids = text_env_ids()
    width = max(map(len, ids)) + 2
    print(f"{'env id':<{width}}{'hyperparameters':<32}algorithms")
    for env_id in ids:
        path = config_path(env_id)
        print(f"{env_id:<{width}}{path.name:<32}{', '.join(read_yaml(path))}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status (0, or 2 after a usage error, printed without a traceback)."""
    parser = build_parser()
    args: Any = parser.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)  # the command line, recorded in a run's config
    try:
        return int(args.func(args))
    except CLIError as err:
        print(f"prior-wrappers {args.command}: error: {err}", file=sys.stderr)
        return 2
