"""The evidence, offline: how much less data CQL-Prior needs than CQL, zero-shot, in the hard kitchen (issue 21).

**Question.** From a fixed dataset of the hard kitchen (``prior_wrappers/OvercookedTomatoLettuceOnion-v0``, the
kitchen of :mod:`benchmarks.evidence`), how many transitions does conservative Q-learning need before its greedy
policy reaches 90% of the expert's return, with SmolLM2's zero-shot prior (CQL-Prior) and without it (CQL)?

**Data.** One dataset per game seed, collection seed 0: episodes of the scripted expert and of uniform random play,
alternating, half of them successful (:func:`~prior_wrappers.sb3.collect_expert_mixture`). The datasets of each
size are its first N transitions (``OfflineDataset.transitions``: nested, so a larger dataset holds every smaller
one). The LLM labels every state of the dataset once, before training (as the reference does).

**Arms, and what each knows.** ``CQL``: the same transitions with the prior replaced by the uniform one
(``with_uniform_prior``), evaluated in an env with ``UniformPrior``: discrete CQL over the admissible commands.
``CQL-Prior``: SmolLM2's zero-shot log-probabilities, in the observation (a feature of every slot) and, where the
search chose it, in the greedy action (``predict_with_prior``: argmax Q + α·log p̃). No demonstration beyond the
dataset, which both arms share. The same network, features (hashed, 256-d), gradient steps, β = 5, batch 128 and
training seeds; each arm's settings are its best of the same grid (``--search``, on development game seed 0).

**Measured.** After training, 10 greedy episodes (the online benchmark's seeded starts): mean return and success.
Per training seed, the smallest dataset whose return reaches 0.9 x the expert's (the largest size, marked ``>=``,
when none does); per arm, the IQM over seeds with its 95% stratified-bootstrap interval; the probability that a
CQL-Prior seed needs less data than a CQL seed; the ratio of the two IQMs (``zero_shot_data_ratio``).

    python benchmarks/evidence.py --parts offline --game-seed 1     # the reported table
    python benchmarks/evidence.py --parts offline --search          # the grid, on game seed 0
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

SIZES = [100, 200, 400, 800, 1600, 3200]  # transitions; an expert episode is 16, a random one about 40
GRADIENT_STEPS = 3000
THRESHOLD = 0.9  # of the expert's return
# The grid --search runs (game seed 0, seeds 0-1, sizes SEARCH_SIZES), ranked by the mean return over those runs;
# predict_with_prior only applies with a prior (the baseline's uniform p̃ leaves argmax Q unchanged).
SEARCH_SIZES = [200, 800]
SEARCH_GRID: dict[str, list[dict[str, Any]]] = {
    "CQL": [{"gamma": y} for y in (0.99, 0.9)],
    "CQL-Prior": [{"gamma": y, "predict_with_prior": p} for y in (0.99, 0.9) for p in (False, True)],
}
# --search's choice (mean return over sizes 200 and 800, seeds 0-1): CQL 1.17 at γ 0.99 (1.00 at 0.9); CQL-Prior 1.15
# at γ 0.99 without predict_with_prior (1.09 with it; 1.06 and 1.12 at γ 0.9).
CHOSEN: dict[str, dict[str, Any]] = {
    "CQL": {"gamma": 0.99},
    "CQL-Prior": {"gamma": 0.99, "predict_with_prior": False},
}


@dataclass
class OfflineRun:
    """One training run on one dataset size."""

    arm: str
    seed: int
    size: int
    mean_return: float
    success: float
    wall_s: float


def collect(game_seed: int, n_transitions: int, res: Any, seed: int = 0):
    """At least ``n_transitions`` transitions of expert and random episodes (half successful) with the LLM's
    observations (``res.llm``; uniform without one). The slots are in the env's order, so the episodes are the
    same whatever the prior."""
    import gymnasium as gym

    from benchmarks.common import collect_mixture
    from benchmarks.evidence import HARD_KITCHEN, K
    from prior_wrappers import LLMPriorWrapper, UniformPrior

    kitchen = gym.make(HARD_KITCHEN, layout_seed=game_seed)
    env = LLMPriorWrapper(kitchen, res.llm or UniformPrior(), k=K, encoder=res.encoder, history=0, order="env")
    return collect_mixture(env, n_transitions, seed)


def train_offline(
    arm: str, data: Any, size: int, seed: int, game_seed: int, res: Any, hp: dict, gradient_steps: int = GRADIENT_STEPS
) -> OfflineRun:
    """CQL(-Prior) on the first ``size`` transitions, then 10 greedy episodes."""
    from benchmarks.common import Stopwatch
    from benchmarks.evidence import EVAL_EPISODES, vec_env
    from prior_wrappers import UniformPrior
    from prior_wrappers.evaluation import LearningCurve, evaluate_into
    from prior_wrappers.sb3 import CQLPrior

    watch = Stopwatch()
    with_prior = arm == "CQL-Prior"
    subset = (data if with_prior else data.with_uniform_prior()).transitions(size)
    env = vec_env(res.llm if with_prior else UniformPrior(), res, EVAL_EPISODES, 10_000, game_seed, order="env")
    model = CQLPrior("CandidatePolicy", env, seed=seed, device="cpu", **hp)
    model.learn_offline(subset, gradient_steps=gradient_steps, log_interval=0)
    curve = LearningCurve(arm, seed)
    evaluate_into(curve, model, env, gradient_steps, EVAL_EPISODES)
    res.save()
    return OfflineRun(arm, seed, size, curve.mean_return[0], curve.success_rate[0], watch.seconds)


def data_needed(runs: Sequence[OfflineRun], threshold: float, sizes: Sequence[int]) -> tuple[int, bool]:
    """The smallest size whose run reaches ``threshold`` (one arm, one seed), and whether one did (else the largest
    size: a lower bound)."""
    reached = sorted(r.size for r in runs if r.mean_return >= threshold)
    return (reached[0], True) if reached else (max(sizes), False)


def report(runs: Sequence[OfflineRun], expert: float, sizes: Sequence[int]) -> dict[str, str]:
    """Print the return by size and the data each arm needs; the figures for the summary line."""
    from benchmarks.evidence import arm_text, baseline_first, compare
    from prior_wrappers.aggregates import bootstrap_interval

    arms = baseline_first(r.arm for r in runs)
    threshold = THRESHOLD * expert
    print(f"\noffline: greedy mean return by dataset size, IQM [95% CI] over seeds (expert {expert:.2f})")
    for arm in arms:
        for size in sizes:
            returns = [r.mean_return for r in runs if r.arm == arm and r.size == size]
            if returns:
                wins = np.mean([r.success for r in runs if r.arm == arm and r.size == size])
                print(f"  {arm:10s} {size:5d}: {bootstrap_interval(returns).text('{:.2f}')}  success {wins:.2f}")
    print(f"transitions to {THRESHOLD:.0%} of the expert's return ({threshold:.2f}): IQM [95% CI] (>= never reached)")
    needed = {}
    for arm in arms:
        seeds = sorted({r.seed for r in runs if r.arm == arm})
        needed[arm] = [data_needed([r for r in runs if r.arm == arm and r.seed == s], threshold, sizes) for s in seeds]
        print(f"  {arm:10s} {arm_text(needed[arm])}")
    figures: dict[str, str] = {}
    if len(arms) == 2:
        kind, ratio, improved = compare(needed[arms[0]], needed[arms[1]])
        print(f"  ratio {kind}{ratio.text('{:.2f}')}; P({arms[1]} needs less) {improved.text('{:.2f}')}")
        figures["zero_shot_data_ratio"] = f"{kind}{ratio.value:.2f}"
        figures["zero_shot_data_ratio_ci"] = f"{ratio.low:.2f}-{ratio.high:.2f}"
    return figures


def write_rows(runs: Sequence[OfflineRun], out: Path, game_seed: int) -> None:
    """Every run so far, one row each (rewritten after each run)."""
    import csv

    out.mkdir(parents=True, exist_ok=True)
    with open(out / "evidence_offline.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["arm", "seed", "game_seed", "transitions", "mean_return", "success_rate", "seconds"])
        for r in runs:
            values = [f"{r.mean_return:.4f}", f"{r.success:.3f}", f"{r.wall_s:.1f}"]
            writer.writerow([r.arm, r.seed, game_seed, r.size, *values])


def read_rows(paths: Sequence[Path]) -> tuple[list[OfflineRun], int]:
    """The runs of ``evidence_offline.csv`` files (e.g. a stopped benchmark's finished runs) and their game seed.

    :raises ValueError: the files hold no run, or runs of several game seeds.
    """
    import csv

    rows = [row for path in paths for row in csv.DictReader(open(path))]
    game_seeds = {int(row["game_seed"]) for row in rows}
    if len(game_seeds) != 1:
        raise ValueError(f"{[str(p) for p in paths]}: runs of one game seed expected, found {sorted(game_seeds)}")
    runs = [OfflineRun(row["arm"], int(row["seed"]), int(row["transitions"]), float(row["mean_return"]),
                       float(row["success_rate"]), float(row["seconds"])) for row in rows]  # fmt: skip
    return runs, game_seeds.pop()


def plot(runs: Sequence[OfflineRun], expert: float, path: Path, title: str) -> None:
    """Greedy return against dataset size: each arm's IQM over seeds with its 95% interval, and the threshold."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from benchmarks.common import save_figure
    from benchmarks.evidence import baseline_first
    from prior_wrappers.aggregates import bootstrap_interval

    fig, ax = plt.subplots(figsize=(6, 4))
    for i, arm in enumerate(baseline_first(r.arm for r in runs)):  # the online figures' colours: baseline first
        sizes = sorted({r.size for r in runs if r.arm == arm})
        est = [bootstrap_interval([r.mean_return for r in runs if r.arm == arm and r.size == s]) for s in sizes]
        ax.plot(sizes, [e.value for e in est], "o-", color=f"C{i}", label=arm)
        ax.fill_between(sizes, [e.low for e in est], [e.high for e in est], color=f"C{i}", alpha=0.2)
    ax.axhline(THRESHOLD * expert, color="grey", ls="--", label=f"{THRESHOLD:.0%} of the expert's return")
    ax.set_xscale("log")
    ax.set_xlabel("transitions in the dataset")
    ax.set_ylabel("greedy mean return (IQM over seeds)")
    save_figure(fig, ax, title, path)


def report_from(paths: Sequence[Path], out: Path | None) -> dict[str, str]:
    """Report the runs of ``evidence_offline.csv`` files, only the sizes every arm and seed finished (a stopped run);
    with ``out``, also draw their figure there. Returns the summary figures."""
    from benchmarks.evidence import expert_return

    runs, game_seed = read_rows(paths)
    every = {(r.arm, r.seed) for r in runs}
    sizes = sorted(n for n in {r.size for r in runs} if {(r.arm, r.seed) for r in runs if r.size == n} == every)
    runs = [r for r in runs if r.size in sizes]
    print(f"{len(runs)} offline runs of game seed {game_seed}, sizes {sizes}, from {len(paths)} file(s)")
    expert = expert_return(game_seed)
    figures = report(runs, expert, sizes)
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        plot(runs, expert, out / "evidence_offline.png", f"Hard kitchen, game seed {game_seed}, offline")
    return figures


def run(args: Any, res: Any, game_seed: int) -> dict[str, str]:
    """The offline table (or, with ``args.search``, the grid on game seed 0); returns the summary figures."""
    from benchmarks.evidence import expert_return

    sizes = SEARCH_SIZES if args.search else args.sizes
    data, expert = collect(game_seed, max(sizes), res), expert_return(game_seed)
    print(f"offline dataset: {len(data)} transitions, {data.n_episodes} episodes; expert {expert:.2f}", flush=True)
    arms = [arm.replace("DQN", "CQL") for arm in args.arms if arm.startswith("DQN")]  # PPO has no offline form
    if args.search:
        for arm in arms:
            scores = []
            for hp in SEARCH_GRID[arm]:
                runs = [train_offline(arm, data, n, s, 0, res, hp, args.gradient_steps) for n in sizes for s in (0, 1)]
                scores.append((float(np.mean([r.mean_return for r in runs])), hp))
                print(f"{arm} {hp}: mean return {scores[-1][0]:.3f}", flush=True)
            print(f"best for {arm}: {max(scores, key=lambda s: s[0])[1]}", flush=True)
        return {}
    runs: list[OfflineRun] = []
    for size in sizes:
        for arm in arms:
            for seed in range(args.seeds):
                runs.append(train_offline(arm, data, size, seed, game_seed, res, CHOSEN[arm], args.gradient_steps))
                write_rows(runs, args.out, game_seed)
            done = [r for r in runs if r.arm == arm and r.size == size]
            print(f"{arm} {size} transitions: returns {[round(r.mean_return, 2) for r in done]}", flush=True)
    figures = report(runs, expert, sizes)
    plot(runs, expert, args.out / "evidence_offline.png", f"Hard kitchen, game seed {game_seed}, offline")
    return figures
