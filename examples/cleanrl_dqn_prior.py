"""DQN-Prior in one CleanRL-style file of plain PyTorch, over Gymnasium's vector API (no Stable-Baselines3).

``make_text_gym_vector_env`` puts text Overcooked (Tomato salad) envs in a Gymnasium ``SyncVectorEnv`` (``--async``:
``AsyncVectorEnv``, one process per env); ``GymVectorLLMPrior`` scores the states of all of them with one prior call
per vector step and hands the loop ``Dict`` observations of K candidate slots. The prior enters by posterior
sampling: the loop acts with q(a|s) ∝ p_LLM(a|s)·exp(Q(s,a)/α) over the valid slots, learns Q with a one-step
``max`` TD target, and is evaluated greedily (argmax Q).

    python examples/cleanrl_dqn_prior.py [--num-envs 4] [--total-timesteps 3000] [--uniform] [--async] [--fast]

By default the prior is the embedded SmolLM2 (``HFPrior.default()``) with MiniLM features; ``--uniform`` puts
``UniformPrior`` in the wrapper (plain DQN with Boltzmann exploration softmax(Q/α), the same network), and
``--fast`` swaps SmolLM2 for a keyword ``FunctionPrior`` and MiniLM for the ``HashingEncoder`` (no model is loaded).
"""

from __future__ import annotations

import argparse
import random

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

# importing prior_wrappers registers the text envs' Gymnasium ids ("prior_wrappers/...")
from prior_wrappers import (CachedPrior, FunctionPrior, GymVectorLLMPrior, HFPrior, UniformPrior,
                            make_text_gym_vector_env)

RECIPE = {"serve bowl": 3.0, "chop tomato": 3.0, "in bowl": 3.0, "on cutting board": 2.0, "pick up tomato": 1.5,
          "take bowl": 1.0, "walk to": -1.0, "put down": -1.0, "chop nothing": -2.0}
MASKED = -1e9  # the Q-value / logit of an empty slot


def recipe_prior(prompt: str, commands: list[str]) -> list[float]:
    """--fast stand-in for the LLM: the tomato salad's steps as keywords."""
    return [max([w for key, w in RECIPE.items() if key in c], default=0.0) for c in commands]


class QNetwork(nn.Module):
    """Q(s, a_k) = MLP([candidate_features_k, observation_features, log p(a_k|s)]) for each of the K slots."""

    def __init__(self, feature_dim: int, hidden: int = 64) -> None:
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(2 * feature_dim + 1, hidden), nn.ReLU(),
                                 nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, 1))

    def forward(self, obs: dict[str, torch.Tensor]) -> torch.Tensor:
        cand, logp = obs["candidate_features"], obs["prior_logprobs"]
        state = obs["observation_features"].unsqueeze(1).expand(-1, cand.shape[1], -1)
        q = self.mlp(torch.cat([cand, state, logp.unsqueeze(-1)], dim=-1)).squeeze(-1)
        return q.masked_fill(obs["action_mask"] == 0, MASKED)


class ReplayBuffer:
    """Transitions (s, a, r, s', terminated) with Dict observations, in preallocated numpy arrays."""

    def __init__(self, space: dict, size: int) -> None:
        self.obs = {key: np.zeros((size, *sub.shape), sub.dtype) for key, sub in space.items()}
        self.next_obs = {key: np.zeros_like(value) for key, value in self.obs.items()}
        self.actions, self.rewards = np.zeros(size, np.int64), np.zeros(size, np.float32)
        self.terminated = np.zeros(size, np.float32)
        self.size, self.pos, self.full = size, 0, False

    def add(self, obs: dict, action: int, reward: float, next_obs: dict, terminated: bool) -> None:
        for key in self.obs:
            self.obs[key][self.pos], self.next_obs[key][self.pos] = obs[key], next_obs[key]
        self.actions[self.pos], self.rewards[self.pos], self.terminated[self.pos] = action, reward, terminated
        self.pos = (self.pos + 1) % self.size
        self.full = self.full or self.pos == 0

    def sample(self, batch: int, rng: np.random.Generator) -> tuple:
        idx = rng.integers(0, self.size if self.full else self.pos, batch)

        def tensors(d: dict) -> dict[str, torch.Tensor]:
            return {key: torch.as_tensor(value[idx]) for key, value in d.items()}

        return (tensors(self.obs), torch.as_tensor(self.actions[idx]), torch.as_tensor(self.rewards[idx]),
                tensors(self.next_obs), torch.as_tensor(self.terminated[idx]))


def to_tensors(obs: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
    return {key: torch.as_tensor(value) for key, value in obs.items()}


def main(argv: list[str] | None = None) -> float:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--num-envs", type=int, default=4)
    parser.add_argument("--total-timesteps", type=int, default=3000, help="env steps, summed over the sub-envs")
    parser.add_argument("--alpha", type=float, default=0.1, help="posterior temperature: q ∝ p·exp(Q/α)")
    parser.add_argument("--gamma", type=float, default=0.9)
    parser.add_argument("--learning-rate", type=float, default=5e-4)
    parser.add_argument("--learning-starts", type=int, default=200, help="env steps before the first update")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--tau", type=float, default=0.005, help="target network soft-update rate, every update")
    parser.add_argument("--episodes", type=int, default=20, help="greedy evaluation episodes")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--uniform", action="store_true", help="the baseline: UniformPrior instead of the LLM")
    parser.add_argument("--async", dest="use_async", action="store_true", help="AsyncVectorEnv (a process per env)")
    parser.add_argument("--fast", action="store_true", help="no models: FunctionPrior and HashingEncoder")
    args = parser.parse_args(argv)
    random.seed(args.seed)
    np.random.seed(args.seed)
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)

    prior = UniformPrior() if args.uniform else FunctionPrior(recipe_prior) if args.fast else HFPrior.default()
    vec = make_text_gym_vector_env("prior_wrappers/OvercookedTomato-v0", args.num_envs,
                                   vectorization_mode="async" if args.use_async else "sync")
    # history=0: the prompt is the current state only, so the prior's cache hits whenever a state comes back
    envs = GymVectorLLMPrior(vec, CachedPrior(prior), k=8, encoder="hashing" if args.fast else "minilm", history=0)
    space = envs.single_observation_space
    q_network = QNetwork(space["observation_features"].shape[0])
    target_network = QNetwork(space["observation_features"].shape[0])
    target_network.load_state_dict(q_network.state_dict())
    optimizer = torch.optim.Adam(q_network.parameters(), lr=args.learning_rate)
    rb = ReplayBuffer(space, 10_000)

    obs, _ = envs.reset(seed=args.seed)
    autoreset = np.zeros(args.num_envs, dtype=bool)  # NEXT_STEP: these sub-envs reset on this step
    vector_steps = args.total_timesteps // args.num_envs
    for step in range(vector_steps):
        with torch.no_grad():  # posterior sampling: logits Q/α + log p over the valid slots
            logits = q_network(to_tensors(obs)) / args.alpha + torch.as_tensor(obs["prior_logprobs"])
            logits = logits.masked_fill(torch.as_tensor(obs["action_mask"]) == 0, MASKED)
            actions = torch.distributions.Categorical(logits=logits).sample().numpy()
        next_obs, rewards, terminations, truncations, infos = envs.step(actions)
        for i in np.flatnonzero(~autoreset):  # an autoreset step is no transition: its action was ignored
            rb.add({k: v[i] for k, v in obs.items()}, actions[i], rewards[i],
                   {k: v[i] for k, v in next_obs.items()}, terminations[i])  # truncated: bootstrap from s'
        autoreset = terminations | truncations
        obs = next_obs

        if (step + 1) * args.num_envs > args.learning_starts:
            b_obs, b_actions, b_rewards, b_next, b_term = rb.sample(args.batch_size, rng)
            with torch.no_grad():
                target = b_rewards + args.gamma * (1 - b_term) * target_network(b_next).max(dim=1).values
            q = q_network(b_obs).gather(1, b_actions.unsqueeze(1)).squeeze(1)
            loss = F.smooth_l1_loss(q, target)
            optimizer.zero_grad()
            loss.backward()
            nn.utils.clip_grad_norm_(q_network.parameters(), 1.0)
            optimizer.step()
            for p, tp in zip(q_network.parameters(), target_network.parameters()):
                tp.data.mul_(1 - args.tau).add_(args.tau * p.data)

    stats = envs.prior_stats
    print(f"{vector_steps} vector steps of {args.num_envs} envs: {stats['calls']} prior calls "
          f"({stats['calls'] / (vector_steps + 1):.2f} per vector step and reset, "
          f"{stats['states'] / stats['calls']:.2f} states each), cache hit rate {stats['cache_hit_rate']:.2f}")

    successes: list[bool] = []
    obs, _ = envs.reset(seed=10_000)  # the same start cells in every run
    while len(successes) < args.episodes:  # greedy: argmax Q over the valid slots; count episodes as they end
        with torch.no_grad():
            actions = q_network(to_tensors(obs)).argmax(dim=1).numpy()
        obs, _, terminations, truncations, infos = envs.step(actions)
        successes += [bool(infos["is_success"][i]) for i in np.flatnonzero(terminations | truncations)]
    envs.close()
    success = sum(successes[: args.episodes]) / args.episodes
    label = "DQN (uniform prior)" if args.uniform else "DQN-Prior"
    print(f"{label} (CleanRL-style) after {vector_steps * args.num_envs} steps: greedy success {success:.2f} "
          f"over {args.episodes} episodes")
    return success


if __name__ == "__main__":
    main()
