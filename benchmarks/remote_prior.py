"""Remote prior (OpenAIPrior over vLLM's completions API) vs. the local engine (HFPrior), per vector step.

One vector step = ``--n-envs`` text-game states (the library's default prompt, ~100 tokens, one step of history)
with ``--n-commands`` admissible commands each, scored in one call, as VecLLMPrior does. Every step shows new
states (no cache). The local engine runs in this process; the remote one sends one request per state, concurrently.

    python benchmarks/remote_prior.py                       # starts vLLM (CPU) from `make vllm`'s venv itself
    python benchmarks/remote_prior.py --base-url http://gpu-box:8000 --model smollm2 --tokenizer PATH_OR_ID

Prints a table, then last: ``remote_vs_local_ratio=<time per vector step remote / local> p95_ms=<remote step p95>``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests" / "remote")]  # benchmarks.common; the test suite's vLLM launcher

from benchmarks.common import Stopwatch, argument_parser, load_prior, print_conditions, summary_line  # noqa: E402
from prior_wrappers.priors import OpenAIPrior  # noqa: E402
from prior_wrappers.prompts import PromptTemplate, TextState  # noqa: E402

ROOMS = ["kitchen", "pantry", "living room", "bedroom", "bathroom", "garden", "cellar", "study", "attic", "hall"]
OBJECTS = ["red apple", "rusty key", "wooden box", "silver knife", "glass bottle", "old map", "blue book", "candle"]
VERBS = ["take", "drop", "open", "examine", "eat", "put", "unlock"]


def vector_step_states(step: int, n_envs: int, n_commands: int) -> tuple[list[str], list[list[str]]]:
    """Deterministic, different at every step: what ``n_envs`` envs of a TextWorld-like game show at once."""
    template = PromptTemplate(history=1)
    prompts, candidates = [], []
    for env in range(n_envs):
        i = step * n_envs + env
        room, before = ROOMS[i % len(ROOMS)], ROOMS[(i * 7 + 3) % len(ROOMS)]
        seen = [OBJECTS[(i * 3 + j) % len(OBJECTS)] for j in range(3)]
        state = TextState(
            observation=f"You are in the {room}. You see a {seen[0]}, a {seen[1]} and a {seen[2]}. Exits: north, east.",
            admissible=[],
            task=f"put the {seen[0]} in the {before}",
            history=((f"You are in the {before}. It is quiet.", "go north"),),
        )
        prompts.append(template(state))
        commands = [f"{VERBS[(i + j) % len(VERBS)]} {seen[j % 3]}" for j in range(max(n_commands - 2, 1))]
        candidates.append(list(dict.fromkeys(commands + ["go north", "go east"]))[:n_commands])
    return prompts, candidates


def time_steps(prior, steps: int, n_envs: int, n_commands: int) -> tuple[np.ndarray, list]:
    times, results = [], []
    for step in range(steps):
        prompts, candidates = vector_step_states(step, n_envs, n_commands)
        clock = Stopwatch()
        results.append(prior.score(prompts, candidates))
        times.append(clock.seconds)
    return np.array(times) * 1000, results


def main() -> None:
    parser = argument_parser(__doc__)
    parser.add_argument("--base-url", default=None, help="a running OpenAI-compatible server (default: start vLLM on CPU)")
    parser.add_argument("--model", default=None, help="served model name (with --base-url)")
    parser.add_argument("--tokenizer", default=None, help="the served model's tokenizer dir / hub id (with --base-url)")
    parser.add_argument("--local-model", default=None, help="model for HFPrior (default: the embedded SmolLM2)")
    parser.add_argument("--n-envs", type=int, default=8)
    parser.add_argument("--n-commands", type=int, default=4)
    parser.add_argument("--steps", type=int, default=10)
    args = parser.parse_args()

    local = load_prior(args.local_model)
    server = None
    if args.base_url is None:
        from prior_wrappers.priors.embedded import embedded_gguf_path, ensure_converted
        from vllm_server import SERVED_NAME, VLLMServer

        model_dir = ensure_converted(embedded_gguf_path())
        print("starting vLLM (CPU) ...", flush=True)
        server = VLLMServer(model_dir).start()
        base_url, model, tokenizer = server.base_url, SERVED_NAME, local.tokenizer
    else:
        base_url, model, tokenizer = args.base_url, args.model, args.tokenizer or args.model
    try:
        warm = OpenAIPrior(base_url, model=model, tokenizer=tokenizer, max_concurrency=args.n_envs)
        warm_prompts, warm_candidates = vector_step_states(10_000, args.n_envs, args.n_commands)
        local.score(warm_prompts, warm_candidates)
        warm.score(warm_prompts, warm_candidates)
        remote = OpenAIPrior(base_url, model=model, tokenizer=warm.tokenizer, max_concurrency=args.n_envs)
        local_ms, local_scores = time_steps(local, args.steps, args.n_envs, args.n_commands)
        remote_ms, remote_scores = time_steps(remote, args.steps, args.n_envs, args.n_commands)
    finally:
        if server is not None:
            server.stop()

    max_diff = max(
        float(np.max(np.abs(remote_raw - local_raw)))
        for rs, ls in zip(remote_scores, local_scores)
        for remote_raw, local_raw in zip(rs.raw_logprobs, ls.raw_logprobs)
    )
    stats = remote.request_stats()
    prompt_tokens = np.mean([len(local.tokenizer(p)["input_ids"]) for p in vector_step_states(0, args.n_envs, 1)[0]])
    n_requests = remote.requests
    print_conditions(server="vLLM CPU started here" if server else base_url, local_device=local.device)
    print(
        f"vector step: {args.n_envs} states x {args.n_commands} commands, mean_prompt_tokens={prompt_tokens:.0f}, "
        f"steps={args.steps}"
    )
    print(f"{'engine':<34}{'median ms':>12}{'p95 ms':>12}")
    for name, ms in (("local HFPrior (packed, 1 call)", local_ms), ("remote OpenAIPrior (1 req/state)", remote_ms)):
        print(f"{name:<34}{np.median(ms):>12.1f}{np.percentile(ms, 95):>12.1f}")
    print(
        f"remote requests={n_requests} ({n_requests / (remote_ms.sum() / 1000):.2f}/s) request p50={stats['p50_ms']:.0f} ms "
        f"p95={stats['p95_ms']:.0f} ms retries={stats['retries']} max_abs_diff_vs_local={max_diff:.1e}"
    )
    summary_line({"remote_vs_local_ratio": f"{np.median(remote_ms) / np.median(local_ms):.2f}",
                  "p95_ms": f"{np.percentile(remote_ms, 95):.1f}"})


if __name__ == "__main__":
    main()
