"""A wrong prior must slow a learner, not trap it: steps to 0.8 greedy success on a chain whose prior misleads.

The synthetic chain of the test suite (``tests/sb3/candidate_env.py``, no text, no LLM): 5 decisions (3 for PPO,
which explores only by its own policy) among 8 commands; one advances, the others leave the agent where it is; reward 1 at the end, 15 steps per episode. The
right command's features carry a direction that differs from room to room (a randomly initialised network does
not solve all five rooms by luck). The prior arms differ only in ``prior_logprobs``:

- ``uniform``: every command alike (``UniformPrior``), the baseline;
- ``correct``: the right command 2 nats above the others;
- ``misleading``: the right command and 5 wrong ones 12 nats below the other two (so the right one is not a unique
  outlier a Q-network fed with log p could pick out without trying it).

Each arm trains DQN-Prior / PPO-Prior with the library's defaults (``prior_floor``, ``prior_trust``) and, for the
misleading prior, with the reference's acting too (``prior_floor=0``, ``prior_trust=1.0``: pure posterior
sampling), evaluating greedy success on 20 episodes every 250 steps until it reaches 0.8 or the budget ends.

    python benchmarks/misleading_prior.py                       # seeds 5-9 (the defaults were chosen on 0-4)
    python benchmarks/misleading_prior.py --algos dqn --seeds 0 1 2 3 4 --budget 6000

Prints one row per run, the median steps per arm, and last
``misleading_vs_uniform_<algo>=<x> correct_vs_uniform_<algo>=<y> reference_trapped_<algo>=<runs>/<n>``
(ratios of median steps; a run that never reaches 0.8 counts as the budget).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests" / "sb3")]  # benchmarks.common; the synthetic chain

from benchmarks.common import Stopwatch, argument_parser, print_conditions, summary_line  # noqa: E402
from candidate_env import CandidateChainEnv, success_rate  # noqa: E402

from prior_wrappers.sb3 import DQNPrior, PPOPrior  # noqa: E402

CHAIN = dict(k=8, min_valid=8, length=5, feature_dim=8, wrong="stay", room_signals=True)
# PPO explores only by its own policy: with 5 rooms a uniform policy wins ~2% of 15-step episodes and the uniform
# baseline itself rarely learns within the budget, so PPO's chain has 3 rooms (uniform play wins ~28%)
LENGTH = {"dqn": 5, "ppo": 3}
PRIORS: dict[str, dict[str, Any]] = {
    "uniform": dict(prior_strength=0.0),
    "correct": dict(prior_strength=2.0),
    "misleading": dict(prior_strength=-12.0, decoys=5),
}
REFERENCE = dict(prior_floor=0.0, prior_trust=1.0)


def chain(prior: str, algo: str = "dqn") -> CandidateChainEnv:
    return CandidateChainEnv(**{**CHAIN, "length": LENGTH[algo]}, **PRIORS[prior])


def make_model(algo: str, prior: str, seed: int, **settings: Any) -> Any:
    if algo == "dqn":
        return DQNPrior("CandidatePolicy", chain(prior, algo), seed=seed, device="cpu", **settings)
    return PPOPrior("CandidatePolicy", chain(prior, algo), n_steps=256, n_epochs=4, seed=seed, device="cpu",
                    **settings)


def steps_to_success(model: Any, prior: str, budget: int, every: int = 250, threshold: float = 0.8) -> int | None:
    """Environment steps until greedy success on 20 evaluation episodes reaches ``threshold`` (None: never)."""
    algo = "dqn" if isinstance(model, DQNPrior) else "ppo"
    steps = 0
    while steps < budget:
        model.learn(every, reset_num_timesteps=False)
        steps += every
        if success_rate(model, chain(prior, algo), 20, seed=10_000) >= threshold:
            return steps
    return None


def main(argv: list[str] | None = None) -> str:
    parser = argument_parser(__doc__)
    parser.add_argument("--algos", nargs="+", choices=["dqn", "ppo"], default=["dqn", "ppo"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[5, 6, 7, 8, 9])
    parser.add_argument("--budget", type=int, default=8000, help="environment steps per run at most")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    print_conditions(seeds=args.seeds, budget=f"{args.budget} steps")
    arms = [("uniform", {}), ("correct", {}), ("misleading", {}), ("misleading", REFERENCE)]
    runs = [(algo, prior, settings, seed) for algo in args.algos for prior, settings in arms for seed in args.seeds]
    results: dict[tuple[str, str, bool], list[int | None]] = {}
    clock = Stopwatch()
    for algo, prior, settings, seed in tqdm(runs, desc="runs"):
        hit = steps_to_success(make_model(algo, prior, seed, **settings), prior, args.budget)
        results.setdefault((algo, prior, bool(settings)), []).append(hit)
        tqdm.write(f"{algo} {prior:<10} {'reference' if settings else 'defaults':<9} seed {seed}: "
                   f"{hit if hit is not None else f'> {args.budget}'} steps")
    summary = []
    for algo in args.algos:
        def median(prior: str, reference: bool = False) -> float:
            return float(np.median([h if h is not None else args.budget for h in results[(algo, prior, reference)]]))

        uniform, correct, misleading = median("uniform"), median("correct"), median("misleading")
        trapped = sum(h is None for h in results[(algo, "misleading", True)])
        print(f"{algo}: median steps to 0.8 greedy success: uniform {uniform:.0f}, correct {correct:.0f}, "
              f"misleading {misleading:.0f} (defaults), reference acting trapped in {trapped} of {len(args.seeds)}")
        summary += [f"misleading_vs_uniform_{algo}={misleading / uniform:.2f}",
                    f"correct_vs_uniform_{algo}={correct / uniform:.2f}",
                    f"reference_trapped_{algo}={trapped}/{len(args.seeds)}"]
    print(clock.wall_time())
    return summary_line(summary)


if __name__ == "__main__":
    main()
