"""The evidence with demonstrations: every arm given the same walkthroughs (issue 21, part 2).

**Question.** On a TextWorld challenge family, how many environment steps does DQN need to win a game it never saw,
when what it knows beyond its own experience is N expert walkthroughs of *other* games of the family, and where that
knowledge goes: nowhere (uniform), into its replay buffer, into a prior learned from them alone, or into the LLM
(zero-shot, in its prompt, in its weights)? The LLM arms are ahead of the others only by what the LLM itself knows.

**Arms** (``--arms``; every one the same ``DQNPrior``, network, MiniLM features, k = 64 slots, budget and seeds):

- ``uniform``: ``UniformPrior``, no walkthrough (plain DQN: Boltzmann/ε exploration over the admissible commands);
- ``buffer``: ``UniformPrior``, the N walkthroughs' transitions in the replay buffer before the first step (what a
  practitioner without an LLM does with demonstrations);
- ``demos``: :class:`~prior_wrappers.BCPrior` trained on the N walkthroughs (MiniLM + MLP, no LLM): the
  demonstrations-only prior;
- ``zero``: SmolLM2-135M-Instruct zero-shot (the env's hand-written example), no walkthrough;
- ``prompt``: SmolLM2 with the walkthroughs in its prompt (the two that fit 1,400 tokens: run at the smallest N);
- ``lora``: SmolLM2 adapted to the N walkthroughs with :func:`~prior_wrappers.fit_lora` (zero-shot prompts).

``--walkthroughs 2 16``: N, for every arm that takes walkthroughs (``uniform`` and ``zero`` run once). The walkthrough
games (seeds ``game_seed + 200000``) are checked disjoint from the training game. The DQN settings are those of
``benchmarks/textworld_challenges.py`` (α 0.1, γ 0.9, one update per step, ε over the first 60 steps), chosen
before this benchmark existed and not searched per arm. Greedy action: the posterior's mode (argmax Q under the
uniform prior).

**Measured.** Every ``--eval-freq`` steps one greedy episode (game and greedy policy are deterministic). Per run:
steps to the first win and to half the game's points; a run stops early once its greedy policy has won
``--stop-after`` evaluations in a row (the milestones are then known) and counts as its budget, marked ``>=``,
where it never gets there. Per arm: the IQM over seeds with its 95% stratified-bootstrap interval and, against the
best LLM arm, the ratio of IQMs and P(improvement). Costs: each run's wall time and the walkthrough-trained sources'
training time.

    python benchmarks/evidence_textworld.py --quick                        # minutes: the code paths
    python benchmarks/evidence_textworld.py --game-seed 1                  # the table (tw-cooking-easy, 5 seeds)
    python benchmarks/evidence_textworld.py --game-seed 1 --arms prompt lora --out results/tw_g1_llm   # arms apart
    python benchmarks/evidence_textworld.py --report-from results/tw_g1_*/evidence_textworld.csv     # merged report

Writes ``<out>/evidence_textworld.csv`` (after every run; a rerun with the same ``--out`` skips the finished runs)
and ``evidence_textworld_<family>.png``; ends with ``tw_steps_ratio_<family>=<uniform IQM / best LLM arm's IQM,
steps to a win> llm_vs_demos_<family>=<demos-only arm's IQM / best LLM arm's>`` (N = the smallest walkthrough count)
and the same per N (``..._n16=``).
"""

from __future__ import annotations

import csv
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import (  # noqa: E402
    Stopwatch,
    add_model_arguments,
    argument_parser,
    print_conditions,
    save_figure,
    save_merged,
    summary_line,
    train_timed,
)
from benchmarks.evidence import arm_text, compare  # noqa: E402

ARMS = ("uniform", "buffer", "demos", "zero", "prompt", "lora")
LLM_ARMS = ("zero", "prompt", "lora")
WITHOUT_WALKTHROUGHS = ("uniform", "zero")
DESCRIBED = {
    "uniform": "DQN, uniform prior",
    "buffer": "DQN, walkthroughs in its buffer",
    "demos": "DQN-Prior, BCPrior (demos only)",
    "zero": "DQN-Prior, LLM zero-shot",
    "prompt": "DQN-Prior, LLM + walkthroughs in prompt",
    "lora": "DQN-Prior, LLM + LoRA on walkthroughs",
}
OUT = Path("results")
CSV_NAME = "evidence_textworld.csv"
MILESTONES = {"win": 1.0, "half the points": 0.5}


@dataclass
class Settings:
    """What a run depends on (printed first)."""

    family: str = "cooking-easy"
    game_seed: int = 1
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2, 3, 4])
    walkthroughs: list[int] = field(default_factory=lambda: [2, 16])
    budget: int = 1200
    eval_freq: int = 50
    stop_after: int = 3
    k: int = 64  # more than any state's admissible commands on the games used (52 seen), so no arm loses one
    max_episode_steps: int = 100
    demo_tokens: int = 1400
    model: str | None = None
    dtype: str = "float32"
    device: str | None = None
    keyword_prior: bool = False  # tests: a keyword scorer in place of the LLM (no model load, no LoRA)


@dataclass
class Run:
    """One run's greedy evaluations (returns normalised by the game's points)."""

    family: str
    game_seed: int
    arm: str
    walkthroughs: int
    seed: int
    steps: list[int]
    returns: list[float]
    seconds: list[float]
    budget: int
    train_s: float = 0.0  # the walkthrough-trained source's training (BCPrior, LoRA), shared by the arm's seeds

    @property
    def label(self) -> str:
        return self.arm if self.arm in WITHOUT_WALKTHROUGHS else f"{self.arm} N={self.walkthroughs}"

    def steps_to(self, fraction: float) -> tuple[int, bool]:
        """Steps to the first greedy evaluation with at least ``fraction`` of the points (else the budget)."""
        step = next((s for s, r in zip(self.steps, self.returns) if r >= fraction - 1e-9), None)
        return (self.budget, False) if step is None else (step, True)


def keyword_scores(prompt: str, commands: Sequence[str]) -> list[float]:
    """The tests' stand-in for the LLM: a cook's keywords (no model)."""
    keys = [("take", 2.0), ("cook", 2.0), ("slice", 2.0), ("chop", 2.0), ("prepare", 3.0), ("eat", 3.0), ("open", 1.0)]
    return [sum(w for key, w in keys if c.startswith(key)) for c in commands]


class Sources:
    """The games, the walkthroughs and the priors of one family and game seed, each built once per process."""

    def __init__(self, settings: Settings) -> None:
        from envs.textworld_challenges import make_challenge_games
        from prior_wrappers import CachedEncoder, HashingEncoder, SentenceEncoder

        self.settings = settings
        self.game = make_challenge_games(settings.family, 1, seed=settings.game_seed)[0]
        self.encoder = CachedEncoder(HashingEncoder(256) if settings.keyword_prior else SentenceEncoder.default())
        self._llm: Any = None
        self._cached: dict[str, Any] = {}
        self._files: dict[str, Path] = {}  # where each cached source persists its scores
        self._demos: dict[int, Any] = {}
        self._trained: dict[tuple[str, int], tuple[Any, float]] = {}
        env = self.text_env([self.game])
        _, info = env.reset(seed=0)
        self.max_score = float(info["max_score"] or 1.0)
        self.example = env.prompt_example
        env.close()

    def text_env(self, games: Sequence[Path]) -> Any:
        from envs.textworld_env import TextWorldEnv

        return TextWorldEnv(list(games), max_episode_steps=self.settings.max_episode_steps, observe_state=False)

    def demo_games(self, n: int) -> list[Path]:
        from benchmarks.challenge_runs import DEMO_SEED_OFFSET  # far from every training and unseen game
        from envs.textworld_challenges import make_challenge_games

        return make_challenge_games(self.settings.family, n, seed=self.settings.game_seed + DEMO_SEED_OFFSET)

    def llm(self) -> Any:
        from benchmarks.common import load_prior
        from prior_wrappers import FunctionPrior

        if self._llm is None:
            s = self.settings
            self._llm = (FunctionPrior(keyword_scores) if s.keyword_prior
                         else load_prior(s.model, dtype=s.dtype, device=s.device))  # fmt: skip
        return self._llm

    def count_tokens(self, text: str) -> int:
        llm = self.llm()
        return len(llm.tokenizer(text)["input_ids"]) if hasattr(llm, "tokenizer") else len(text.split())

    def demonstrations(self, n: int) -> Any:
        """The N walkthroughs (the prompt shows the two that fit), checked disjoint from the training game."""
        from prior_wrappers import Demonstrations

        if n not in self._demos:
            env = self.text_env(self.demo_games(n))
            s = self.settings
            demos = Demonstrations.from_expert(env, n, seed=s.game_seed, max_steps=s.max_episode_steps, shots=2,
                                               max_tokens=s.demo_tokens, count_tokens=self.count_tokens)  # fmt: skip
            env.close()
            demos.check_no_leakage({str(Path(self.game).resolve())})
            if len(demos.episodes) < n:
                raise RuntimeError(f"only {len(demos.episodes)} of the {n} walkthroughs won: see the family's expert")
            self._demos[n] = demos
        return self._demos[n]

    def cached(self, name: str, prior: Any) -> Any:
        """``prior`` behind a :class:`CachedPrior`: the LLM's scores persist per family, game seed and source; the
        BCPrior's stay in memory (each process trains its own)."""
        from prior_wrappers import CachedPrior
        from prior_wrappers.priors.embedded import cache_dir

        if name not in self._cached:
            cached = CachedPrior(prior)
            if not self.settings.keyword_prior and not name.startswith("demos"):  # BCPrior: in memory only
                s = self.settings
                folder = cache_dir() / "benchmarks" / "evidence_textworld"
                self._files[name] = cached.file_for(folder, f"{s.family}-g{s.game_seed}-{name}")
                if self._files[name].is_file():
                    cached.load(self._files[name])
            self._cached[name] = cached
        return self._cached[name]

    def save(self) -> None:
        """Persist the LLM arms' scores, merged with what another process saved to the same file since."""
        for name, path in self._files.items():
            save_merged(self._cached[name], path)

    def trained(self, arm: str, n: int) -> tuple[Any, float]:
        """The BCPrior (``demos``) or LoRA-adapted LLM (``lora``) trained on the N walkthroughs, and its seconds."""
        from benchmarks.prior_quality import lora_epochs
        from prior_wrappers import BCPrior, HashingEncoder, fit_lora

        if (arm, n) not in self._trained:
            episodes = self.demonstrations(n).episodes
            watch = Stopwatch()
            if arm == "demos":
                bc = BCPrior(encoder=HashingEncoder(256) if self.settings.keyword_prior else None,
                             seed=self.settings.game_seed)  # fmt: skip
                prior: Any = bc.fit(episodes, history=0)
            elif self.settings.keyword_prior:  # no LoRA on a keyword scorer: the tests' stand-in
                prior = self.llm()
            else:
                points = sum(len(e.steps) for e in episodes)
                prior = fit_lora(self.llm(), episodes, example=self.example, history=0, epochs=lora_epochs(points),
                                 seed=self.settings.game_seed, progress=sys.stderr.isatty())  # fmt: skip
            self._trained[arm, n] = (prior, watch.seconds)
            print(f"{arm} on {n} walkthroughs: trained in {watch.seconds:.0f} s", flush=True)
        return self._trained[arm, n]

    def arm_prior(self, arm: str, n: int) -> tuple[Any, Any, float]:
        """The arm's prior, the demonstrations its prompt shows (None: the env's example) and its training time."""
        from prior_wrappers import UniformPrior

        if arm in ("uniform", "buffer"):
            return UniformPrior(), None, 0.0
        if arm == "zero":
            return self.cached("zero", self.llm()), None, 0.0
        if arm == "prompt":
            return self.cached("prompt", self.llm()), self.demonstrations(n), 0.0
        prior, seconds = self.trained(arm, n)
        return self.cached(f"{arm}{n}", prior), None, seconds  # the BCPrior's scores too: one MiniLM pass per state


def vec_env(sources: Sources, games: Sequence[Path], prior: Any, demos: Any, seed: int) -> Any:
    from prior_wrappers import VecLLMPrior, make_text_vec_env

    venv = make_text_vec_env(lambda: sources.text_env(games), 1, seed=seed)
    return VecLLMPrior(venv, prior, k=sources.settings.k, encoder=sources.encoder, candidate_text="action", history=0,
                       demonstrations=demos, seed=seed)  # fmt: skip


def walkthrough_buffer(sources: Sources, model: Any, n: int) -> Any:
    """The N walkthroughs' transitions, observed through the uniform arm's wrapper, as the model's replay buffer."""
    from prior_wrappers import LLMPriorWrapper, UniformPrior
    from prior_wrappers.sb3 import CommandPolicy, collect_dataset

    env = LLMPriorWrapper(sources.text_env(sources.demo_games(n)), UniformPrior(), k=sources.settings.k,
                          encoder=sources.encoder, candidate_text="action", history=0)  # fmt: skip
    data = collect_dataset(env, CommandPolicy(lambda: env.unwrapped.expert_command()), n_episodes=n, seed=0)
    env.close()
    if data.success_rate < 1.0:
        raise RuntimeError(f"the walkthroughs won {data.success_rate:.0%} of their games: see the family's expert")
    return data.to_replay_buffer(model.observation_space, model.action_space, model.device, model.prior_signature,
                                 buffer_size=model.buffer_size, n_envs=model.n_envs)  # fmt: skip


def train(sources: Sources, arm: str, n: int, seed: int) -> Run:
    """One arm, one seed: greedy evaluations every ``eval_freq`` steps until the budget or ``stop_after`` wins."""
    import torch

    from prior_wrappers.evaluation import LearningCurve
    from prior_wrappers.sb3 import DQNPrior

    s = sources.settings
    prior, demos, train_s = sources.arm_prior(arm, n)
    torch.manual_seed(seed)
    env = vec_env(sources, [sources.game], prior, demos, seed)
    eval_env = vec_env(sources, [sources.game], prior, demos, 10_000 + seed)
    model = DQNPrior("CandidatePolicy", env, alpha=0.1, learning_starts=50, train_freq=1, batch_size=32, gamma=0.9,
                     buffer_size=20_000, exploration_fraction=60 / s.budget, seed=seed, device="cpu")  # fmt: skip
    if arm == "buffer":
        model.replay_buffer = walkthrough_buffer(sources, model, n)
    curve = LearningCurve(arm, seed)
    # one greedy episode per evaluation: the game and the greedy policy are deterministic; a win is ``is_success``
    seconds = train_timed(model, curve, eval_env, s.budget, s.eval_freq, 1, Stopwatch(), stop_after=s.stop_after)
    env.close()
    eval_env.close()
    sources.save()
    returns = [r / sources.max_score for r in curve.mean_return]
    return Run(s.family, s.game_seed, arm, 0 if arm in WITHOUT_WALKTHROUGHS else n, seed, curve.steps, returns,
               seconds, s.budget, train_s)  # fmt: skip


# ----------------------------------------------------------------------------------------------------- the CSV
FIELDS = ["family", "game_seed", "arm", "walkthroughs", "seed", "budget", "train_s", "steps", "seconds", "return"]


def append_run(run: Run, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    new = not path.is_file()
    with open(path, "a", newline="") as f:
        writer = csv.writer(f)
        if new:
            writer.writerow(FIELDS)
        for step, second, ret in zip(run.steps, run.seconds, run.returns):
            writer.writerow([run.family, run.game_seed, run.arm, run.walkthroughs, run.seed, run.budget,
                             f"{run.train_s:.1f}", step, f"{second:.1f}", f"{ret:.4f}"])  # fmt: skip


def read_runs(paths: Sequence[Path]) -> list[Run]:
    """The runs of one or more ``evidence_textworld.csv`` files (a run found twice is kept once)."""
    runs: dict[tuple, Run] = {}
    for path in paths:
        for row in csv.DictReader(open(path)):
            key = (row["family"], int(row["game_seed"]), row["arm"], int(row["walkthroughs"]), int(row["seed"]),
                   str(path))  # fmt: skip
            run = runs.setdefault(key, Run(row["family"], int(row["game_seed"]), row["arm"], int(row["walkthroughs"]),
                                           int(row["seed"]), [], [], [], int(row["budget"]), float(row["train_s"])))
            run.steps.append(int(row["steps"]))
            run.seconds.append(float(row["seconds"]))
            run.returns.append(float(row["return"]))
    unique: dict[tuple, Run] = {}
    for run in runs.values():
        unique.setdefault((run.family, run.game_seed, run.arm, run.walkthroughs, run.seed), run)
    return list(unique.values())


# ----------------------------------------------------------------------------------------------------- the report
def arm_order(labels: Sequence[str]) -> list[str]:
    """The arms in ``ARMS``' order, each by its number of walkthroughs."""
    return sorted(set(labels), key=lambda label: (ARMS.index(label.split()[0]), int(label.partition("N=")[2] or 0)))


def report(runs: Sequence[Run]) -> dict[str, str]:
    """Per family and game seed: each arm's milestones, and the best LLM arm against the others."""
    figures: dict[str, str] = {}
    for family, game_seed in sorted({(r.family, r.game_seed) for r in runs}):
        mine = [r for r in runs if (r.family, r.game_seed) == (family, game_seed)]
        labels = arm_order([r.label for r in mine])
        budget = max(r.budget for r in mine)
        print(f"\n{family}, game seed {game_seed}: steps to each milestone, IQM [95% CI] [per seed] (budget {budget}; "
              ">= never reached)")  # fmt: skip
        reached = {label: [r.steps_to(MILESTONES["win"]) for r in mine if r.label == label] for label in labels}
        for name, fraction in MILESTONES.items():
            print(f"  {name}:")
            for label in labels:
                runs_of = [r for r in mine if r.label == label]
                trained = f"  (trained {runs_of[0].train_s:.0f} s)" if runs_of[0].train_s else ""
                text = arm_text([r.steps_to(fraction) for r in runs_of])
                print(f"    {label:14s} {DESCRIBED[label.split()[0]]:40s} {text}{trained}")
        counts = sorted({r.walkthroughs for r in mine if r.walkthroughs})
        for n in counts:
            llm = [label for label in ("zero", f"prompt N={n}", f"lora N={n}") if label in labels]
            if llm in ([], ["zero"]):  # no LLM arm given these N walkthroughs ran: nothing to attribute
                continue
            best = min(llm, key=lambda label: iqm_steps(reached[label]))
            suffix = "" if n == counts[0] else f"_n{n}"
            print(f"  N={n}: best LLM arm by IQM steps to a win: {best}")
            for other, key in (("uniform", "tw_steps_ratio"), (f"buffer N={n}", "tw_buffer_ratio"),
                               (f"demos N={n}", "llm_vs_demos")):  # fmt: skip
                if other not in reached:
                    continue
                kind, ratio, improved = compare(reached[other], reached[best])
                base_ci = interval(reached[other])
                best_ci = interval(reached[best])
                apart = base_ci[0] > best_ci[1] or base_ci[1] < best_ci[0]
                print(f"    {other} / {best}: {kind}{ratio.text('{:.2f}')}; P({best} faster) "
                      f"{improved.text('{:.2f}')}; intervals {'do not overlap' if apart else 'overlap'}")  # fmt: skip
                name = f"{key}_{family}{suffix}" if game_seed == min(r.game_seed for r in runs) else \
                    f"{key}_{family}_g{game_seed}{suffix}"  # fmt: skip
                figures[name] = f"{kind}{ratio.value:.2f}"
                figures[f"{name}_ci"] = f"{ratio.low:.2f}-{ratio.high:.2f}"
        for label in labels:
            wall = [r.seconds[-1] for r in mine if r.label == label]
            print(f"  wall time per run, {label}: {np.mean(wall):.0f} s (min {min(wall):.0f}, max {max(wall):.0f})")
    return figures


def iqm_steps(reached: Sequence[tuple[int, bool]]) -> float:
    from prior_wrappers.aggregates import interquartile_mean

    return interquartile_mean(np.array([n for n, _ in reached], dtype=float))


def interval(reached: Sequence[tuple[int, bool]]) -> tuple[float, float]:
    from prior_wrappers.aggregates import bootstrap_interval

    estimate = bootstrap_interval(np.array([n for n, _ in reached], dtype=float))
    return estimate.low, estimate.high


def plot(runs: Sequence[Run], out: Path) -> list[Path]:
    """Per family and game seed: the fraction of seeds whose greedy policy has won, against environment steps."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = []
    for family, game_seed in sorted({(r.family, r.game_seed) for r in runs}):
        mine = [r for r in runs if (r.family, r.game_seed) == (family, game_seed)]
        budget = max(r.budget for r in mine)
        grid = np.arange(0, budget + 1, 10)
        fig, ax = plt.subplots(figsize=(6.5, 4))
        for i, label in enumerate(arm_order([r.label for r in mine])):
            wins = [r.steps_to(1.0) for r in mine if r.label == label]
            won = [np.mean([ok and step <= t for step, ok in wins]) for t in grid]
            ax.step(grid, won, where="post", color=f"C{i}", label=f"{label} ({len(wins)} seeds)",
                    linestyle="--" if label.split()[0] in ("uniform", "buffer", "demos") else "-")  # fmt: skip
        ax.set_xlabel("environment steps")
        ax.set_ylabel("fraction of seeds whose greedy policy has won")
        ax.set_ylim(-0.02, 1.02)
        path = out / f"evidence_textworld_{family}_seed{game_seed}.png"
        save_figure(fig, ax, f"tw-{family}, game seed {game_seed}: the same walkthroughs, different uses", path)
        paths.append(path)
    return paths


# ----------------------------------------------------------------------------------------------------- main
def plan(arms: Sequence[str], walkthroughs: Sequence[int]) -> list[tuple[str, int]]:
    """(arm, N) pairs to run: the arms without walkthroughs once, ``prompt`` at the smallest N (its prompt holds two
    walkthroughs whatever N), the others once per N."""
    pairs = []
    for arm in arms:
        if arm in WITHOUT_WALKTHROUGHS:
            pairs.append((arm, 0))
        else:
            pairs += [(arm, min(walkthroughs))] if arm == "prompt" else [(arm, n) for n in walkthroughs]
    return pairs


def main(argv: Sequence[str] | None = None) -> dict[str, str]:
    parser = argument_parser(__doc__)
    parser.add_argument("--family", default="cooking-easy", help="a TextWorld challenge preset")
    parser.add_argument("--game-seed", type=int, default=1, help="draws the training game (0: development)")
    parser.add_argument("--seeds", type=int, default=5, help="training seeds per arm (0..n-1)")
    parser.add_argument("--arms", nargs="+", default=list(ARMS), choices=ARMS)
    parser.add_argument("--walkthroughs", type=int, nargs="+", default=[2, 16], help="N, walkthroughs per arm")
    parser.add_argument("--budget", type=int, default=1200, help="environment steps per run (at most)")
    parser.add_argument("--eval-freq", type=int, default=50)
    parser.add_argument("--stop-after", type=int, default=3, help="stop a run after this many winning evaluations")
    parser.add_argument("--quick", action="store_true", help="2 seeds, 150 steps, 2 walkthroughs: the code paths")
    parser.add_argument("--keyword-prior", action="store_true", help="a keyword scorer for the LLM (tests)")
    add_model_arguments(parser)
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--report-from", type=Path, nargs="+", default=None, help="report these CSVs' runs")
    args = parser.parse_args(argv)
    if args.quick:
        args.seeds, args.budget, args.walkthroughs = 2, 150, [2]
    if args.report_from:
        runs = read_runs(args.report_from)
        figures = report(runs)
        if args.out != OUT:
            plot(runs, args.out)
        summary_line(figures)
        return figures
    if min(args.walkthroughs) < 1:
        parser.error("--walkthroughs: at least 1 each")
    import torch

    torch.set_num_threads(args.threads)
    settings = Settings(args.family, args.game_seed, list(range(args.seeds)), sorted(args.walkthroughs), args.budget,
                        args.eval_freq, args.stop_after, model=args.model, dtype=args.dtype, device=args.device,
                        keyword_prior=args.keyword_prior)  # fmt: skip
    watch = Stopwatch()
    figures = run(settings, args.arms, args.out)
    print(watch.wall_time(), flush=True)
    summary_line(figures)
    return figures


def run(settings: Settings, arms: Sequence[str], out: Path) -> dict[str, str]:
    """Every (arm, N, seed) not yet in ``out``'s CSV, then the report and figure of all of them; the figures."""
    print_conditions(**{k: v for k, v in vars(settings).items() if k not in ("model", "device") or v}, arms=arms)
    path = out / CSV_NAME
    finished = read_runs([path]) if path.is_file() else []
    here = (settings.family, settings.game_seed, settings.budget)
    done = {(r.arm, r.walkthroughs, r.seed) for r in finished if (r.family, r.game_seed, r.budget) == here}
    sources = Sources(settings)
    started = time.perf_counter()
    for arm, n in plan(arms, settings.walkthroughs):
        for seed in settings.seeds:
            if (arm, n, seed) in done:
                continue
            result = train(sources, arm, n, seed)
            append_run(result, path)
            won = result.steps_to(1.0)
            print(f"[{time.perf_counter() - started:5.0f}s] {result.label} seed {seed}: "
                  f"{'won at ' if won[1] else 'no win in '}{won[0]} steps ({result.seconds[-1]:.0f} s)", flush=True)
    runs = [r for r in read_runs([path]) if (r.family, r.game_seed, r.budget) == here]
    figures = report(runs)
    plot(runs, out)
    return figures


if __name__ == "__main__":
    main()
