"""OpenAIPrior against a real vLLM server (CPU, fp32) gives HFPrior's numbers on the same model and states."""

from __future__ import annotations

import numpy as np
import pytest
from vllm_server import SERVED_NAME

from prior_wrappers.priors import CachedPrior, HFPrior, OpenAIPrior
from prior_wrappers.priors.remote import ModelNotServedError
from prior_wrappers.prompts import PromptTemplate, TextState

TEMPLATE = PromptTemplate()
STATES = [
    TextState("You are in a kitchen. There is a tomato on the counter and a knife.", [], task="make a tomato salad"),
    TextState(
        "You are in room 2 of 4. The exit is to the east.",
        [],
        history=(("You are in room 1 of 4. The exit is to the east.", "go east"),),
        example="Observation: You are in room 1 of 3. The exit is to the east.\nAction: go east",
    ),
    TextState("The door is locked. You hold a brass key; a note says «ne pas ouvrir».", []),
]
PROMPTS = [TEMPLATE(s) for s in STATES]
CANDIDATES = [
    ["pick up tomato", "chop tomato", "go north", "take bowl", "serve salad", "walk to cutting board"],
    ["go east", "go west", "wait", "look at the painting"],
    ["unlock door with brass key", "open door", "drop key", "read note", "go", "go south"],  # "go" is a prefix
]
TOLERANCE = 1e-3  # fp32 on both sides; measured differences are ~3e-5


def assert_same_prior(remote, local, candidates=CANDIDATES) -> float:
    """Equal token counts, log-probs within TOLERANCE, identical rankings; returns the largest difference."""
    worst = 0.0
    for i in range(len(candidates)):
        np.testing.assert_array_equal(remote.num_tokens[i], local.num_tokens[i])
        np.testing.assert_allclose(remote.raw_logprobs[i], local.raw_logprobs[i], atol=TOLERANCE, rtol=0)
        np.testing.assert_allclose(remote.logprobs[i], local.logprobs[i], atol=TOLERANCE, rtol=0)
        assert list(np.argsort(-remote.logprobs[i], kind="stable")) == list(np.argsort(-local.logprobs[i], kind="stable"))
        worst = max(worst, float(np.max(np.abs(remote.raw_logprobs[i] - local.raw_logprobs[i]))))
    return worst


def test_logprobs_equal_hf_prior(remote_prior, smollm_prior):
    remote = remote_prior.score(PROMPTS, CANDIDATES)
    local = smollm_prior.score(PROMPTS, CANDIDATES)
    worst = assert_same_prior(remote, local)
    print(f"\nmax |remote - local| summed log-prob over {sum(map(len, CANDIDATES))} candidates: {worst:.1e}")
    assert remote_prior.requests == len(PROMPTS)  # one request per prompt, all its candidates in it


def test_tokens_echoed_as_text_are_checked_too(vllm_server, smollm_tokenizer, smollm_prior):
    """For servers without vLLM's token-id echo: the echoed token strings are compared with the ids' text."""
    with OpenAIPrior(vllm_server.base_url, model=SERVED_NAME, tokenizer=smollm_tokenizer, token_ids_in_echo=False) as prior:
        remote = prior.score(PROMPTS[2:], CANDIDATES[2:])
    assert_same_prior(remote, smollm_prior.score(PROMPTS[2:], CANDIDATES[2:]), CANDIDATES[2:])


def test_suffix_and_left_truncation_match_hf_prior(vllm_server, smollm_prior, smollm_tokenizer):
    """A candidate suffix and a context window too small for the prompt change both engines the same way."""
    options = dict(candidate_suffix="\n", max_length=40)
    local_prior = HFPrior(smollm_prior.model, smollm_prior.tokenizer, **options)
    with OpenAIPrior(vllm_server.base_url, model=SERVED_NAME, tokenizer=smollm_tokenizer, **options) as remote_prior:
        with pytest.warns(UserWarning, match="oldest tokens"):
            remote = remote_prior.score(PROMPTS[:2], CANDIDATES[:2])
    with pytest.warns(UserWarning, match="oldest tokens"):
        local = local_prior.score(PROMPTS[:2], CANDIDATES[:2])
    assert_same_prior(remote, local, CANDIDATES[:2])


def test_cached_remote_prior_asks_the_server_once(remote_prior):
    cached = CachedPrior(remote_prior)
    first = cached.score(PROMPTS[1:], CANDIDATES[1:])
    again = cached.score(PROMPTS[:0:-1], CANDIDATES[:0:-1])
    assert remote_prior.requests == 2 and cached.hits == 2
    for a, b in zip(first.logprobs, again.logprobs[::-1]):
        np.testing.assert_array_equal(a, b)


def test_propose_samples_n_per_prompt_and_is_repeatable_with_a_seed(remote_prior):
    admissible = [["go east", "go west", "wait"]]
    a = remote_prior.propose(PROMPTS[1:2], admissible, k=3, max_new_tokens=6, seed=7)
    b = remote_prior.propose(PROMPTS[1:2], admissible, k=3, max_new_tokens=6, seed=7)
    assert a.generations == b.generations and len(a.generations[0]) == 3
    assert all("\n" not in g for g in a.generations[0])  # first line only, as HFPrior
    assert remote_prior.requests == 2  # one request with n=3 per call


def test_wrong_model_name_lists_the_served_models(vllm_server, smollm_tokenizer):
    prior = OpenAIPrior(vllm_server.base_url, model="gpt-4", tokenizer=smollm_tokenizer)
    with pytest.raises(ModelNotServedError, match=f"serves \\['{SERVED_NAME}'\\], not 'gpt-4'"):
        prior.score(PROMPTS[:1], CANDIDATES[:1])
    assert prior.requests == 0
