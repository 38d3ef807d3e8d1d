"""Stock sb3-contrib MaskablePPO on text Overcooked (Tomato salad), wrapped with the embedded LLM prior.

The wrapper turns the text game into SB3 spaces: a Dict observation (the prior's log-probabilities, the action
mask, MiniLM features of every candidate command) and Discrete(k) slot actions. MaskablePPO reads the mask from
``env.action_masks()`` and its ``MultiInputPolicy`` sees the prior as one more input; no code of ours trains it.

    python examples/maskable_ppo.py [--steps 8192] [--episodes 20] [--fast]

``--fast`` swaps SmolLM2 for a keyword FunctionPrior and MiniLM for the HashingEncoder (no model is loaded).
"""

from __future__ import annotations

import argparse
import sys

import gymnasium as gym
from sb3_contrib import MaskablePPO

import envs  # noqa: F401  (registers the text environments)
from prior_wrappers import CachedPrior, FunctionPrior, HFPrior, LLMPriorWrapper

RECIPE = {"serve bowl": 3.0, "chop tomato": 3.0, "in bowl": 3.0, "on cutting board": 2.0, "pick up tomato": 1.5,
          "take bowl": 1.0, "walk to": -1.0, "put down": -1.0, "chop nothing": -2.0}


def recipe_prior(prompt: str, commands: list[str]) -> list[float]:
    """--fast stand-in for the LLM: the tomato salad's steps as keywords."""
    return [max([w for key, w in RECIPE.items() if key in c], default=0.0) for c in commands]


def main(argv: list[str] | None = None) -> float:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=8192, help="environment (macro) steps of training")
    parser.add_argument("--n-steps", type=int, default=512, help="PPO rollout length")
    parser.add_argument("--episodes", type=int, default=20, help="greedy evaluation episodes")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--fast", action="store_true", help="no models: FunctionPrior and HashingEncoder")
    args = parser.parse_args(argv)

    prior = FunctionPrior(recipe_prior) if args.fast else HFPrior.default()
    # history=0: the prompt is the current state only, so the prior's cache hits whenever a state comes back
    env = LLMPriorWrapper(gym.make("prior_wrappers/OvercookedTomato-v0"), CachedPrior(prior), k=8,
                          encoder="hashing" if args.fast else "minilm", history=0)
    model = MaskablePPO("MultiInputPolicy", env, n_steps=args.n_steps, batch_size=64, seed=args.seed)
    model.learn(args.steps, progress_bar=sys.stderr.isatty())

    wins = 0
    for episode in range(args.episodes):
        obs, info = env.reset(seed=10_000 + episode)  # the same start cells in every run
        done = False
        while not done:
            action, _ = model.predict(obs, action_masks=env.action_masks(), deterministic=True)
            obs, reward, terminated, truncated, info = env.step(action)
            done = terminated or truncated
        wins += info["is_success"]
    print(f"MaskablePPO after {args.steps} steps: greedy success {wins / args.episodes:.2f} "
          f"over {args.episodes} episodes")
    return wins / args.episodes


if __name__ == "__main__":
    main()
