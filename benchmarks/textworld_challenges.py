"""Sample efficiency on TextWorld's own challenge games, where uniform exploration never succeeds.

Online: DQN vs DQN-Prior and PPO vs PPO-Prior on tw-simple, tw-cooking at two difficulties and tw-treasure_hunter,
with tw-coin_collector (pure navigation: a language prior has nothing to offer) as the control. The prior is the
embedded SmolLM2-135M-Instruct with two expert walkthroughs of *other* games of the family in its prompt; the baseline
is the same algorithm, network, budget and seed with ``UniformPrior``. All seeds train on the family's first game
(``--game-seed`` picks other games); greedy
evaluation (the posterior's mode, ``--argmax-q`` for argmax Q) at fixed step counts. Reported per family: environment
steps to a win and to 25% / 50% of the game's points (a run that never gets there counts as the budget and is
printed as a lower bound, ``>=``), and the area under the normalised-return curve.
Generalisation: DQN on N games of a family, greedy success on them and on M unseen games of it.
Offline: CQL vs CQL-Prior on nested datasets of an expert/random mixture; the smallest dataset reaching 90% of the
expert's return.

    python benchmarks/textworld_challenges.py --quick                  # <= 10 min on 2 cores
    python benchmarks/textworld_challenges.py                          # the full run (see README for its wall time)
    python benchmarks/textworld_challenges.py --game-seed 7            # games nobody tuned on
    python benchmarks/textworld_challenges.py --families cooking coin --parts online
    python benchmarks/textworld_challenges.py --families cooking-easy --algos DQN --baseline-steps 6000  # measured ratios
    python benchmarks/textworld_challenges.py --parts offline --offline-family cooking --offline-episodes 1 2 4 8 16
    python benchmarks/textworld_challenges.py --parts offline --offline-family cooking --offline-episodes 1 4 16 \
        --offline-behavior-threshold 0.3                                # CQL-Prior with the data's support

Every finished run is kept in ``<out>/textworld_challenges_runs-*.jsonl``: a rerun with the same settings resumes
where the last one stopped (and only reports, if everything is there). Writes ``<out>/textworld_challenges_*.csv``
and ``*.png`` (default ``results/``, which git ignores) and ends with
``online_steps_ratio_<family>=<baseline/prior> ... offline_data_ratio=<x> unseen_success_prior=<x>
unseen_success_baseline=<y>``.
"""

from __future__ import annotations

import csv
import sys
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # `envs` and this folder's challenge_runs

from benchmarks.challenge_runs import Config, family_task  # noqa: E402
from benchmarks.common import Stopwatch, argument_parser, print_conditions, summary_line  # noqa: E402
from prior_wrappers.evaluation import LearningCurve, seed_count  # noqa: E402

THRESHOLDS = {"win": 1.0, "50%": 0.5, "25%": 0.25}  # of the game's points (a win scores them all)


def quick_config() -> Config:
    return Config(
        families=["simple", "coin"], seeds=[0, 1], algos=["DQN"], steps=300, eval_at=[0, 50, 100, 200, 300],
        uniform_episodes=4, general_families=["simple"], general_seeds=[0], general_train_games=2, general_unseen_games=2,
        general_steps=300, offline_family="simple", offline_episodes=[1, 2, 4], offline_gradient_steps=300,
        offline_seeds=[0],
    )


def curves_of(result: dict[str, Any]) -> list[tuple[dict[str, Any], LearningCurve]]:
    """(row, curve with returns normalised by the game's points) per online run."""
    points = result["max_score"]
    out = []
    for row in result["online"]:
        curve = LearningCurve(row["label"], row["seed"], list(row["steps"]), list(row["success_rate"]),
                              [r / points for r in row["mean_return"]])
        out.append((row, curve))
    return out


def steps_to(curve: LearningCurve, threshold: float) -> int | None:
    return curve.steps_to(1.0) if threshold >= 1.0 else curve.steps_to_return(threshold)


def summarize(values: Sequence[int | None], budget: int) -> tuple[float, bool, str]:
    """Mean steps (never = budget), whether any run never got there, and the text."""
    filled = [budget if v is None else v for v in values]
    bound = any(v is None for v in values)
    shown = ", ".join(f">={budget}" if v is None else str(v) for v in values)
    return float(np.mean(filled)), bound, f"{'>=' if bound else ''}{np.mean(filled):.0f} [{shown}]"


def ratio_text(base: tuple[float, bool, str], prior: tuple[float, bool, str]) -> str:
    (b, b_bound, _), (p, p_bound, _) = base, prior
    if b_bound and p_bound:
        return "n/a (neither)"
    if p == 0:  # the untrained prior's greedy policy is already there: no training step needed
        return "inf (prior at step 0)" if b > 0 else "1.0"
    ratio = b / p
    return f"{'>=' if b_bound else '<=' if p_bound else ''}{ratio:.1f}"


def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows)]
    line = lambda r: "  ".join(str(x).ljust(w) for x, w in zip(r, widths))  # noqa: E731
    return "\n".join([line(header), line(["-" * w for w in widths])] + [line(r) for r in rows])


def online_report(results: list[dict[str, Any]], cfg: Config) -> tuple[str, dict[str, str]]:
    rows, ratios = [], {}
    for result in results:
        if "online" not in result:
            continue
        family, runs = result["preset"], curves_of(result)
        for algo in cfg.algos:
            arms = {prior: [c for r, c in runs if r["algo"] == algo and r["prior"] == prior] for prior in (True, False)}
            if not arms[True] or not arms[False]:
                continue
            budget = {p: max(r.get("budget", cfg.steps) for r, _ in runs if r["algo"] == algo and r["prior"] == p)
                      for p in arms}
            for name, threshold in THRESHOLDS.items():
                base = summarize([steps_to(c, threshold) for c in arms[False]], budget[False])
                prior = summarize([steps_to(c, threshold) for c in arms[True]], budget[True])
                ratio = ratio_text(base, prior)
                if name == "win":
                    ratios[f"{'online' if algo == 'DQN' else 'ppo'}_steps_ratio_{family}"] = ratio.split(" ")[0]
                rows.append([family, algo, name, base[2], prior[2], ratio])
            # over the common budget: a longer baseline run counts only its first cfg.steps steps here
            auc = {p: np.mean([c.area_under_curve(c.mean_return, cfg.steps) for c in arms[p]]) for p in arms}
            rows.append([family, algo, "AUC", f"{auc[False]:.2f}", f"{auc[True]:.2f}", ""])
    header = ["family", "algo", "threshold", "baseline (uniform)", "with prior (SmolLM2, 2-shot)", "ratio"]
    return table(header, rows), ratios


def uniform_report(results: list[dict[str, Any]]) -> str:
    rows = [[r["preset"], f"{r['uniform'][0]:.2f}", f"{r['uniform'][1]:.2f}", str(r["llm"]["scored"]),
             f"{r['llm']['seconds']:.0f}"] for r in results if "uniform" in r]
    return table(["family", "uniform success", "uniform norm. return", "LLM states scored", "worker s"], rows)


def general_report(results: list[dict[str, Any]]) -> tuple[str, float, float]:
    rows, unseen = [], {True: [], False: []}
    for r in results:
        for prior in (True, False):
            runs = [g for g in r.get("general", []) if g["prior"] == prior]
            if runs:
                train, test = np.mean([g["train"] for g in runs]), np.mean([g["unseen"] for g in runs])
                unseen[prior].append(test)
                rows.append([r["preset"], "DQN-Prior" if prior else "DQN", f"{train:.2f}", f"{test:.2f}"])
    text = table(["family", "method", "training games", "unseen games"], rows)
    mean = lambda xs: float(np.mean(xs)) if xs else float("nan")  # noqa: E731
    return text, mean(unseen[True]), mean(unseen[False])


def offline_report(results: list[dict[str, Any]]) -> tuple[str, str]:
    result = next((r for r in results if "offline" in r), None)
    if result is None:
        return "", "n/a"
    rows, threshold = result["offline"], 0.9 * result["expert_return"]
    sizes = sorted({r["episodes"] for r in rows})
    lines, smallest = [], {}
    for n in sizes:
        cells = [str(n), str(next(r["transitions"] for r in rows if r["episodes"] == n))]
        for arm in ("CQL-Prior", "CQL"):
            rets = [r["ret"] for r in rows if r["episodes"] == n and r["arm"] == arm]
            succ = [r["success"] for r in rows if r["episodes"] == n and r["arm"] == arm]
            cells.append(f"{np.mean(rets):+.2f} (succ {np.mean(succ):.2f})")
            if np.mean(rets) >= threshold and arm not in smallest:
                smallest[arm] = n
        lines.append(cells)
    text = table(["episodes", "transitions", "CQL-Prior", "CQL"], lines)
    cover = result.get("coverage")
    if cover:
        text += (f"\nthe walkthrough's command is among the prior's candidates in {cover['inside']} of its {cover['states']} "
                 f"states (prior's rank of it: {cover['expert_ranks']}; candidates kept: {cover['candidates']}; the "
                 "data's support, where on, adds to them)")
    text += f"\nexpert return {result['expert_return']:.1f}, threshold 90% = {threshold:.2f}; smallest dataset: " + \
        ", ".join(f"{arm} {smallest.get(arm, f'>{sizes[-1]}')}" for arm in ("CQL-Prior", "CQL"))
    base, prior = smallest.get("CQL"), smallest.get("CQL-Prior")
    if base is None and prior is None:
        ratio = "n/a"
    elif prior is None:
        ratio = f"<={base / sizes[-1]:.2f}"
    elif base is None:
        ratio = f">={sizes[-1] / prior:.1f}"
    else:
        ratio = f"{base / prior:.1f}"
    return text, ratio


def write_csv(results: list[dict[str, Any]], out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "textworld_challenges_online.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["family", "algo", "prior", "seed", "game", "steps", "success", "normalised_return"])
        for r in results:
            for row, curve in curves_of(r) if "online" in r else []:
                for s, succ, ret in zip(curve.steps, curve.success_rate, curve.mean_return):
                    w.writerow([r["preset"], row["algo"], row["prior"], row["seed"], row["game"], s, succ, f"{ret:.4f}"])
    offline = [r for r in results if "offline" in r]
    if offline:
        with open(out / "textworld_challenges_offline.csv", "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(offline[0]["offline"][0]))
            w.writeheader()
            w.writerows(offline[0]["offline"])


def plot(results: list[dict[str, Any]], cfg: Config, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    online = [r for r in results if "online" in r]
    if not online:
        return
    fig, axes = plt.subplots(len(cfg.algos), len(online), figsize=(3.2 * len(online), 2.8 * len(cfg.algos)),
                             squeeze=False, sharey=True)
    for j, r in enumerate(online):
        runs = curves_of(r)
        for i, algo in enumerate(cfg.algos):
            ax = axes[i][j]
            for prior, color in ((True, "tab:blue"), (False, "tab:gray")):
                cs = [c for row, c in runs if row["algo"] == algo and row["prior"] == prior]
                if not cs:
                    continue
                values = np.array([c.mean_return for c in cs])
                ax.step(cs[0].steps, values.mean(0), where="post", color=color,
                        label=f"{algo}{'-Prior' if prior else ''} ({seed_count(len(cs))})")
                ax.fill_between(cs[0].steps, values.min(0), values.max(0), step="post", color=color, alpha=0.2)
            ax.set_title(f"tw-{r['preset']} ({algo})", fontsize=9)
            longest = max([row.get("budget", cfg.steps) for row, _ in runs if row["algo"] == algo] or [cfg.steps])
            if longest > cfg.steps:  # linear up to the common budget, logarithmic beyond
                ax.set_xscale("symlog", linthresh=cfg.steps)
                ticks = [0, cfg.steps // 2, cfg.steps] + [t for t in (2 * cfg.steps, 5 * cfg.steps, 10 * cfg.steps,
                                                                       20 * cfg.steps) if t <= longest]
                ax.set_xticks(ticks, [f"{t:,}" for t in ticks], fontsize=7)
                ax.axvline(cfg.steps, color="tab:blue", lw=0.8, ls=":")  # where the prior arm's budget ends
            ax.set_ylim(-0.02, 1.02)
            ax.grid(alpha=0.3)
            if i == len(cfg.algos) - 1:
                ax.set_xlabel("environment steps")
            if j == 0:
                ax.set_ylabel("greedy return / max score")
            if ax.get_legend_handles_labels()[0]:
                ax.legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    fig.savefig(out / "textworld_challenges_online.png", dpi=110)
    plt.close(fig)


def main(argv: Sequence[str] | None = None) -> str:
    parser = argument_parser(__doc__)
    parser.add_argument("--quick", action="store_true", help="the short configuration (<= 10 min on 2 cores)")
    parser.add_argument("--families", nargs="+", help="override the online families (presets)")
    parser.add_argument("--seeds", type=int, nargs="+", help="override the seeds")
    parser.add_argument("--algos", nargs="+", choices=["DQN", "PPO"])
    parser.add_argument("--steps", type=int, help="override the online budget")
    parser.add_argument("--baseline-steps", type=int,
                        help="a longer budget for the uniform arm, so that a large ratio is measured, not bounded")
    parser.add_argument("--prior-steps", type=int, help="a longer budget for the prior arm (as --baseline-steps)")
    parser.add_argument("--parts", nargs="+", default=["online", "offline"], choices=["online", "offline"],
                        help="online includes the generalisation runs of cfg.general_families")
    parser.add_argument("--offline-family", help="override the offline part's preset")
    parser.add_argument("--offline-episodes", type=int, nargs="+", help="override the offline dataset sizes (episodes)")
    parser.add_argument("--offline-prior-mass", type=float,
                        help="CQL-Prior's candidates: the smallest set holding this prior mass (0: every valid command)")
    parser.add_argument("--offline-behavior-threshold", type=float, metavar="TAU",
                        help="CQL-Prior's candidates also take the data's support (discrete BCQ's rule, e.g. 0.3)")
    parser.add_argument("--offline-conservative", choices=["logsumexp", "prior_weighted"],
                        help="CQL-Prior's penalty: log Σ exp Q, or log Σ p̃·exp Q (the prior as CQL's ρ)")
    parser.add_argument("--game-seed", type=int, default=0, help="first seed of every generated game")
    parser.add_argument("--argmax-q", action="store_true", help="greedy evaluation by argmax Q")
    parser.add_argument("--report-only", action="store_true", help="report the finished runs in --out, run nothing")
    parser.add_argument("--jobs", type=int, default=2, help="worker processes (one torch thread each)")
    parser.add_argument("--out", type=Path, default=Path("results"))
    args = parser.parse_args(argv)
    cfg = quick_config() if args.quick else Config()
    cfg.game_seed, cfg.argmax_q = args.game_seed, args.argmax_q
    cfg.families = args.families or cfg.families
    cfg.seeds = args.seeds or cfg.seeds
    cfg.algos = args.algos or cfg.algos
    cfg.offline_family = args.offline_family or cfg.offline_family
    cfg.offline_episodes = sorted(args.offline_episodes or cfg.offline_episodes)
    if args.offline_prior_mass is not None:
        cfg.offline_prior_mass = args.offline_prior_mass or None
    cfg.offline_conservative = args.offline_conservative or cfg.offline_conservative
    cfg.offline_behavior_threshold = args.offline_behavior_threshold
    cfg.baseline_steps = args.baseline_steps or cfg.baseline_steps
    cfg.prior_steps = args.prior_steps or cfg.prior_steps
    if args.steps:
        cfg.steps = args.steps
        cfg.eval_at = sorted({p for p in cfg.eval_at if p < args.steps} | {args.steps})
    print_conditions(seeds=cfg.seeds, game_seed=cfg.game_seed, jobs=args.jobs)
    clock = Stopwatch()
    tasks = [(f, False) for f in cfg.families] if "online" in args.parts else []
    tasks += [(cfg.offline_family, True)] if "offline" in args.parts else []
    results = []
    with ProcessPoolExecutor(max_workers=args.jobs) as pool:
        futures = [pool.submit(family_task, preset, cfg, offline, args.out, args.report_only) for preset, offline in tasks]
        for future in tqdm(as_completed(futures), total=len(futures), desc="families", unit="family", file=sys.stderr):
            results.append(future.result())
    results.sort(key=lambda r: (cfg.families + [cfg.offline_family]).index(r["preset"]) + ("offline" in r) * 100)
    online_text, ratios = online_report(results, cfg)
    general_text, unseen_prior, unseen_base = general_report(results)
    offline_text, offline_ratio = offline_report(results)
    print(f"\nconfig: {cfg}\n")
    print("Uniform play and LLM work per family\n" + uniform_report(results) + "\n")
    longer = f", the baseline's {cfg.baseline_steps}" if (cfg.baseline_steps or 0) > cfg.steps else ""
    longer += f", the prior arm's {cfg.prior_steps}" if (cfg.prior_steps or 0) > cfg.steps else ""
    print(f"Online: environment steps to each threshold (mean over seeds {cfg.seeds}, [per seed]; budget {cfg.steps}"
          f"{longer}; AUC over the first {cfg.steps} steps)")
    print(online_text + "\n")
    if general_text.count("\n") > 1:
        print(f"Generalisation (DQN, {cfg.general_train_games} training games, {cfg.general_unseen_games} unseen, "
              f"{cfg.general_steps} steps): greedy success rate\n{general_text}\n")
    if offline_text:
        support = f"prior mass {cfg.offline_prior_mass}" if cfg.offline_prior_mass else "every valid command"
        if cfg.offline_behavior_threshold:
            support += f" ∪ the data's support (π_b ≥ {cfg.offline_behavior_threshold}·max)"
        print(f"Offline, tw-{cfg.offline_family} (expert/random mix p={cfg.offline_expert_prob}, "
              f"{cfg.offline_gradient_steps} gradient steps, seeds {cfg.offline_seeds}; CQL-Prior's candidates: "
              f"{support}, penalty {cfg.offline_conservative}): greedy return\n{offline_text}\n")
    write_csv(results, args.out)
    plot(results, cfg, args.out)
    print(f"{clock.wall_time()}; CSV and PNG in {args.out}/")
    return summary_line({**ratios, "offline_data_ratio": offline_ratio, "unseen_success_prior": f"{unseen_prior:.2f}",
                         "unseen_success_baseline": f"{unseen_base:.2f}"})


if __name__ == "__main__":
    main()
