"""PPO-Prior on text Overcooked (Tomato salad) with the embedded SmolLM2 prior.

PPO-Prior adds α·KL(π ‖ p_LLM) to PPO's loss, and its policy starts from the prior (logits f(s,a) + log p_LLM).
α is annealed linearly to 0 over training; ``--alpha 0`` gives exactly PPO's updates; ``--uniform`` puts
UniformPrior in the wrapper (the baseline).

    python examples/ppo_prior.py [--steps 8192] [--alpha 0.1] [--uniform] [--fast]

``--fast`` swaps SmolLM2 for a keyword FunctionPrior and MiniLM for the HashingEncoder (no model is loaded).
"""

from __future__ import annotations

import argparse
import sys

import gymnasium as gym
from stable_baselines3.common.utils import LinearSchedule

import envs  # noqa: F401  (registers the text environments)
from prior_wrappers import CachedPrior, FunctionPrior, HFPrior, LLMPriorWrapper, UniformPrior
from prior_wrappers.sb3 import PPOPrior

RECIPE = {"serve bowl": 3.0, "chop tomato": 3.0, "in bowl": 3.0, "on cutting board": 2.0, "pick up tomato": 1.5,
          "take bowl": 1.0, "walk to": -1.0, "put down": -1.0, "chop nothing": -2.0}


def recipe_prior(prompt: str, commands: list[str]) -> list[float]:
    """--fast stand-in for the LLM: the tomato salad's steps as keywords."""
    return [max([w for key, w in RECIPE.items() if key in c], default=0.0) for c in commands]


def main(argv: list[str] | None = None) -> float:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=8192, help="environment (macro) steps of training")
    parser.add_argument("--n-steps", type=int, default=512, help="PPO rollout length")
    parser.add_argument("--alpha", type=float, default=0.1, help="initial weight of KL(π ‖ p_LLM)")
    parser.add_argument("--episodes", type=int, default=20, help="greedy evaluation episodes")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--uniform", action="store_true", help="the baseline: UniformPrior instead of the LLM")
    parser.add_argument("--fast", action="store_true", help="no models: FunctionPrior and HashingEncoder")
    args = parser.parse_args(argv)

    prior = UniformPrior() if args.uniform else FunctionPrior(recipe_prior) if args.fast else HFPrior.default()
    # history=0: the prompt is the current state only, so the prior's cache hits whenever a state comes back
    env = LLMPriorWrapper(gym.make("prior_wrappers/OvercookedTomato-v0"), CachedPrior(prior), k=8,
                          encoder="hashing" if args.fast else "minilm", history=0)
    # α → 0: the prior guides early exploration, and the policy may later leave its mistakes (SmolLM2 prefers putting
    # the chopped tomato back on the board to putting it in the bowl: with a constant α, greedy play loops there)
    alpha = LinearSchedule(args.alpha, 0.0, 1.0)
    model = PPOPrior("CandidatePolicy", env, alpha=alpha, n_steps=args.n_steps, n_epochs=4, seed=args.seed)
    model.learn(args.steps, progress_bar=sys.stderr.isatty())

    wins = 0
    for episode in range(args.episodes):
        obs, info = env.reset(seed=10_000 + episode)  # the same start cells in every run
        done = False
        while not done:
            action, _ = model.predict(obs, deterministic=True)
            obs, reward, terminated, truncated, info = env.step(action)
            done = terminated or truncated
        wins += info["is_success"]
    label = "PPO (uniform prior)" if args.uniform else f"PPO-Prior (alpha={args.alpha} -> 0)"
    print(f"{label} after {args.steps} steps: greedy success {wins / args.episodes:.2f} over {args.episodes} episodes; "
          f"prior cache hit rate {env.prior_stats['cache_hit_rate']:.2f}")
    return wins / args.episodes


if __name__ == "__main__":
    main()
