"""Batching across environments: VecLLMPrior (one prior call per vector step) vs 8 independently wrapped envs.

8 envs x 50 steps of Overcooked Tomato salad with the embedded SmolLM2 prior, the same random (seeded) slot choices
for both setups, each with its own fresh exact cache in front of the same model.

    python benchmarks/vec_batching.py [--n-envs 8] [--steps 50] [--encoder hashing]

Prints a table, then last: ``batched_speedup=<x> prior_calls_per_vector_step=<y> cache_hit_rate=<z>``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import gymnasium as gym
import numpy as np
from stable_baselines3.common.vec_env import DummyVecEnv
from tqdm import trange

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks.common, envs, prior_wrappers: the checkout's

import envs  # noqa: E402, F401  (registers the text environments)
from benchmarks.common import Stopwatch, argument_parser, load_prior, print_conditions, summary_line  # noqa: E402
from prior_wrappers import CachedPrior, HFPrior, LLMPriorWrapper, VecLLMPrior, make_text_vec_env  # noqa: E402
from prior_wrappers.slot_features import EncoderSpec  # noqa: E402

ENV_ID = "prior_wrappers/OvercookedTomato-v0"
K = 8


class CountingPrior(CachedPrior):
    """A fresh exact cache that also counts the calls that reach it."""

    def __init__(self, prior: HFPrior) -> None:
        super().__init__(prior)
        self.calls = 0

    def score(self, prompts, candidates, **kwargs):
        self.calls += 1
        return super().score(prompts, candidates, **kwargs)


def run(venv, n_envs: int, steps: int, seed: int, label: str) -> float:
    rng = np.random.default_rng(seed)
    venv.seed(seed)
    obs = venv.reset()
    clock = Stopwatch()
    for _ in trange(steps, desc=label, leave=False):
        valid = obs["action_mask"].astype(bool)
        actions = np.array([rng.choice(np.flatnonzero(v)) for v in valid])
        obs, _, _, _ = venv.step(actions)
    return clock.seconds


def main() -> None:
    parser = argument_parser(__doc__)
    parser.add_argument("--n-envs", type=int, default=8)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--encoder", default="hashing", help="candidate features: hashing (default), minilm, none")
    args = parser.parse_args()
    encoder: EncoderSpec = None if args.encoder == "none" else args.encoder

    hf = load_prior()
    hf.score(["Warm-up prompt. Action:"], [["wait"]])
    results = {}
    for label in ("independent", "batched"):
        prior = CountingPrior(hf)
        if label == "batched":
            venv = VecLLMPrior(make_text_vec_env(ENV_ID, args.n_envs), prior, k=K, encoder=encoder, history=0)
        else:
            venv = DummyVecEnv(
                [lambda: LLMPriorWrapper(gym.make(ENV_ID), prior, k=K, encoder=encoder, history=0)] * args.n_envs
            )
        seconds = run(venv, args.n_envs, args.steps, args.seed, label)
        results[label] = (seconds, prior.calls, prior.hit_rate, prior.misses)

    print_conditions(env=ENV_ID, n_envs=args.n_envs, steps=args.steps, device=hf.device, seed=args.seed)
    print(f"{'setup':<34}{'seconds':>10}{'prior calls':>13}{'calls/step':>12}{'states scored':>15}{'hit rate':>10}")
    for label, name in [("independent", f"{args.n_envs} x LLMPriorWrapper (DummyVecEnv)"), ("batched", "VecLLMPrior")]:
        seconds, calls, hit_rate, misses = results[label]
        per_step = calls / (args.steps + 1)  # + the reset
        print(f"{name:<34}{seconds:>10.2f}{calls:>13}{per_step:>12.2f}{misses:>15}{hit_rate:>10.2f}")
    ind, bat = results["independent"], results["batched"]
    summary_line({"batched_speedup": f"{ind[0] / bat[0]:.2f}",
                  "prior_calls_per_vector_step": f"{bat[1] / (args.steps + 1):.2f}", "cache_hit_rate": f"{bat[2]:.2f}"})


if __name__ == "__main__":
    main()
