"""Four text Overcooked envs in one SB3 vector env, with one batched LLM prior call per vector step.

``make_text_vec_env`` puts the text envs in a ``DummyVecEnv`` (``SubprocVecEnv`` works too: the LLM stays in this
process); ``VecLLMPrior`` scores the states of all sub-envs together. Any SB3 algorithm trains on it: stock PPO
(``--algo ppo``: an empty slot j runs valid slot j mod n, so its buffer records real transitions) or DQN-Prior (``--algo dqn-prior``).

    python examples/vec_env.py [--algo dqn-prior] [--n-envs 4] [--steps 3000] [--fast]

``--fast`` swaps SmolLM2 for a keyword FunctionPrior and MiniLM for the HashingEncoder (no model is loaded).
"""

from __future__ import annotations

import argparse
import sys

from stable_baselines3 import PPO

import envs  # noqa: F401  (registers the text environments)
from prior_wrappers import CachedPrior, FunctionPrior, HFPrior, VecLLMPrior, make_text_vec_env
from prior_wrappers.sb3 import DQNPrior

RECIPE = {"serve bowl": 3.0, "chop tomato": 3.0, "in bowl": 3.0, "on cutting board": 2.0, "pick up tomato": 1.5,
          "take bowl": 1.0, "walk to": -1.0, "put down": -1.0, "chop nothing": -2.0}


def recipe_prior(prompt: str, commands: list[str]) -> list[float]:
    """--fast stand-in for the LLM: the tomato salad's steps as keywords."""
    return [max([w for key, w in RECIPE.items() if key in c], default=0.0) for c in commands]


def main(argv: list[str] | None = None) -> float:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--algo", choices=["dqn-prior", "ppo"], default="dqn-prior")
    parser.add_argument("--n-envs", type=int, default=4)
    parser.add_argument("--steps", type=int, default=3000, help="environment steps, summed over the sub-envs")
    parser.add_argument("--episodes", type=int, default=20, help="greedy evaluation episodes")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--fast", action="store_true", help="no models: FunctionPrior and HashingEncoder")
    args = parser.parse_args(argv)

    llm = CachedPrior(FunctionPrior(recipe_prior) if args.fast else HFPrior.default())
    venv = VecLLMPrior(make_text_vec_env("prior_wrappers/OvercookedTomato-v0", n_envs=args.n_envs, seed=args.seed),
                       llm, k=8, encoder="hashing" if args.fast else "minilm", history=0, seed=args.seed)
    if args.algo == "ppo":
        model = PPO("MultiInputPolicy", venv, n_steps=128, batch_size=64, seed=args.seed)
    else:
        model = DQNPrior("CandidatePolicy", venv, gamma=0.9, learning_starts=200, seed=args.seed)  # γ: dqn_prior.py
    model.learn(args.steps, progress_bar=sys.stderr.isatty())

    stats = venv.prior_stats
    vector_steps = model.num_timesteps // args.n_envs
    print(f"{vector_steps} vector steps of {args.n_envs} envs: {stats['calls']} prior calls "
          f"({stats['calls'] / vector_steps:.2f} per vector step, {stats['states'] / stats['calls']:.2f} states each), "
          f"cache hit rate {llm.hit_rate:.2f}")

    successes: list[bool] = []
    obs = venv.reset()
    while len(successes) < args.episodes:  # the sub-envs reset themselves; count episodes as they end
        actions, _ = model.predict(obs, deterministic=True)
        obs, rewards, dones, infos = venv.step(actions)
        successes += [info["is_success"] for info, done in zip(infos, dones) if done]
    success = sum(successes[: args.episodes]) / args.episodes
    print(f"{args.algo} after {model.num_timesteps} steps: greedy success {success:.2f} over {args.episodes} episodes")
    return success


if __name__ == "__main__":
    main()
