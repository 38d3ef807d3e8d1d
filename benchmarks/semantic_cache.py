"""The semantic prior cache against the exact one: LLM queries saved, and what it costs the learner.

DQN-Prior on a TextWorld challenge family (default tw-cooking-easy, the benchmark's per-run settings from
``challenge_runs.py``) twice per seed: with the exact cache (``CachedPrior``) and with ``SemanticCachedPrior``
(MiniLM embeddings of the state text). Both arms draw their scores from one score store (the family's persisted
exact LLM scores, the embedded SmolLM2 for what is not there), and a counter below each arm's cache counts the prompts
that reach it: the LLM queries each arm would make from a cold start. Then the exact arm's whole query stream
(hits included) is replayed through the semantic cache at several thresholds, without training: hit rate, queries,
max / mean |delta logprob| against the exact scores and how often the top command is still the same.

    python benchmarks/semantic_cache.py --game-seed 0 --seeds 0 --replay-only   # pick the threshold here
    python benchmarks/semantic_cache.py --game-seed 7 --threshold 0.9           # report on other games
    python benchmarks/semantic_cache.py --quick                                 # 200 steps, one seed

Ends with ``semantic_query_ratio=<exact/semantic> semantic_success_ratio=<semantic/exact>``.
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # `envs` and this folder's challenge_runs

from benchmarks.challenge_runs import Config, Resources, online_run  # noqa: E402
from benchmarks.common import Stopwatch, argument_parser, print_conditions, summary_line  # noqa: E402
from envs.textworld_challenges import make_challenge_games  # noqa: E402
from prior_wrappers import CachedPrior, SemanticCachedPrior  # noqa: E402
from prior_wrappers.priors.base import Normalization, PriorScores, normalize_scores  # noqa: E402

Request = tuple[str, tuple[str, ...], str]


class ScoreStore:
    """Exact per-command LLM scores: the persisted cache's entries, else the LLM (each command is scored on its own
    tokens after the prompt, so any subset is answered exactly by renormalising).

    :param res: the family's resources (``res.prior`` is the LLM behind the persisted exact cache).
    """

    def __init__(self, res: Resources) -> None:
        self.llm = res.prior
        self.table: dict[tuple[str, str], dict[str, tuple[float, int]]] = {}
        _, items, _ = CachedPrior._read(res.cache_file) if res.cache_file.is_file() else ("", [], [])
        for (prompt, cands, norm), entry in items:
            self.table.setdefault((prompt, norm), {}).update(
                {c: (float(r), int(n)) for c, r, n in zip(cands, entry[1], entry[2])}
            )
        self.fingerprint = self.llm.fingerprint
        self.llm_prompts = 0

    def score(self, prompts: Sequence[str], candidates: Sequence[Sequence[str]], *,
              normalization: Normalization = "token", return_features: bool = False) -> PriorScores:
        """Exact scores of each prompt's candidates.

        :param prompts: one per state.
        :param candidates: commands per state.
        :param normalization: as for any prior.
        :param return_features: unsupported here (the benchmark uses MiniLM features).
        """
        if return_features:
            raise ValueError("ScoreStore keeps no hidden-state features")
        todo = [i for i, (p, c) in enumerate(zip(prompts, candidates))
                if not set(c) <= self.table.get((p, normalization), {}).keys()]
        if todo:
            fresh = self.llm.score([prompts[i] for i in todo], [list(candidates[i]) for i in todo],
                                   normalization=normalization)
            self.llm_prompts += len(todo)
            for j, i in enumerate(todo):
                self.table.setdefault((prompts[i], normalization), {}).update(
                    {c: (float(r), int(n)) for c, r, n in zip(candidates[i], fresh.raw_logprobs[j], fresh.num_tokens[j])}
                )
        raw, ntok = [], []
        for p, c in zip(prompts, candidates):
            row = self.table[(p, normalization)]
            raw.append(np.array([row[x][0] for x in c]))
            ntok.append(np.array([row[x][1] for x in c], np.int64))
        logprobs = [normalize_scores(r, n, c, normalization) for r, n, c in zip(raw, ntok, candidates)]
        return PriorScores(logprobs=logprobs, raw_logprobs=raw, num_tokens=ntok)

    def propose(self, *args: Any, **kwargs: Any):
        return self.llm.propose(*args, **kwargs)


class Counting:
    """Counts the prompts that reach ``prior`` (the LLM queries of a cold start) and, optionally, records them.

    :param prior: the prior to forward to.
    """

    def __init__(self, prior: Any) -> None:
        self.prior, self.prompts, self.calls, self.commands = prior, 0, 0, 0
        self.stream: list[Request] = []

    @property
    def fingerprint(self) -> str:
        return self.prior.fingerprint

    def score(self, prompts: Sequence[str], candidates: Sequence[Sequence[str]], **kwargs: Any) -> PriorScores:
        """Forward, counting.

        :param prompts: one per state.
        :param candidates: commands per state.
        """
        self.calls += 1
        self.prompts += len(prompts)
        self.commands += sum(len(c) for c in candidates)
        norm = kwargs.get("normalization", "token")
        self.stream += [(p, tuple(c), norm) for p, c in zip(prompts, candidates)]
        return self.prior.score(prompts, candidates, **kwargs)

    def propose(self, *args: Any, **kwargs: Any):
        return self.prior.propose(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        if name == "prior":
            raise AttributeError(name)
        return getattr(self.prior, name)


def train(arm: str, res: Resources, store: ScoreStore, seed: int, game: Path, threshold: float, rule: str):
    """One DQN-Prior run with the given cache in front of the score store: (curve, queries, stream, cache info)."""
    below = Counting(store)
    cache = (CachedPrior(below) if arm == "exact"
             else SemanticCachedPrior(below, res.encoder, threshold=threshold, candidates=rule))  # type: ignore[arg-type]
    above = Counting(cache)  # every request the wrapper makes, hits included
    curve = online_run("DQN", True, seed, game, dataclasses.replace(res, prior=above))  # type: ignore[arg-type]
    return curve, below.prompts, above.stream, cache.cache_info() | {"llm_commands": below.commands}


def replay(stream: Sequence[Request], store: ScoreStore, res: Resources, thresholds: Sequence[float], rule: str):
    """Each threshold's queries, hit rate and deviation from the exact scores over ``stream``."""
    exact_queries = len(set(stream))
    rows = []
    for t in thresholds:
        below = Counting(store)
        sem = SemanticCachedPrior(below, res.encoder, threshold=t, candidates=rule)  # type: ignore[arg-type]
        deltas, agree = [], []
        for prompt, cands, norm in stream:
            got = sem.score([prompt], [list(cands)], normalization=norm).logprobs[0]  # type: ignore[arg-type]
            ref = store.score([prompt], [list(cands)], normalization=norm).logprobs[0]  # type: ignore[arg-type]
            deltas.append(float(np.max(np.abs(got - ref))))
            agree.append(int(np.argmax(got)) == int(np.argmax(ref)))
        info = sem.cache_info()
        rows.append(dict(threshold=t, queries=below.prompts, ratio=exact_queries / max(below.prompts, 1),
                         hit_rate=info["hit_rate"], semantic_hits=info["semantic_hits"], partial=info["partial"],
                         max_delta=max(deltas), mean_delta=float(np.mean(deltas)), top1=float(np.mean(agree))))
    return exact_queries, rows


def main(argv: Sequence[str] | None = None) -> str:
    parser = argument_parser(__doc__)
    parser.add_argument("--family", default="cooking-easy")
    parser.add_argument("--game-seed", type=int, default=7, help="the games' seed (pick the threshold on another)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--threshold", type=float, default=0.9,
                        help="the semantic arm's threshold (picked on --game-seed 0)")
    parser.add_argument("--candidates", default="rescore", choices=["same", "subset", "rescore"])
    parser.add_argument("--replay-thresholds", type=float, nargs="+", default=[1.0, 0.97, 0.95, 0.92, 0.9, 0.85, 0.8])
    parser.add_argument("--replay-only", action="store_true", help="train the exact arm only, then replay")
    parser.add_argument("--quick", action="store_true", help="200 steps, seed 0")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    cfg = Config(game_seed=args.game_seed, steps=200 if args.quick else args.steps)
    cfg.eval_at = sorted({p for p in Config().eval_at if p < cfg.steps} | {cfg.steps})
    seeds = [0] if args.quick else args.seeds
    print_conditions(seeds=seeds, game_seed=cfg.game_seed)
    clock = Stopwatch()
    res = Resources.load(cfg, args.family)
    store = ScoreStore(res)
    game = make_challenge_games(args.family, 1, seed=cfg.game_seed)[0]
    results: dict[str, list[tuple[Any, int]]] = {"exact": [], "semantic": []}
    streams: list[Request] = []
    for seed in seeds:
        for arm in ("exact",) if args.replay_only else ("exact", "semantic"):
            arm_clock = Stopwatch()
            curve, queries, stream, info = train(arm, res, store, seed, game, args.threshold, args.candidates)
            results[arm].append((curve, queries))
            streams += stream if arm == "exact" else []
            print(f"[{clock.seconds:5.0f}s] {arm} seed {seed}: {queries} LLM queries, "
                  f"{len(stream)} requests; success {curve.success_rate} return {curve.mean_return}; "
                  f"{arm_clock.seconds:.0f}s; cache {info}", flush=True)
    res.save()  # new LLM scores persist for reruns
    print(f"\nconfig: family {args.family}, game seed {cfg.game_seed}, seeds {seeds}, {cfg.steps} steps, "
          f"threshold {args.threshold}, candidates={args.candidates}; LLM calls this run: {store.llm_prompts}")
    exact_queries, rows = replay(streams, store, res, args.replay_thresholds, args.candidates)
    print(f"\nReplay of the exact arm's {len(streams)} requests ({exact_queries} distinct = the exact cache's queries):")
    print("threshold  queries  ratio  hit rate  semantic hits  partial  max|dlogp|  mean max|dlogp|  top-1 = exact")
    for r in rows:
        print(f"{r['threshold']:9.2f}  {r['queries']:7d}  {r['ratio']:5.2f}  {r['hit_rate']:8.2f}  "
              f"{r['semantic_hits']:13d}  {r['partial']:7d}  {r['max_delta']:10.3f}  {r['mean_delta']:15.3f}  "
              f"{r['top1']:13.3f}")
    ok = [r["threshold"] for r in rows if r["top1"] >= 0.97]
    print(f"lowest threshold keeping the top command in >= 97% of requests: {min(ok) if ok else 'none'}")
    last = {"replay_exact_queries": exact_queries}
    if not args.replay_only:
        final = {arm: (np.mean([c.success_rate[-1] for c, _ in runs]), np.mean([c.mean_return[-1] for c, _ in runs]),
                       sum(q for _, q in runs)) for arm, runs in results.items()}
        print("\narm       LLM queries  final greedy success  final greedy return   (sum / mean over seeds)")
        for arm, (succ, ret, q) in final.items():
            print(f"{arm:8s}  {q:11d}  {succ:20.2f}  {ret:19.2f}")
        q_ratio = final["exact"][2] / max(final["semantic"][2], 1)
        s_ratio = final["semantic"][0] / final["exact"][0] if final["exact"][0] > 0 else float("nan")
        last = {"semantic_query_ratio": f"{q_ratio:.2f}", "semantic_success_ratio": f"{s_ratio:.2f}"}
    print(clock.wall_time())
    return summary_line(last)


if __name__ == "__main__":
    main()
