"""`make demo`: DQN-Prior with the embedded SmolLM2 prior against plain DQN on text Overcooked (Tomato salad).

Both use the same candidate Q-network (MiniLM features of the observation and of each command), the same budget and
the same seeds; the only difference is the prior in the env wrapper (SmolLM2 vs uniform). Evaluation is greedy with
respect to the posterior, argmax Q + α·log p (for the uniform prior that is argmax Q): with argmax Q alone
(``--argmax-q``, the reference's choice) DQN-Prior's greedy policy can pick commands its prior-guided data never
tried, whose Q-values are extrapolated. Prints a table of greedy success
rate and return against environment steps, the LLM calls and cache hit rate, and writes
results/demo_learning_curve.png and results/demo_curves.csv.

    python examples/demo.py [--steps 3000] [--seeds 0 1 2] [--n-envs 4]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
from rich.console import Console
from rich.table import Table

import envs  # noqa: F401  (registers the text environments)
from prior_wrappers import CachedEncoder, CachedPrior, HFPrior, SentenceEncoder, UniformPrior, VecLLMPrior, make_text_vec_env
from prior_wrappers.evaluation import plot_curves, train_with_curve, write_curves_csv
from prior_wrappers.priors.embedded import cache_dir
from prior_wrappers.sb3 import DQNPrior

ENV_ID = "prior_wrappers/OvercookedTomato-v0"
K = 8


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=3000, help="environment (macro) steps per run")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--n-envs", type=int, default=4)
    parser.add_argument("--eval-every", type=int, default=500)
    parser.add_argument("--eval-episodes", type=int, default=10)
    parser.add_argument("--out", type=Path, default=Path("results"))
    parser.add_argument("--candidate-text", choices=["joint", "action"], default="action",
                        help="encode the command alone (default; 5x fewer texts to encode) or 'Observation: s Action: a'")
    parser.add_argument("--argmax-q", action="store_true",
                        help="greedy evaluation by argmax Q (the reference's) instead of the posterior's mode "
                        "argmax Q + α·log p; with the uniform prior the two are the same")
    args = parser.parse_args()
    # one thread: the Q-network's small matmuls slow down badly with two threads on a busy 2-core machine, and
    # the LLM is rarely called once its cache is warm
    torch.set_num_threads(1)
    console = Console()

    start = time.perf_counter()
    llm = CachedPrior(HFPrior.default())
    cache_file = cache_dir() / "demo" / "overcooked_tomato_scores.npz"
    reused = llm.load(cache_file) if cache_file.is_file() else 0
    encoder = CachedEncoder(SentenceEncoder.default())  # shared: the same text is never encoded twice
    console.print(f"loaded SmolLM2-135M-Instruct and MiniLM in {time.perf_counter() - start:.1f}s; {reused} cached prior scores reused")

    curves = []
    for label, prior in [("DQN-Prior (SmolLM2)", llm), ("DQN (uniform prior)", UniformPrior())]:
        for seed in args.seeds:
            def wrap(n: int, s: int) -> VecLLMPrior:
                return VecLLMPrior(
                    make_text_vec_env(ENV_ID, n, seed=s), prior, k=K, encoder=encoder, candidate_text=args.candidate_text, history=0, seed=s
                )

            model = DQNPrior(
                "CandidatePolicy", wrap(args.n_envs, seed), alpha=0.1, learning_starts=200, seed=seed,
                predict_with_prior=not args.argmax_q,
            )
            console.print(f"[bold]{label}[/bold], seed {seed}")
            curves.append(
                train_with_curve(
                    model,
                    wrap(1, 10_000 + seed),
                    args.steps,
                    label=label,
                    seed=seed,
                    eval_freq=args.eval_every,
                    n_eval_episodes=args.eval_episodes,
                    progress_bar=True,
                )
            )
    llm.save(cache_file)

    labels = list(dict.fromkeys(c.label for c in curves))
    table = Table(title=f"{ENV_ID}: greedy success rate / mean return (mean over seeds {args.seeds})")
    table.add_column("env steps", justify="right")
    for label in labels:
        table.add_column(label, justify="right")
    for i, steps in enumerate(curves[0].steps):
        row = [str(steps)]
        for label in labels:
            runs = [c for c in curves if c.label == label and i < len(c.steps)]
            row.append(f"{np.mean([c.success_rate[i] for c in runs]):.2f} / {np.mean([c.mean_return[i] for c in runs]):+.2f}")
        table.add_row(*row)
    console.print(table)
    for label in labels:
        reached = [c.steps_to(0.9) for c in curves if c.label == label]
        shown = ", ".join("never" if r is None else str(r) for r in reached)
        console.print(f"steps to 90% success, {label}: {shown}")
    info = llm.cache_info()
    console.print(
        f"LLM: {llm.misses} states scored by the model ({info['hits']} cache hits, hit rate {info['hit_rate']:.2f}); "
        f"total time {time.perf_counter() - start:.0f}s"
    )
    args.out.mkdir(parents=True, exist_ok=True)
    write_curves_csv(curves, args.out / "demo_curves.csv")
    plot_curves(curves, args.out / "demo_learning_curve.png", title="Overcooked Tomato salad: DQN-Prior vs DQN")
    console.print(f"wrote {args.out / 'demo_learning_curve.png'} and {args.out / 'demo_curves.csv'}")


if __name__ == "__main__":
    main()
