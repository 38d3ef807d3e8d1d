"""bf16 or fp32 on this CPU: the prior engine's speed and its rankings, on the prior-quality benchmark's states.

Every expert state of ``--families`` (the evaluation games of ``benchmarks/prior_quality.py``: seeds from
``--game-seed + 100000``, the env's zero-shot prompt with ``--history`` previous steps) is scored by the same model
loaded in float32 and in bfloat16, one call per state from an empty prefix cache, alternating the two. Reported per
family: seconds per state, the expert command's MRR under each, how often the two agree on the top command, and the
largest difference of token-normalised log-probabilities. What ``HFPrior.from_pretrained(dtype="auto")`` decides on
this machine is printed too (bf16 where the CPU computes it natively: AVX512-BF16 or AMX).

    python benchmarks/cpu_dtype.py                                     # cooking, tomato, twx-cooking; ~10 min
    python benchmarks/cpu_dtype.py --families tomato --n-games 1      # quicker

Last line: ``bf16_speedup=<fp32 s / bf16 s> top1_agreement=<x> mrr_fp32=<x> mrr_bf16=<x> max_abs_diff=<x>``
(pooled over the families' states).
"""

from __future__ import annotations

import platform
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

sys.path[:0] = [str(Path(__file__).resolve().parents[1]), str(Path(__file__).resolve().parent)]

from prior_quality import FAMILIES, expert_states  # noqa: E402

from benchmarks.common import Stopwatch, argument_parser, load_prior, print_conditions, summary_line  # noqa: E402
from prior_wrappers.priors.hf import native_bf16_cpu  # noqa: E402
from prior_wrappers.prompts import PromptTemplate, TextState  # noqa: E402
from envs.textworld_challenges import UNSEEN_SEED_OFFSET  # noqa: E402


def reciprocal_rank(logprobs: np.ndarray, expert: int) -> float:
    return 1.0 / (1 + int(np.sum(logprobs > logprobs[expert])))


def main(argv: Sequence[str] | None = None) -> str:
    parser = argument_parser(__doc__)
    parser.add_argument("--families", nargs="+", choices=sorted(FAMILIES), default=["cooking", "tomato", "twx-cooking"])
    parser.add_argument("--n-games", type=int, default=2, help="evaluation games per family")
    parser.add_argument("--game-seed", type=int, default=0)
    parser.add_argument("--history", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--model", default=None, help="model dir (default: the embedded SmolLM2-135M-Instruct)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    engines = {name: load_prior(args.model, dtype=dtype, device="cpu")
               for name, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16))}
    print_conditions(cpu=platform.processor() or platform.machine(), native_bf16=native_bf16_cpu(),
                     auto_dtype_here="bfloat16" if native_bf16_cpu() else "float32")
    pooled: dict[str, list[float]] = {"fp32_s": [], "bf16_s": [], "agree": [], "rr_fp32": [], "rr_bf16": [], "diff": []}
    template = PromptTemplate(history=args.history)
    for family in args.families:
        spec = FAMILIES[family]
        first = args.game_seed + UNSEEN_SEED_OFFSET
        env = spec.make_env(first, args.n_games)
        states = expert_states(env, first, args.n_games, spec.max_steps)
        example = env.unwrapped.prompt_example
        env.close()
        rows: dict[str, list[float]] = {key: [] for key in pooled}
        for state in states:
            prompt = template(TextState(state.observation, state.admissible, state.task, state.history, example))
            expert = state.admissible.index(state.expert)
            got = {}
            for name, engine in engines.items():
                engine.clear_cache()
                clock = Stopwatch()
                got[name] = engine.score([prompt], [state.admissible]).logprobs[0]
                rows[f"{name}_s"].append(clock.seconds)
                rows[f"rr_{name}"].append(reciprocal_rank(got[name], expert))
            rows["agree"].append(float(np.argmax(got["fp32"]) == np.argmax(got["bf16"])))
            rows["diff"].append(float(np.max(np.abs(got["fp32"] - got["bf16"]))))
        for key, values in rows.items():
            pooled[key] += values
        print(f"[{family}] {len(states)} states: fp32 {np.median(rows['fp32_s']):.3f} s/state, bf16 "
              f"{np.median(rows['bf16_s']):.3f} s/state ({np.median(rows['fp32_s']) / np.median(rows['bf16_s']):.2f}x); "
              f"MRR fp32 {np.mean(rows['rr_fp32']):.3f}, bf16 {np.mean(rows['rr_bf16']):.3f}; top-1 agreement "
              f"{np.mean(rows['agree']):.3f}; max |d log p| {np.max(rows['diff']):.3f}", flush=True)
    return summary_line({"bf16_speedup": f"{np.median(pooled['fp32_s']) / np.median(pooled['bf16_s']):.2f}",
                         "top1_agreement": f"{np.mean(pooled['agree']):.3f}",
                         "mrr_fp32": f"{np.mean(pooled['rr_fp32']):.3f}", "mrr_bf16": f"{np.mean(pooled['rr_bf16']):.3f}",
                         "max_abs_diff": f"{np.max(pooled['diff']):.3f}"})


if __name__ == "__main__":
    main()
