"""``prior-wrappers plot``: several runs' learning curves in one figure and one table (a prior against its baseline)."""

from __future__ import annotations

import argparse
import csv
from pathlib import Path
from typing import Any

import numpy as np

from prior_wrappers.cli.config import CLIError, read_yaml
from prior_wrappers.evaluation import LearningCurve, plot_curves

DESCRIPTION = """\
Read curves.csv of each run folder and draw them together: one line per algorithm and prior (the mean over the
runs' seeds, with a min-max band). Prints for each line the greedy success at the end, the area under the success
curve and the first step at which the success rate reached --success (per seed)."""

EPILOG = """\
examples:
  prior-wrappers plot runs/dqn-prior_OvercookedTomato-v0_* runs/dqn_OvercookedTomato-v0_*
  prior-wrappers plot runs/*_TextFrozenLake-v0_* --values mean_return -o frozenlake.png
"""


def add_parser(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "plot",
        help="learning curves of several runs in one figure, with a table",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("runs", type=Path, nargs="+", metavar="RUN", help="run folders written by `prior-wrappers train`")
    p.add_argument("--values", choices=["success_rate", "mean_return"], default="success_rate", help="what to plot")
    p.add_argument("--success", type=float, default=1.0, help="the success rate whose first step is reported")
    p.add_argument("-o", "--out", type=Path, help="the PNG (default: comparison.png beside the first run)")
    p.set_defaults(func=run)


def read_curve(run: Path) -> LearningCurve:
    """A run's curve, labelled ``<algo> (<prior>)``."""
    if not (run / "curves.csv").is_file():
        raise CLIError(f"{run} has no curves.csv: is it a run folder of `prior-wrappers train` that finished?")
    record: dict[str, Any] = {}
    if (run / "config.yml").is_file():
        record = read_yaml(run / "config.yml").get("run") or {}
    with open(run / "curves.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    label = f"{record.get('algo', rows[0]['label'] if rows else run.name)} ({record.get('prior', '?')})"
    curve = LearningCurve(label, int(record.get("seed", rows[0]["seed"] if rows else 0)))
    for r in rows:
        curve.steps.append(int(r["steps"]))
        curve.success_rate.append(float(r["success_rate"]))
        curve.mean_return.append(float(r["mean_return"]))
    return curve


def run(args: argparse.Namespace) -> int:
    curves = [read_curve(r) for r in args.runs]
    header = f"{'algorithm (prior)':<34}{'seeds':>6}{'final success':>15}{'AUC':>7}"
    print(f"{header}  first step at success >= {args.success:g}")
    for label in dict.fromkeys(c.label for c in curves):
        mine = [c for c in curves if c.label == label]
        firsts = [c.steps_to(args.success) for c in mine]
        shown = ", ".join(str(s) if s is not None else f">{c.steps[-1]}" for s, c in zip(firsts, mine))
        final = np.mean([c.success_rate[-1] for c in mine])
        auc = np.mean([c.area_under_curve() for c in mine])
        print(f"{label:<34}{len(mine):>6}{final:>15.2f}{auc:>7.2f}  {shown}")
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        print("no figure: matplotlib is not installed (pip install 'prior-wrappers[plots]')")
        return 0
    out = args.out or args.runs[0].parent / "comparison.png"
    ylabel = "success rate (greedy evaluation)" if args.values == "success_rate" else "mean return (greedy)"
    plot_curves(curves, out, values=args.values, ylabel=ylabel)
    print(f"figure: {out}")
    return 0
