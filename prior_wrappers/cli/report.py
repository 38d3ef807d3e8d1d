"""``prior-wrappers prior-report``: how well a prior ranks an env's expert commands, before any training."""

from __future__ import annotations

import argparse
import csv
import time
from pathlib import Path
from typing import Any

import gymnasium as gym

from prior_wrappers.cli.build import (
    Builder,
    add_prior_options,
    build_prior,
    describe_prior,
    save_prior_cache,
    set_threads,
)
from prior_wrappers.cli.config import CLIError, env_name, get_algorithm, resolve_env_id, resolve_hyperparams
from prior_wrappers.expert_ranking import RankedState, rank_expert_commands, summarize
from prior_wrappers.priors import CachedPrior

DESCRIPTION = """\
Play the env's scripted expert and, in each state, rank the admissible commands by the prior exactly as the
training wrapper would (same prompt: history, demonstrations, normalisation from the env's hyperparameter file).
Prints the expert command's top-1 / top-3 rate, mean reciprocal rank (MRR) and mean probability next to the
uniform prior's, and writes one CSV row per distinct state (a state seen again is not counted twice). Ties are
broken at random in expectation, so the uniform prior scores exactly the uniform column. Needs an env with a
scripted expert (Overcooked, the TextWorld challenges, TextWorldExpress, ScienceWorld, BabyAI)."""

EPILOG = """\
examples:
  prior-wrappers prior-report OvercookedTomato-v0 --states 30
  prior-wrappers prior-report TWCookingEasy-v0 --prior path/to/model --hyperparams wrapper.history=2
"""


def add_parser(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "prior-report",
        help="how well a prior ranks an env's expert commands (top-1, MRR vs uniform)",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("env", metavar="ENV_ID", help="a registered env id with a scripted expert")
    add_prior_options(p, default="embedded")
    p.add_argument("--states", type=int, default=30, help="distinct expert states to rank (default 30)")
    p.add_argument("--seed", type=int, default=0, help="reset seed of the first expert episode (then +1 each)")
    p.add_argument("--max-steps", type=int, default=100, help="steps per expert episode at most")
    p.add_argument(
        "-a", "--algo", default="dqn-prior", help="whose wrapper settings (prompt) to use (default dqn-prior)"
    )
    p.add_argument("-c", "--config", type=Path, help="a hyperparameter file instead of the env's own")
    p.add_argument("-p", "--hyperparams", nargs="+", default=[], metavar="KEY=VALUE", help="e.g. wrapper.history=2")
    p.add_argument("--k", type=int, default=1024, help="slots: above the env's largest command list (default 1024)")
    p.add_argument("-o", "--out", type=Path, help="the CSV (default: runs/prior-report_<EnvName>.csv)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.states < 1:
        raise CLIError("--states must be >= 1")
    algo, env_id = get_algorithm(args.algo), resolve_env_id(args.env)
    section, source = resolve_hyperparams(algo, env_id, args.config, args.hyperparams)
    raw = gym.make(env_id, **(section.get("env_kwargs") or {}))
    has_expert = hasattr(raw.unwrapped, "expert_command")
    raw.close()
    if not has_expert:
        raise CLIError(
            f"{env_id} has no scripted expert (expert_command()), so there is nothing to rank. Envs with one: "
            "OvercookedTomato-v0, OvercookedTomatoLettuce-v0, the TW* challenges, TWXCookingWorldSmall-v0, "
            "TextWorldExpress-v0, ScienceWorld-v0, the BabyAI* envs"
        )
    set_threads(args.threads)
    prior = build_prior(args)
    print(f"prior: {describe_prior(args.prior, prior)}; prompt settings: {source} [{algo.name}]")
    builder = Builder(env_id, section, prior, uniform=args.prior == "uniform")
    k = max(args.k, int(section.get("wrapper", {}).get("k", 0)))
    env = builder.single_env(args.seed, k=k, encoder=None)  # features are not needed to rank
    start = time.perf_counter()
    states = rank_expert_commands(env, args.states, seed=args.seed, max_steps=args.max_steps)
    env.close()
    if not states:
        raise CLIError(f"the expert of {env_id} played no command the wrapper could rank (raise --k?)")
    out = args.out or Path("runs") / f"prior-report_{env_name(env_id)}.csv"
    write_states(states, out)
    save_prior_cache(prior, args.prior_cache)
    print_summary(states, env_id, args.prior)
    if len(states) < args.states:
        print(f"only {len(states)} distinct states of the {args.states} asked for: the expert showed no more")
    if isinstance(prior, CachedPrior):
        info = prior.cache_info()
        print(f"the prior scored {info['misses']:.0f} distinct states; {info['hits']:.0f} revisits came from its cache")
    print(f"{time.perf_counter() - start:.1f}s; per-state rows in {out}")
    return 0


def write_states(states: list[RankedState], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=RankedState.columns())
        writer.writeheader()
        for s in states:
            writer.writerow({k: f"{v:.4f}" if isinstance(v, float) else v for k, v in s.row().items()})


def print_summary(states: list[RankedState], env_id: str, prior: str) -> None:
    s = summarize(states)
    print(
        f"{env_id}: {s.states} distinct expert states in {s.episodes} episode{'s' * (s.episodes != 1)}, "
        f"{s.mean_commands:.1f} commands per state on average"
    )
    print(f"{'':<10}{'prior':>8}{'uniform':>9}")
    for label, mine, uniform in [
        ("top-1", s.top1, s.uniform_top1),
        ("top-3", s.top3, s.uniform_top3),
        ("MRR", s.mrr, s.uniform_mrr),
        ("p(expert)", s.p_expert, s.uniform_p_expert),
    ]:
        print(f"{label:<10}{mine:>8.3f}{uniform:>9.3f}")
    verdict = "better than" if s.mrr > s.uniform_mrr + 1e-9 else "no better than"
    print(f"the prior ({prior}) ranks the expert's command {verdict} uniform (MRR {s.mrr:.2f} vs {s.uniform_mrr:.2f})")
