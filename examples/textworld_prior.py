"""Wrap a generated TextWorld game in one line and watch the embedded LLM prior rank its commands.

Plays TextWorld's walkthrough (its expert's command at every step) and prints, before each step, the prior's top
commands (the wrapper's slot order) and the rank it gives the expert's command.

    python examples/textworld_prior.py [--seed 3] [--k 16] [--top 3] [--fast]

``--fast`` swaps SmolLM2 for a word-overlap FunctionPrior and MiniLM for the HashingEncoder (no model is loaded).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import gymnasium as gym
import numpy as np

import envs  # registers the text environments
from prior_wrappers import CachedPrior, FunctionPrior, HFPrior, LLMPriorWrapper


def word_overlap(prompt: str, commands: list[str]) -> list[float]:
    """--fast stand-in for the LLM: commands whose words appear in the text are likelier."""
    text = set(prompt.lower().replace(".", " ").split())
    return [float(len(set(c.split()) & text)) for c in commands]


def main(argv: list[str] | None = None) -> float:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seed", type=int, default=3, help="seed of the generated game")
    parser.add_argument("--k", type=int, default=16, help="candidate slots")
    parser.add_argument("--top", type=int, default=3, help="commands printed per step")
    parser.add_argument("--cache-dir", type=Path, default=None, help="where games go (default: the user cache)")
    parser.add_argument("--fast", action="store_true", help="no models: FunctionPrior and HashingEncoder")
    args = parser.parse_args(argv)

    games = envs.make_textworld_games(1, seed=args.seed, cache_dir=args.cache_dir)
    prior = FunctionPrior(word_overlap) if args.fast else HFPrior.default()
    env = LLMPriorWrapper(gym.make("prior_wrappers/TextWorld-v0", game_files=games), CachedPrior(prior), k=args.k,
                          encoder="hashing" if args.fast else "minilm")

    obs, info = env.reset(seed=0)
    print(f"task: {info['task']}")
    print("observation:", {key: value.shape for key, value in obs.items()})
    ranks, terminated = [], False
    while not terminated:
        expert = env.unwrapped.expert_command()
        slots = info["prior_candidates"]  # valid slots first, most likely first
        if expert not in slots:
            sys.exit(f"the expert's {expert!r} was dropped: {len(info['admissible_commands'])} commands > k; raise --k")
        ranks.append(slots.index(expert) + 1)
        top = ", ".join(f"{c!r} {np.exp(lp):.2f}" for c, lp in zip(slots[: args.top], obs["prior_logprobs"]))
        print(f"step {len(ranks)}: {len(slots)} commands; top {args.top}: {top}; expert {expert!r} ranked {ranks[-1]}")
        obs, reward, terminated, truncated, info = env.step(ranks[-1] - 1)
    print(f"won={info['won']} steps={len(ranks)} mean_expert_rank={np.mean(ranks):.2f} "
          f"prior_calls={env.prior_stats['calls']}")
    return float(np.mean(ranks))


if __name__ == "__main__":
    main()
