"""GFlan-Prior vs plain LLM-PPO on a TextWorld challenge family: the same LLM policy (SmolLM2 + LoRA), with and
without α·KL(π ‖ p_LLM) to the frozen model.

Both arms start from the same policy, the prior itself (LoRA at zero), on the family's first game; only α differs
(``--alphas``, default 0.1 and 0: TWOSOME-style LLM-PPO). Reported per arm and seed: the greedy normalised score
(score / max score) and success on the training game before and after training, the return and the KL to the
prior along training, and the wall time per update. ``--shots`` puts expert walkthroughs of *other* games of the
family into the prompt (the conditioned prior of ``benchmarks/textworld_challenges.py``; long prompts, GPU only).

    python benchmarks/gflan_prior.py --quick                          # CPU, fp32, a few updates (<= 15 min on 2 cores)
    python benchmarks/gflan_prior.py --device cuda --dtype bfloat16   # the GPU configuration (defaults below)
    python benchmarks/gflan_prior.py --device cuda --dtype bfloat16 --family cooking --shots 2 --seeds 0 1 2

Writes ``<out>/gflan_prior.csv`` (one row per update and arm) and ends with
``gflan_score_alpha<a>=<before>-><after> ... seconds_per_update=<x>``.
"""

from __future__ import annotations

import csv
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # `envs`

from benchmarks.common import Stopwatch, argument_parser, print_conditions, summary_line  # noqa: E402
from envs.textworld_challenges import make_challenge_games  # noqa: E402
from envs.textworld_env import TextWorldEnv  # noqa: E402
from prior_wrappers import PromptTemplate, VecLLMPrior, make_text_vec_env  # noqa: E402
from prior_wrappers.demonstrations import Demonstrations  # noqa: E402
from prior_wrappers.priors.embedded import embedded_gguf_path, ensure_converted  # noqa: E402
from prior_wrappers.sb3 import GFlanLLM, GFlanPrior, UpdateLog  # noqa: E402

DEMO_SEED_OFFSET = 200_000  # walkthrough games: far from the training game (as benchmarks/challenge_runs.py)


@dataclass
class Config:
    """Everything a run depends on (printed with the results). Defaults: the GPU configuration."""

    family: str = "cooking-easy"
    alphas: list[float] = field(default_factory=lambda: [0.1, 0.0])
    seeds: list[int] = field(default_factory=lambda: [0])
    updates: int = 40
    n_envs: int = 8
    n_steps: int = 16
    batch_size: int = 32
    n_epochs: int = 2
    learning_rate: float = 1e-4
    gamma: float = 0.95
    lora_rank: int = 8
    k: int = 24
    shots: int = 0
    demo_tokens: int = 1400
    max_episode_steps: int = 30
    max_prompt_tokens: int = 512
    eval_episodes: int = 1  # the game and the greedy policy are deterministic
    device: str = "cpu"
    dtype: str = "float32"
    game_seed: int = 0


def quick_config() -> Config:
    """The CPU configuration: one env, few small updates, short episodes."""
    # four minibatches per update: the KL's gradient is 0 at the prior, so a one-minibatch first update is the same
    # with and without it
    return Config(updates=3, n_envs=1, n_steps=8, batch_size=4, n_epochs=2, learning_rate=1e-3, k=12,
                  max_episode_steps=8, max_prompt_tokens=320)


def load_llm(cfg: Config) -> GFlanLLM:
    return GFlanLLM.from_pretrained(ensure_converted(embedded_gguf_path()), device=cfg.device,
                                    dtype=getattr(torch, cfg.dtype))


def greedy_score(model: GFlanPrior, env: VecLLMPrior, episodes: int) -> tuple[float, float]:
    """Mean normalised score (score / max_score) and success of greedy episodes."""
    scores, wins = [], []
    for _ in range(episodes):
        obs, done = env.reset(), False
        while not done:
            action, _ = model.predict(obs, deterministic=True)
            obs, _, dones, infos = env.step(action)
            done = bool(dones[0])
        info = infos[0]
        scores.append(float(info.get("score") or 0.0) / float(info.get("max_score") or 1.0))
        wins.append(bool(info.get("is_success")))
    return float(np.mean(scores)), float(np.mean(wins))


def run(cfg: Config, alpha: float, seed: int, games: Sequence[Path], demonstrations: Demonstrations | None) -> dict[str, Any]:
    """One arm: a fresh LLM (the adapters start at zero), PPO updates, greedy evaluation before and after."""
    torch.manual_seed(seed)
    llm = load_llm(cfg)
    spec = llm.token_id_spec(cfg.max_prompt_tokens, 16)

    def vec(n: int, env_seed: int) -> VecLLMPrior:
        venv = make_text_vec_env(
            lambda: TextWorldEnv(list(games), max_episode_steps=cfg.max_episode_steps, observe_state=False), n,
            seed=env_seed)
        return VecLLMPrior(venv, prior, k=cfg.k, encoder=None, history=0, prompt=PromptTemplate(history=0),
                           demonstrations=demonstrations, token_ids=spec, seed=env_seed)

    prior = llm.prior()
    env, eval_env = vec(cfg.n_envs, seed), vec(1, 10_000 + seed)
    model = GFlanPrior("LLMPolicy", env, llm=llm, alpha=alpha, n_steps=cfg.n_steps, batch_size=cfg.batch_size,
                       n_epochs=cfg.n_epochs, learning_rate=cfg.learning_rate, gamma=cfg.gamma, seed=seed,
                       policy_kwargs=dict(lora_rank=cfg.lora_rank, value_net_arch=[256]))
    before = greedy_score(model, eval_env, cfg.eval_episodes)
    log = UpdateLog(kl_batch_size=cfg.batch_size)
    clock = Stopwatch()
    model.learn(cfg.updates * cfg.n_steps * cfg.n_envs, callback=log)
    train_seconds = clock.seconds
    after = greedy_score(model, eval_env, cfg.eval_episodes)
    env.close()
    eval_env.close()
    return {"alpha": alpha, "seed": seed, "before": before, "after": after, "updates": log.rows,
            "seconds_per_update": train_seconds / max(len(log.rows), 1), "prior_cache": prior.cache_info()}


def main(argv: Sequence[str] | None = None) -> str:
    parser = argument_parser(__doc__)
    parser.add_argument("--quick", action="store_true", help="the small CPU configuration")
    parser.add_argument("--family", help="a preset of envs.textworld_challenges (default cooking-easy)")
    parser.add_argument("--alphas", type=float, nargs="+")
    parser.add_argument("--seeds", type=int, nargs="+")
    parser.add_argument("--updates", type=int)
    parser.add_argument("--n-envs", type=int)
    parser.add_argument("--shots", type=int, help="expert walkthroughs of other games in the prompt")
    parser.add_argument("--device", help="cpu or cuda")
    parser.add_argument("--dtype", help="float32 or bfloat16")
    parser.add_argument("--game-seed", type=int)
    parser.add_argument("--out", type=Path, default=Path("results"))
    args = parser.parse_args(argv)
    cfg = quick_config() if args.quick else Config()
    for name in ("family", "alphas", "seeds", "updates", "n_envs", "shots", "device", "dtype", "game_seed"):
        if getattr(args, name) is not None:
            setattr(cfg, name, getattr(args, name))
    if cfg.device == "cpu":
        torch.set_num_threads(1)  # a shared 2-core machine: a second thread only spins
    print_conditions(config=asdict(cfg))

    games = make_challenge_games(cfg.family, 1, seed=cfg.game_seed)
    demonstrations = None
    if cfg.shots:
        demo_games = make_challenge_games(cfg.family, cfg.shots, seed=cfg.game_seed + DEMO_SEED_OFFSET)
        demo_env = TextWorldEnv(demo_games, max_episode_steps=100, observe_state=False)
        tokenizer = load_llm(Config(device="cpu")).tokenizer
        demonstrations = Demonstrations.from_expert(
            demo_env, n_episodes=cfg.shots, seed=cfg.game_seed, max_steps=100, shots=cfg.shots,
            max_tokens=cfg.demo_tokens, count_tokens=lambda text: len(tokenizer(text)["input_ids"]))
        demo_env.close()
    results = []
    for seed in cfg.seeds:
        for alpha in cfg.alphas:
            result = run(cfg, alpha, seed, games, demonstrations)
            results.append(result)
            for i, row in enumerate(result["updates"], 1):
                print(f"alpha={alpha} seed={seed} update {i}: steps {row['steps']}, episodes {row['episodes']}, "
                      f"return {row['mean_return']:.3f}, reward/step {row['reward_per_step']:.4f}, "
                      f"KL on the rollout {row['kl_rollout']:.5f}, during the update {row['kl_update']:.5f}, "
                      f"{row['seconds']:.0f} s", flush=True)
            print(f"alpha={alpha} seed={seed}: greedy score {result['before'][0]:.2f} -> {result['after'][0]:.2f}, "
                  f"success {result['before'][1]:.0f} -> {result['after'][1]:.0f}, "
                  f"{result['seconds_per_update']:.1f} s/update", flush=True)

    args.out.mkdir(parents=True, exist_ok=True)
    with open(args.out / "gflan_prior.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["alpha", "seed", "update", "steps", "episodes", "mean_return", "reward_per_step", "kl_rollout",
                         "kl_update", "seconds"])
        for r in results:
            for i, row in enumerate(r["updates"], 1):
                writer.writerow([r["alpha"], r["seed"], i, row["steps"], row["episodes"], f"{row['mean_return']:.4f}",
                                 f"{row['reward_per_step']:.5f}", f"{row['kl_rollout']:.6f}", f"{row['kl_update']:.6f}",
                                 f"{row['seconds']:.1f}"])
    parts = []
    for alpha in cfg.alphas:
        arm = [r for r in results if r["alpha"] == alpha]
        before = np.mean([r["before"][0] for r in arm])
        after = np.mean([r["after"][0] for r in arm])
        kl = np.mean([r["updates"][-1]["kl_update"] for r in arm])
        parts.append(f"gflan_score_alpha{alpha}={before:.2f}->{after:.2f} final_kl_alpha{alpha}={kl:.4f}")
    parts.append(f"seconds_per_update={np.mean([r['seconds_per_update'] for r in results]):.1f}")
    return summary_line(parts)


if __name__ == "__main__":
    main()
