"""Prompt-token reuse: 0.1's engine (one shared prefix) vs the prefix-tree KV cache, on a stream of vector steps.

8 envs play real TextWorld challenge games (an ε-expert: TextWorld's plan, a random admissible command with
probability ``--epsilon``), with two expert demonstrations of other games in the prompt and episode-transcript
prompts (:class:`~prior_wrappers.prompts.TranscriptPrompt`). The stream of vector steps (8 prompts and their
admissible commands each) is recorded first, then scored step by step by both engines, alternately, in the same
process and on the same model: :class:`SharedPrefixEngine` (the old engine, kept here as the baseline since the library
dropped it in 0.5: one shared prefix, one chain of tokens per candidate) and ``HFPrior()`` (the prefix tree, and the
candidates packed as a token trie).

    python benchmarks/prior_reuse.py                              # cooking, 8 envs, 10 vector steps (~3 min, 2 cores)
    python benchmarks/prior_reuse.py --steps 4 --n-envs 4         # quicker
    python benchmarks/prior_reuse.py --quality                    # also: the expert's rank, transcript vs template
    python benchmarks/prior_reuse.py --server --server-steps 4    # also: a local vLLM server (CPU), echo vs next_token

Prints per vector step the prompt tokens, the tokens each engine computed and its wall time, then the totals,
the max |Δ log-prob| between the engines and the tree's KV bytes against its budget. A step whose engines differ by
more than ``--tolerance`` (1e-4) is scored again by a float64 copy of the model without any cache (``--reference
always``: every step), and each engine's distance to it is printed, so that an outlier names the engine in error. Last:
``computed_token_ratio=<new/old> step_speedup=<old/new> max_abs_diff=<x>``.

With ``--server`` a vLLM server (``make vllm``'s CPU build, started here on the same model) scores the first
``--server-steps`` vector steps with ``OpenAIPrior(scoring="echo")`` (before: prompt log-probs, no prefix-cache
reads) and ``scoring="next_token"`` (after), and the server's own counters (``/metrics``) give the prompt tokens it
computed per vector step; the line before last is ``server_computed_ratio=<after/before> server_max_abs_diff=<x>``.
"""

from __future__ import annotations

import argparse
import copy
import random
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # `envs` from the repository

from benchmarks.common import (  # noqa: E402
    Stopwatch,
    add_model_arguments,
    argument_parser,
    device_sync,
    load_prior,
    print_conditions,
    summary_line,
)
from envs import TextWorldChallengeEnv, challenge_splits  # noqa: E402
from prior_wrappers import Demonstrations, HFPrior  # noqa: E402
from prior_wrappers.actions import make_text_state  # noqa: E402
from prior_wrappers.demonstrations import token_counter  # noqa: E402
from prior_wrappers.priors.hf_compat import cache_from_layers, cache_layers, forward_with_cache, output_cache  # noqa: E402
from prior_wrappers.priors.packing import candidate_nodes  # noqa: E402
from prior_wrappers.priors.tokenization import common_prefix  # noqa: E402
from prior_wrappers.prompts import PromptTemplate, TextState, TranscriptPrompt  # noqa: E402


class SharedPrefixEngine(HFPrior):
    """The engine before the prefix tree (``HFPrior(prefix_cache="shared", candidate_trie=False)`` until 0.4), the
    baseline of this benchmark: the token prefix common to every prompt scored so far (the instruction and the
    demonstrations) comes from one cached anchor, and each candidate is its own chain of tokens. It is
    :class:`HFPrior` without its prefix tree, with those two rules put back over its rows (``_segments``) and the past
    they start from (``_past``). ``shared_prefix=False``: no cache at all (the float64 reference)."""

    def __init__(self, model, tokenizer, *, shared_prefix: bool = True) -> None:
        super().__init__(model, tokenizer, prefix_cache=False)
        self.shared_prefix = shared_prefix
        self._anchor: list[int] = []
        self._anchor_kv: list[tuple[torch.Tensor, torch.Tensor]] = []

    def _segments(self, prompts, candidates):
        segments = super()._segments(prompts, candidates)
        for seg in segments:  # one chain of tokens per candidate
            seg.nodes, seg.paths = candidate_nodes(seg.contexts, seg.candidate_ids, share=False)
        if self.shared_prefix:
            self._apply_shared_prefix(segments)
        return segments

    @torch.inference_mode()
    def _apply_shared_prefix(self, segments) -> None:
        """Serve the prompts' common leading tokens from the cached anchor: the token prefix common to every prompt
        scored so far; it only shrinks (slicing its cache is exact) until a call shares too little of it, which
        re-anchors on that call's own common prefix."""
        limit = min(seg.reusable for seg in segments)
        n = min(len(self._anchor), limit)
        for seg in segments:
            n = min(n, common_prefix(self._anchor, seg.prompt_ids))
        if n < self.min_prefix_tokens:
            first = segments[0].prompt_ids
            n = min(limit, min(common_prefix(first, seg.prompt_ids) for seg in segments))
            if n < self.min_prefix_tokens:
                return
            ids = torch.tensor([first[:n]], device=self.device)
            out = forward_with_cache(self._base, cache_from_layers([]), kwarg=self._cache_kwarg, input_ids=ids,
                                     use_cache=True)
            self.prefix_passes += 1
            self.computed_tokens += n
            self._anchor, self._anchor_kv = list(first[:n]), cache_layers(output_cache(out))
        elif n < len(self._anchor):
            self._anchor = self._anchor[:n]
            self._anchor_kv = [(k[:, :, :n], v[:, :, :n]) for k, v in self._anchor_kv]
        for seg in segments:
            seg.offset = n

    def _past(self, batch, room):
        width = max(seg.offset for seg in batch)
        if width == 0:
            return None
        n = len(batch)  # every row has the same anchor
        return cache_from_layers([(k[:, :, :width].expand(n, -1, -1, -1), v[:, :, :width].expand(n, -1, -1, -1))
                                  for k, v in self._anchor_kv])

    def cache_info(self):
        return {**super().cache_info(), "tokens": len(self._anchor),
                "bytes": sum(k.nbytes + v.nbytes for k, v in self._anchor_kv)}


def record_stream(args: argparse.Namespace, demo_text: str | None, eval_games: list[Path]) -> list[dict]:
    """Play ``args.n_envs`` envs for ``args.steps`` vector steps; returns, per step, every env's TextState and the
    expert's command."""
    envs = [TextWorldChallengeEnv(args.preset, game_files=eval_games, max_episode_steps=args.max_episode_steps)
            for _ in range(args.n_envs)]
    rngs = [random.Random(args.seed + e) for e in range(args.n_envs)]
    current: list[tuple[str, dict]] = []
    histories: list[list[tuple[str, str]]] = [[] for _ in envs]
    for e, env in enumerate(envs):
        current.append(env.reset(seed=args.seed + e, options={"game_index": e % len(eval_games)}))
    stream = []
    for _ in range(args.steps):
        states, experts = [], []
        for e, env in enumerate(envs):
            obs, info = current[e]
            states.append(make_text_state(obs, info, history=histories[e], example=demo_text))
            experts.append(env.expert_command())
        stream.append({"states": states, "experts": experts})
        for e, env in enumerate(envs):
            state = states[e]
            command = experts[e] if rngs[e].random() >= args.epsilon else rngs[e].choice(state.admissible)
            obs, _, terminated, truncated, info = env.step(command)
            histories[e].append((state.observation, command))
            current[e] = (obs, info)
            if terminated or truncated:
                histories[e] = []
                current[e] = env.reset(seed=args.seed + 1000 + e)
    for env in envs:
        env.close()
    return stream


def expert_rank_stats(prior: HFPrior, prompt_fn, stream: list[dict]) -> dict[str, float]:
    """Top-1, top-3 and MRR of the expert's command under ``prompt_fn`` (token-normalised scores)."""
    ranks = []
    for step in stream:
        states: list[TextState] = step["states"]
        scores = prior.score([prompt_fn(s) for s in states], [s.admissible for s in states])
        for s, lp, expert in zip(states, scores.logprobs, step["experts"]):
            if expert in s.admissible:
                j = s.admissible.index(expert)
                ranks.append(1 + int(np.sum(lp > lp[j])))
    r = np.array(ranks)
    return {"states": len(r), "top1": float(np.mean(r == 1)), "top3": float(np.mean(r <= 3)), "mrr": float(np.mean(1 / r))}


def main() -> None:
    parser = argument_parser(__doc__)
    add_model_arguments(parser)
    parser.add_argument("--preset", default="cooking", help="TextWorld challenge preset (envs.CHALLENGE_PRESETS)")
    parser.add_argument("--n-envs", type=int, default=8)
    parser.add_argument("--steps", type=int, default=10, help="vector steps in the stream")
    parser.add_argument("--eval-games", type=int, default=2, help="unseen games the envs cycle through")
    parser.add_argument("--demo-games", type=int, default=2, help="training games the demonstrations come from")
    parser.add_argument("--demo-tokens", type=int, default=768, help="token budget of the demonstrations")
    parser.add_argument("--max-chars", type=int, default=3000, help="TranscriptPrompt's budget for the episode")
    parser.add_argument("--epsilon", type=float, default=0.3, help="probability of a random command")
    parser.add_argument("--max-episode-steps", type=int, default=50)
    parser.add_argument("--kv-cache-mib", type=int, default=1024, help="the tree's KV budget")
    parser.add_argument("--quality", action="store_true", help="also rank the expert's command: transcript vs template")
    parser.add_argument("--server", action="store_true", help="also score with a local vLLM server: echo vs next_token")
    parser.add_argument("--server-steps", type=int, default=4, help="vector steps the server scores")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--tolerance", type=float, default=1e-4, help="engine difference that calls the reference")
    parser.add_argument("--reference", choices=["auto", "always", "never"], default="auto",
                        help="score steps with a float64, uncached copy: above --tolerance (auto), always or never")
    args = parser.parse_args()

    new = load_prior(args.model, dtype=args.dtype, device=args.device)
    new.kv_cache.max_bytes = args.kv_cache_mib << 20  # type: ignore[union-attr]
    # the old engine on the same model object: one shared prefix, one chain of tokens per candidate
    old = SharedPrefixEngine(new.model, new.tokenizer)
    sync = device_sync(new.device)

    train, unseen = challenge_splits(args.preset, n_train=args.demo_games, n_unseen=args.eval_games)
    demos = Demonstrations.from_expert(
        TextWorldChallengeEnv(args.preset, game_files=train), n_episodes=args.demo_games, shots=2,
        max_tokens=args.demo_tokens, count_tokens=token_counter(new.tokenizer), seed=args.seed,
    )
    demo_text = demos.text()
    recording = Stopwatch()
    stream = record_stream(args, demo_text, unseen)
    prompt = TranscriptPrompt(max_chars=args.max_chars)
    print(f"recorded {len(stream)} vector steps x {args.n_envs} envs in {recording.seconds:.1f} s "
          f"({args.preset}, games {[g.name for g in unseen]}, demonstrations from {[g.name for g in train]})")
    dtype = next(new.model.parameters()).dtype
    print_conditions(model=new.model.config.model_type, device=new.device, dtype=dtype, seed=args.seed)

    print(f"{'step':>4}{'prompt tok':>12}{'old computed':>14}{'new computed':>14}{'old s':>9}{'new s':>9}{'|Δ|':>10}")
    times = {"old": [], "new": []}
    computed = {"old": [], "new": []}
    prompt_tokens, max_diff, peak_bytes = [], 0.0, 0
    reference: SharedPrefixEngine | None = None  # float64, no cache, one chain per candidate: built at the first outlier
    ref_worst = {"old": 0.0, "new": 0.0}
    for t, step in enumerate(stream):
        states = step["states"]
        prompts, cands = [prompt(s) for s in states], [s.admissible for s in states]
        results = {}
        for name, prior in (("old", old), ("new", new)):
            before = prior.computed_tokens
            sync()
            clock = Stopwatch()
            results[name] = prior.score(prompts, cands)
            sync()
            times[name].append(clock.seconds)
            computed[name].append(prior.computed_tokens - before)
        peak_bytes = max(peak_bytes, new.kv_cache.bytes)  # type: ignore[union-attr]
        prompt_tokens.append(sum(len(new.tokenizer(p)["input_ids"]) for p in prompts))
        diff = max(float(np.max(np.abs(a - b))) for a, b in zip(results["old"].raw_logprobs, results["new"].raw_logprobs))
        max_diff = max(max_diff, diff)
        print(f"{t:>4}{prompt_tokens[-1]:>12}{computed['old'][-1]:>14}{computed['new'][-1]:>14}"
              f"{times['old'][-1]:>9.2f}{times['new'][-1]:>9.2f}{diff:>10.1e}")
        if args.reference == "always" or (args.reference == "auto" and diff > args.tolerance):
            if reference is None:
                reference = SharedPrefixEngine(copy.deepcopy(new.model).double(), new.tokenizer, shared_prefix=False)
            exact = reference.score(prompts, cands).raw_logprobs
            gaps = {name: max(float(np.max(np.abs(a - b))) for a, b in zip(results[name].raw_logprobs, exact))
                    for name in ("old", "new")}
            for name, gap in gaps.items():
                ref_worst[name] = max(ref_worst[name], gap)
            print(f"      vs float64 without cache: old {gaps['old']:.1e}, new {gaps['new']:.1e}"
                  f"{'  (above tolerance: the farther engine is in error)' if diff > args.tolerance else ''}")

    ratio = sum(computed["new"]) / sum(computed["old"])
    speedup = float(np.mean(times["old"]) / np.mean(times["new"]))
    info = new.cache_info()
    print(f"prompt tokens per vector step: {np.mean(prompt_tokens):.0f}; computed per step: old {np.mean(computed['old']):.0f}, "
          f"new {np.mean(computed['new']):.0f}; seconds per step: old {np.mean(times['old']):.2f}, new {np.mean(times['new']):.2f} "
          f"(median per-step speedup {np.median(np.array(times['old']) / np.array(times['new'])):.2f})")
    print(f"tree: {info['tokens']} tokens held in {info['nodes']} nodes, {info['bytes'] / 2**20:.1f} MiB "
          f"(peak {peak_bytes / 2**20:.1f} MiB, budget {info['max_bytes'] / 2**20:.0f} MiB), {info['evictions']} evictions, "
          f"{info['prefix_passes']} prefix passes; old engine's anchor: {old.cache_info()['tokens']} tokens")
    if reference is not None:
        print(f"max |Δ| to the float64 reference over the steps it scored: old {ref_worst['old']:.1e}, "
              f"new {ref_worst['new']:.1e}")
    if args.quality:
        template = PromptTemplate(history=2)
        for name, fn in (("transcript", prompt), ("template(history=2)", template)):
            stats = expert_rank_stats(new, fn, stream)
            print(f"expert rank with {name}: states={stats['states']} top1={stats['top1']:.3f} "
                  f"top3={stats['top3']:.3f} mrr={stats['mrr']:.3f}")
    if args.server:
        server_comparison(args, new, [([prompt(s) for s in st["states"]], [s.admissible for s in st["states"]])
                                      for st in stream[: args.server_steps]])
    summary_line({"computed_token_ratio": f"{ratio:.3f}", "step_speedup": f"{speedup:.2f}",
                  "max_abs_diff": f"{max_diff:.1e}"})


def server_comparison(args: argparse.Namespace, local: HFPrior, steps: list[tuple[list[str], list[list[str]]]]) -> None:
    """The server's prompt tokens computed per vector step, echo (before) vs next_token (after)."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "remote"))
    from vllm_server import SERVED_NAME, VLLMServer

    from prior_wrappers.priors import OpenAIPrior
    from prior_wrappers.priors.embedded import embedded_gguf_path, ensure_converted

    model_dir = Path(args.model) if args.model else ensure_converted(embedded_gguf_path())
    with VLLMServer(model_dir) as server:
        print(f"vLLM server at {server.base_url} ({model_dir.name}); {len(steps)} vector steps")
        print(f"{'step':>4}{'before computed':>17}{'before s':>10}{'after computed':>16}{'after s':>9}{'|Δ| vs local':>14}")
        # next_token first: echo requests never read the prefix cache, but they fill it, which next_token would read
        totals, worst = {"next_token": 0.0, "echo": 0.0}, 0.0
        clients = {name: OpenAIPrior(server.base_url, model=SERVED_NAME, tokenizer=local.tokenizer, scoring=name,
                                     timeout=900.0, max_retries=0)
                   for name in totals}
        for t, (prompts, cands) in enumerate(steps):
            reference = local.score(prompts, cands)
            row = []
            for name, client in clients.items():
                before = client.server_metrics()["computed_prompt_tokens"]
                clock = Stopwatch()
                scores = client.score(prompts, cands)
                elapsed = clock.seconds
                computed = client.server_metrics()["computed_prompt_tokens"] - before
                totals[name] += computed
                worst = max(worst, max(float(np.max(np.abs(a - b))) for a, b in zip(scores.raw_logprobs, reference.raw_logprobs)))
                row += [computed, elapsed]
            print(f"{t:>4}{row[2]:>17.0f}{row[3]:>10.2f}{row[0]:>16.0f}{row[1]:>9.2f}{worst:>14.1e}")
        for client in clients.values():
            client.close()
    summary_line({"server_computed_ratio": f"{totals['next_token'] / totals['echo']:.3f}",
                  "server_max_abs_diff": f"{worst:.1e}"})


if __name__ == "__main__":
    main()
