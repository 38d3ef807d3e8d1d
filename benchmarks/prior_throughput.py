"""Prior engine throughput: packed batched scoring vs. a naive loop of one forward pass per candidate.

8 text-game states (~150-token prompts) x 20 admissible commands by default (``--envs``/``--candidates`` change
both), the same model in the same process. Every timed call starts from an empty prefix cache (reuse across calls
is ``benchmarks/prior_reuse.py``'s subject), so this is the cost of computing each prompt once and its candidates
packed.

    python benchmarks/prior_throughput.py [--model PATH_OR_ID] [--repeats 3] [--naive-repeats 1] [--device cuda] [--dtype bfloat16]
    python benchmarks/prior_throughput.py --attention both --device cuda --dtype bfloat16   # FlexAttention vs dense mask
    # no weights, no network: a random-weight model of a real geometry and a tokenizer trained in-process
    python benchmarks/prior_throughput.py --random-geometry 7b --device cuda --dtype bfloat16 --envs 16 \
        --candidates 30 --fp32-reference --naive-sample 64

``--random-geometry {tiny,0.5b,7b}`` builds the model from a config on the device (``benchmarks/offline_model.py``:
Qwen2-0.5B's and Mistral-7B-v0.2's shapes) instead of loading ``--model``. ``--fp32-reference`` builds or loads the
model in float32 first, scores every state with the engine as the reference, then casts the weights to ``--dtype``
and compares. ``--naive-sample K`` times the naive loop on K candidates spread over the states and extrapolates
its time per candidate to all of them (a 7B model's full loop is long).

Prints a table, then last: ``speedup_vs_naive=<x> engine_candidates_per_s=<y> max_abs_diff=<z>
tokens_per_s=<tokens the engine's forwards computed per second> naive_candidates_timed=<k>/<n>``, on CUDA also
``peak_memory_gib=<torch.cuda.max_memory_allocated while scoring, weights included>``, with ``--fp32-reference``
``max_abs_diff_vs_fp32=<x>`` (summed log-probabilities of a candidate) and ``max_abs_diff_vs_fp32_per_token=<x>``
(that difference divided by the candidate's tokens; ``offline_model.TOLERANCE_PER_TOKEN`` is the bound the GPU
tests and ``gpu_check.py`` hold it to), and with ``--attention both``
``flex_speedup_vs_dense=<dense s / flex s> flex_max_abs_diff=<x>`` (or ``flex_error=<exception>``, its traceback
on stderr, when FlexAttention fails).
"""

from __future__ import annotations

import argparse
import sys
import traceback
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent), str(HERE)]  # prior_wrappers from this checkout, offline_model

from offline_model import GEOMETRIES, offline_tokenizer, parameter_count, random_model  # noqa: E402

from benchmarks.common import (  # noqa: E402
    Stopwatch,
    add_model_arguments,
    argument_parser,
    device_sync,
    load_prior,
    print_conditions,
    summary_line,
)

from prior_wrappers.priors import HFPrior  # noqa: E402
from prior_wrappers.priors.hf import naive_candidate_logprob  # noqa: E402

ROOMS = ["kitchen", "pantry", "living room", "bedroom", "bathroom", "garden", "cellar", "study"]
OBJECTS = ["red apple", "rusty key", "wooden box", "silver knife", "glass bottle", "old map", "blue book", "candle"]
VERBS = ["take", "drop", "open", "close", "examine", "eat", "put", "unlock"]
# how the room smells: the first is the 8 default states'; states 9.. (--envs > 8) get the others, so no two
# states share a prompt
AIRS = ["dimly lit and smells of dust", "bright and smells of fresh bread", "cold and smells of wet stone",
        "warm and smells of old paper", "quiet and smells of smoke", "damp and smells of moss"]


def make_states(n_states: int = 8, n_commands: int = 20) -> tuple[list[str], list[list[str]]]:
    """Deterministic TextWorld-style states: a room description of ~150 tokens and ``n_commands`` admissible
    commands (at most 68; with more than 20, all distinct verb-object pairs)."""
    if not 5 <= n_commands <= len(VERBS) * len(OBJECTS) + 4:
        raise ValueError(f"n_commands must be in [5, {len(VERBS) * len(OBJECTS) + 4}], got {n_commands}")
    prompts, candidates = [], []
    for i in range(n_states):
        room, other = ROOMS[i % len(ROOMS)], ROOMS[(i + 3) % len(ROOMS)]
        things = [OBJECTS[(i + j) % len(OBJECTS)] for j in range(4)]
        air = AIRS[(i // len(ROOMS)) % len(AIRS)]
        turn = f" You have made {i // (len(ROOMS) * len(AIRS))} moves." if i >= len(ROOMS) * len(AIRS) else ""
        prompt = (
            "You are playing a text adventure. Choose the next action.\n"
            f"Task: find the {things[0]} and put it in the {other}.\n"
            f"Observation: -= {room.title()} =- You arrive in the {room}. It is {air}. "
            f"On a sturdy table you notice a {things[1]} next to a {things[2]}. A shelf on the north wall holds "
            f"a {things[3]}. There is an open door leading east to the {other}, and a closed hatch to the south. "
            f"Somewhere behind you, the {things[0]} glints in the light from a small window.{turn}\n"
            f"Inventory: you are carrying a {OBJECTS[(i + 5) % len(OBJECTS)]}.\nAction:"
        )
        n_pairs = n_commands - 4
        if n_commands <= 20:  # the original commands (the default benchmark's, unchanged)
            cmds = [f"{VERBS[(i + j) % len(VERBS)]} {OBJECTS[(i * 3 + j) % len(OBJECTS)]}" for j in range(n_pairs)]
        else:  # every verb-object pair once, in a state-dependent order
            pairs = [(v, o) for o in range(len(OBJECTS)) for v in range(len(VERBS))]
            start = (5 * i) % len(pairs)
            cmds = [f"{VERBS[v]} {OBJECTS[o]}" for v, o in (pairs[start:] + pairs[:start])[:n_pairs]]
        cmds += ["go east", "go south", "look", "inventory"]
        prompts.append(prompt)
        candidates.append(cmds)
    return prompts, candidates


def parse_dtype(name: str | None) -> torch.dtype | None:
    """``"bfloat16"`` -> ``torch.bfloat16`` (``None`` stays ``None``)."""
    if name is None:
        return None
    dtype = getattr(torch, name, None)
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise SystemExit(f"--dtype: not a floating-point torch dtype: {name!r}")
    return dtype


def build_prior(
    args: argparse.Namespace, prompts: list[str], candidates: list[list[str]]
) -> tuple[HFPrior, str, list[np.ndarray] | None]:
    """The engine in ``--dtype``, a description of its model, and with ``--fp32-reference`` the float32 engine's raw
    scores of every state (computed in the same process before the weights were cast to ``--dtype``)."""
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    dtype = parse_dtype(args.dtype) or (torch.bfloat16 if device.type == "cuda" else torch.float32)
    attention = "flex" if args.attention == "flex" else "dense"
    first = torch.float32 if args.fp32_reference else dtype
    if args.random_geometry:
        tokenizer = offline_tokenizer(prompts + [c for cands in candidates for c in cands])
        model = random_model(args.random_geometry, device=device, dtype=first, seed=args.seed, tokenizer=tokenizer)
        name = f"random-{args.random_geometry}"
    else:
        loaded = load_prior(args.model, dtype=first, device=device)
        model, tokenizer, name = loaded.model, loaded.tokenizer, loaded.model.config.model_type
    name += f" ({parameter_count(model) / 1e6:,.0f}M params)"
    reference = None
    if args.fp32_reference:
        reference = HFPrior(model, tokenizer, attention=attention).score(prompts, candidates).raw_logprobs
        model = model.to(dtype)
        if device.type == "cuda":
            torch.cuda.empty_cache()
    return HFPrior(model, tokenizer, attention=attention), name, reference


def max_abs_diff(a: list[np.ndarray], b: list[np.ndarray], tokens: list[np.ndarray] | None = None) -> float:
    """Largest |a - b| over every candidate (divided by its number of tokens when ``tokens`` is given)."""
    per = tokens if tokens is not None else [np.ones(len(x)) for x in a]
    return max(float(np.max(np.abs(np.asarray(x) - np.asarray(y)) / n)) for x, y, n in zip(a, b, per))


def main() -> None:
    parser = argument_parser(__doc__)
    add_model_arguments(parser, dtype=False)
    parser.add_argument("--random-geometry", choices=sorted(GEOMETRIES), default=None,
                        help="random weights of this geometry and an in-process tokenizer, instead of --model")
    parser.add_argument("--envs", type=int, default=8, help="states (prompts) per call (default 8)")
    parser.add_argument("--candidates", type=int, default=20, help="commands per state (default 20, at most 68)")
    parser.add_argument("--repeats", type=int, default=3, help="engine repeats (median reported)")
    parser.add_argument("--naive-repeats", type=int, default=1, help="naive-loop repeats (one forward per candidate)")
    parser.add_argument("--naive-sample", type=int, default=0,
                        help="time the naive loop on this many candidates and extrapolate (default 0: all of them)")
    parser.add_argument("--fp32-reference", action="store_true",
                        help="score every state in float32 first, then cast to --dtype and report the difference")
    parser.add_argument("--seed", type=int, default=0, help="the random weights' seed (--random-geometry)")
    parser.add_argument("--dtype", default=None, help="float32 / bfloat16 / float16 (default: bf16 on cuda)")
    parser.add_argument("--attention", choices=["dense", "flex", "both"], default="dense",
                        help="the engine's attention path (both: time FlexAttention against the dense mask)")
    args = parser.parse_args()
    if args.model and args.random_geometry:
        parser.error("--model and --random-geometry exclude each other")

    prompts, candidates = make_states(args.envs, args.candidates)
    prior, name, reference = build_prior(args, prompts, candidates)
    n_cands = sum(len(c) for c in candidates)
    prompt_tokens = np.mean([len(prior.tokenizer(p)["input_ids"]) for p in prompts])
    cuda = prior.device.type == "cuda"
    sync = device_sync(prior.device)

    prior.score(prompts[:1], candidates[:1])  # warm-up
    naive_candidate_logprob(prior.model, prior.tokenizer, prompts[0], candidates[0][0])

    def timed(engine: HFPrior) -> tuple[float, Any, int, int]:
        """Median seconds of a call from an empty cache, its scores, forwards and computed tokens per call."""
        times = []
        forwards, tokens = engine.forward_passes, engine.computed_tokens
        for _ in range(args.repeats):
            engine.clear_cache()
            sync()
            clock = Stopwatch()
            result = engine.score(prompts, candidates)
            sync()
            times.append(clock.seconds)
        n = args.repeats
        forwards, tokens = (engine.forward_passes - forwards) // n, (engine.computed_tokens - tokens) // n
        return float(np.median(times)), result, forwards, tokens

    if cuda:
        torch.cuda.reset_peak_memory_stats()
    engine_t, scores, forwards, tokens = timed(prior)
    peak = torch.cuda.max_memory_allocated() / 2**30 if cuda else None

    flat = [(i, j) for i, cands in enumerate(candidates) for j in range(len(cands))]
    sample = flat
    if 0 < args.naive_sample < len(flat):
        sample = [flat[k] for k in np.unique(np.linspace(0, len(flat) - 1, args.naive_sample).round().astype(int))]
    naive_times, naive = [], {}
    for _ in range(args.naive_repeats):
        clock = Stopwatch()
        for i, j in tqdm(sample, desc="naive loop", leave=False):
            naive[i, j] = naive_candidate_logprob(prior.model, prior.tokenizer, prompts[i], candidates[i][j])[0]
        sync()
        naive_times.append(clock.seconds * len(flat) / len(sample))  # extrapolated to every candidate
    max_diff = max(abs(v - scores.raw_logprobs[i][j]) for (i, j), v in naive.items())
    naive_t = float(np.median(naive_times))

    dtype = next(prior.model.parameters()).dtype
    print_conditions(model=name, device=prior.device, dtype=dtype, seed=args.seed)
    if cuda:
        print(f"gpu={torch.cuda.get_device_name(prior.device)} weights_gib="
              f"{sum(p.numel() * p.element_size() for p in prior.model.parameters()) / 2**30:.2f}")
    print(f"states={len(prompts)} candidates={n_cands} mean_prompt_tokens={prompt_tokens:.0f} tokens_per_call={tokens}")
    if len(sample) < len(flat):
        print(f"naive loop: {len(sample)} of {n_cands} candidates timed, its time per candidate extrapolated to all")
    print(f"{'method':<28}{'forwards':>10}{'median s':>12}{'cands/s':>12}")
    print(f"{'naive (1 forward/candidate)':<28}{n_cands:>10}{naive_t:>12.3f}{n_cands / naive_t:>12.1f}")
    print(f"{'engine (packed, batched)':<28}{forwards:>10}{engine_t:>12.3f}{n_cands / engine_t:>12.1f}")
    last = {"speedup_vs_naive": f"{naive_t / engine_t:.1f}", "engine_candidates_per_s": f"{n_cands / engine_t:.1f}",
            "max_abs_diff": f"{max_diff:.2e}", "tokens_per_s": f"{tokens / engine_t:.0f}",
            "naive_candidates_timed": f"{len(sample)}/{n_cands}"}
    if peak is not None:
        last["peak_memory_gib"] = f"{peak:.2f}"
    if reference is not None:
        per_token = max_abs_diff(scores.raw_logprobs, reference, scores.num_tokens)
        last["max_abs_diff_vs_fp32"] = f"{max_abs_diff(scores.raw_logprobs, reference):.2e}"
        last["max_abs_diff_vs_fp32_per_token"] = f"{per_token:.2e}"
    if args.attention == "both":  # the same weights, scored through FlexAttention's block mask
        try:
            flex = HFPrior(prior.model, prior.tokenizer, attention="flex")
            flex.score(prompts[:1], candidates[:1])  # warm-up (compiles the kernel on CUDA)
            flex_t, flex_scores, _, _ = timed(flex)
        except Exception as error:  # e.g. no compiler for the kernel: the dense figures above still stand
            traceback.print_exc()
            last["flex_error"] = type(error).__name__
        else:
            print(f"{'engine, FlexAttention':<28}{forwards:>10}{flex_t:>12.3f}{n_cands / flex_t:>12.1f}")
            last["flex_speedup_vs_dense"] = f"{engine_t / flex_t:.2f}"
            last["flex_max_abs_diff"] = f"{max_abs_diff(flex_scores.raw_logprobs, scores.raw_logprobs):.2e}"
    summary_line(last)


if __name__ == "__main__":
    main()
