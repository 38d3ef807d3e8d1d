"""Prior quality: how well the LLM prior ranks the expert's command, per env family and prompt setting.

Every state of an expert episode on *evaluation* games (seeds from ``--game-seed + 100000``) is scored by the prior;
reported are the expert command's top-1 and top-3 rates, its mean reciprocal rank (MRR) and mean probability
p(expert), next to the uniform prior's (1/n, min(3, n)/n, H_n/n, 1/n over the n admissible commands). Prompt
settings: 0/1/2 shots of demonstrations (complete expert episodes of *other* games of the family, seeds from
``--game-seed``, checked disjoint; 0 shots is the env's own hand-written ``prompt_example``, the wrappers'
default), history 0/2 (previous expert steps in the prompt), and token/word/sum normalisation (one LLM pass per
state gives all three). Every state is scored by its own call, as ``LLMPriorWrapper`` does, so the per-state time
includes what the shared-prefix cache saves on the demonstrations.

    python benchmarks/prior_quality.py --quick                          # a few minutes on 2 cores
    python benchmarks/prior_quality.py                                  # 5 games per family, all settings
    python benchmarks/prior_quality.py --families cooking tomato --shots 0 2 --model path/to/model
    python benchmarks/prior_quality.py --fast --families tomato         # keyword prior, no model (tests)
    python benchmarks/prior_quality.py --quick --propose 8 16           # also k=8/16 sampled proposals per state
    python benchmarks/prior_quality.py --families cooking --shots 0 2 --history 2 --train-games 2 16

**Prior sources.** Next to the prompt settings, each family with distinct games compares where a prior's knowledge
can come from, every source given the walkthroughs of the same ``N`` training games (``--train-games``, seeds from
``--game-seed``; the evaluation games are never among them) and scored on the same states (history
``--source-history``, token normalisation):

- ``zero``: the LLM zero-shot (the env's ``prompt_example``), no walkthrough (``N`` = 0);
- ``prompt``: the LLM with 2 of the ``N`` walkthroughs in its prompt (what fits ``--max-demo-tokens``);
- ``bc``: :class:`~prior_wrappers.BCPrior`, a MiniLM + MLP scorer trained on the ``N`` walkthroughs, no LLM;
- ``lora``: the LLM adapted to the ``N`` walkthroughs with :func:`~prior_wrappers.fit_lora` (zero-shot prompts);
- ``product``: ``lora`` and ``bc`` multiplied (log-probabilities added, renormalised).

with each one's training time (seconds at ``--threads`` torch threads). Overcooked has one kitchen (every "game" is
the same), so it has no unseen games to measure a trained source on and gets the prompt settings only.

Writes ``<out>/prior_quality.csv`` (default ``results/``, git-ignored), prints a table, the per-state scoring time
with 0/1/2 shots, the sources side by side and the best setting of each family, and ends with
``prior_mrr_<family>=<x> ...`` (the best setting's or source's MRR).
"""

from __future__ import annotations

import argparse
import csv
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch

sys.path[:0] = [str(Path(__file__).resolve().parents[1]), str(Path(__file__).resolve().parent)]  # envs, propose_setting

from benchmarks.common import Stopwatch, argument_parser, conditions, load_prior  # noqa: E402
from envs import CHALLENGE_PRESETS, OvercookedSalad, TextWorldChallengeEnv, make_challenge_games  # noqa: E402
from envs.textworld_challenges import UNSEEN_SEED_OFFSET  # noqa: E402
from prior_wrappers import BCPrior, Demonstrations, FunctionPrior, HFPrior, fit_lora  # noqa: E402
from prior_wrappers.demonstrations import approximate_token_count, token_counter  # noqa: E402
from prior_wrappers.encoders import HashingEncoder  # noqa: E402
from prior_wrappers.priors.base import ActionPrior, log_softmax, normalize_scores  # noqa: E402
from prior_wrappers.prompts import PromptTemplate, TextState  # noqa: E402

from propose_setting import propose_setting  # noqa: E402

NORMALIZATIONS = ("token", "word", "sum")
SOURCES = ("zero", "prompt", "bc", "lora", "product")


@dataclass(frozen=True)
class FamilySpec:
    """How to get a family's expert episodes: ``make_env(first_seed, n_games)`` returns a raw text env with an
    ``expert_command()`` whose episode ``i`` is played with ``reset(seed=first_seed + i)`` (and ``game_index=i``
    when it has several games), the convention of :meth:`Demonstrations.from_expert`. Evaluation uses
    ``first_seed = game_seed + 100000``, demonstrations ``first_seed = game_seed``: disjoint games."""

    name: str
    make_env: Callable[[int, int], gym.Env]
    max_steps: int = 100
    distinct_games: bool = True  # False: every seed plays the same game (no unseen games for a trained source)


def textworld_family(preset: str) -> FamilySpec:
    def make(first_seed: int, n_games: int) -> gym.Env:
        games = make_challenge_games(preset, n_games, seed=first_seed)
        return TextWorldChallengeEnv(preset, game_files=games, max_episode_steps=100)

    return FamilySpec(preset, make)


def overcooked_family(name: str, recipe: str) -> FamilySpec:
    return FamilySpec(name, lambda first_seed, n_games: OvercookedSalad(recipe=recipe), max_steps=50,
                      distinct_games=False)


class GameBySeed(gym.Wrapper):
    """``reset(seed=first_seed + i)`` plays the ``i``-th of ``games`` (passed as ``options={key: games[i]}``: a
    TextWorldExpress game seed, a ScienceWorld variation), and ``info["game_file"]`` names it, so that the
    demonstrations' leakage check compares games, not reset seeds."""

    def __init__(self, env: gym.Env, first_seed: int, games: Sequence[int], key: str) -> None:
        super().__init__(env)
        self.first_seed, self.games, self.key = first_seed, list(games), key
        self._game = ""

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        options = dict(options or {})
        if seed is not None:
            options.setdefault(self.key, self.games[(seed - self.first_seed) % len(self.games)])
        obs, info = self.env.reset(seed=seed, options=options)
        self._game = f"{type(self.env.unwrapped).__name__}:{self.key}={info.get(self.key, options.get(self.key))}"
        return obs, {**info, "game_file": self._game}

    def step(self, action: Any):
        obs, reward, terminated, truncated, info = self.env.step(action)
        return obs, reward, terminated, truncated, {**info, "game_file": self._game}


def textworld_express_family(name: str, game: str, params: dict[str, int] | None) -> FamilySpec:
    """Evaluation games from TextWorldExpress' test fold (seeds 20000+), demonstrations from its train fold."""

    def make(first_seed: int, n_games: int) -> gym.Env:
        from envs.textworld_express_env import TextWorldExpressEnv

        unseen = first_seed >= UNSEEN_SEED_OFFSET
        base = (20_000 if unseen else 0) + (first_seed % UNSEEN_SEED_OFFSET) % 1000
        env = TextWorldExpressEnv(game, params, split="test" if unseen else "train", max_episode_steps=100)
        return GameBySeed(env, first_seed, [base + i for i in range(n_games)], "game_seed")

    return FamilySpec(name, make)


def scienceworld_family(name: str, task: str) -> FamilySpec:
    """Evaluation variations from the task's test split, demonstrations from its train split; candidates are
    ScienceWorld's focused set (:func:`envs.scienceworld_env.focused_commands`) plus the gold action when the set
    lacks it (``add_expert_command``), so that every state can be ranked."""

    def make(first_seed: int, n_games: int) -> gym.Env:
        from envs.scienceworld_env import ScienceWorldEnv

        split = "test" if first_seed >= UNSEEN_SEED_OFFSET else "train"
        env = ScienceWorldEnv(task, split=split, candidates="focused", add_expert_command=True)
        env.reset()  # loads the task, so that the split's variations are known
        variations = env._variations_of_split()
        offset = (first_seed % UNSEEN_SEED_OFFSET) % len(variations)
        return GameBySeed(env, first_seed, [variations[(offset + i) % len(variations)] for i in range(n_games)],
                          "variation")

    return FamilySpec(name, make)


def babyai_family(name: str, level: str) -> FamilySpec:
    def make(first_seed: int, n_games: int) -> gym.Env:  # levels are generated from the reset seed
        from envs.babyai_text import BabyAITextEnv

        return BabyAITextEnv(level)

    return FamilySpec(name, make)


FAMILIES: dict[str, FamilySpec] = {
    **{preset: textworld_family(preset) for preset in CHALLENGE_PRESETS},
    "tomato": overcooked_family("tomato", "tomato"),
    "lettuce": overcooked_family("lettuce", "tomato-lettuce"),
    "twx-cooking": textworld_express_family("twx-cooking", "cookingworld", {
        "numLocations": 1, "numIngredients": 2, "numDistractorItems": 2, "includeDoors": 0, "limitInventorySize": 0,
    }),
    "sw-lifespan": scienceworld_family("sw-lifespan", "lifespan-longest-lived"),
    "babyai-goto": babyai_family("babyai-goto", "GoToLocal"),
}


@dataclass(frozen=True)
class ExpertState:
    """One decision point of an expert episode: what the prompt needs, and the expert's command."""

    observation: str
    admissible: list[str]
    task: str
    history: tuple[tuple[str, str], ...]
    expert: str
    source: str


def expert_states(env: gym.Env, first_seed: int, n_games: int, max_steps: int) -> list[ExpertState]:
    """Every state of the expert's episode on each of the ``n_games`` games (won or not)."""
    games = getattr(env.unwrapped, "game_files", None)
    states = []
    for i in range(n_games):
        options = {"game_index": i % len(games)} if games and len(games) > 1 else None
        obs, info = env.reset(seed=first_seed + i, options=options)
        source = str(info.get("game_file") or f"{spec_name(env)}:{first_seed + i}")
        task, history, done = str(info.get("task", "")), [], False
        while not done and len(history) < max_steps:
            command = env.unwrapped.expert_command()
            admissible = list(dict.fromkeys(info["admissible_commands"]))
            if command in admissible:
                states.append(ExpertState(obs, admissible, task, tuple(history), command, source))
            next_obs, _, terminated, truncated, info = env.step(command)
            history.append((obs, command))
            obs, done = next_obs, terminated or truncated
    return states


def spec_name(env: gym.Env) -> str:
    return env.spec.id if env.spec is not None else type(env.unwrapped).__name__


@dataclass
class Metrics:
    top1: float
    top3: float
    mrr: float
    p_expert: float

    @classmethod
    def mean(cls, per_state: Sequence[tuple[float, float, float, float]]) -> Metrics:
        return cls(*(float(v) for v in np.mean(np.asarray(per_state, dtype=np.float64), axis=0)))


def uniform_metrics(states: Sequence[ExpertState]) -> Metrics:
    rows = []
    for s in states:
        n = len(s.admissible)
        rows.append((1 / n, min(3, n) / n, sum(1 / r for r in range(1, n + 1)) / n, 1 / n))
    return Metrics.mean(rows)


def expert_metrics(logprobs: np.ndarray, expert: int) -> tuple[float, float, float, float]:
    rank = 1 + int(np.sum(logprobs > logprobs[expert]))  # ties count in the expert's favour
    return float(rank == 1), float(rank <= 3), 1.0 / rank, float(np.exp(logprobs[expert]))


def keyword_prior() -> FunctionPrior:
    """No model: prefers commands whose words appear in the prompt (for tests of this script)."""

    def fn(prompt: str, candidates: Sequence[str]) -> list[float]:
        words = set(prompt.lower().split())
        return [float(sum(w in words for w in c.lower().split())) for c in candidates]

    return FunctionPrior(fn, name="prior_quality-keywords")


def fresh(prior: ActionPrior) -> ActionPrior:
    """The same model with an empty prefix cache, so that each setting pays for its own demonstrations once (its
    first state's time and tokens) rather than finding them in what an earlier setting left in the cache."""
    if isinstance(prior, HFPrior):
        return HFPrior(prior.model, prior.tokenizer, separator=prior.separator,
                       candidate_suffix=prior.candidate_suffix, token_budget=prior.token_budget)
    return prior


def score_setting(prior: ActionPrior, states: Sequence[ExpertState], example: str | None, history: int) -> dict[str, Any]:
    """Score every state (one call each, from an empty prefix cache); metrics per normalisation and the time
    per state."""
    prior = fresh(prior)
    template = PromptTemplate(history=history)
    per_norm: dict[str, list] = {n: [] for n in NORMALIZATIONS}
    token_logprobs: list[np.ndarray] = []
    seconds, tokens = [], []
    computed: list[int] = []  # tokens through the model per forward (what the prefix cache saves)
    model = prior.model if isinstance(prior, HFPrior) else None
    hook = model.get_input_embeddings().register_forward_hook(
        lambda module, inputs, output: computed.append(int(inputs[0].numel()))) if model is not None else None
    for s in states:
        prompt = template(TextState(s.observation, s.admissible, s.task, s.history, example))
        start, before = time.perf_counter(), len(computed)
        scores = prior.score([prompt], [s.admissible], normalization="sum")
        seconds.append(time.perf_counter() - start)
        tokens.append(sum(computed[before:]))
        expert = s.admissible.index(s.expert)
        for norm in NORMALIZATIONS:
            logp = normalize_scores(scores.raw_logprobs[0], scores.num_tokens[0], s.admissible, norm)
            per_norm[norm].append(expert_metrics(logp, expert))
            if norm == "token":
                token_logprobs.append(logp)
    if hook is not None:
        hook.remove()
    return {
        "metrics": {n: Metrics.mean(rows) for n, rows in per_norm.items()},
        "s_per_state": float(np.median(seconds)),
        "s_first": float(seconds[0]),
        "tokens_first": tokens[0],
        "tokens_per_state": float(np.median(tokens[1:])) if len(tokens) > 1 else float(tokens[0]),
        "logprobs": token_logprobs,
    }


def log(message: str = "") -> None:
    print(message, flush=True)


def lora_epochs(points: int) -> int:
    """4 passes over a few walkthroughs' steps, 2 over many (a fixed rule: the CPU cost grows with the data)."""
    return 4 if points <= 64 else 2


def source_row(base: dict[str, Any], source: str, n_games: int, train_s: float, result: dict[str, Any],
               metrics: Metrics | None = None) -> dict[str, Any]:
    m = metrics or result["metrics"]["token"]
    return {**base, "source": source, "train_games": n_games, "train_s": train_s, "normalization": "token",
            "top1": m.top1, "top3": m.top3, "mrr": m.mrr, "p_expert": m.p_expert,
            "s_per_state": result.get("s_per_state", float("nan")), "invalid_rate": float("nan"),
            "tokens_per_state": result.get("tokens_per_state", float("nan")),
            "tokens_first_state": result.get("tokens_first", float("nan"))}


def run_sources(prior: ActionPrior, spec: FamilySpec, states: Sequence[ExpertState], env_example: str | None,
                base: dict[str, Any], args: argparse.Namespace, count: Callable[[str], int]) -> list[dict[str, Any]]:
    """The prior sources of one family (see the module docstring), every trained one on the same walkthroughs."""
    h, rows = args.source_history, []
    sources = [s for s in args.sources if s != "lora" or isinstance(prior, HFPrior)]
    if "lora" in args.sources and "lora" not in sources:
        log("  lora: skipped (needs an HFPrior; --fast uses a keyword prior)")
    eval_sources = {s.source for s in states}
    zero: dict[str, Any] | None = None  # the zero-shot scores, N-independent: computed once
    if "zero" in sources:
        zero = score_setting(prior, states, env_example, h)
        rows.append(source_row({**base, "shots": 0, "history": h, "demo_tokens": 0,
                                "s_first_state": zero["s_first"]}, "zero", 0, 0.0, zero))
        log(f"  source zero: MRR {rows[-1]['mrr']:.2f}")
    for n_games in args.train_games:
        demo_env = spec.make_env(args.game_seed, n_games)
        demos = Demonstrations.from_expert(demo_env, n_games, seed=args.game_seed, max_steps=spec.max_steps,
                                           shots=min(2, n_games), max_tokens=args.max_demo_tokens, count_tokens=count)
        demo_env.close()
        demos.check_no_leakage(eval_sources)
        episodes = demos.episodes
        points = sum(len(e.steps) for e in episodes)
        log(f"  {n_games} training games: {len(episodes)} won walkthroughs, {points} decision points")
        scored: dict[str, dict[str, Any]] = {}
        costs: dict[str, float] = {}
        shown = {**base, "history": h, "demo_tokens": 0}
        if "prompt" in sources:
            example = demos.text()
            scored["prompt"] = score_setting(prior, states, example, h)
            costs["prompt"] = 0.0
            rows.append(source_row({**shown, "shots": min(2, n_games), "demo_tokens": count(example),
                                    "s_first_state": scored["prompt"]["s_first"]}, "prompt", n_games, 0.0,
                                   scored["prompt"]))
        if "bc" in sources or "product" in sources:
            bc = BCPrior(encoder=HashingEncoder(256) if args.fast else None, seed=args.game_seed)
            start = time.perf_counter()
            bc.fit(episodes, history=h)
            costs["bc"] = time.perf_counter() - start
            scored["bc"] = score_setting(bc, states, env_example, h)
            if "bc" in sources:
                rows.append(source_row({**shown, "shots": 0, "s_first_state": scored["bc"]["s_first"]}, "bc",
                                       n_games, costs["bc"], scored["bc"]))
        if "lora" in sources or ("product" in sources and isinstance(prior, HFPrior)):
            epochs = args.lora_epochs or lora_epochs(points)
            start = time.perf_counter()
            adapted = fit_lora(prior, episodes, example=env_example, history=h, epochs=epochs, seed=args.game_seed,
                               batch_size=args.lora_batch_size, progress=sys.stderr.isatty())
            costs["lora"] = time.perf_counter() - start
            scored["lora"] = score_setting(adapted, states, env_example, h)
            del adapted
            if "lora" in sources:
                rows.append(source_row({**shown, "shots": 0, "s_first_state": scored["lora"]["s_first"]}, "lora",
                                       n_games, costs["lora"], scored["lora"]))
        if "product" in sources:
            llm = "lora" if "lora" in scored else "prompt" if "prompt" in scored else None
            if llm is None:  # no trained LLM source: the zero-shot one
                zero = zero or score_setting(prior, states, env_example, h)
                scored["zero"], costs["zero"], llm = zero, 0.0, "zero"
            per_state = []
            for s, a, b in zip(states, scored[llm]["logprobs"], scored["bc"]["logprobs"]):
                per_state.append(expert_metrics(log_softmax(a + b), s.admissible.index(s.expert)))
            rows.append(source_row({**shown, "shots": 0, "s_first_state": float("nan")}, f"product({llm},bc)",
                                   n_games, costs[llm] + costs["bc"], {}, Metrics.mean(per_state)))
        for r in rows:
            if r["train_games"] == n_games:
                log(f"  source {r['source']} on {n_games} games: MRR {r['mrr']:.2f}, top-1 {r['top1']:.2f}, "
                    f"trained in {r['train_s']:.0f}s")
    return rows


def run(args: argparse.Namespace) -> list[dict[str, Any]]:
    if args.fast:
        prior: ActionPrior = keyword_prior()
        model_name = "keyword FunctionPrior"
    else:
        prior = load_prior(args.model)
        model_name = args.model or "embedded SmolLM2-135M-Instruct"
    count = token_counter(prior.tokenizer) if hasattr(prior, "tokenizer") else approximate_token_count
    log(f"prior: {model_name}; torch threads {torch.get_num_threads()}; families {args.families}; "
        f"{args.n_games} evaluation games each (seeds from {args.game_seed + UNSEEN_SEED_OFFSET}), demonstrations "
        f"from {args.demo_games} other games (seeds from {args.game_seed}), budget {args.max_demo_tokens} tokens")
    rows: list[dict[str, Any]] = []
    for name in args.families:
        spec = FAMILIES[name]
        start = time.perf_counter()
        eval_env = spec.make_env(args.game_seed + UNSEEN_SEED_OFFSET, args.n_games)
        states = expert_states(eval_env, args.game_seed + UNSEEN_SEED_OFFSET, args.n_games, spec.max_steps)
        env_example = eval_env.unwrapped.prompt_example
        demo_env = spec.make_env(args.game_seed, args.demo_games) if max(args.shots) > 0 else None
        uniform = uniform_metrics(states)
        n_adm = [len(s.admissible) for s in states]
        log(f"\n[{name}] {len(states)} expert states on {args.n_games} evaluation games, {min(n_adm)}-{max(n_adm)} "
            f"admissible commands (mean {np.mean(n_adm):.1f}); games ready in {time.perf_counter() - start:.0f}s")
        for shots in args.shots:
            example, demo_tokens = env_example, 0
            if shots > 0:
                demos = Demonstrations.from_expert(
                    demo_env, args.demo_games, seed=args.game_seed, max_steps=spec.max_steps, shots=shots,
                    max_tokens=args.max_demo_tokens, count_tokens=count,
                )
                demos.check_no_leakage({s.source for s in states})
                example = demos.text()
                demo_tokens = count(example) if example else 0
            for history in args.history:
                result = score_setting(prior, states, example, history)
                log(f"  shots={shots} history={history}: {result['s_per_state']:.2f} s/state, "
                    f"{result['tokens_per_state']:.0f} tokens computed per state (first state "
                    f"{result['s_first']:.2f} s, {result['tokens_first']} tokens; demonstrations {demo_tokens} tokens)")
                base = {"family": name, "source": "llm", "train_games": args.demo_games if shots else 0,
                        "train_s": 0.0, "shots": shots, "history": history, "states": len(states),
                        "mean_admissible": float(np.mean(n_adm)), "uniform_top1": uniform.top1,
                        "uniform_top3": uniform.top3, "uniform_mrr": uniform.mrr, "uniform_p_expert": uniform.p_expert,
                        "demo_tokens": demo_tokens, "s_first_state": result["s_first"]}
                for norm in args.normalization:
                    m = result["metrics"][norm]
                    rows.append({
                        **base, "normalization": norm, "top1": m.top1, "top3": m.top3, "mrr": m.mrr,
                        "p_expert": m.p_expert, "s_per_state": result["s_per_state"], "invalid_rate": float("nan"),
                        "tokens_per_state": result["tokens_per_state"], "tokens_first_state": result["tokens_first"],
                    })
                for n_samples in args.propose:  # k sampled proposals, ranked by their smoothed counts
                    got = propose_setting(fresh(prior), states, example, history, n_samples, seed=args.game_seed)
                    log(f"  shots={shots} history={history} propose k={n_samples}: {got['s_per_state']:.2f} s/state, "
                        f"invalid {got['invalid_rate']:.2f}, {got['distinct_proposed']:.1f} commands proposed per state; "
                        f"top-1 {got['top1']:.2f}, MRR {got['mrr']:.2f}")
                    rows.append({**base, "normalization": f"prop{n_samples}", "top1": got["top1"], "top3": got["top3"],
                                 "mrr": got["mrr"], "p_expert": got["p_expert"], "s_per_state": got["s_per_state"],
                                 "s_first_state": got["s_first"], "invalid_rate": got["invalid_rate"],
                                 "tokens_per_state": float("nan"), "tokens_first_state": float("nan")})
        if args.sources and args.train_games and spec.distinct_games:
            base = {"family": name, "states": len(states), "mean_admissible": float(np.mean(n_adm)),
                    "uniform_top1": uniform.top1, "uniform_top3": uniform.top3, "uniform_mrr": uniform.mrr,
                    "uniform_p_expert": uniform.p_expert}
            rows += run_sources(prior, spec, states, env_example, base, args, count)
        elif args.sources and args.train_games:
            log("  prior sources: skipped (every game of this family is the same: no unseen game to measure on)")
        eval_env.close()
        if demo_env is not None:
            demo_env.close()
    return rows


def report(rows: Sequence[dict[str, Any]], out: Path) -> str:
    out.mkdir(parents=True, exist_ok=True)
    path = out / "prior_quality.csv"
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(dict.fromkeys(k for r in rows for k in r)))
        writer.writeheader()
        for r in rows:
            writer.writerow({k: f"{v:.4f}" if isinstance(v, float) else v for k, v in r.items()})

    header = f"{'family':<14}{'source':<19}{'N':>3}{'shots':>6}{'hist':>5}  {'norm':<6}{'states':>7}{'adm':>6}   " \
             f"{'top1':>5} {'top3':>5} {'MRR':>5} {'p(e)':>5}   uniform {'top1':>5} {'top3':>5} {'MRR':>5} {'p(e)':>5}"
    log("\n" + header)
    log("-" * len(header))
    for r in rows:
        log(f"{r['family']:<14}{r['source']:<19}{r['train_games']:>3}{r['shots']:>6}{r['history']:>5}  "
            f"{r['normalization']:<6}{r['states']:>7}"
            f"{r['mean_admissible']:>6.1f}   {r['top1']:>5.2f} {r['top3']:>5.2f} {r['mrr']:>5.2f} {r['p_expert']:>5.2f}"
            f"           {r['uniform_top1']:>5.2f} {r['uniform_top3']:>5.2f} {r['uniform_mrr']:>5.2f} "
            f"{r['uniform_p_expert']:>5.2f}")

    for k in sorted({r["normalization"] for r in rows if r["normalization"].startswith("prop")}):
        same = [r for r in rows if r["normalization"] == k]
        log(f"Proposals k={k[4:]}: {np.median([r['s_per_state'] for r in same]):.3f} s/state (median), invalid "
            f"rate {np.mean([r['invalid_rate'] for r in same]):.2f}")
    log("\nScoring time per state (median over families of the median over states; one call per state, the first "
        "state of a setting computes the demonstrations):")
    grid = [r for r in rows if r["source"] == "llm"]
    for shots in sorted({r["shots"] for r in grid}):
        same = [r for r in grid if r["shots"] == shots and r["normalization"] == grid[0]["normalization"]]
        log(f"  {shots} shot{'s' if shots != 1 else ''}: {np.median([r['s_per_state'] for r in same]):.3f} s/state, "
            f"{np.median([r['tokens_per_state'] for r in same]):.0f} tokens computed per state; first state "
            f"{np.median([r['s_first_state'] for r in same]):.2f} s; demonstrations up to "
            f"{max(r['demo_tokens'] for r in same)} tokens")

    trained = [r for r in rows if r["source"] != "llm"]
    if trained:
        log("\nPrior sources side by side (expert command's MRR / top-1 on the evaluation games; N: walkthroughs of "
            "N training games given to the source; training seconds):")
        for family in dict.fromkeys(r["family"] for r in trained):
            mine = [r for r in trained if r["family"] == family]
            log(f"  {family} (uniform MRR {mine[0]['uniform_mrr']:.2f}, top-1 {mine[0]['uniform_top1']:.2f}):")
            for r in mine:
                log(f"    {r['source']:<19} N={r['train_games']:<3} MRR {r['mrr']:.2f}  top-1 {r['top1']:.2f}  "
                    f"trained {r['train_s']:.0f}s")

    best: dict[str, dict[str, Any]] = {}
    for r in rows:
        if r["family"] not in best or r["mrr"] > best[r["family"]]["mrr"]:
            best[r["family"]] = r
    log("\nBest setting per family (by MRR):")
    for family, r in best.items():
        what = "" if r["source"] == "llm" else f"source {r['source']} on {r['train_games']} games, "
        log(f"  {family}: {what}{r['shots']} shot{'s' if r['shots'] != 1 else ''}, history {r['history']}, {r['normalization']} normalisation: "
            f"MRR {r['mrr']:.2f} (uniform {r['uniform_mrr']:.2f}), top-1 {r['top1']:.2f} (uniform {r['uniform_top1']:.2f})")
    log(f"results in {path}")
    return " ".join(f"prior_mrr_{family}={r['mrr']:.3f}" for family, r in best.items())


def main(argv: Sequence[str] | None = None) -> str:
    parser = argument_parser(__doc__)
    parser.add_argument("--families", nargs="+", choices=sorted(FAMILIES),
                        default=["simple", "cooking", "treasure", "coin", "tomato"])
    parser.add_argument("--shots", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--history", nargs="+", type=int, default=[0, 2])
    parser.add_argument("--normalization", nargs="+", choices=NORMALIZATIONS, default=list(NORMALIZATIONS))
    parser.add_argument("--propose", nargs="*", type=int, default=[], metavar="K",
                        help="also rank by K sampled proposals per state (rows 'propK'; see propose_setting.py)")
    parser.add_argument("--model", default=None, help="model dir / hub id / .gguf (default: embedded SmolLM2)")
    parser.add_argument("--game-seed", type=int, default=0, help="demonstration games from here, evaluation +100000")
    parser.add_argument("--n-games", type=int, default=5, help="evaluation games (episodes) per family")
    parser.add_argument("--demo-games", type=int, default=4, help="games the demonstrations are drawn from")
    parser.add_argument("--max-demo-tokens", type=int, default=1024, help="token budget of the demonstrations")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1 is fastest on a shared 2-core CPU)")
    parser.add_argument("--quick", action="store_true", help="1 evaluation game, 2 demonstration games, history 0")
    parser.add_argument("--fast", action="store_true", help="a keyword FunctionPrior instead of the LLM (tests)")
    parser.add_argument("--train-games", nargs="*", type=int, default=[2, 16],
                        help="walkthroughs of this many training games for each prior source (none: no sources)")
    parser.add_argument("--sources", nargs="*", choices=SOURCES, default=list(SOURCES),
                        help="prior sources to compare (see the module docstring; none: prompt settings only)")
    parser.add_argument("--source-history", type=int, default=2, help="history of the sources' prompts")
    parser.add_argument("--lora-epochs", type=int, default=None, help="LoRA epochs (default: 4 up to 64 decision "
                        "points, else 2)")
    parser.add_argument("--lora-batch-size", type=int, default=None, help="decision points per LoRA optimiser step "
                        "(default: fit_lora's, enough for 100 steps, at most 8)")
    parser.add_argument("--out", type=Path, default=Path("results"))
    args = parser.parse_args(argv)
    if args.quick:
        args.n_games, args.demo_games, args.history, args.train_games = 1, 2, [0], [2]
    if any(s < 0 for s in args.shots) or args.n_games < 1 or args.demo_games < max(args.shots):
        parser.error("--shots must be >= 0, --n-games >= 1 and --demo-games >= the largest --shots")
    if any(n < 1 for n in args.train_games) or args.source_history < 0:
        parser.error("--train-games must be >= 1 and --source-history >= 0")
    torch.set_num_threads(args.threads)
    log(conditions(game_seed=args.game_seed))
    clock = Stopwatch()
    rows = run(args)
    summary = report(rows, args.out)
    log(clock.wall_time())
    log(summary)
    return summary


if __name__ == "__main__":
    main()
