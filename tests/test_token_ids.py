"""The wrappers' token_ids= option: the prompt's and each slot's command tokens in the observation, fixed shapes."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from toy_text_env import CorridorTextEnv

from prior_wrappers import LLMPriorWrapper, UniformPrior, VecLLMPrior, make_text_vec_env
from prior_wrappers.priors.tokenization import common_prefix
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


def test_a_prompt_too_long_keeps_its_last_tokens_and_warns_once(smollm_tokenizer):
    tok = smollm_tokenizer
    spec = TokenIdSpec(tok, max_prompt_tokens=20, max_candidate_tokens=6)
    env = LLMPriorWrapper(CorridorTextEnv(), UniformPrior(), k=5, encoder=None, token_ids=spec)
    with pytest.warns(UserWarning, match=r"72 tokens, more than max_prompt_tokens=20.*oldest tokens are dropped"):
        obs, info = env.reset(seed=0)
    assert env.observation_space.contains(obs)
    prompt_ids = tok(info["prior_prompt"])["input_ids"]
    assert len(prompt_ids) == 72 and obs[PROMPT_LEN][0] == 20
    assert obs[PROMPT_IDS].tolist() == prompt_ids[-20:]
    for j, command in enumerate(info["prior_candidates"]):
        joined = tok(info["prior_prompt"] + " " + command)["input_ids"]
        ctx, length = obs[CANDIDATE_CONTEXTS][j], obs[CANDIDATE_LENS][j]
        assert ctx == common_prefix(prompt_ids, joined) - 52
        assert obs[CANDIDATE_IDS][j, :length].tolist() == joined[ctx + 52 :]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # once per spec
        env.step(0)


def test_truncation_keeps_a_leading_bos(smollm_dir):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(smollm_dir), local_files_only=True, add_bos_token=True)
    spec = TokenIdSpec(tok, max_prompt_tokens=20, max_candidate_tokens=6)
    env = LLMPriorWrapper(CorridorTextEnv(), UniformPrior(), k=5, encoder=None, token_ids=spec)
    with pytest.warns(UserWarning, match="max_prompt_tokens=20"):
        obs, info = env.reset(seed=0)
    prompt_ids = tok(info["prior_prompt"])["input_ids"]
    assert prompt_ids[0] == tok.bos_token_id
    assert obs[PROMPT_IDS].tolist() == [tok.bos_token_id] + prompt_ids[-19:]


def test_truncation_error_raises_and_a_command_too_long_always_does(smollm_tokenizer):
    strict = TokenIdSpec(smollm_tokenizer, max_prompt_tokens=8, max_candidate_tokens=6, truncation="error")
    env = LLMPriorWrapper(CorridorTextEnv(), UniformPrior(), k=5, encoder=None, token_ids=strict)
    with pytest.raises(ValueError, match=r"72 tokens, more than max_prompt_tokens=8.*truncation='left'"):
        env.reset(seed=0)
    with pytest.raises(ValueError, match="truncation must be 'left' or 'error'"):
        TokenIdSpec(smollm_tokenizer, 8, 6, truncation="right")  # type: ignore[arg-type]
    for truncation in ("left", "error"):
        narrow = TokenIdSpec(smollm_tokenizer, max_prompt_tokens=200, max_candidate_tokens=2, truncation=truncation)
        env = LLMPriorWrapper(CorridorTextEnv(), UniformPrior(), k=5, encoder=None, token_ids=narrow)
        env.reset(seed=0)
        with pytest.raises(ValueError, match="'look at the painting' has 4 tokens, more than max_candidate_tokens=2"):
            env.step(0)


def test_truncation_is_not_part_of_the_signature(smollm_tokenizer):
    """It changes no observation a model was trained on (a prompt either fits, or is cut, or raises): a model saved
    with either option, or before it existed, loads behind the other."""
    left = TokenIdSpec(smollm_tokenizer, 200, 6)
    assert left.truncation == "left"
    assert TokenIdSpec(smollm_tokenizer, 200, 6, truncation="error").signature() == left.signature()
