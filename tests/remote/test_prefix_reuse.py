"""OpenAIPrior's prefix reuse on the server: scoring="next_token" (one-token generations that read vLLM's prefix
cache) and read_prefix_cache (echo requests that may read it), against the stub and against real vLLM."""

from __future__ import annotations

import numpy as np
import pytest
from stub_server import StubServer
from test_agreement import assert_same_prior
from vllm_server import SERVED_NAME

from prior_wrappers.priors import OpenAIPrior
from prior_wrappers.priors.remote import MAX_TARGET_IDS, EchoLogprobsError

PROMPTS = ["You are in room 1 of 4. The exit is to the east.\nAction:", "You hold a key.\nAction:"]
CANDIDATES = [["go east", "go west", "wait"], ["unlock door", "drop key"]]


def stub_prior(stub: StubServer, tokenizer, **kwargs) -> OpenAIPrior:
    return OpenAIPrior(stub.base_url, model=stub.model, tokenizer=tokenizer, backoff=0.05, **kwargs)


def test_next_token_scoring_asks_each_prefix_once_prompts_first(smollm_tokenizer):
    with StubServer("ok") as stub:
        prior = stub_prior(stub, smollm_tokenizer, scoring="next_token")
        scores = prior.score(PROMPTS, CANDIDATES, normalization="sum")
        tokenized = prior._tokenize_candidates(PROMPTS, CANDIDATES)
    for raw, ntok in zip(scores.raw_logprobs, scores.num_tokens):
        np.testing.assert_array_equal(raw, -ntok)  # the stub gives every asked-for token log-prob -1
    # first round: the two prompts, each asked for its candidates' first tokens; then the in-candidate prefixes
    first, rest = stub.completion_requests[:2], stub.completion_requests[2:]
    assert sorted(len(r["prompt"]) for r in first) == [1, 1]
    for request, tp in zip(sorted(first, key=lambda r: len(r["prompt"][0])), sorted(tokenized, key=lambda t: len(t.prompt_ids))):
        assert request["prompt"] == [tp.prompt_ids[: tp.contexts[0]]]
        assert request["logprob_token_ids"] == sorted({ids[0] for ids in tp.candidate_ids})
        assert request["max_tokens"] == 1 and request["logprobs"] == 1 and "echo" not in request
    expected = {tuple(tp.prompt_ids[:ctx] + ids[:i]) for tp in tokenized for ctx, ids in zip(tp.contexts, tp.candidate_ids)
                for i in range(1, len(ids))}
    sent = [tuple(p) for r in rest for p in r["prompt"]]
    assert len(sent) == len(set(sent)) and set(sent) == expected  # each distinct prefix once


def test_next_token_scoring_splits_more_target_ids_than_a_request_may_ask_for(smollm_tokenizer):
    words = [w.strip() for w in (smollm_tokenizer.decode([i]) for i in range(1000, 4000)) if w.startswith(" ") and w[1:].isalpha()]
    many = [f"{w} thing" for w in dict.fromkeys(words)][: MAX_TARGET_IDS + 40]  # distinct first tokens
    with StubServer("ok") as stub:
        prior = stub_prior(stub, smollm_tokenizer, scoring="next_token")
        scores = prior.score(PROMPTS[:1], [many], normalization="sum")
    np.testing.assert_array_equal(scores.raw_logprobs[0], -scores.num_tokens[0])
    assert all(len(r["logprob_token_ids"]) <= MAX_TARGET_IDS for r in stub.completion_requests)
    first_tokens = {prior._tokenize_candidates(PROMPTS[:1], [[c]])[0].candidate_ids[0][0] for c in many}
    assert len(first_tokens) > MAX_TARGET_IDS


def test_a_server_without_logprob_token_ids_is_refused(smollm_tokenizer):
    with StubServer("ignores_token_ids") as stub:
        with pytest.raises(EchoLogprobsError, match="logprob_token_ids"):
            stub_prior(stub, smollm_tokenizer, scoring="next_token").score(PROMPTS, CANDIDATES)
    with pytest.raises(ValueError, match="scoring"):
        OpenAIPrior("http://127.0.0.1:1", model="m", tokenizer=smollm_tokenizer, scoring="prefix")


def test_read_prefix_cache_accepts_missing_log_probs_before_the_candidates_only(smollm_tokenizer):
    with StubServer("cached_prefix") as stub:
        with pytest.raises(EchoLogprobsError, match="missing"):
            stub_prior(stub, smollm_tokenizer).score(PROMPTS, CANDIDATES)
        scores = stub_prior(stub, smollm_tokenizer, read_prefix_cache=True).score(PROMPTS, CANDIDATES, normalization="sum")
        assert stub.completion_requests[-1]["skip_reading_prefix_cache"] is False
        assert "skip_reading_prefix_cache" not in stub.completion_requests[0]
    for raw, ntok in zip(scores.raw_logprobs, scores.num_tokens):
        np.testing.assert_array_equal(raw, -ntok)
    # a candidate token without a log-prob is still refused: "Hi." is 2 tokens, so " go" is position 2
    with StubServer("cached_prefix") as stub:
        with pytest.raises(EchoLogprobsError, match="missing"):
            stub_prior(stub, smollm_tokenizer, read_prefix_cache=True).score(["Hi."], [["go"]])


LONG = "You are playing a text game. Choose the next action.\n" + "".join(
    f"Observation: You are in corridor {i}. Doors lead east and west.\nAction: go east\n" for i in range(12)
)


def test_next_token_scoring_equals_hf_prior_and_the_server_computes_fewer_prompt_tokens(vllm_server, smollm_prior,
                                                                                          smollm_tokenizer):
    prompts = [LONG + f"Observation: room {i}: a knife, an apple and a red door.\nAction:" for i in range(2)]
    cands = [["take knife", "eat apple", "open the red door", "go west"], ["go east", "take knife"]]
    local = smollm_prior.score(prompts, cands)
    computed = {}
    for scoring in ("echo", "next_token"):
        with OpenAIPrior(vllm_server.base_url, model=SERVED_NAME, tokenizer=smollm_tokenizer, scoring=scoring) as prior:
            prior.score(prompts, cands)  # fills the server's prefix cache (for the requests that read it)
            before = prior.server_metrics()
            remote = prior.score(prompts, cands)
            after = prior.server_metrics()
        assert_same_prior(remote, local, cands)
        computed[scoring] = after["computed_prompt_tokens"] - before["computed_prompt_tokens"]
        assert after["prompt_tokens"] - before["prompt_tokens"] == pytest.approx(
            computed[scoring] + after["cached_prompt_tokens"] - before["cached_prompt_tokens"])
    n_prompt = [len(smollm_tokenizer(p)["input_ids"]) for p in prompts]
    assert computed["echo"] >= sum(n * len(c) for n, c in zip(n_prompt, cands))  # every candidate, its whole prompt
    assert computed["next_token"] < computed["echo"] / 2, computed


def test_read_prefix_cache_agrees_with_hf_prior(vllm_server, smollm_prior, smollm_tokenizer):
    """vLLM 0.32 ignores skip_reading_prefix_cache on /v1/completions: the request still works and agrees."""
    with OpenAIPrior(vllm_server.base_url, model=SERVED_NAME, tokenizer=smollm_tokenizer, read_prefix_cache=True) as prior:
        assert_same_prior(prior.score(PROMPTS, CANDIDATES), smollm_prior.score(PROMPTS, CANDIDATES), CANDIDATES)
