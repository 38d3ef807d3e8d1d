"""The wrappers' token_ids= option: the prompt's and each slot's command tokens in the observation, fixed shapes."""

from __future__ import annotations

import numpy as np
import pytest
from toy_text_env import CorridorTextEnv

from prior_wrappers import LLMPriorWrapper, UniformPrior, VecLLMPrior, make_text_vec_env
from prior_wrappers.token_ids import (
    CANDIDATE_CONTEXTS,
    CANDIDATE_IDS,
    CANDIDATE_LENS,
    CANDIDATE_NORMS,
    PROMPT_IDS,
    PROMPT_LEN,
    TokenIdSpec,
)


def test_the_observation_holds_the_engines_tokens_padded(smollm_tokenizer):
    tok = smollm_tokenizer
    spec = TokenIdSpec(tok, max_prompt_tokens=200, max_candidate_tokens=6)
    env = LLMPriorWrapper(CorridorTextEnv(), UniformPrior(), k=5, encoder=None, normalization="word", token_ids=spec)
    obs, info = env.reset(seed=0)
    obs, _, _, _, info = env.step(0)  # room 2: four commands, one of three words
    assert env.observation_space.contains(obs)
    n = len(info["prior_candidates"])
    prompt_ids = tok(info["prior_prompt"])["input_ids"]
    assert obs[PROMPT_LEN][0] == len(prompt_ids)
    assert obs[PROMPT_IDS][: len(prompt_ids)].tolist() == prompt_ids
    assert (obs[PROMPT_IDS][len(prompt_ids) :] == spec.pad_id).all()
    for j, command in enumerate(info["prior_candidates"]):
        joined = tok(info["prior_prompt"] + " " + command)["input_ids"]
        ctx, length = obs[CANDIDATE_CONTEXTS][j], obs[CANDIDATE_LENS][j]
        assert joined[:ctx] == prompt_ids[:ctx] and obs[CANDIDATE_IDS][j, :length].tolist() == joined[ctx:]
        assert obs[CANDIDATE_NORMS][j] == len(command.split())
    assert (obs[CANDIDATE_LENS][n:] == 0).all() and (obs[CANDIDATE_IDS][n:] == spec.pad_id).all()
    assert env.prior_signature["token_ids"]["max_prompt_tokens"] == 200


def test_the_vector_wrapper_gives_the_same_token_ids(smollm_tokenizer):
    spec = TokenIdSpec(smollm_tokenizer, 200, 6)
    single = LLMPriorWrapper(CorridorTextEnv(), UniformPrior(), k=5, encoder=None, token_ids=spec)
    vec = VecLLMPrior(make_text_vec_env(CorridorTextEnv, 2, seed=0), UniformPrior(), k=5, encoder=None, token_ids=spec)
    expected, _ = single.reset(seed=0)
    got = vec.reset()
    for key, value in expected.items():
        np.testing.assert_array_equal(got[key][1], value, err_msg=key)
    assert vec.prior_signature == single.prior_signature


def test_a_prompt_or_command_too_long_raises(smollm_tokenizer):
    short = TokenIdSpec(smollm_tokenizer, max_prompt_tokens=8, max_candidate_tokens=6)
    env = LLMPriorWrapper(CorridorTextEnv(), UniformPrior(), k=5, encoder=None, token_ids=short)
    with pytest.raises(ValueError, match="more than max_prompt_tokens=8"):
        env.reset(seed=0)
    narrow = TokenIdSpec(smollm_tokenizer, max_prompt_tokens=200, max_candidate_tokens=2)
    env = LLMPriorWrapper(CorridorTextEnv(), UniformPrior(), k=5, encoder=None, token_ids=narrow)
    env.reset(seed=0)
    with pytest.raises(ValueError, match="'look at the painting' has 4 tokens, more than max_candidate_tokens=2"):
        env.step(0)
