"""The prefix-tree KV cache: the tree itself by hand, and HFPrior's cached scores against uncached ones."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from prior_wrappers.priors import HFPrior
from prior_wrappers.priors.hf import naive_candidate_logprob
from prior_wrappers.priors.prefix_tree import PrefixKVCache
from prior_wrappers.prompts import TextState, TranscriptPrompt


def marked_kv(ids: list[int], n_layers: int = 2) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Keys/values whose entry for a token holds the token id (keys) and minus it (values): (1 head, len, 2 dims)."""
    t = torch.tensor(ids, dtype=torch.float32)[None, :, None].expand(1, len(ids), 2)
    return [(t.clone() + layer, -t.clone() - layer) for layer in range(n_layers)]


PER_TOKEN = 2 * 2 * 2 * 4  # layers x (keys, values) x dims x float32 bytes, one head


def test_tree_stores_each_prefix_once_and_returns_its_keys_values():
    tree = PrefixKVCache(max_bytes=1 << 20)
    assert tree.insert([1, 2, 3, 4], marked_kv([1, 2, 3, 4]), start=0) == 4
    match = tree.match([1, 2, 3, 9, 10])
    assert match.length == 3
    keys, values = match.layers()[1]
    assert keys[0, :, 0].tolist() == [2.0, 3.0, 4.0] and values[0, :, 0].tolist() == [-2.0, -3.0, -4.0]  # layer 1
    # the rest of [1, 2, 3, 9, 10] splits the edge [1, 2, 3, 4] after 3 tokens
    assert tree.insert([1, 2, 3, 9, 10], marked_kv([9, 10]), start=3) == 2
    assert (tree.nodes, tree.tokens, tree.bytes) == (3, 6, 6 * PER_TOKEN)
    both = tree.match([1, 2, 3, 9, 10, 11])
    assert both.length == 5 and both.layers()[0][0][0, :, 0].tolist() == [1.0, 2.0, 3.0, 9.0, 10.0]
    assert tree.match([1, 2, 3, 4]).layers()[0][1][0, :, 0].tolist() == [-1.0, -2.0, -3.0, -4.0]
    # what the tree holds is not stored again, and a limit stops the match early
    assert tree.insert([1, 2], marked_kv([1, 2]), start=0) == 0
    assert tree.insert([1, 2, 3, 4], marked_kv([4]), start=3) == 0
    assert tree.match([1, 2, 3, 4], limit=2).length == 2
    assert tree.match([7, 1, 2]).length == 0
    # copy_into fills a padded batch row by row
    keys = [torch.zeros(2, 1, 5, 2) for _ in range(2)]
    values = [torch.zeros(2, 1, 5, 2) for _ in range(2)]
    tree.match([1, 2, 3, 9, 10]).copy_into(keys, values, 1)
    tree.match([1, 2, 8]).copy_into(keys, values, 0)
    assert keys[0][1, 0, :, 0].tolist() == [1.0, 2.0, 3.0, 9.0, 10.0]
    assert keys[0][0, 0, :, 0].tolist() == [1.0, 2.0, 0.0, 0.0, 0.0]


def test_eviction_drops_least_recently_used_leaves_and_then_their_parents():
    tree = PrefixKVCache(max_bytes=1 << 20)
    tree.insert([1, 2, 3], marked_kv([1, 2, 3]), start=0)
    tree.insert([1, 2, 4], marked_kv([4]), start=2)  # splits: [1, 2] -> {[3], [4]}
    tree.insert([5, 6], marked_kv([5, 6]), start=0)
    tree.match([1, 2, 3])  # [3] is now the most recently used leaf; [4] the least
    assert tree.bytes == 6 * PER_TOKEN  # [1, 2], [3], [4], [5, 6]
    assert tree.evict(5 * PER_TOKEN) == PER_TOKEN and tree.match([1, 2, 4]).length == 2  # [4] went
    assert tree.evict(3 * PER_TOKEN) == 2 * PER_TOKEN and tree.match([5, 6]).length == 0  # then [5, 6]
    assert tree.evict(1 * PER_TOKEN) == 3 * PER_TOKEN  # [3], then its parent [1, 2], now a leaf
    assert (tree.bytes, tree.nodes, tree.tokens, tree.evictions, tree.evicted_tokens) == (0, 0, 0, 4, 6)
    assert tree.evict() == 0


def make_states(t: int, histories: list[list[tuple[str, str]]]) -> list[TextState]:
    return [
        TextState(
            observation=f"Room {t} of house {e}. There is a door to the north and a small {['key', 'lamp', 'map'][e]}.",
            admissible=CANDIDATES[e],
            task="find the exit",
            history=tuple(histories[e]),
            example="Observation: You are in a hall.\nAction: go north\nObservation: You win.",
        )
        for e in range(3)
    ]


CANDIDATES = [["go north", "take key", "open the red door", "look"], ["eat apple", "go south"], ["inventory", "wait"]]


def run_episodes(cached: HFPrior, plain: HFPrior, prompt: TranscriptPrompt, steps: int, check=None) -> float:
    """Three envs step through transcript prompts; both engines score every vector step; returns the max |Δ|."""
    histories: list[list[tuple[str, str]]] = [[], [], []]
    worst = 0.0
    for t in range(steps):
        states = make_states(t, histories)
        prompts = [prompt(s) for s in states]
        a = cached.score(prompts, CANDIDATES, return_features=True)
        b = plain.score(prompts, CANDIDATES, return_features=True)
        for x, y in zip(a.raw_logprobs, b.raw_logprobs):
            worst = max(worst, float(np.abs(x - y).max()))
        for x, y in zip(a.features, b.features):
            worst = max(worst, float(np.abs(x - y).max()))
        if check is not None:
            check(t, states, prompts)
        for e, s in enumerate(states):
            histories[e].append((s.observation, CANDIDATES[e][t % len(CANDIDATES[e])]))
    return worst


def test_cached_scores_equal_uncached_across_envs_and_calls(tiny_llama, smollm_tokenizer):
    cached = HFPrior(tiny_llama, smollm_tokenizer)
    plain = HFPrior(tiny_llama, smollm_tokenizer, prefix_cache=False)
    calls = []

    def check(t, states, prompts):
        calls.append(dict(cached.cache_info()))

    assert run_episodes(cached, plain, TranscriptPrompt(max_chars=10_000), steps=6, check=check) < 1e-4
    # one batched forward per call (rows start from different cached lengths), one prefix pass in all
    assert [c["forward_passes"] for c in calls] == [1, 2, 3, 4, 5, 6] and calls[-1]["prefix_passes"] == 1
    # the same prompt tokens, far fewer computed
    assert calls[-1]["prompt_tokens"] == plain.prompt_tokens
    assert calls[-1]["computed_tokens"] < 0.35 * plain.computed_tokens
    assert calls[-1]["evictions"] == 0 and calls[-1]["bytes"] == calls[-1]["tokens"] * 512  # 512 B a token


def test_a_prompt_that_extends_a_cached_one_computes_only_its_new_tokens(tiny_llama, smollm_tokenizer):
    prior = HFPrior(tiny_llama, smollm_tokenizer)
    tok = smollm_tokenizer
    first = "You are in a kitchen. There is a tomato on the counter.\nAction:"
    second = first + " take tomato\nObservation: You take the tomato.\nAction:"
    n1, n2 = len(tok(first)["input_ids"]), len(tok(second)["input_ids"])
    assert tok(second)["input_ids"][:n1] == tok(first)["input_ids"]  # the prompt extends, token for token
    cands = ["eat tomato", "go north"]
    cand_tokens = [len(tok(second + " " + c)["input_ids"]) - n2 for c in cands]
    prior.score([first], [cands])
    info = prior.cache_info()
    assert (info["hit_tokens"], info["tokens"]) == (0, n1)
    got = prior.score([second], [cands])
    info = prior.cache_info()
    # served: all of the first prompt; computed: the new prompt tokens and the candidates
    assert info["hit_tokens"] == n1 and info["prompt_tokens"] == n1 + n2
    assert info["computed_tokens"] - (n1 + sum(len(tok(first + " " + c)["input_ids"]) - n1 for c in cands)) == (
        n2 - n1 + sum(cand_tokens)
    )
    assert info["tokens"] == n2
    plain = HFPrior(tiny_llama, smollm_tokenizer, prefix_cache=False).score([second], [cands])
    np.testing.assert_allclose(got.raw_logprobs[0], plain.raw_logprobs[0], atol=1e-4)


def test_cached_scores_stay_exact_through_evictions(tiny_llama, smollm_tokenizer):
    budget = 60 * 512  # room for about 60 tokens: most of every call's prompts are evicted after it
    cached = HFPrior(tiny_llama, smollm_tokenizer, kv_cache_bytes=budget)
    plain = HFPrior(tiny_llama, smollm_tokenizer, prefix_cache=False)
    sizes = []
    worst = run_episodes(cached, plain, TranscriptPrompt(max_chars=10_000), steps=5,
                         check=lambda t, s, p: sizes.append(cached.kv_cache.bytes))
    assert worst < 1e-4
    assert max(sizes) <= budget and cached.kv_cache.evictions > 0
    assert 0 < cached.hit_tokens and cached.computed_tokens < plain.computed_tokens  # it still serves some tokens


def test_cached_scores_stay_exact_when_the_transcript_reanchors(tiny_llama, smollm_tokenizer):
    prompt = TranscriptPrompt(max_chars=400, keep_fraction=0.5)
    cached = HFPrior(tiny_llama, smollm_tokenizer)
    plain = HFPrior(tiny_llama, smollm_tokenizer, prefix_cache=False)
    starts, computed = [], []

    def check(t, states, prompts):
        starts.append(prompt.start(states[0]))
        computed.append(cached.computed_tokens)

    assert run_episodes(cached, plain, prompt, steps=9, check=check) < 1e-4
    drops = [t for t in range(1, len(starts)) if starts[t] != starts[t - 1]]
    assert drops, starts  # the transcript dropped a block of turns at least once
    per_call = np.diff([0, *computed])
    for t in drops:  # a re-anchoring step recomputes more than the steps that only append
        assert per_call[t] > per_call[t - 1], (t, per_call)


def test_tree_with_split_rows_and_a_small_token_budget_is_exact(tiny_llama, smollm_tokenizer):
    cached = HFPrior(tiny_llama, smollm_tokenizer, token_budget=48)
    plain = HFPrior(tiny_llama, smollm_tokenizer, prefix_cache=False)
    assert run_episodes(cached, plain, TranscriptPrompt(), steps=3) < 1e-4
    assert cached.forward_passes > 3  # several forwards per call


def test_prefix_cache_modes(tiny_llama, smollm_tokenizer):
    assert HFPrior(tiny_llama, smollm_tokenizer).prefix_cache_mode == "tree"
    off = HFPrior(tiny_llama, smollm_tokenizer, prefix_cache=False)
    assert off.prefix_cache_mode == "off" and off.kv_cache is None and not off.prefix_cache
    assert HFPrior(tiny_llama, smollm_tokenizer, prefix_cache="tree").prefix_cache
    assert HFPrior(tiny_llama, smollm_tokenizer, prefix_cache="off").cache_info()["mode"] == "off"
    with pytest.raises(ValueError, match="prefix_cache"):
        HFPrior(tiny_llama, smollm_tokenizer, prefix_cache="radix")  # type: ignore[arg-type]
    prior = HFPrior(tiny_llama, smollm_tokenizer)
    prior.score(["Some context for the model to score from.\nAction:"], [["go", "stay"]])
    assert prior.kv_cache.tokens > 0
    prior.clear_cache()
    prior.reset_counters()
    assert prior.kv_cache.tokens == 0 and prior.cache_info()["computed_tokens"] == 0


def test_rows_of_a_later_batch_are_served_after_an_earlier_batch_split_their_prefix(tiny_llama, smollm_tokenizer):
    """The first batch's insert splits the tree's node that a row of the second batch had matched."""
    base = "You are in a long corridor with many doors. The first door is red and the second door is blue."
    held = base + " You open the red door and walk through it.\nAction:"
    prior = HFPrior(tiny_llama, smollm_tokenizer, token_budget=24)  # one row per batch
    plain = HFPrior(tiny_llama, smollm_tokenizer, prefix_cache=False)
    prior.score([held], [["go"]])  # the tree holds `held` as one node
    # the longer prompt (its own batch, first) shares part of `held` and splits that node when stored
    split_it = base + " A ghost appears and asks you a question about the weather in the north.\nAction:"
    extends_it = held + " go\nAction:"
    prompts, cands = [split_it, extends_it], [["answer", "run away"], ["wait", "look"]]
    got = prior.score(prompts, cands)
    assert prior.forward_passes >= 3 and prior.prefix_passes == 0  # several batches, nothing prefilled
    want = plain.score(prompts, cands)
    for x, y in zip(got.raw_logprobs, want.raw_logprobs):
        np.testing.assert_allclose(x, y, atol=1e-4)


def test_the_engine_options_0_5_removed_say_what_to_use_instead(tiny_llama, smollm_tokenizer):
    with pytest.raises(ValueError, match=r"prefix_cache='shared' was removed in 0\.5: use prefix_cache=True"):
        HFPrior(tiny_llama, smollm_tokenizer, prefix_cache="shared")  # type: ignore[arg-type]
    for value in (False, True):
        with pytest.raises(ValueError, match=r"candidate_trie= was removed in 0\.5: .*token trie.*drop the argument"):
            HFPrior(tiny_llama, smollm_tokenizer, candidate_trie=value)
    with pytest.raises(TypeError, match="unexpected keyword argument 'token_buget'"):
        HFPrior(tiny_llama, smollm_tokenizer, token_buget=64)


def test_candidate_trie_computes_shared_first_tokens_once_and_scores_each_candidate_as_alone(
    tiny_llama, smollm_tokenizer
):
    prompt = "You are in a kitchen with a knife, an apple and two doors.\nAction:"
    cands = ["take knife", "take apple", "go", "go north", "go south", "take knife", "open the door"]
    tok = smollm_tokenizer
    n_prompt = len(tok(prompt)["input_ids"])
    chains = [tok(prompt + " " + c)["input_ids"][n_prompt:] for c in cands]
    assert chains[2] == chains[3][:1] and chains[0][0] == chains[1][0]  # "go" begins "go north"; both "take"s share
    distinct = {tuple(ids[:i]) for ids in chains for i in range(1, len(ids) + 1)}
    trie = HFPrior(tiny_llama, tok, prefix_cache=False)
    a = trie.score([prompt], [cands], return_features=True)
    assert trie.computed_tokens == n_prompt + len(distinct) < n_prompt + sum(map(len, chains))
    alone = HFPrior(tiny_llama, tok, prefix_cache=False)  # one candidate per call: nothing to share
    for j, c in enumerate(cands):
        b = alone.score([prompt], [[c]], return_features=True)
        np.testing.assert_allclose(a.raw_logprobs[0][j], b.raw_logprobs[0][0], atol=1e-5)
        np.testing.assert_allclose(a.features[0][j], b.features[0][0], atol=1e-5)  # "go" ends inside "go north"
        np.testing.assert_allclose(a.raw_logprobs[0][j], naive_candidate_logprob(tiny_llama, tok, prompt, c)[0], atol=1e-4)
    np.testing.assert_array_equal(a.num_tokens[0], [len(ids) for ids in chains])
    assert a.raw_logprobs[0][0] == a.raw_logprobs[0][5]  # the duplicate is the same path


def test_reused_workspace_memory_is_never_read_uninitialised(tiny_llama, smollm_tokenizer, monkeypatch):
    """The tree's key/value workspace is allocated with new_empty and reused across calls. Fill every such buffer
    with NaN: rows whose cached prefix is shorter than the batch's must still score exactly (a NaN key or value at a
    masked position would poison the row: the padding is zeroed; without that this test fails)."""
    allocate = torch.Tensor.new_empty
    monkeypatch.setattr(torch.Tensor, "new_empty", lambda self, *a, **k: allocate(self, *a, **k).fill_(float("nan")))
    uncached = HFPrior(tiny_llama, smollm_tokenizer, prefix_cache=False)
    tree = HFPrior(tiny_llama, smollm_tokenizer)
    base = "Instruction: play the game well. Walkthrough: go north, take knife, cut apple. " * 4
    histories = [""] * 5
    for step in range(4):  # the envs' transcripts grow by different amounts: rows of a batch have different offsets
        prompts = []
        for e in range(5):
            histories[e] += f" Obs {e}.{step}: you see item {(7 * e + 3 * step) % 11}." * (1 + e % 3)
            prompts.append(base + histories[e] + " Action:")
        candidates = [[f"take item {e + step}", "go north", "look", f"open box {e}"] for e in range(5)]
        a, b = uncached.score(prompts, candidates), tree.score(prompts, candidates)
        for x, y in zip(a.raw_logprobs, b.raw_logprobs):
            np.testing.assert_allclose(x, y, atol=1e-4)
    assert tree.cache_info()["hit_tokens"] > 0


def test_token_budget_counts_the_cached_past_each_row_copies(tiny_llama, smollm_tokenizer, monkeypatch):
    """A forward's workspace is rows x (longest cached past + longest row): the budget bounds that, not only the
    tokens computed, so long cached transcripts cannot multiply memory by the number of rows."""
    budget = 400
    prior = HFPrior(tiny_llama, smollm_tokenizer, token_budget=budget)
    plain = HFPrior(tiny_llama, smollm_tokenizer, prefix_cache=False)
    extents: list[tuple[int, int]] = []  # (rows, key/value positions per row) of every forward with a cached past
    views = prior._workspace_views

    def recording(shapes, like):
        extents.append((shapes[0][0], shapes[0][2]))
        return views(shapes, like)

    monkeypatch.setattr(prior, "_workspace_views", recording)
    history = [f"Env {e}: you stand in a corridor of room {e}; doors lead north and south." for e in range(6)]
    cands = [["go north", "go south", "open door", "wait"]] * 6
    for step in range(4):  # the transcripts grow; each call serves most of a row from the cache
        history = [h + f" Step {step}: you walk and see {step} lamps.\nAction:" for h in history]
        got = prior.score(history, cands)
        for x, y in zip(got.raw_logprobs, plain.score(history, cands).raw_logprobs):
            np.testing.assert_allclose(x, y, atol=1e-4)
    assert max(per_row for _, per_row in extents) > budget / 6  # the past is long enough for the bound to matter
    assert all(rows * per_row <= budget for rows, per_row in extents if rows > 1), extents
    assert any(rows > 1 for rows, _ in extents)  # rows are still batched
