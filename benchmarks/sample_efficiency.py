"""Sample efficiency of RL with an LLM action prior: online, offline and generalisation benchmarks.

Reproduces the shape of the paper's experiments (Yan et al., ICLR 2025) with our code on CPU:

* **online**: environment steps until the greedy policy reaches a success rate of 0.9, DQN vs DQN-Prior and
  PPO vs PPO-Prior, on Overcooked Tomato salad, Tomato-lettuce salad and Text FrozenLake (the case where a small
  model's prior is weak). Mean over seeds with the spread; a run that never reaches 0.9 counts as the budget and
  is reported as a lower bound (``>=``).
* **offline**: CQL vs CQL-Prior trained on the first N transitions (N = 100 ... 5,000) of one expert/random
  mixture collected on Tomato-lettuce; the smallest N at which each reaches 90% of the expert's return.
  Both learn from exactly the same transitions: the baseline's copy has the prior replaced by a uniform one.
* **generalisation**: DQN-Prior (and DQN) trained on a few generated TextWorld games, evaluated on those and on
  unseen ones.

The baseline of every comparison is the same algorithm with ``UniformPrior()`` in the wrapper (same network, same
budget, same seeds). The prior is the embedded SmolLM2-135M-Instruct (``--prior llm``, the headline) or a
hand-written keyword oracle (``--prior function``, an ablation: what a perfect prior would give). LLM scores are
kept in an exact cache saved under ``prior_wrappers.priors.embedded.cache_dir()``, so seeds and reruns share them.

Writes ``results/sample_efficiency_*.csv`` (every evaluation of every run) and ``*.png`` (learning curves), prints
tables and, last, ``online_steps_ratio=... offline_data_ratio=... unseen_success=...``.

    python benchmarks/sample_efficiency.py --quick          # <= 10 min on 2 CPU cores
    python benchmarks/sample_efficiency.py                  # <= 40 min on 2 CPU cores
    python benchmarks/sample_efficiency.py --prior function # the oracle-prior ablation
"""

from __future__ import annotations

import argparse
import csv
import re
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from tqdm.auto import tqdm

import envs  # noqa: F401  (registers the text environments)
from prior_wrappers import (
    CachedEncoder,
    CachedPrior,
    FunctionPrior,
    UniformPrior,
    VecLLMPrior,
    make_text_vec_env,
)
from prior_wrappers.evaluation import LearningCurve, plot_curves, train_with_curve
from prior_wrappers.sb3 import CommandPolicy, CQLPrior, DQNPrior, OfflineDataset, PPOPrior, collect_expert_mixture
from prior_wrappers.spaces import LOGPROB_MIN  # noqa: F401  (the tests read it from here)
from prior_wrappers.wrappers import LLMPriorWrapper

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.common import collect_mixture  # noqa: E402

TOMATO = "prior_wrappers/OvercookedTomato-v0"
LETTUCE = "prior_wrappers/OvercookedTomatoLettuce-v0"
LAKE = "prior_wrappers/TextFrozenLake-v0"
TEXTWORLD = "prior_wrappers/TextWorld-v0"
ENV_NAMES = {TOMATO: "Tomato", LETTUCE: "Tomato-lettuce", LAKE: "FrozenLake", TEXTWORLD: "TextWorld"}
SUCCESS = 0.9
EXPERT_FRACTION = 0.9


# --------------------------------------------------------------------------------------------------- configuration
@dataclass
class Config:
    """Everything a benchmark run depends on; :func:`quick_config` and :func:`full_config` are the presets."""

    seeds: list[int]
    online_envs: list[str]
    online_algos: list[str]  # "DQN", "PPO"
    online_steps: dict[str, int]  # env id -> environment steps per run
    eval_freq: dict[str, int]
    eval_episodes: int = 10
    n_envs: int = 4
    k: int = 8
    alpha: float = 0.1  # DQN-Prior temperature (1/alpha = 10, the reference's)
    ppo_alpha: float = 0.1  # PPO-Prior KL weight
    offline_sizes: list[int] = field(default_factory=lambda: [100, 200, 500, 1000, 2000, 5000])
    offline_seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    offline_gradient_steps: int = 2000
    offline_top_k: int = 2  # CQL-Prior acts/bootstraps/regularises over the prior's top-k commands
    offline_eval_episodes: int = 20
    tw_train_games: int = 4
    tw_test_games: int = 4
    tw_steps: int = 2000
    tw_k: int = 8
    tw_eval_episodes: int = 8
    tw_max_episode_steps: int = 20


def quick_config() -> Config:
    return Config(
        seeds=[0, 1, 2],
        online_envs=[TOMATO, LAKE],
        online_algos=["DQN"],
        online_steps={TOMATO: 1500, LETTUCE: 3000, LAKE: 1500},
        eval_freq={TOMATO: 250, LETTUCE: 500, LAKE: 250},
        eval_episodes=10,
        offline_sizes=[100, 200, 500],
        offline_seeds=[0, 1],
        offline_gradient_steps=1000,
        tw_train_games=3,
        tw_test_games=3,
        tw_steps=400,
    )


def full_config() -> Config:
    return Config(
        seeds=[0, 1, 2],
        online_envs=[TOMATO, LAKE, LETTUCE],
        online_algos=["DQN", "PPO"],
        online_steps={TOMATO: 3000, LETTUCE: 2000, LAKE: 2000},
        eval_freq={TOMATO: 250, LETTUCE: 250, LAKE: 250},
        eval_episodes=10,
        offline_sizes=[50, 100, 200, 500],
        offline_seeds=[0, 1, 2],
        offline_gradient_steps=2000,
        tw_train_games=3,
        tw_test_games=3,
        tw_steps=800,
    )


# ------------------------------------------------------------------------------------------------- oracle priors
KITCHEN_KEYWORDS = [
    ("serve bowl with", 3.0),
    ("chop tomato", 3.0),
    ("chop lettuce", 3.0),
    ("in bowl", 3.0),
    ("tomato on cutting board", 2.0),
    ("lettuce on cutting board", 2.0),
    ("pick up tomato", 1.5),
    ("pick up lettuce", 1.5),
    ("take bowl", 1.0),
    ("onion", -3.0),
    ("walk to", -1.0),
    ("put down", -1.0),
    ("chop nothing", -2.0),
    ("wait", -2.0),
]


def kitchen_oracle(prompt: str, commands: Sequence[str]) -> list[float]:
    """A salad recipe by keywords: chop, fill the bowl, serve; ignore the onion; do not wander."""
    return [next((score for key, score in KITCHEN_KEYWORDS if key in c), 0.0) for c in commands]


def lake_oracle(prompt: str, commands: Sequence[str]) -> list[float]:
    """Walk towards the goal, never into a hole or against the edge (reads the current observation)."""
    obs = prompt.rsplit("Observation:", 1)[-1]
    goal = re.search(r"The goal is at [^,]+, [^,]+, (.*?) of you\.", obs)
    towards = set(re.findall(r"steps? (down|right|up|left)", goal.group(1))) if goal else set()
    scores = []
    for command in commands:
        direction = command.split()[-1]
        tile = re.search(rf"{direction.capitalize()}: ([^.]*)\.", obs)
        tile = tile.group(1) if tile else ""
        score = -3.0 if "hole" in tile else -2.0 if "edge" in tile else 1.5 if direction in towards else 0.0
        scores.append(score + (3.0 if "goal" in tile else 0.0))
    return scores


def textworld_oracle(prompt: str, commands: Sequence[str]) -> list[float]:
    """Prefer commands whose words appear in the task text; never look/inventory/examine."""
    task = prompt.lower()
    out = []
    for c in commands:
        words = [w for w in re.findall(r"[a-z]+", c.lower()) if len(w) > 2]
        bonus = sum(1.0 for w in words[1:] if w in task)
        out.append(bonus - (2.0 if c.split()[0] in ("look", "inventory", "examine") else 0.0))
    return out


ORACLES: dict[str, Callable[[str, Sequence[str]], list[float]]] = {
    TOMATO: kitchen_oracle,
    LETTUCE: kitchen_oracle,
    LAKE: lake_oracle,
    TEXTWORLD: textworld_oracle,
}


# ----------------------------------------------------------------------------------------------------- resources
class Resources:
    """The prior(s) and the text encoder, shared by every run (the same text is never scored/encoded twice).

    :param prior: ``"llm"`` (embedded SmolLM2, cached and persisted), ``"function"`` (keyword oracles) or a
        ready ``ActionPrior`` used for every env (tests).
    :param encoder: a ``TextEncoder`` (default: cached embedded MiniLM).
    """

    def __init__(
        self, prior: Any = "llm", encoder: Any = None, cache_file: Path | None = None, extra_cache_files: Sequence[Path] = ()
    ) -> None:
        self.kind = prior if isinstance(prior, str) else "custom"
        self.cache_file = cache_file
        self.llm: CachedPrior | None = None
        self._fixed = None if isinstance(prior, str) else prior
        if prior == "llm":
            from prior_wrappers import HFPrior

            self.llm = CachedPrior(HFPrior.default(dtype="float32"))
            self.reused = 0
            for extra in extra_cache_files:  # e.g. the scores `make demo` saved (same prompts: history 0)
                if Path(extra).is_file():
                    try:
                        self.reused += self.llm.load(extra)
                    except ValueError as err:  # another prior's scores (model, dtype): not reused
                        print(f"not reusing {Path(extra).name}: {err}", flush=True)
            if cache_file is not None:  # one file per prior: another model or dtype writes its own
                cache_file = self.cache_file = self.llm.file_for(cache_file.parent, cache_file.stem)
                if cache_file.is_file():
                    self.reused += self.llm.load(cache_file)
        if encoder is None:
            from prior_wrappers import SentenceEncoder

            encoder = CachedEncoder(SentenceEncoder.default())
        self.encoder = encoder
        self.reused = getattr(self, "reused", 0)

    @property
    def label(self) -> str:
        return {"llm": "SmolLM2", "function": "oracle"}.get(self.kind, "prior")

    def prior(self, env_id: str) -> Any:
        if self._fixed is not None:
            return self._fixed
        if self.llm is not None:
            return self.llm
        return FunctionPrior(ORACLES[env_id])

    def save(self) -> None:
        if self.llm is not None and self.cache_file is not None:
            self.llm.save(self.cache_file)

    def llm_info(self) -> str:
        if self.llm is None:
            return f"prior: {self.kind} (no LLM calls)"
        info = self.llm.cache_info()
        return (
            f"LLM: {info['misses']} states scored by SmolLM2, {info['hits']} cache hits "
            f"(hit rate {info['hit_rate']:.2f}), {info['size']} states cached"
        )


def vec_env(env_id: str, n_envs: int, prior: Any, res: Resources, k: int, seed: int, env_kwargs=None) -> VecLLMPrior:
    venv = make_text_vec_env(env_id, n_envs, seed=seed, env_kwargs=env_kwargs)
    return VecLLMPrior(venv, prior, k=k, encoder=res.encoder, history=0, seed=seed)


# ---------------------------------------------------------------------------------------------------------- online
def make_model(algo: str, env: VecLLMPrior, cfg: Config, seed: int, with_prior: bool):
    if algo == "DQN":
        return DQNPrior("CandidatePolicy", env, alpha=cfg.alpha, learning_starts=200, seed=seed, device="cpu")
    if algo == "PPO":
        # with the uniform prior the KL term is a constant-free entropy bonus on the valid slots; the residual
        # logits start from the prior (uniform for the baseline)
        return PPOPrior(
            "CandidatePolicy", env, alpha=cfg.ppo_alpha, n_steps=64, batch_size=64, n_epochs=4,
            learning_rate=1e-3, seed=seed, device="cpu",
        )
    raise ValueError(f"unknown algorithm {algo!r}")


def online_run(env_id: str, algo: str, with_prior: bool, seed: int, cfg: Config, res: Resources) -> LearningCurve:
    """Train one algorithm on one env with one seed; returns its learning curve (greedy evaluations)."""
    prior = res.prior(env_id) if with_prior else UniformPrior()
    label = f"{algo}-Prior ({res.label})" if with_prior else f"{algo} (uniform)"
    model = make_model(algo, vec_env(env_id, cfg.n_envs, prior, res, cfg.k, seed), cfg, seed, with_prior)
    eval_env = vec_env(env_id, 1, prior, res, cfg.k, 10_000 + seed)
    return train_with_curve(
        model, eval_env, cfg.online_steps[env_id], label=label, seed=seed,
        eval_freq=cfg.eval_freq[env_id], n_eval_episodes=cfg.eval_episodes,
    )


@dataclass
class StepsToSuccess:
    steps: list[int]
    reached: list[bool]

    @property
    def mean(self) -> float:
        return float(np.mean(self.steps))

    @property
    def lower_bound(self) -> bool:
        return not all(self.reached)

    def text(self) -> str:
        each = ", ".join(f"{s}" if r else f">={s}" for s, r in zip(self.steps, self.reached))
        lb = ">=" if self.lower_bound else ""
        return f"{lb}{self.mean:.0f} ± {np.std(self.steps):.0f}  [{each}]"


def steps_to_success(curves: Sequence[LearningCurve], budget: int) -> StepsToSuccess:
    """Steps to reach SUCCESS per seed; a run that never does counts as the budget (a lower bound)."""
    reached = [c.steps_to(SUCCESS) for c in curves]
    return StepsToSuccess([budget if r is None else r for r in reached], [r is not None for r in reached])


def ratio_text(base: StepsToSuccess, prior: StepsToSuccess) -> tuple[float, str]:
    """base/prior with the direction its bounds allow: base a lower bound makes the ratio a lower bound;
    prior a lower bound makes it an upper bound; both, unknown."""
    if prior.mean == 0:  # the prior's policy succeeded before any training step
        return float("inf"), "inf" if not base.lower_bound or base.mean > 0 else "?"
    r = base.mean / prior.mean
    if base.lower_bound and prior.lower_bound:
        return r, f"?{r:.2f} (neither reached {SUCCESS})"
    if base.lower_bound:
        return r, f">={r:.2f}"
    if prior.lower_bound:
        return r, f"<={r:.2f}"
    return r, f"{r:.2f}"


# --------------------------------------------------------------------------------------------------------- offline
def single_env(env_id: str, prior: Any, res: Resources, k: int, env_kwargs=None, order: str = "prior") -> LLMPriorWrapper:
    return LLMPriorWrapper(
        gym.make(env_id, **(env_kwargs or {})), prior, k=k, encoder=res.encoder, history=0, order=order
    )


class RecordingPrior(UniformPrior):
    """A uniform prior that remembers every (prompt, candidates) it was asked about."""

    def __init__(self) -> None:
        self.requests: dict[tuple[str, tuple[str, ...]], None] = {}

    def score(self, prompts, candidates, **kwargs):
        for p, c in zip(prompts, candidates):
            self.requests[(p, tuple(c))] = None
        return super().score(prompts, candidates, **kwargs)


def prescore(prior: Any, requests: Sequence[tuple[str, tuple[str, ...]]], batch: int = 1, desc: str = "") -> None:
    """Score ``requests`` with a ``CachedPrior`` (fills its cache; the reference also labels the dataset's
    candidates once, before training). One state per call: on a shared 2-core CPU, batches of 16 prompts were
    measured 2x slower per state than single prompts (padding of prompts of different lengths)."""
    if not isinstance(prior, CachedPrior):
        return
    todo = [r for r in requests if (r[0], r[1], "token") not in prior._cache]
    for i in tqdm(range(0, len(todo), batch), desc=desc or "LLM prescoring", unit="batch", file=sys.stderr, leave=False):
        chunk = todo[i : i + batch]
        prior.score([p for p, _ in chunk], [list(c) for _, c in chunk])


def collect_offline(cfg: Config, res: Resources, n_transitions: int, seed: int = 0) -> tuple[OfflineDataset, float]:
    """Half expert, half random episodes on Tomato-lettuce (with the prior's observations), enough for
    ``n_transitions``; returns the dataset and the expert's mean return."""
    # slots in the env's order, so that the same seed gives the same episodes whatever the prior: a first pass
    # with a recording uniform prior finds the states, the LLM scores them in batches, the second pass hits the cache
    recorder = RecordingPrior()
    n_episodes = collect_mixture(single_env(LETTUCE, recorder, res, cfg.k, order="env"), n_transitions, seed).n_episodes
    prior = res.prior(LETTUCE)
    prescore(prior, list(recorder.requests), desc=f"LLM labelling {len(recorder.requests)} dataset states")
    env = single_env(LETTUCE, prior, res, cfg.k, order="env")
    expert = CommandPolicy(lambda: env.unwrapped.expert_command())
    data = collect_expert_mixture(env, expert, n_episodes=n_episodes, success_ratio=0.5, seed=seed)
    expert_return = float(np.mean(data.episode_return[data.episode_success]))
    return data, expert_return


def evaluate_offline(model: CQLPrior, env: gym.Env, n_episodes: int, seed: int) -> tuple[float, float]:
    """Greedy mean return and success rate over ``n_episodes`` (seeded resets)."""
    returns, successes = [], []
    for i in range(n_episodes):
        obs, info = env.reset(seed=seed + i)
        done, total = False, 0.0
        while not done:
            action, _ = model.predict(obs, deterministic=True)
            obs, reward, terminated, truncated, info = env.step(int(action))
            total += float(reward)
            done = terminated or truncated
        returns.append(total)
        successes.append(bool(info.get("is_success", False)))
    return float(np.mean(returns)), float(np.mean(successes))


def offline_run(
    data: OfflineDataset, size: int, with_prior: bool, seed: int, cfg: Config, res: Resources
) -> dict[str, Any]:
    prior = res.prior(LETTUCE) if with_prior else UniformPrior()
    subset = (data if with_prior else data.with_uniform_prior()).transitions(size)
    env = single_env(LETTUCE, prior, res, cfg.k, order="env")
    model = CQLPrior(
        "CandidatePolicy", env, prior_top_k=cfg.offline_top_k if with_prior else None, seed=seed, device="cpu"
    )
    model.learn_offline(subset, gradient_steps=cfg.offline_gradient_steps, log_interval=0)
    ret, success = evaluate_offline(model, env, cfg.offline_eval_episodes, seed=20_000 + 100 * seed)
    label = f"CQL-Prior ({res.label}, top-{cfg.offline_top_k})" if with_prior else "CQL (uniform)"
    return {"label": label, "seed": seed, "transitions": len(subset), "mean_return": ret, "success_rate": success}


def smallest_size(rows: Sequence[dict[str, Any]], label: str, threshold: float, sizes: Sequence[int]):
    """Smallest dataset size whose mean return over seeds reaches ``threshold`` (None if none does)."""
    for size in sizes:
        returns = [r["mean_return"] for r in rows if r["label"] == label and r["size"] == size]
        if returns and np.mean(returns) >= threshold:
            return size
    return None


# ------------------------------------------------------------------------------------------------- generalisation
def textworld_games(cfg: Config, cache: Path | None) -> tuple[list[Path], list[Path]]:
    from envs import make_textworld_games, split_games

    games = make_textworld_games(cfg.tw_train_games + cfg.tw_test_games, seed=0, cache_dir=cache)
    return split_games(games, test_size=cfg.tw_test_games, seed=0)


def textworld_success(model, games: Sequence[Path], prior: Any, res: Resources, cfg: Config, episodes: int) -> float:
    """Greedy success rate, cycling through ``games`` (each at least once when ``episodes >= len(games)``)."""
    env = single_env(
        TEXTWORLD, prior, res, cfg.tw_k,
        env_kwargs=dict(game_files=[str(g) for g in games], max_episode_steps=cfg.tw_max_episode_steps),
    )
    wins = []
    for i in range(episodes):
        obs, info = env.reset(seed=30_000 + i if i == 0 else None)
        done = False
        while not done:
            action, _ = model.predict(obs, deterministic=True)
            obs, _, terminated, truncated, info = env.step(int(action))
            done = terminated or truncated
        wins.append(bool(info.get("is_success", False)))
    env.close()
    return float(np.mean(wins))


def generalisation_run(with_prior: bool, seed: int, train_games, test_games, cfg: Config, res: Resources):
    prior = res.prior(TEXTWORLD) if with_prior else UniformPrior()
    kwargs = dict(game_files=[str(g) for g in train_games], max_episode_steps=cfg.tw_max_episode_steps)
    venv = make_text_vec_env(TEXTWORLD, 2, seed=seed, env_kwargs=kwargs)
    env = VecLLMPrior(venv, prior, k=cfg.tw_k, encoder=res.encoder, history=0, seed=seed)
    model = DQNPrior("CandidatePolicy", env, alpha=cfg.alpha, learning_starts=100, seed=seed, device="cpu")
    model.learn(cfg.tw_steps)
    env.close()
    episodes = max(cfg.tw_eval_episodes, len(train_games))
    label = f"DQN-Prior ({res.label})" if with_prior else "DQN (uniform)"
    return {
        "label": label,
        "seed": seed,
        "train_success": textworld_success(model, train_games, prior, res, cfg, episodes),
        "unseen_success": textworld_success(model, test_games, prior, res, cfg, max(cfg.tw_eval_episodes, len(test_games))),
    }


# ------------------------------------------------------------------------------------------------------ reporting
def write_rows(rows: Sequence[dict[str, Any]], path: Path) -> None:
    if not rows:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def write_online_csv(curves: dict[tuple[str, str, bool], list[LearningCurve]], path: Path) -> None:
    """Every evaluation of every online run: env, algorithm, prior, seed, steps, success rate, mean return."""
    write_rows(
        [
            {"env": ENV_NAMES[env_id], "algo": algo, "label": c.label, "seed": c.seed, "steps": s,
             "success_rate": f"{r:.4f}", "mean_return": f"{ret:.4f}"}
            for (env_id, algo, _), cs in curves.items()
            for c in cs
            for s, r, ret in zip(c.steps, c.success_rate, c.mean_return)
        ],
        path,
    )


def plot_offline(rows: Sequence[dict[str, Any]], expert_return: float, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for label in dict.fromkeys(r["label"] for r in rows):
        sizes = sorted({r["size"] for r in rows if r["label"] == label})
        vals = [[r["mean_return"] for r in rows if r["label"] == label and r["size"] == s] for s in sizes]
        mean = np.array([np.mean(v) for v in vals])
        ax.plot(sizes, mean, marker="o", label=label)
        ax.fill_between(sizes, [min(v) for v in vals], [max(v) for v in vals], alpha=0.2)
    ax.axhline(expert_return, color="k", ls="--", lw=1, label="expert")
    ax.axhline(EXPERT_FRACTION * expert_return, color="grey", ls=":", lw=1, label=f"{EXPERT_FRACTION:.0%} of expert")
    ax.set_xscale("log")
    ax.set_xlabel("dataset size (transitions)")
    ax.set_ylabel("greedy mean return")
    ax.set_title("Offline, Tomato-lettuce: CQL vs CQL-Prior")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows)]
    line = lambda r: "  ".join(str(x).ljust(w) for x, w in zip(r, widths))  # noqa: E731
    return "\n".join([line(header), line(["-" * w for w in widths]), *map(line, rows)])


# ------------------------------------------------------------------------------------------------------------ main
def plan_runs(cfg: Config, parts: set[str]) -> list[tuple]:
    runs: list[tuple] = []
    if "online" in parts:
        for env_id in cfg.online_envs:
            for algo in cfg.online_algos:
                for with_prior in (True, False):
                    for seed in cfg.seeds:
                        runs.append(("online", env_id, algo, with_prior, seed))
    if "offline" in parts:
        for size in cfg.offline_sizes:
            for with_prior in (True, False):
                for seed in cfg.offline_seeds:
                    runs.append(("offline", size, with_prior, seed))
    if "generalisation" in parts:
        for with_prior in (True, False):
            runs.append(("generalisation", with_prior, 0))
    # the costliest LLM work (Tomato-lettuce explores thousands of new states) last, after the cheaper parts
    return sorted(runs, key=lambda r: r[0] == "online" and r[1] == LETTUCE)


def run_benchmark(cfg: Config, res: Resources, out: Path, parts: set[str], tw_cache: Path | None = None, log=print) -> dict[str, Any]:
    """Run every part, write CSVs and PNGs under ``out``, print the tables; returns the summary numbers."""
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    runs = plan_runs(cfg, parts)
    curves: dict[tuple[str, str, bool], list[LearningCurve]] = {}
    offline_rows: list[dict[str, Any]] = []
    tw_rows: list[dict[str, Any]] = []
    data = expert_return = train_games = test_games = None
    bar = tqdm(runs, desc="benchmark runs", unit="run", file=sys.stderr)
    for run in bar:
        bar.set_postfix_str(" ".join(map(str, run[1:])).replace("prior_wrappers/", ""))
        if run[0] == "online":
            _, env_id, algo, with_prior, seed = run
            curves.setdefault((env_id, algo, with_prior), []).append(online_run(env_id, algo, with_prior, seed, cfg, res))
        elif run[0] == "offline":
            _, size, with_prior, seed = run
            if data is None:
                data, expert_return = collect_offline(cfg, res, max(cfg.offline_sizes))
            row = offline_run(data, size, with_prior, seed, cfg, res)
            offline_rows.append({"size": size, **row})
        else:
            _, with_prior, seed = run
            if train_games is None:
                train_games, test_games = textworld_games(cfg, tw_cache)
            tw_rows.append(generalisation_run(with_prior, seed, train_games, test_games, cfg, res))
        res.save()  # after every run: an interrupted benchmark keeps its LLM scores and its CSVs
        if run[0] == "online":
            write_online_csv(curves, out / "sample_efficiency_online.csv")
        write_rows(offline_rows, out / "sample_efficiency_offline.csv")
        write_rows(tw_rows, out / "sample_efficiency_textworld.csv")
    bar.close()
    summary: dict[str, Any] = {"online_steps_ratio": float("nan"), "offline_data_ratio": float("nan"), "unseen_success": float("nan")}

    # ---- online
    if curves:
        write_online_csv(curves, out / "sample_efficiency_online.csv")
        rows = []
        for env_id in cfg.online_envs:
            for algo in cfg.online_algos:
                plot_curves(
                    curves[(env_id, algo, True)] + curves[(env_id, algo, False)],
                    out / f"sample_efficiency_{ENV_NAMES[env_id].lower()}_{algo.lower()}.png",
                    title=f"{ENV_NAMES[env_id]}: {algo}-Prior vs {algo}",
                )
                budget = cfg.online_steps[env_id]
                prior = steps_to_success(curves[(env_id, algo, True)], budget)
                base = steps_to_success(curves[(env_id, algo, False)], budget)
                r, r_text = ratio_text(base, prior)
                final_p = np.mean([c.success_rate[-1] for c in curves[(env_id, algo, True)]])
                final_b = np.mean([c.success_rate[-1] for c in curves[(env_id, algo, False)]])
                rows.append([ENV_NAMES[env_id], algo, budget, base.text(), prior.text(), r_text, f"{final_b:.2f} / {final_p:.2f}"])
                if env_id == TOMATO and algo == "DQN":
                    summary["online_steps_ratio"] = r
                    summary["online_steps_ratio_text"] = r_text
        log(f"\nOnline: environment steps to greedy success >= {SUCCESS} (mean ± std over seeds {cfg.seeds}; "
            "'>=' marks runs that never reached it within the budget, counted as the budget)")
        log(table(["env", "algo", "budget", "baseline (uniform)", f"with prior ({res.label})", "ratio", "final success base / prior"], rows))

    # ---- offline
    if offline_rows:
        write_rows(offline_rows, out / "sample_efficiency_offline.csv")
        plot_offline(offline_rows, expert_return, out / "sample_efficiency_offline.png")
        threshold = EXPERT_FRACTION * expert_return
        labels = list(dict.fromkeys(r["label"] for r in offline_rows))
        rows = []
        for size in cfg.offline_sizes:
            row = [str(size)]
            for label in labels:
                sel = [r for r in offline_rows if r["label"] == label and r["size"] == size]
                row.append(f"{np.mean([r['mean_return'] for r in sel]):+.3f} ± {np.std([r['mean_return'] for r in sel]):.3f}"
                           f" (succ {np.mean([r['success_rate'] for r in sel]):.2f})")
            rows.append(row)
        log(f"\nOffline, Tomato-lettuce (expert/random mix 50/50, {cfg.offline_gradient_steps} gradient steps, "
            f"seeds {cfg.offline_seeds}): greedy mean return; expert return {expert_return:+.3f}, "
            f"threshold {EXPERT_FRACTION:.0%} = {threshold:+.3f}")
        log(table(["transitions", *labels], rows))
        cql_label = next(lab for lab in labels if lab.startswith("CQL ("))
        prior_label = next(lab for lab in labels if lab.startswith("CQL-Prior"))
        n_cql = smallest_size(offline_rows, cql_label, threshold, cfg.offline_sizes)
        n_prior = smallest_size(offline_rows, prior_label, threshold, cfg.offline_sizes)
        biggest = max(cfg.offline_sizes)
        cql_text = f"{n_cql}" if n_cql else f">{biggest} (never within the sizes tried)"
        prior_text = f"{n_prior}" if n_prior else f">{biggest} (never within the sizes tried)"
        ratio = (n_cql or biggest) / (n_prior or biggest)
        if n_cql is None and n_prior is None:
            ratio_s = f"?{ratio:.2f} (neither reached the threshold)"
        elif n_cql is None:
            ratio_s = f">={ratio:.2f}"
        elif n_prior is None:
            ratio_s = f"<={ratio:.2f}"
        else:
            ratio_s = f"{ratio:.2f}"
        log(f"smallest dataset reaching {EXPERT_FRACTION:.0%} of the expert's return: CQL {cql_text}, "
            f"CQL-Prior {prior_text}; data ratio CQL / CQL-Prior = {ratio_s}")
        summary["offline_data_ratio"] = ratio
        summary["offline_data_ratio_text"] = ratio_s

    # ---- generalisation
    if tw_rows:
        write_rows(tw_rows, out / "sample_efficiency_textworld.csv")
        log(f"\nGeneralisation, TextWorld ({len(train_games)} training games, {len(test_games)} unseen; "
            f"{cfg.tw_steps} steps of DQN): greedy success rate")
        log(table(["method", "training games", "unseen games"],
                  [[r["label"], f"{r['train_success']:.2f}", f"{r['unseen_success']:.2f}"] for r in tw_rows]))
        summary["unseen_success"] = next(r["unseen_success"] for r in tw_rows if r["label"].startswith("DQN-Prior"))

    log(f"\n{res.llm_info()}; wall time {time.perf_counter() - start:.0f}s; results in {out}/")
    return summary


def final_line(summary: dict[str, Any]) -> str:
    def show(key: str) -> str:
        text = summary.get(f"{key}_text")
        return text.split(" ")[0] if text else f"{summary[key]:.2f}"

    return (
        f"online_steps_ratio={show('online_steps_ratio')} offline_data_ratio={show('offline_data_ratio')} "
        f"unseen_success={summary['unseen_success']:.2f}"
    )


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="the short configuration (<= 10 min on 2 cores)")
    parser.add_argument("--prior", choices=["llm", "function"], default="llm",
                        help="llm: embedded SmolLM2 (headline); function: hand-written keyword oracle (ablation)")
    parser.add_argument("--parts", nargs="+", default=["online", "offline", "generalisation"],
                        choices=["online", "offline", "generalisation"])
    parser.add_argument("--seeds", type=int, nargs="+", help="override the online seeds")
    parser.add_argument("--envs", nargs="+", choices=["tomato", "lettuce", "lake"], help="override the online envs")
    parser.add_argument("--algos", nargs="+", choices=["DQN", "PPO"], help="override the online algorithms")
    parser.add_argument("--out", type=Path, default=Path("results"))
    parser.add_argument("--cache-file", type=Path, help="where the LLM scores persist (default: under the package cache dir)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1: on a shared 2-core machine more threads spin and run 10-20x slower)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    cfg = quick_config() if args.quick else full_config()
    if args.seeds:
        cfg.seeds = args.seeds
    if args.envs:
        cfg.online_envs = [{"tomato": TOMATO, "lettuce": LETTUCE, "lake": LAKE}[e] for e in args.envs]
    if args.algos:
        cfg.online_algos = args.algos
    from prior_wrappers.priors.embedded import cache_dir

    t0 = time.perf_counter()
    res = Resources(
        args.prior,
        cache_file=args.cache_file or cache_dir() / "benchmarks" / "sample_efficiency_scores.npz",
        extra_cache_files=[cache_dir() / "demo" / "overcooked_tomato_scores.npz"],
    )
    print(f"loaded prior ({res.kind}) and MiniLM in {time.perf_counter() - t0:.1f}s; {res.reused} cached LLM scores reused",
          flush=True)
    summary = run_benchmark(cfg, res, args.out, set(args.parts), tw_cache=cache_dir() / "textworld_games")
    print(final_line(summary), flush=True)


if __name__ == "__main__":
    main()
