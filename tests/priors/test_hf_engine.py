"""HFPrior's packed scoring against the naive one-forward-per-candidate reference."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
import transformers
from packaging.version import Version

from prior_wrappers.priors import HFPrior
from prior_wrappers.priors.base import log_softmax
from prior_wrappers.priors.hf import naive_candidate_logprob
from prior_wrappers.priors.matching import CommandMatcher

PROMPTS = [
    "You are in a kitchen. There is a tomato on the counter.\nTask: make a salad.\nAction:",
    "You are in room 2. The exit is east.\nAction:",
    "Observation: the door is locked and you hold a key.\nAction:",
]
CANDIDATES = [
    ["pick up tomato", "chop tomato", "go north", "take bowl", "serve salad"],
    ["go east", "go west", "wait"],
    ["unlock door with key", "open door", "drop key", "look", "inventory", "go south"],
]


@pytest.fixture()
def tiny_prior(tiny_llama, smollm_tokenizer) -> HFPrior:
    return HFPrior(tiny_llama, smollm_tokenizer)


def naive_raw(prior: HFPrior, prompt: str, cands: list[str]) -> tuple[np.ndarray, np.ndarray]:
    out = [naive_candidate_logprob(prior.model, prior.tokenizer, prompt, c, prior.separator, prior.candidate_suffix) for c in cands]
    return np.array([o[0] for o in out]), np.array([o[1] for o in out])


def test_engine_equals_naive_forward(tiny_prior):
    scores = tiny_prior.score(PROMPTS, CANDIDATES)
    for i, (p, cands) in enumerate(zip(PROMPTS, CANDIDATES)):
        raw, ntok = naive_raw(tiny_prior, p, cands)
        np.testing.assert_allclose(scores.raw_logprobs[i], raw, atol=1e-4)
        np.testing.assert_array_equal(scores.num_tokens[i], ntok)
        np.testing.assert_allclose(np.exp(scores.logprobs[i]).sum(), 1.0, atol=1e-9)


def test_all_prompts_go_through_one_forward(tiny_prior):
    prompts = PROMPTS * 3
    cands = CANDIDATES * 3
    before = tiny_prior.forward_passes
    tiny_prior.score(prompts, cands)
    assert tiny_prior.forward_passes - before == 1


def test_batched_equals_single_prompt(tiny_prior):
    batched = tiny_prior.score(PROMPTS, CANDIDATES)
    for i, (p, c) in enumerate(zip(PROMPTS, CANDIDATES)):
        single = tiny_prior.score([p], [c])
        np.testing.assert_allclose(batched.raw_logprobs[i], single.raw_logprobs[0], atol=1e-5)


def test_small_token_budget_splits_rows_without_changing_scores(tiny_llama, smollm_tokenizer, tiny_prior):
    small = HFPrior(tiny_llama, smollm_tokenizer, token_budget=40)
    a = tiny_prior.score(PROMPTS, CANDIDATES)
    b = small.score(PROMPTS, CANDIDATES)
    assert small.forward_passes > 1
    for x, y in zip(a.raw_logprobs, b.raw_logprobs):
        np.testing.assert_allclose(x, y, atol=1e-5)


def test_permuting_candidates_permutes_scores_and_duplicates_tie(tiny_prior):
    cands = CANDIDATES[0]
    perm = [3, 0, 4, 2, 1]
    a = tiny_prior.score([PROMPTS[0]], [cands]).raw_logprobs[0]
    b = tiny_prior.score([PROMPTS[0]], [[cands[j] for j in perm]]).raw_logprobs[0]
    np.testing.assert_allclose(b, a[perm], atol=1e-5)
    dup = tiny_prior.score([PROMPTS[0]], [["go north", "take bowl", "go north"]]).raw_logprobs[0]
    assert dup[0] == pytest.approx(dup[2], abs=1e-6)


def test_normalizations_match_hand_computation(tiny_prior):
    cands = CANDIDATES[2]
    s = tiny_prior.score([PROMPTS[2]], [cands], normalization="sum")
    raw, ntok = s.raw_logprobs[0], s.num_tokens[0]
    words = np.array([len(c.split()) for c in cands])
    for norm, expected in [("sum", raw), ("token", raw / ntok), ("word", raw / words)]:
        got = tiny_prior.score([PROMPTS[2]], [cands], normalization=norm).logprobs[0]
        want = expected - np.log(np.exp(expected).sum())
        np.testing.assert_allclose(got, want, atol=1e-9)
    with pytest.raises(ValueError, match="normalization"):
        tiny_prior.score([PROMPTS[2]], [cands], normalization="char")


def test_tokens_merging_across_the_boundary(tiny_llama, smollm_tokenizer):
    """With no separator, "go no" + "rth" re-tokenises "north": the candidate's tokens are those the joined
    text adds after the longest common prefix, and the score still equals the naive forward."""
    prior = HFPrior(tiny_llama, smollm_tokenizer, separator="")
    prompt, cand = "Action: go no", "rth"
    p_ids = smollm_tokenizer(prompt)["input_ids"]
    j_ids = smollm_tokenizer(prompt + cand)["input_ids"]
    assert j_ids[: len(p_ids)] != p_ids, "this case must merge tokens across the boundary"
    got = prior.score([prompt], [[cand, "rthern", "w"]])
    for j, c in enumerate([cand, "rthern", "w"]):
        raw, n = naive_candidate_logprob(tiny_llama, smollm_tokenizer, prompt, c, separator="")
        assert got.raw_logprobs[0][j] == pytest.approx(raw, abs=1e-4)
        assert got.num_tokens[0][j] == n


def test_features_are_last_hidden_state_of_candidate(tiny_prior, tiny_llama, smollm_tokenizer):
    s = tiny_prior.score([PROMPTS[1]], [CANDIDATES[1]], return_features=True)
    assert s.features[0].shape == (3, 64)
    ids = smollm_tokenizer(PROMPTS[1] + " " + CANDIDATES[1][2])["input_ids"]
    with torch.no_grad():
        hidden = tiny_llama.model(input_ids=torch.tensor([ids])).last_hidden_state[0, -1].numpy()
    np.testing.assert_allclose(s.features[0][2], hidden, atol=1e-4)


def test_prompt_past_context_window_is_truncated_from_the_left_once(tiny_llama, smollm_tokenizer):
    prior = HFPrior(tiny_llama, smollm_tokenizer, max_length=32)
    long_prompt = "It is a long story. " * 30 + "Now the door is open.\nAction:"
    with pytest.warns(UserWarning, match="context window"):
        s = prior.score([long_prompt], [["go through the door", "wait"]])
    assert np.isfinite(s.raw_logprobs[0]).all()
    # the kept context is the end of the prompt: same as scoring that end directly
    ids = smollm_tokenizer(long_prompt)["input_ids"]
    cand_ids = smollm_tokenizer(long_prompt + " go through the door")["input_ids"][len(ids):]
    adds_bos = ids[0] == smollm_tokenizer.bos_token_id  # tokenizers differ across transformers versions here
    kept = smollm_tokenizer.decode(ids[len(ids) - (32 - len(cand_ids) - int(adds_bos)):])
    ref, _ = naive_candidate_logprob(tiny_llama, smollm_tokenizer, kept, "go through the door")
    assert s.raw_logprobs[0][0] == pytest.approx(ref, abs=1e-3)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        prior.score([long_prompt], [["wait"]])
    # the second overflow is silent (other libraries' warnings are not this test's business)
    assert not [w for w in caught if "context window" in str(w.message)]
    strict = HFPrior(tiny_llama, smollm_tokenizer, max_length=32, truncation="error")
    with pytest.raises(ValueError, match="context window"):
        strict.score([long_prompt], [["wait"]])


@pytest.mark.parametrize(
    ("prompts", "candidates", "error", "match"),
    [
        (["p"], [[]], ValueError, "empty"),
        (["p"], [["go", ""]], ValueError, "empty command"),
        (["p"], [["go", 3]], TypeError, "expected str"),
        ("p", [["go"]], TypeError, "single string"),
        (["p", "q"], [["go"]], ValueError, "2 prompts but 1"),
        (["p"], ["go"], TypeError, "single string"),
    ],
)
def test_bad_input_is_refused_clearly(tiny_prior, prompts, candidates, error, match):
    with pytest.raises(error, match=match):
        tiny_prior.score(prompts, candidates)


def test_missing_model_paths_name_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        HFPrior.from_pretrained(tmp_path / "no-such-model")
    with pytest.raises(FileNotFoundError, match="GGUF file"):
        HFPrior.from_pretrained(tmp_path, gguf_file="missing.gguf")
    with pytest.raises(FileNotFoundError, match="GGUF file .*model.Q4.gguf"):
        HFPrior.from_pretrained(tmp_path / "model.Q4.gguf")
    with pytest.raises(FileNotFoundError, match="config.json"):
        HFPrior.from_pretrained(tmp_path)


def test_propose_maps_samples_to_admissible(tiny_prior):
    props = tiny_prior.propose(PROMPTS[:2], CANDIDATES[:2], k=4, max_new_tokens=4, seed=0)
    assert [len(g) for g in props.generations] == [4, 4]
    assert props.commands == CANDIDATES[:2]
    # each generation counts for the command the matcher maps it to; the rest are the invalid ones
    matched = [[CommandMatcher(c).match_index(g) for g in gens] for gens, c in zip(props.generations, CANDIDATES)]
    n_invalid = sum(m is None for row in matched for m in row)
    assert props.invalid_rate == n_invalid / 8
    for counts, row, cmds in zip(props.counts, matched, CANDIDATES):
        expected = np.bincount([m for m in row if m is not None], minlength=len(cmds)).astype(float)
        np.testing.assert_array_equal(counts, expected)
    # fallback="uniform": an invalid generation gives 1/n to every command, so each prompt's counts sum to k
    uniform = tiny_prior.propose(PROMPTS[:2], CANDIDATES[:2], k=4, max_new_tokens=4, seed=0, fallback="uniform")
    assert uniform.generations == props.generations and uniform.invalid_rate == props.invalid_rate
    for counts, row, cmds in zip(uniform.counts, matched, CANDIDATES):
        bad = sum(m is None for m in row)
        expected = np.bincount([m for m in row if m is not None], minlength=len(cmds)) + bad / len(cmds)
        np.testing.assert_allclose(counts, expected, rtol=1e-12)
        assert counts.sum() == pytest.approx(4.0)


def test_real_smollm2_engine_equals_naive(smollm_prior):
    prompt = PROMPTS[0]
    s = smollm_prior.score([prompt], [CANDIDATES[0]])
    raw, _ = naive_raw(smollm_prior, prompt, CANDIDATES[0])
    np.testing.assert_allclose(s.raw_logprobs[0], raw, atol=1e-4)
    assert np.argmax(s.logprobs[0]) == np.argmax(log_softmax(raw / s.num_tokens[0]))


HEADER = (
    "You are playing a text game. Choose the next action.\nExample:\nObservation: You see a closed door.\n"
    "Action: open door\nObservation: The door is open.\nAction: go through door\n\n"
)


def test_a_header_shared_by_a_call_is_prefilled_once_and_reused_exactly_by_later_calls(tiny_llama, smollm_tokenizer):
    prior = HFPrior(tiny_llama, smollm_tokenizer)
    plain = HFPrior(tiny_llama, smollm_tokenizer, prefix_cache=False)
    prompts = [HEADER + p for p in PROMPTS]
    cached, reference = prior.score(prompts, CANDIDATES), plain.score(prompts, CANDIDATES)
    assert prior.prefix_passes == 1  # the header, once for the call's rows
    for x, y in zip(cached.raw_logprobs, reference.raw_logprobs):
        np.testing.assert_allclose(x, y, atol=1e-4)
    # a later single-prompt call is served from the tree: no new prefix pass, still exact
    hits = prior.hit_tokens
    single = prior.score([prompts[1]], [CANDIDATES[1]])
    raw, _ = naive_raw(prior, prompts[1], CANDIDATES[1])
    np.testing.assert_allclose(single.raw_logprobs[0], raw, atol=1e-4)
    assert prior.prefix_passes == 1 and prior.hit_tokens > hits
    # a prompt that shares only part of the header reuses that part
    partial = [HEADER[:110] + " Something else entirely.\nAction:"]
    got = prior.score(partial, [["wait", "look"]])
    assert prior.prefix_passes == 1
    np.testing.assert_allclose(got.raw_logprobs[0], naive_raw(prior, partial[0], ["wait", "look"])[0], atol=1e-4)
    # an unrelated batch prefills its own common prefix
    other = ["Completely different words here, more than sixteen tokens long for sure, then: " + p for p in PROMPTS]
    got = prior.score(other, CANDIDATES)
    assert prior.prefix_passes == 2
    np.testing.assert_allclose(got.raw_logprobs[2], naive_raw(prior, other[2], CANDIDATES[2])[0], atol=1e-4)


# transformers renamed the cache argument ``past_key_values`` to ``cache`` (the old name warns until 5.40, when it goes)
LEGACY_CACHE_KWARG_REMOVED = Version("5.40.0")


@pytest.mark.parametrize("kwarg", ["cache", "past_key_values"])
def test_prefix_cached_scores_equal_uncached_on_each_cache_argument(tiny_llama, smollm_tokenizer, kwarg):
    """Both ways transformers has taken a key/value cache give the uncached scores (each where installed)."""
    from prior_wrappers.priors.hf_compat import cache_kwarg

    native = cache_kwarg(tiny_llama.model)
    legacy_accepted = kwarg == "past_key_values" and Version(transformers.__version__) < LEGACY_CACHE_KWARG_REMOVED
    if kwarg != native and not legacy_accepted:
        pytest.skip(f"transformers {transformers.__version__} does not take {kwarg}=")
    prior = HFPrior(tiny_llama, smollm_tokenizer)
    prior._cache_kwarg = kwarg
    plain = HFPrior(tiny_llama, smollm_tokenizer, prefix_cache=False)
    prompts = [HEADER + p for p in PROMPTS]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # the legacy name's deprecation, on recent versions
        prior.score(prompts, CANDIDATES)  # fills the tree
        cached = prior.score(prompts, CANDIDATES)
    assert prior.prefix_passes == 1 and prior.hit_tokens > 0
    reference = plain.score(prompts, CANDIDATES)
    for x, y in zip(cached.raw_logprobs, reference.raw_logprobs):
        np.testing.assert_allclose(x, y, atol=1e-4)


def test_scoring_makes_no_deprecated_library_calls(tiny_llama, smollm_tokenizer, caplog):
    """The engine's calls into transformers raise no FutureWarning/DeprecationWarning and log no deprecation."""
    prior = HFPrior(tiny_llama, smollm_tokenizer)
    prompts = [HEADER + p for p in PROMPTS]
    with warnings.catch_warnings():
        warnings.simplefilter("error", FutureWarning)
        warnings.simplefilter("error", DeprecationWarning)
        prior.score(prompts, CANDIDATES, return_features=True)
        prior.score(prompts[:1], CANDIDATES[:1])
    assert prior.prefix_passes == 1
    assert not [r for r in caplog.records if "deprecated" in r.getMessage()]


def test_seeded_propose_is_reproducible_and_leaves_the_global_rng_alone(tiny_prior):
    torch.manual_seed(123)
    state = torch.get_rng_state()
    a = tiny_prior.propose(PROMPTS[:2], CANDIDATES[:2], k=4, max_new_tokens=4, seed=7)
    assert torch.equal(torch.get_rng_state(), state)  # SB3's torch stream is untouched
    b = tiny_prior.propose(PROMPTS[:2], CANDIDATES[:2], k=4, max_new_tokens=4, seed=7)
    assert a.generations == b.generations
    others = [tiny_prior.propose(PROMPTS[:2], CANDIDATES[:2], k=4, max_new_tokens=4, seed=s).generations for s in (8, 9)]
    assert any(o != a.generations for o in others)
    with pytest.raises(ValueError, match="temperature"):
        tiny_prior.propose(PROMPTS[:1], CANDIDATES[:1], temperature=0.0)


def test_propose_samples_like_generate_and_batches_like_single_prompts(tiny_prior, tiny_llama, smollm_tokenizer):
    """Near-zero temperature makes sampling greedy: the own sampling loop (left padding, KV cache, positions)
    must then give transformers' greedy ``generate`` text, whether a prompt is alone or batched with others."""
    prompts = ["Hi", PROMPTS[1]]
    batched = tiny_prior.propose(prompts, [["go"], ["go"]], k=2, max_new_tokens=5, seed=0, temperature=1e-4)
    for i, prompt in enumerate(prompts):
        ids = smollm_tokenizer([prompt], return_tensors="pt")
        out = tiny_llama.generate(**ids, do_sample=False, max_new_tokens=5, pad_token_id=smollm_tokenizer.pad_token_id)
        greedy = smollm_tokenizer.decode(out[0, ids["input_ids"].shape[1] :], skip_special_tokens=True)
        expected = greedy.strip().split("\n", 1)[0].strip()
        assert batched.generations[i] == [expected, expected]


def test_forwards_over_one_model_take_turns_across_threads(tiny_llama, smollm_tokenizer):
    """The attention implementation is a field of the model's shared config: while one thread's forward has it
    switched, another thread's switch waits (else it would restore the wrong value under the first's forward)."""
    import copy
    import pickle
    import threading

    from prior_wrappers.priors.attention import attention_implementation

    model = tiny_llama
    own = model.config._attn_implementation
    inside, release, seen = threading.Event(), threading.Event(), []

    def first():
        with attention_implementation(model, "eager" if own != "eager" else "sdpa"):
            inside.set()
            release.wait(5)
            seen.append(model.config._attn_implementation)

    def second():
        inside.wait(5)
        with attention_implementation(model, "prior_wrappers_flex"):
            seen.append("second")

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    for t in threads:
        t.start()
    inside.wait(5)
    threads[1].join(0.3)  # the second thread cannot enter while the first holds the model
    assert seen == [] and threads[1].is_alive()
    release.set()
    for t in threads:
        t.join(5)
    assert seen[0] == ("eager" if own != "eager" else "sdpa") and seen[1] == "second"
    assert model.config._attn_implementation == own

    prior = HFPrior(model, smollm_tokenizer)
    prompts = [f"Room {i}: a lamp and a door.\nAction:" for i in range(6)]
    cands = [["open door", "take lamp", "wait"]] * 6
    want = HFPrior(model, smollm_tokenizer, prefix_cache=False).score(prompts, cands).raw_logprobs
    results: dict[int, list] = {}

    def score(i):
        results[i] = prior.score(prompts[i::2], cands[i::2]).raw_logprobs

    workers = [threading.Thread(target=score, args=(i,)) for i in range(2) for _ in range(3)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(60)
    for i in range(2):
        for x, y in zip(results[i], want[i::2]):
            np.testing.assert_allclose(x, y, atol=1e-4)
    clone = pickle.loads(pickle.dumps(copy.copy(prior)))  # a copy gets its own lock
    assert clone._lock is not prior._lock


def test_auto_dtype_is_bf16_where_the_cpu_computes_it_natively(tiny_llama, smollm_tokenizer, tmp_path, monkeypatch):
    import prior_wrappers.priors.hf as hf
    import prior_wrappers.priors.loading as loading

    tiny_llama.save_pretrained(tmp_path)
    smollm_tokenizer.save_pretrained(tmp_path)
    for native, want in ((True, torch.bfloat16), (False, torch.float32)):
        monkeypatch.setattr(loading, "native_bf16_cpu", lambda native=native: native)  # hf re-exports loading's
        assert hf.scoring_dtype("cpu") == want
        assert next(HFPrior.from_pretrained(tmp_path, device="cpu").model.parameters()).dtype == want
        assert next(HFPrior.from_pretrained(tmp_path, device="cpu", dtype=None).model.parameters()).dtype == want
    assert hf.scoring_dtype("cuda") == torch.bfloat16
    pinned = HFPrior.from_pretrained(tmp_path, device="cpu", dtype="float32")
    assert next(pinned.model.parameters()).dtype == torch.float32
    with pytest.raises(ValueError, match="not a torch dtype"):
        HFPrior.from_pretrained(tmp_path, device="cpu", dtype="float33")
