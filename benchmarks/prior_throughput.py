"""Prior engine throughput: packed batched scoring vs. a naive loop of one forward pass per candidate.

8 text-game states (~150-token prompts) x 20 admissible commands, the same model in the same process. Every timed
call starts from an empty prefix cache (reuse across calls is ``benchmarks/prior_reuse.py``'s subject), so this is
the cost of computing each prompt once and its candidates packed.

    python benchmarks/prior_throughput.py [--model PATH_OR_ID] [--repeats 3] [--naive-repeats 1] [--device cuda] [--dtype bfloat16]
    python benchmarks/prior_throughput.py --attention both --device cuda --dtype bfloat16   # FlexAttention vs dense mask

Prints a table, then last: ``speedup_vs_naive=<x> engine_candidates_per_s=<y> max_abs_diff=<z>``, and with
``--attention both`` also ``flex_speedup_vs_dense=<dense s / flex s> flex_max_abs_diff=<x>``.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from prior_wrappers.priors import HFPrior
from prior_wrappers.priors.hf import naive_candidate_logprob

ROOMS = ["kitchen", "pantry", "living room", "bedroom", "bathroom", "garden", "cellar", "study"]
OBJECTS = ["red apple", "rusty key", "wooden box", "silver knife", "glass bottle", "old map", "blue book", "candle"]
VERBS = ["take", "drop", "open", "close", "examine", "eat", "put", "unlock"]


def make_states(n_states: int = 8, n_commands: int = 20) -> tuple[list[str], list[list[str]]]:
    """Deterministic TextWorld-style states: a room description of ~150 tokens and 20 admissible commands."""
    prompts, candidates = [], []
    for i in range(n_states):
        room, other = ROOMS[i % len(ROOMS)], ROOMS[(i + 3) % len(ROOMS)]
        things = [OBJECTS[(i + j) % len(OBJECTS)] for j in range(4)]
        prompt = (
            "You are playing a text adventure. Choose the next action.\n"
            f"Task: find the {things[0]} and put it in the {other}.\n"
            f"Observation: -= {room.title()} =- You arrive in the {room}. It is dimly lit and smells of dust. "
            f"On a sturdy table you notice a {things[1]} next to a {things[2]}. A shelf on the north wall holds "
            f"a {things[3]}. There is an open door leading east to the {other}, and a closed hatch to the south. "
            f"Somewhere behind you, the {things[0]} glints in the light from a small window.\n"
            f"Inventory: you are carrying a {OBJECTS[(i + 5) % len(OBJECTS)]}.\nAction:"
        )
        cmds = [f"{VERBS[(i + j) % len(VERBS)]} {OBJECTS[(i * 3 + j) % len(OBJECTS)]}" for j in range(n_commands - 4)]
        cmds += ["go east", "go south", "look", "inventory"]
        prompts.append(prompt)
        candidates.append(cmds)
    return prompts, candidates


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=None, help="model dir / hub id / .gguf (default: embedded SmolLM2)")
    parser.add_argument("--repeats", type=int, default=3, help="engine repeats (median reported)")
    parser.add_argument("--naive-repeats", type=int, default=1, help="naive-loop repeats (slow: 160 forwards each)")
    parser.add_argument("--device", default=None)
    parser.add_argument("--dtype", default=None, help="float32 / bfloat16 / float16 (default: bf16 on cuda)")
    parser.add_argument("--attention", choices=["dense", "flex", "both"], default="dense",
                        help="the engine's attention path (both: time FlexAttention against the dense mask)")
    args = parser.parse_args()

    kwargs = {"device": args.device, "dtype": args.dtype, "attention": "flex" if args.attention == "flex" else "dense"}
    prior = HFPrior.from_pretrained(args.model, **kwargs) if args.model else HFPrior.default(**kwargs)
    prompts, candidates = make_states()
    n_cands = sum(len(c) for c in candidates)
    prompt_tokens = np.mean([len(prior.tokenizer(p)["input_ids"]) for p in prompts])
    sync = torch.cuda.synchronize if prior.device.type == "cuda" else (lambda: None)

    prior.score(prompts[:1], candidates[:1])  # warm-up
    naive_candidate_logprob(prior.model, prior.tokenizer, prompts[0], candidates[0][0])

    def timed(engine: HFPrior) -> tuple[float, Any]:
        times = []
        for _ in range(args.repeats):
            engine.clear_cache()
            sync()
            t = time.perf_counter()
            result = engine.score(prompts, candidates)
            sync()
            times.append(time.perf_counter() - t)
        return float(np.median(times)), result

    naive_times = []
    engine_t, scores = timed(prior)
    for _ in range(args.naive_repeats):
        t = time.perf_counter()
        naive = [
            [naive_candidate_logprob(prior.model, prior.tokenizer, p, c)[0] for c in cands]
            for p, cands in tqdm(list(zip(prompts, candidates)), desc="naive loop", leave=False)
        ]
        sync()
        naive_times.append(time.perf_counter() - t)

    max_diff = max(float(np.max(np.abs(np.asarray(n) - s))) for n, s in zip(naive, scores.raw_logprobs))
    naive_t = float(np.median(naive_times))
    dtype = next(prior.model.parameters()).dtype
    print(f"model={prior.model.config.model_type} device={prior.device} dtype={dtype} threads={torch.get_num_threads()}")
    print(f"states={len(prompts)} candidates={n_cands} mean_prompt_tokens={prompt_tokens:.0f}")
    print(f"{'method':<28}{'forwards':>10}{'median s':>12}{'cands/s':>12}")
    print(f"{'naive (1 forward/candidate)':<28}{n_cands:>10}{naive_t:>12.3f}{n_cands / naive_t:>12.1f}")
    forwards = (prior.forward_passes - 1) // args.repeats  # minus the warm-up
    print(f"{'engine (packed, batched)':<28}{forwards:>10}{engine_t:>12.3f}{n_cands / engine_t:>12.1f}")
    last = f"speedup_vs_naive={naive_t / engine_t:.1f} engine_candidates_per_s={n_cands / engine_t:.1f} max_abs_diff={max_diff:.2e}"
    if args.attention == "both":  # the same weights, scored through FlexAttention's block mask
        flex = HFPrior(prior.model, prior.tokenizer, attention="flex")
        flex.score(prompts[:1], candidates[:1])  # warm-up (compiles the kernel on CUDA)
        flex_t, flex_scores = timed(flex)
        flex_diff = max(float(np.max(np.abs(a - b))) for a, b in zip(flex_scores.raw_logprobs, scores.raw_logprobs))
        print(f"{'engine, FlexAttention':<28}{forwards:>10}{flex_t:>12.3f}{n_cands / flex_t:>12.1f}")
        last += f" flex_speedup_vs_dense={engine_t / flex_t:.2f} flex_max_abs_diff={flex_diff:.2e}"
    print(last)


if __name__ == "__main__":
    main()
