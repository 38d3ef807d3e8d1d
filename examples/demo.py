"""`make demo`: on a TextWorld challenge game that random play never wins, DQN-Prior against plain DQN.

The prior is the embedded SmolLM2-135M-Instruct with two expert walkthroughs of *other* games of the same family in
its prompt (the LLM stays frozen). A third learner gets the same two walkthroughs without an LLM: a ``BCPrior``
(MiniLM features + an MLP) trained on them, so that the table shows what the walkthroughs do by themselves. All
learners have the same candidate Q-network (MiniLM features of the state and of each command), the same budget and
seed; the only difference is the prior in the env wrapper (SmolLM2 2-shot, BCPrior, uniform).
Greedy evaluation (the posterior's mode, argmax Q + α·log p; for the uniform prior that is argmax Q) at fixed step
counts. Prints the greedy return (as a fraction of the game's points) and wins against environment steps, and writes
results/demo_learning_curve.png and results/demo_curves.csv.

    python examples/demo.py [--preset cooking-easy] [--steps 300] [--seed 0] [--game-seed 0]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
from rich.console import Console
from rich.table import Table
from stable_baselines3.common.callbacks import BaseCallback
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # `envs`, when run from anywhere

from envs import TextWorldEnv, make_challenge_games  # noqa: E402
from prior_wrappers import (  # noqa: E402
    BCPrior,
    CachedEncoder,
    CachedPrior,
    HFPrior,
    SentenceEncoder,
    UniformPrior,
    VecLLMPrior,
    make_text_vec_env,
)
from prior_wrappers.demonstrations import Demonstrations  # noqa: E402
from prior_wrappers.evaluation import LearningCurve, evaluate_into, plot_curves, write_curves_csv  # noqa: E402
from prior_wrappers.priors.embedded import cache_dir  # noqa: E402
from prior_wrappers.sb3 import DQNPrior  # noqa: E402

K = 48  # more slots than any state has commands: the baseline sees every admissible command too


class EvaluateAt(BaseCallback):
    """Greedy evaluation (one episode: game and greedy policy are deterministic) at the given step counts."""

    def __init__(self, curve: LearningCurve, eval_env: VecLLMPrior, points: list[int], bar) -> None:
        super().__init__()
        self.curve, self.eval_env, self.points, self.bar = curve, eval_env, sorted(points), bar

    def _on_step(self) -> bool:
        self.bar.update(1)
        while self.points and self.num_timesteps >= self.points[0]:
            self.points.pop(0)
            evaluate_into(self.curve, self.model, self.eval_env, self.num_timesteps, 1)
        return True


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="cooking-easy", help="TextWorld challenge preset (envs.CHALLENGE_PRESETS)")
    parser.add_argument("--steps", type=int, default=300, help="environment steps per learner")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--game-seed", type=int, default=0, help="seed of the generated game (walkthroughs: others)")
    parser.add_argument("--out", type=Path, default=Path("results"))
    # float32 by default, so that the table is the same on every CPU ("auto" is bf16 where the CPU has native bf16)
    parser.add_argument("--dtype", default="float32", help="the LLM's dtype: float32 (default), auto, bfloat16")
    args = parser.parse_args()
    # one thread: the Q-network's small matmuls slow down badly with two threads on a busy 2-core machine
    torch.set_num_threads(1)
    console = Console()
    start = time.perf_counter()

    [game] = make_challenge_games(args.preset, 1, seed=args.game_seed)
    demo_games = make_challenge_games(args.preset, 2, seed=args.game_seed + 200_000)
    llm = CachedPrior(HFPrior.default(dtype=args.dtype))
    cache_file = llm.file_for(cache_dir() / "demo", f"tw-{args.preset}-g{args.game_seed}")  # one per prior
    reused = llm.load(cache_file) if cache_file.is_file() else 0
    encoder = CachedEncoder(SentenceEncoder.default())

    def make_env() -> TextWorldEnv:
        return TextWorldEnv([game], max_episode_steps=100, observe_state=False)

    demonstrations = Demonstrations.from_expert(
        TextWorldEnv(demo_games, max_episode_steps=100, observe_state=False), n_episodes=2, seed=args.game_seed,
        shots=2, max_tokens=1400, count_tokens=lambda text: len(llm.tokenizer(text)["input_ids"]),
    )
    demonstrations.check_no_leakage([str(game.resolve())])
    _, info = make_env().reset(seed=0)
    points = float(info["max_score"] or 1)
    console.print(
        f"tw-{args.preset} game {game.name}: {points:.0f} points to win; walkthroughs of {len(demonstrations)} other "
        f"games in the prompt; models loaded in {time.perf_counter() - start:.0f}s ({reused} cached LLM scores reused); "
        f"LLM in {str(next(llm.prior.model.parameters()).dtype).removeprefix('torch.')}"
    )

    watch = time.perf_counter()
    demos_only = CachedPrior(BCPrior(seed=args.game_seed).fit(demonstrations, history=0))
    console.print(f"BCPrior trained on the same {len(demonstrations)} walkthroughs in {time.perf_counter() - watch:.0f}s",
                  highlight=False)
    curves = []
    learners = [("DQN-Prior (SmolLM2, 2-shot)", llm), ("DQN-Prior (BCPrior, same walkthroughs, no LLM)", demos_only),
                ("DQN (uniform prior)", UniformPrior())]  # fmt: skip
    for label, prior in learners:
        def wrap(seed: int) -> VecLLMPrior:
            return VecLLMPrior(
                make_text_vec_env(make_env, 1, seed=seed), prior, k=K, encoder=encoder, candidate_text="action",
                history=0, demonstrations=demonstrations if prior is llm else None, seed=seed,
            )

        model = DQNPrior(
            "CandidatePolicy", wrap(args.seed), alpha=0.1, learning_starts=50, train_freq=1, batch_size=32, gamma=0.9,
            predict_with_prior=True, seed=args.seed,
        )
        curve = LearningCurve(label, args.seed)
        eval_env = wrap(10_000 + args.seed)
        evaluate_into(curve, model, eval_env, 0, 1)
        eval_points = [p for p in (25, 50, 100, 150, 200, 300, 400, 600, 800, 1000) if p < args.steps] + [args.steps]
        with tqdm(total=args.steps, desc=label, unit="step", file=sys.stderr) as bar:
            model.learn(args.steps, callback=EvaluateAt(curve, eval_env, eval_points, bar))
        curve.mean_return = [r / points for r in curve.mean_return]
        curves.append(curve)
    llm.save(cache_file)

    table = Table(title=f"tw-{args.preset}: greedy return / max score (win?) against environment steps, seed {args.seed}")
    table.add_column("env steps", justify="right")
    for c in curves:
        table.add_column(c.label, justify="right")
    for i, steps in enumerate(curves[0].steps):
        table.add_row(str(steps), *[f"{c.mean_return[i]:.2f} ({'won' if c.success_rate[i] else '-'})" for c in curves])
    console.print(table)
    for c in curves:
        first = c.steps_to(1.0)
        half = c.steps_to_return(0.5)
        console.print(
            f"{c.label}: first greedy win after {first if first is not None else f'>{args.steps}'} steps, "
            f"half the points after {half if half is not None else f'>{args.steps}'}"
        )
    info = llm.cache_info()
    console.print(
        f"LLM: {info['misses']} states scored by the model, {info['hits']} cache hits; "
        f"total time {time.perf_counter() - start:.0f}s"
    )
    args.out.mkdir(parents=True, exist_ok=True)
    write_curves_csv(curves, args.out / "demo_curves.csv")
    title = f"tw-{args.preset}: DQN-Prior vs DQN, seed {args.seed}"
    plot_curves(curves, args.out / "demo_learning_curve.png", title=title,
                values="mean_return", ylabel="greedy return / max score")
    console.print(f"wrote {args.out / 'demo_learning_curve.png'} and {args.out / 'demo_curves.csv'}")


if __name__ == "__main__":
    main()
