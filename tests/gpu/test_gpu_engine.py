"""The engine (HFPrior) on the device: bf16 and fp16 scores against an fp32 reference, FlexAttention (compiled on
CUDA) against the dense mask, and the token budget's memory bound (a forward's key/value positions, rows x
(longest cached past + longest row) <= token_budget; on CUDA its peak memory stays within a bound computed from the
budget, which the same workload without the budget exceeds)."""

from __future__ import annotations

import copy
import gc
from typing import Any

import numpy as np
import pytest
import torch
from gpu_support import TOLERANCE_PER_TOKEN, Target, build, make_states

import prior_wrappers.priors.attention as attention
from prior_wrappers.priors import HFPrior
from prior_wrappers.priors.hf import naive_candidate_logprob


def per_token_diff(a: Any, b: Any) -> float:
    """Largest |difference| of two scorings' summed log-probabilities, per candidate token."""
    return max(float(np.max(np.abs(x - y) / n)) for x, y, n in zip(a.raw_logprobs, b.raw_logprobs, a.num_tokens))


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=["bf16", "fp16"])
def test_half_precision_scores_match_the_fp32_reference(target: Target, tokenizer: Any, dtype: torch.dtype):
    prompts, candidates = make_states(6, 12)
    model = build(target, tokenizer, torch.float32)
    reference = HFPrior(model, tokenizer).score(prompts, candidates)
    for i, j in [(0, 0), (3, 7), (5, 11)]:  # the fp32 engine is the naive loop's maths
        naive, n = naive_candidate_logprob(model, tokenizer, prompts[i], candidates[i][j])
        assert n == reference.num_tokens[i][j]
        assert abs(naive - reference.raw_logprobs[i][j]) <= TOLERANCE_PER_TOKEN[torch.float32] * n
    half = copy.deepcopy(model).to(dtype)
    del model
    scores = HFPrior(half, tokenizer).score(prompts, candidates)
    assert all(np.isfinite(s).all() for s in scores.raw_logprobs)
    assert per_token_diff(scores, reference) <= TOLERANCE_PER_TOKEN[dtype]


def test_flex_attention_matches_the_dense_mask(target: Target, tokenizer: Any):
    """bf16, rows of several 128-token blocks: FlexAttention's block mask (compiled by torch.compile on CUDA, the
    unfused reference on the CPU) scores as the dense 4-D mask does, with the same packing."""
    prompts, candidates = make_states(4, 30)
    prompts = [prompts[(i + 1) % 4] + "\nThen:\n" + p for i, p in enumerate(prompts)]  # ~250 prompt tokens each
    model = build(target, tokenizer, torch.bfloat16)
    dense = HFPrior(model, tokenizer, token_budget=2048)
    flex = HFPrior(model, tokenizer, token_budget=2048, attention="flex")
    for _ in range(2):  # the second call is served from each engine's prefix cache
        d, f = dense.score(prompts, candidates), flex.score(prompts, candidates)
        assert all(np.isfinite(s).all() for s in f.raw_logprobs)
        assert per_token_diff(d, f) <= TOLERANCE_PER_TOKEN[torch.bfloat16]
    assert flex.forward_passes == dense.forward_passes
    if target.cuda:
        assert attention._compiled_flex is not None  # the compiled kernel ran, not the reference


def kv_heavy(target: Target) -> Any:
    """The memory test's model: on CUDA a 0.3B Llama with full multi-head attention (64 KiB of keys/values per
    position in bf16, so that a forward's cached past dominates its memory); on the CPU the tiny geometry."""
    from transformers import LlamaConfig

    if not target.cuda:
        return None
    return LlamaConfig(hidden_size=1024, intermediate_size=2816, num_hidden_layers=16, num_attention_heads=16,
                       num_key_value_heads=16, vocab_size=32000, max_position_embeddings=8192)


def memory_bound(config: Any, dtype: torch.dtype, budget: int, longest_row: int, predictions: int) -> int:
    """Bytes a score call may allocate on top of what it keeps (the prefix tree's new entries), when every forward
    holds at most ``budget`` key/value positions (rows x (longest past + longest row)):

    - the flat key/value workspace the rows' cached pasts are copied into (1.25 x the budget: it is grown with room);
    - the keys/values a forward without a past returns (at most the budget's positions);
    - one layer's transient activations for at most ``budget`` tokens;
    - the additive 4-D mask and, were SDPA to fall back to its unfused path, the attention scores (float32), for
      at most ``budget`` keys per query row and ``longest_row`` queries;
    - the logits of the predicted candidate tokens (in ``dtype``, then float32 and its log-softmax);

    x 1.5, plus 256 MiB for the allocator's rounding and cuBLAS's workspace.
    """
    size = dtype.itemsize
    heads = config.num_attention_heads
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // heads
    kv_position = 2 * config.num_hidden_layers * config.num_key_value_heads * head_dim * size
    workspace = 1.25 * budget * kv_position
    new_kv = budget * kv_position
    activations = budget * (6 * config.hidden_size + 3 * config.intermediate_size) * size
    scores = longest_row * budget * (size + 4 * heads)
    logits = predictions * config.vocab_size * (size + 8)
    return int(1.5 * (workspace + new_kv + activations + scores + logits)) + (256 << 20)


def transcripts(n_envs: int, steps: range) -> list[str]:
    history = [f"Env {e}: you stand in a corridor of room {e}; doors lead north and south." for e in range(n_envs)]
    return [h + "".join(f" Step {s}: you walk and see {s} lamps.\nAction: go north." for s in steps) for h in history]


def test_token_budget_bounds_each_forward_and_its_memory(target: Target, tokenizer: Any, monkeypatch):
    """Long cached transcripts of many envs: each batched forward's workspace is rows x (past + row) <= budget, the
    scores are a full recompute's, and on CUDA each call's peak memory stays within :func:`memory_bound`, which the
    same calls without a budget (all rows in one forward) exceed."""
    if target.cuda:
        n_envs, first_steps, calls, budget, kv_bytes = 64, 100, 3, 4096, 8 << 30
        dtype = torch.bfloat16
    else:
        n_envs, first_steps, calls, budget, kv_bytes = 6, 0, 4, 400, 1 << 30
        dtype = torch.float32
    model = build(target, tokenizer, dtype, geometry=kv_heavy(target))
    candidates = [["go north", "go south", "open door", "wait"]] * n_envs
    steps = [transcripts(n_envs, range(first_steps + step + 1)) for step in range(calls)]  # each extends the last

    def run(prior: HFPrior) -> tuple[list[tuple[int, int, int]], Any]:
        """Score every step: per call (peak bytes above its start, bytes the tree kept, the bound), and the last
        call's scores. Each call starts without the engine's key/value workspace, so that its peak includes it."""
        measured, scores = [], None
        for prompts in steps:
            tokenized = prior._tokenize_candidates(prompts, candidates)
            longest_row = max(len(t.prompt_ids) + sum(map(len, t.candidate_ids)) for t in tokenized)
            predictions = sum(len(ids) for t in tokenized for ids in t.candidate_ids)
            bound = memory_bound(model.config, dtype, budget, longest_row, predictions)
            kept = prior.kv_cache.bytes
            prior._workspace = []
            peak = 0
            if target.cuda:
                torch.cuda.synchronize()
                start = torch.cuda.memory_allocated()
                torch.cuda.reset_peak_memory_stats()
            scores = prior.score(prompts, candidates)
            if target.cuda:
                torch.cuda.synchronize()
                peak = torch.cuda.max_memory_allocated() - start
            assert all(np.isfinite(s).all() for s in scores.raw_logprobs)
            measured.append((peak, prior.kv_cache.bytes - kept, bound))
        return measured, scores

    prior = HFPrior(model, tokenizer, token_budget=budget, kv_cache_bytes=kv_bytes)
    extents: list[tuple[int, int]] = []  # (rows, key/value positions per row) of every forward with a cached past
    views = prior._workspace_views

    def recording(shapes, like):
        extents.append((shapes[0][0], shapes[0][2]))
        return views(shapes, like)

    monkeypatch.setattr(prior, "_workspace_views", recording)
    measured, last = run(prior)
    assert prior.kv_cache.evictions == 0  # every transcript stayed cached
    assert max(per_row for _, per_row in extents) > budget / n_envs  # the past is long enough for the bound to matter
    assert all(rows * per_row <= budget for rows, per_row in extents if rows > 1), extents
    assert any(rows > 1 for rows, _ in extents)  # rows are still batched
    plain = HFPrior(model, tokenizer, prefix_cache=False).score(steps[-1], candidates)
    assert per_token_diff(last, plain) <= TOLERANCE_PER_TOKEN[dtype]
    if not target.cuda:
        return
    for peak, kept, bound in measured:
        assert peak <= bound + kept, (peak / 2**30, kept / 2**30, bound / 2**30)
    del prior, plain
    gc.collect()
    torch.cuda.empty_cache()
    unbounded, _ = run(HFPrior(model, tokenizer, token_budget=1 << 30, kv_cache_bytes=kv_bytes))
    peak, kept, bound = unbounded[-1]
    assert peak > bound + kept, (peak / 2**30, kept / 2**30, bound / 2**30)  # the bound does catch a missing budget
