"""The evidence: what the LLM's own knowledge saves, zero-shot, in a kitchen it knows (issue 21, part 1).

Three parts (``--parts``): **online**, DQN vs DQN-Prior and PPO vs PPO-Prior, below; **offline**, CQL vs CQL-Prior by
dataset size on the same kitchen (:mod:`benchmarks.evidence_offline`); **textworld**, with demonstrations: DQN on a
TextWorld challenge game (``--tw-family``) with the same N walkthroughs (``--walkthroughs``) used by every arm that
takes them, in its buffer, a demonstrations-only prior, or the LLM's prompt or weights
(:mod:`benchmarks.evidence_textworld`).

**Question.** How many fewer environment steps does DQN-Prior (SmolLM2-135M-Instruct as the action prior) need than
DQN, and PPO-Prior than PPO, to reach a greedy success rate of 0.9, where the model knows the domain and neither arm
is given a demonstration?

**Kitchen.** Overcooked's hard kitchen, ``prior_wrappers/OvercookedTomatoLettuceOnion-v0``: a tomato-lettuce-onion
salad with two distractors (a potato, a fish) and two cutting boards, in a 7x9 kitchen drawn from the game seed
(``--game-seed``: every layout the run uses comes from it), 16 macro-steps for the expert, 0 wins in 2,000 episodes
of uniform play. No example episode is in the prompt: the prior sees the task, the observation and the command.

**Arms, and what each knows.** ``DQN``: no prior (``UniformPrior``: Boltzmann exploration softmax(Q/α) over the
admissible commands). ``DQN-Prior``: SmolLM2's zero-shot log-probabilities (posterior sampling p(a|s)·exp(Q/α), the
adaptive prior trust and the default floor). ``PPO``: PPOPrior with ``UniformPrior`` (PPO over the admissible
commands; α·KL to uniform is an entropy bonus). ``PPO-Prior``: the same policy's logits added to the zero-shot
log-probabilities and α·KL(π ‖ p_LLM) in the loss (the default floor and adaptive trust). Everything else is the same
within each pair: the network (``CandidatePolicy``), the features (hashed words and bigrams of "Observation: s Action:
a", 256-d; a MiniLM pass per new observation cost 75 ms on this machine, the same for both arms either way), the
budget, the seeds (0..n-1), 4 envs, and the hyperparameters: each arm's best of the same grid (``--search``, on
development game seed 0 only: DQN, updates per transition x α x γ; PPO, steps per rollout x α x γ), chosen by the area
under its success curve (see ``CHOSEN``).

**Measured.** Every ``--eval-freq`` steps, 10 greedy episodes (argmax Q for DQN, the policy's mode for PPO; the same
seeded starts for every run). Per run: steps to the first win, to half the expert's return, to 0.9 success; a run that
never gets there counts as its budget and the figure is marked ``>=``. Per arm: the interquartile mean over seeds with
its 95% stratified-bootstrap interval (:mod:`prior_wrappers.aggregates`), and the probability that a prior arm's run
needs fewer steps than its baseline's. LLM cost: the states scored, and the wall time of each arm.

    python benchmarks/evidence.py --quick                  # minutes: 2 seeds, a short budget (a smoke run)
    python benchmarks/evidence.py --game-seed 1            # the reported tables (5 seeds): online, offline, textworld
    python benchmarks/evidence.py --search                 # the hyperparameter grids, on game seed 0
    python benchmarks/evidence.py --model DIR --device cuda --dtype bfloat16   # a larger LLM on a GPU

Writes ``<out>/evidence_curves.csv`` and ``evidence_success.png`` (default ``results/``), prints the table and ends
with ``zero_shot_steps_ratio=<DQN IQM / DQN-Prior IQM steps to 0.9> ... zero_shot_steps_ratio_ppo=<the same for PPO>
... zero_shot_data_ratio=<CQL IQM / CQL-Prior IQM transitions to 90% of the expert's return> ...
tw_steps_ratio_<family>=<uniform DQN / best LLM arm, steps to a win> llm_vs_demos_<family>=<demonstrations-only arm /
best LLM arm> ...``. The LLM's scores are cached on disk (``prior_wrappers.priors.embedded.cache_dir()``), so a rerun
on the same game seed scores no state twice.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import (  # noqa: E402
    Stopwatch,
    add_model_arguments,
    argument_parser,
    load_prior,
    print_conditions,
    save_figure,
    save_merged,
    summary_line,
    train_timed,
)

HARD_KITCHEN = "prior_wrappers/OvercookedTomatoLettuceOnion-v0"
SUCCESS = 0.9
N_ENVS = 4
K = 10  # every command of the kitchen has a slot (at most 10 are admissible)
FEATURE_DIM = 256
EVAL_EPISODES = 10
OUT = Path("results")

# The grids --search runs for both arms of an algorithm (game seed 0, seeds 0 and 1), and each arm's choice from them.
SEARCH_GRIDS: dict[str, list[dict[str, Any]]] = {
    # gradient steps per vector step of 4 envs: 0.25 or 1 update per transition
    "DQN": [{"gradient_steps": g, "alpha": a, "gamma": y} for y in (0.99, 0.9) for g in (1, 4) for a in (0.1, 0.03)],
    # steps per env per rollout (512 or 2,048 transitions per update); α: the KL to the prior (to uniform for PPO:
    # an entropy bonus); 4 epochs of minibatches of 64, SB3's other defaults
    "PPO": [{"n_steps": n, "alpha": a, "gamma": y, "n_epochs": 4, "batch_size": 64}
            for y in (0.99, 0.9) for n in (128, 512) for a in (0.1, 0.01)],  # fmt: skip
}
# DQN, success AUC over 15,000 steps on game seed 0 (mean of seeds 0 and 1). DQN, all 8 points: at γ 0.99 0, 0, 0.10,
# 0.41 (in the grid's order), at γ 0.9 0, 0.53, 0.47, 0.59. DQN-Prior, the two points at γ 0.9 and one update per
# transition (its first point took over an hour on this CPU, so its other six were not run): α 0.1 0, α 0.03 0.72.
# With γ 0.99 the greedy policy of both arms fell back from 1.0 to 0 by about 15,000 steps: a take-bowl /
# put-down-bowl loop that costs 2% of the value at γ 0.99, within the network's error, and 19% at γ 0.9.
# PPO, success AUC over 20,000 steps on game seed 0 (seeds 0 and 1), all 8 points: at γ 0.99 0 everywhere (return
# AUC 0.37, 0.26, 0.03, 0.00), at γ 0.9 0.30, 0.28, 0, 0; the best is 128 steps per env, α 0.1, γ 0.9. PPO-Prior takes
# the baseline's choice without a search of its own: a 20,000-step run cost over 20 CPU-minutes of LLM scoring from a
# cold cache, so its grid was not run (the search favours the baseline).
CHOSEN: dict[str, dict[str, Any]] = {
    "DQN": {"gradient_steps": 4, "alpha": 0.03, "gamma": 0.9},
    "DQN-Prior": {"gradient_steps": 4, "alpha": 0.03, "gamma": 0.9},
    "PPO": {"n_steps": 128, "alpha": 0.1, "gamma": 0.9, "n_epochs": 4, "batch_size": 64},
    "PPO-Prior": {"n_steps": 128, "alpha": 0.1, "gamma": 0.9, "n_epochs": 4, "batch_size": 64},
}
ARMS = ["DQN-Prior", "DQN", "PPO-Prior", "PPO"]


def algorithm(arm: str) -> str:
    """``"DQN"`` or ``"PPO"``: the learner an arm trains (its ``-Prior`` arm and baseline share it)."""
    return arm.removesuffix("-Prior")


def kitchen_oracle(prompt: str, commands: Sequence[str]) -> list[float]:
    """A keyword recipe for the salad: chop, fill the bowl, serve; leave the distractors; do not wander."""
    keys = [("serve bowl with", 4.0), ("chop ", 3.0), ("in bowl", 3.0), ("on first cutting", 2.0),
            ("on second cutting", 2.0), ("potato", -3.0), ("fish", -3.0), ("pick up", 1.5), ("take bowl", 1.0),
            ("walk to", -1.0), ("put down", -1.0), ("chop nothing", -2.0), ("wait", -2.0)]  # fmt: skip
    return [next((score for key, score in keys if key in c and not (key == "chop " and "nothing" in c)), 0.0)
            for c in commands]  # fmt: skip


@dataclass
class Run:
    """One training run's greedy evaluations and costs."""

    arm: str
    seed: int
    steps: list[int]
    success: list[float]
    returns: list[float]
    wall_s: float
    seconds: list[float] | None = None  # wall time at each evaluation (training, LLM calls and evaluations)


class Resources:
    """The LLM prior (cached, persisted per game seed) and the feature encoder, shared by every run."""

    def __init__(self, prior: str, model: str | None, cache: Path | None, **load: Any) -> None:
        from prior_wrappers import CachedPrior, FunctionPrior, HashingEncoder

        self.encoder = HashingEncoder(FEATURE_DIM)
        self.llm: Any = None
        if prior == "oracle":  # what a prior that knows the recipe gives (an ablation; the tests' fast stand-in)
            self.llm = FunctionPrior(kitchen_oracle)
        elif prior == "llm":
            self.llm = CachedPrior(load_prior(model, **load))
        self.cache = None
        if isinstance(self.llm, CachedPrior) and cache is not None:
            self.cache = self.llm.file_for(cache.parent, cache.stem)
            if self.cache.is_file():
                print(f"reusing {self.llm.load(self.cache)} cached LLM scores from {self.cache}", flush=True)

    def save(self) -> None:
        """Persist the scores, with those another process saved to the same file since (runs of one game seed in
        parallel, e.g. the online and offline parts, then share their scores instead of overwriting them)."""
        if self.llm is not None and self.cache is not None:
            save_merged(self.llm, self.cache)


def vec_env(prior: Any, res: Resources, n_envs: int, seed: int, game_seed: int, order: str = "prior"):
    from prior_wrappers import VecLLMPrior, make_text_vec_env

    venv = make_text_vec_env(HARD_KITCHEN, n_envs, seed=seed, env_kwargs={"layout_seed": game_seed})
    return VecLLMPrior(venv, prior, k=K, encoder=res.encoder, history=0, seed=seed, order=order)  # type: ignore[arg-type]


def train(
    arm: str, seed: int, game_seed: int, budget: int, eval_freq: int, res: Resources, hp: dict, stop_after: int = 0
) -> Run:
    """Train one arm with one seed; evaluate greedily before training and every ``eval_freq`` steps; with
    ``stop_after`` > 0, stop once that many evaluations in a row reached 0.9 success (the milestones are the first
    evaluations that reach them, so stopping later changes none of them)."""
    from prior_wrappers import UniformPrior
    from prior_wrappers.evaluation import LearningCurve
    from prior_wrappers.sb3 import DQNPrior, PPOPrior

    prior = res.llm if arm.endswith("-Prior") else UniformPrior()
    env = vec_env(prior, res, N_ENVS, seed, game_seed)
    # the evaluation episodes run side by side (one batched prior call per step), the same starts for every run
    eval_env = vec_env(prior, res, EVAL_EPISODES, 10_000, game_seed)
    if algorithm(arm) == "PPO":  # the baseline is PPOPrior with the uniform prior: PPO with the same network
        model: Any = PPOPrior("CandidatePolicy", env, seed=seed, device="cpu", **hp)
    else:
        model = DQNPrior("CandidatePolicy", env, train_freq=1, learning_starts=100, seed=seed, device="cpu", **hp)
    watch, curve = Stopwatch(), LearningCurve(arm, seed)
    seconds = train_timed(model, curve, eval_env, budget, eval_freq, EVAL_EPISODES, watch, stop_after=stop_after,
                          stop_success=SUCCESS)  # fmt: skip
    res.save()
    return Run(arm, seed, curve.steps, curve.success_rate, curve.mean_return, watch.seconds, seconds)


def expert_return(game_seed: int, episodes: int = 20) -> float:
    from envs.overcooked import OvercookedSalad

    env = OvercookedSalad(recipe="tomato-lettuce-onion", layout_seed=game_seed)
    totals = []
    for i in range(episodes):
        env.reset(seed=10_000 + i)
        total, done = 0.0, False
        while not done:
            _, reward, terminated, truncated, _ = env.step(env.expert_command())
            total, done = total + reward, terminated or truncated
        totals.append(total)
    return float(np.mean(totals))


def milestones(run: Run, budget: int, half_return: float) -> dict[str, tuple[int, bool]]:
    """Steps to each milestone and whether it was reached (else the budget, a lower bound)."""
    from prior_wrappers.evaluation import LearningCurve

    curve = LearningCurve(run.arm, run.seed, run.steps, run.success, run.returns)
    reached = {
        "win": curve.steps_to(1e-9),
        "half return": curve.steps_to_return(half_return),
        f"{SUCCESS} success": curve.steps_to(SUCCESS),
    }
    return {name: (budget if step is None else step, step is not None) for name, step in reached.items()}


def baseline_first(arms: Iterable[str]) -> list[str]:
    """The arms that ran, each once, the baseline before its ``-Prior`` arm (ratios are baseline / prior), DQN's
    before PPO's."""
    return sorted(dict.fromkeys(arms), key=lambda arm: (algorithm(arm) != "DQN", arm.endswith("-Prior")))


def pairs(arms: Sequence[str]) -> list[tuple[str, str]]:
    """Each baseline that ran with its ``-Prior`` arm: the comparisons a report makes."""
    return [(arm, f"{arm}-Prior") for arm in arms if f"{arm}-Prior" in arms]


def arm_text(reached: Sequence[tuple[int, bool]]) -> str:
    """One arm's figure over seeds: ``>=IQM [95% CI]  [each seed's]``, ``>=`` where a seed never got there."""
    from prior_wrappers.aggregates import bootstrap_interval

    values = np.array([n for n, _ in reached], dtype=float)
    bound = "" if all(ok for _, ok in reached) else ">="
    each = ", ".join(f"{'' if ok else '>='}{n}" for n, ok in reached)
    return f"{bound}{bootstrap_interval(values).text()}  [{each}]"


def compare(base: Sequence[tuple[int, bool]], prior: Sequence[tuple[int, bool]]) -> tuple[str, Any, Any]:
    """The ratio of the baseline's IQM to the prior arm's, with its interval; the probability that a prior seed needs
    less; and the ratio's kind: ``""`` measured, ``">="`` / ``"<="`` where only the baseline / the prior arm has
    seeds that never got there, ``"?"`` where both have."""
    from prior_wrappers.aggregates import probability_of_improvement_interval, ratio_interval

    base_values, prior_values = (np.array([n for n, _ in arm], dtype=float) for arm in (base, prior))
    ratio = ratio_interval(base_values, np.maximum(prior_values, 1))
    improved = probability_of_improvement_interval(-prior_values, -base_values)
    base_bound, prior_bound = (not all(ok for _, ok in arm) for arm in (base, prior))
    kind = "?" if base_bound and prior_bound else ">=" if base_bound else "<=" if prior_bound else ""
    return kind, ratio, improved


def report(runs: list[Run], budget: int, expert: float) -> dict[str, str]:
    """Print each arm's steps to each milestone and each baseline / prior ratio; the figures for the summary line
    (``zero_shot_steps_ratio`` for DQN, ``zero_shot_steps_ratio_ppo`` for PPO)."""
    arms = baseline_first(r.arm for r in runs)
    table = {arm: [milestones(r, budget, expert / 2) for r in runs if r.arm == arm] for arm in arms}
    figures: dict[str, str] = {}
    print(f"\nsteps to each milestone: IQM [95% CI] over seeds (expert return {expert:.2f}; >= never reached)")
    for name in table[arms[0]][0]:
        print(f"  {name}:")
        for arm in arms:
            print(f"    {arm:10s} {arm_text([m[name] for m in table[arm]])}")
        for base, prior in pairs(arms):
            kind, ratio, improved = compare(*([m[name] for m in table[arm]] for arm in (base, prior)))
            print(f"    ratio {base} / {prior} {kind}{ratio.text('{:.2f}')}; P({prior} faster) "
                  f"{improved.text('{:.2f}')}")  # fmt: skip
            if name == f"{SUCCESS} success":
                suffix = "" if base == "DQN" else f"_{base.lower()}"
                figures[f"zero_shot_steps_ratio{suffix}"] = f"{kind}{ratio.value:.2f}"
                figures[f"zero_shot_steps_ratio{suffix}_ci"] = f"{ratio.low:.2f}-{ratio.high:.2f}"
                figures[f"zero_shot_p_improvement{suffix}"] = f"{improved.value:.2f}"
    for arm in arms:
        wall = [r.wall_s for r in runs if r.arm == arm]
        print(f"  wall time per run, {arm}: {np.mean(wall):.0f} s (min {min(wall):.0f}, max {max(wall):.0f})")
    return figures


def write_curves(runs: list[Run], out: Path, game_seed: int) -> None:
    """Every evaluation of every run so far (rewritten after each run: a stopped benchmark keeps its finished runs,
    and ``--report-from`` reports them)."""
    import csv

    out.mkdir(parents=True, exist_ok=True)
    with open(out / "evidence_curves.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["arm", "seed", "game_seed", "steps", "seconds", "success_rate", "mean_return"])
        for r in runs:
            for s, t, p, g in zip(r.steps, r.seconds or [], r.success, r.returns):
                writer.writerow([r.arm, r.seed, game_seed, s, f"{t:.1f}", f"{p:.3f}", f"{g:.4f}"])


def read_curves(path: Path) -> tuple[list[Run], int]:
    """The runs of an ``evidence_curves.csv`` and their game seed."""
    import csv

    rows = list(csv.DictReader(open(path)))
    if not rows:
        raise ValueError(f"{path} holds no evaluations")
    runs: dict[tuple[str, int], Run] = {}
    for row in rows:
        run = runs.setdefault((row["arm"], int(row["seed"])), Run(row["arm"], int(row["seed"]), [], [], [], 0.0, []))
        run.steps.append(int(row["steps"]))
        run.success.append(float(row["success_rate"]))
        run.returns.append(float(row["mean_return"]))
        cast(list, run.seconds).append(float(row["seconds"]))
        run.wall_s = float(row["seconds"])
    return list(runs.values()), int(rows[0]["game_seed"])


def write_outputs(runs: list[Run], out: Path, game_seed: int) -> None:
    from prior_wrappers.evaluation import LearningCurve, plot_curves

    write_curves(runs, out, game_seed)
    curves = [LearningCurve(r.arm, r.seed, r.steps, r.success, r.returns) for r in runs]
    title = f"Hard kitchen, game seed {game_seed}, zero-shot prior"
    plot_curves(curves, out / "evidence_success.png", title=title)
    plot_wall_time(runs, out / "evidence_wall_time.png", title)


def plot_wall_time(runs: list[Run], path: Path, title: str) -> None:
    """Each run's greedy success against its wall time (the LLM's scoring included), one colour per arm."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for i, arm in enumerate(dict.fromkeys(r.arm for r in runs)):
        for j, r in enumerate(r for r in runs if r.arm == arm):
            ax.plot(r.seconds or [], r.success, color=f"C{i}", alpha=0.6, label=arm if j == 0 else None)
    ax.set_xlabel("wall time (s), training + LLM scoring + evaluation")
    ax.set_ylabel("success rate (greedy evaluation)")
    ax.set_ylim(-0.02, 1.02)
    save_figure(fig, ax, title, path)


def main(argv: Sequence[str] | None = None) -> None:
    from benchmarks import evidence_offline, evidence_textworld

    parser = argument_parser(__doc__)
    parser.add_argument("--parts", nargs="+", default=["online", "offline", "textworld"],
                        choices=["online", "offline", "textworld"])  # fmt: skip
    parser.add_argument("--game-seed", type=int, default=1, help="draws the kitchen (0 is the development seed)")
    parser.add_argument("--seeds", type=int, default=5, help="training seeds per arm (0..n-1)")
    parser.add_argument("--budget", type=int, default=20_000, help="online: environment steps per run")
    parser.add_argument("--eval-freq", type=int, default=1000, help="online: steps between greedy evaluations")
    parser.add_argument("--sizes", type=int, nargs="+", default=evidence_offline.SIZES, help="offline: transitions")
    parser.add_argument("--gradient-steps", type=int, default=evidence_offline.GRADIENT_STEPS, help="offline")
    parser.add_argument("--arms", nargs="+", default=ARMS, choices=ARMS,
                        help="online arms; offline, the DQN arms' CQL counterparts")  # fmt: skip
    parser.add_argument("--tw-family", default="cooking-easy", help="textworld: the challenge family")
    parser.add_argument("--walkthroughs", type=int, nargs="+", default=[2, 16], help="textworld: N per arm")
    parser.add_argument("--tw-budget", type=int, default=1200, help="textworld: environment steps per run (at most)")
    parser.add_argument("--stop-after", type=int, default=0, metavar="N",
                        help="online: stop a run once N evaluations in a row reached 0.9 success (0: the budget)")
    parser.add_argument("--resume", action="store_true",
                        help="online: keep the runs already in <out>/evidence_curves.csv (same settings) and run the "
                        "rest")  # fmt: skip
    parser.add_argument("--search", action="store_true", help="run the hyperparameter grid on game seed 0")
    parser.add_argument("--grid", type=int, nargs="+", default=None, help="with --search: these grid points only")
    parser.add_argument("--quick", action="store_true", help="2 seeds, 3,000 steps, 2 dataset sizes: a smoke run")
    parser.add_argument("--prior", choices=["llm", "oracle"], default="llm", help="oracle: a keyword recipe (ablation)")
    add_model_arguments(parser)  # --model, --device, --dtype: e.g. a 0.5-8B model in bf16 on a GPU
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1: 8x faster on a busy 2-core CPU)")
    parser.add_argument("--report-from", type=Path, nargs="+", default=None,
                        help="report the runs of these evidence_curves.csv files (one game seed; with --out, also "
                        "write their curves and figures there), or of evidence_offline.csv files")  # fmt: skip
    parser.add_argument("--no-cache", action="store_true", help="do not read or write the LLM's cached scores")
    args = parser.parse_args(argv)
    if args.quick:
        args.seeds, args.budget, args.eval_freq = 2, 3000, 1000
        args.sizes, args.gradient_steps = [200, 800], 500
        args.tw_budget, args.walkthroughs = 150, [2]
    if args.report_from and all(path.name == evidence_textworld.CSV_NAME for path in args.report_from):
        runs = evidence_textworld.read_runs(args.report_from)
        figures = evidence_textworld.report(runs)
        if args.out != OUT:
            evidence_textworld.plot(runs, args.out)
        summary_line(figures)
        return
    if args.report_from and all(path.name == "evidence_offline.csv" for path in args.report_from):
        summary_line(evidence_offline.report_from(args.report_from, args.out if args.out != OUT else None))
        return
    if args.report_from:  # e.g. a stopped benchmark's finished runs, or arms run apart: --budget must be the runs'
        read = [read_curves(path) for path in args.report_from]
        runs, game_seeds = [run for found, _ in read for run in found], {seed for _, seed in read}
        if len(game_seeds) > 1:
            parser.error(f"--report-from: the files are of different game seeds {sorted(game_seeds)}")
        game_seed = game_seeds.pop()
        print(f"{len(runs)} runs of game seed {game_seed} from {len(read)} file(s); budget {args.budget}")
        summary_line(report(runs, args.budget, expert_return(game_seed)))
        if args.out != OUT:
            write_outputs(runs, args.out, game_seed)
        return
    import torch

    torch.set_num_threads(args.threads)
    game_seed = 0 if args.search else args.game_seed
    if args.search and args.game_seed not in (0, 1):
        parser.error("--search runs on development game seed 0 only")
    seeds = [0, 1] if args.search else list(range(args.seeds))
    print_conditions(
        game_seed=game_seed, parts=args.parts, seeds=seeds, budget=args.budget, sizes=args.sizes,
        gradient_steps=args.gradient_steps, arms=args.arms, prior=args.prior, dtype=args.dtype,
    )  # fmt: skip
    from prior_wrappers.priors.embedded import cache_dir

    cache = None if args.no_cache else cache_dir() / f"evidence_hard_kitchen_{game_seed}"
    wanted = [arm for arm in args.arms if "online" in args.parts or ("offline" in args.parts and arm == "DQN-Prior")]
    prior = args.prior if any(arm.endswith("-Prior") for arm in wanted) else "none"
    res = Resources(prior, args.model, cache, dtype=args.dtype, device=args.device)
    watch, figures = Stopwatch(), {}
    if "online" in args.parts:
        figures.update(search(args, res) if args.search else online(args, res, game_seed))
    if "offline" in args.parts:
        figures.update(evidence_offline.run(args, res, game_seed))
    if "textworld" in args.parts and not args.search:  # its DQN settings are textworld_challenges.py's (no grid)
        settings = evidence_textworld.Settings(
            args.tw_family, game_seed, seeds, sorted(args.walkthroughs), args.tw_budget, model=args.model,
            dtype=args.dtype, device=args.device, keyword_prior=args.prior == "oracle",
        )  # fmt: skip
        figures.update(evidence_textworld.run(settings, evidence_textworld.ARMS, args.out))
    if hasattr(res.llm, "cache_info"):
        info = res.llm.cache_info()
        print(f"LLM: {info['misses']} states scored, {info['hits']} cache hits", flush=True)
    print(watch.wall_time(), flush=True)
    if not args.search:
        summary_line(figures)


def online(args: Any, res: Resources, game_seed: int) -> dict[str, str]:
    """The online table: every arm, every seed, on ``game_seed``; returns the summary figures. With ``--resume``, the
    runs already in ``<out>/evidence_curves.csv`` are kept and not run again."""
    runs = resumed(args.out / "evidence_curves.csv", game_seed, args.arms, args.seeds) if args.resume else []
    done = {(r.arm, r.seed) for r in runs}
    for arm in args.arms:
        for seed in range(args.seeds):
            if (arm, seed) in done:
                continue
            runs.append(train(arm, seed, game_seed, args.budget, args.eval_freq, res, CHOSEN[arm], args.stop_after))
            print(f"{arm} seed {seed}: success {runs[-1].success} ({runs[-1].wall_s:.0f} s)", flush=True)
            write_curves(runs, args.out, game_seed)
    figures = report(runs, args.budget, expert_return(game_seed))
    write_outputs(runs, args.out, game_seed)
    return figures


def resumed(path: Path, game_seed: int, arms: Sequence[str], seeds: int) -> list[Run]:
    """The runs of ``path`` (if it exists) that the table wants: its arms, seeds below ``seeds``; a file of another game
    seed is refused."""
    if not path.is_file():
        return []
    runs, found = read_curves(path)
    if found != game_seed:
        raise ValueError(f"--resume: {path} holds runs of game seed {found}, not {game_seed}; give another --out")
    kept = [r for r in runs if r.arm in arms and r.seed < seeds]
    print(f"resuming: {len(kept)} finished runs from {path}: {sorted((r.arm, r.seed) for r in kept)}", flush=True)
    return kept


def search(args: Any, res: Resources) -> dict[str, str]:
    """Each arm on every grid point, seeds 0 and 1, game seed 0; ranked by the area under the success curve."""
    from prior_wrappers.evaluation import LearningCurve

    for arm in args.arms:
        scores = []
        grid = SEARCH_GRIDS[algorithm(arm)]
        for hp in [grid[i] for i in args.grid] if args.grid else grid:
            runs = [train(arm, seed, 0, args.budget, args.eval_freq, res, hp) for seed in (0, 1)]
            auc = [LearningCurve(arm, r.seed, r.steps, r.success).area_under_curve() for r in runs]
            ret = [LearningCurve(arm, r.seed, r.steps, r.returns).area_under_curve(r.returns) for r in runs]
            scores.append((float(np.mean(auc)), float(np.mean(ret)), hp))
            print(f"{arm} {hp}: success AUC {np.mean(auc):.3f}, return AUC {np.mean(ret):.3f}", flush=True)
        best = max(scores, key=lambda s: (s[0], s[1]))
        print(f"best for {arm}: {best[2]}", flush=True)
    return {}


if __name__ == "__main__":
    main()
