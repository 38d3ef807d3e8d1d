"""Sliding-window models: the engine's and the GFlan policy's packed masks are windowed as the model's own masks
are, so their scores equal one full forward per candidate; layer types the packed rows cannot express are refused."""

from __future__ import annotations

import copy
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from prior_wrappers.priors.attention import LayerWindows
from prior_wrappers.priors.hf import HFPrior, naive_candidate_logprob

PROMPT = "You are in a kitchen. There is a fridge, a stove and a knife on the table. Your task is to cook. Action:"
CANDIDATES = ["take knife", "open fridge", "go north", "take knife from table"]
WINDOW = 8  # the prompt is 28 tokens: most keys are outside the window


def _geometry(tokenizer) -> dict:
    return dict(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=3,
                num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
                pad_token_id=tokenizer.pad_token_id)


def _mistral(tokenizer):
    """Every layer slides (Mistral v0.1)."""
    from transformers import MistralConfig, MistralForCausalLM

    torch.manual_seed(0)
    return MistralForCausalLM(MistralConfig(sliding_window=WINDOW, **_geometry(tokenizer))).eval()


def _qwen2_mixed(tokenizer):
    """Some layers slide, one attends fully (Qwen2 with use_sliding_window; Gemma 2/3 alternate the same way)."""
    from transformers import Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(0)
    config = Qwen2Config(use_sliding_window=True, sliding_window=WINDOW, max_window_layers=1, **_geometry(tokenizer))
    assert set(config.layer_types) == {"full_attention", "sliding_attention"}
    return Qwen2ForCausalLM(config).eval()


@pytest.fixture(scope="module", params=["mistral", "qwen2_mixed"])
def windowed_model(request, smollm_tokenizer):
    return {"mistral": _mistral, "qwen2_mixed": _qwen2_mixed}[request.param](smollm_tokenizer)


def test_the_window_read_from_configs():
    from transformers import Gemma2Config, LlamaConfig, MistralConfig, Qwen2Config

    assert LayerWindows.of(LlamaConfig()) == LayerWindows()
    assert LayerWindows.of(MistralConfig(sliding_window=None)) == LayerWindows()
    assert LayerWindows.of(MistralConfig(sliding_window=16)) == LayerWindows(16, mixed=False)
    assert LayerWindows.of(Qwen2Config()) == LayerWindows()  # use_sliding_window=False
    assert LayerWindows.of(Gemma2Config(sliding_window=16)) == LayerWindows(16, mixed=True)


@pytest.mark.parametrize("prefix_cache", [False, True])
@pytest.mark.parametrize("attention", ["dense", "flex"])
def test_windowed_scores_equal_a_full_forward_per_candidate(windowed_model, smollm_tokenizer, prefix_cache, attention):
    prior = HFPrior(windowed_model, smollm_tokenizer, prefix_cache=prefix_cache, attention=attention)
    reference = [naive_candidate_logprob(windowed_model, smollm_tokenizer, PROMPT, c)[0] for c in CANDIDATES]
    longer = PROMPT + " open fridge. You see milk. Action:"
    reference_longer = [naive_candidate_logprob(windowed_model, smollm_tokenizer, longer, c)[0] for c in CANDIDATES]
    for _ in range(2):  # the second call starts from the prefix cache
        scores = prior.score([PROMPT, longer], [CANDIDATES, CANDIDATES])
        np.testing.assert_allclose(scores.raw_logprobs[0], reference, atol=1e-4)
        np.testing.assert_allclose(scores.raw_logprobs[1], reference_longer, atol=1e-4)
    if prefix_cache:
        assert prior.cache_info()["hit_tokens"] > 0


def test_layer_types_the_engine_cannot_mask_are_refused(tiny_llama, smollm_tokenizer):
    model = copy.deepcopy(tiny_llama)
    model.config.layer_types = ["full_attention", "chunked_attention"]
    model.config.sliding_window = 8
    with pytest.raises(ValueError, match="chunked_attention"):
        HFPrior(model, smollm_tokenizer)


def test_the_gflan_policy_windows_its_mask_too(smollm_tokenizer):
    pytest.importorskip("peft", reason="needs the gflan extra")
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/toy_text_env.py
    from toy_text_env import CorridorTextEnv

    from prior_wrappers import LLMPriorWrapper
    from prior_wrappers.sb3 import GFlanLLM, GFlanPrior
    from prior_wrappers.spaces import ACTION_MASK, PRIOR_LOGPROBS

    llm = GFlanLLM(_mistral(smollm_tokenizer), smollm_tokenizer)
    env = LLMPriorWrapper(CorridorTextEnv(length=3, max_steps=6), llm.prior(), k=4, encoder=None, history=1,
                          token_ids=llm.token_id_spec(160, 8))
    obs, info = env.reset(seed=0)
    assert len(smollm_tokenizer(info["prior_prompt"])["input_ids"]) > 2 * WINDOW
    reference = [naive_candidate_logprob(llm.model, smollm_tokenizer, info["prior_prompt"], c)[0]
                 for c in info["prior_candidates"]]
    n = len(reference)
    scores = llm.prior().score([info["prior_prompt"]], [info["prior_candidates"]], normalization="sum")
    np.testing.assert_allclose(scores.raw_logprobs[0], reference, atol=1e-4)  # the engine (wrapper's prior) is exact
    model = GFlanPrior("LLMPolicy", env, llm=llm, seed=0)
    batch = {key: value[None] for key, value in obs.items()}
    with torch.no_grad():
        log_pi = model.policy.candidate_logprobs(model.policy.obs_to_tensor(batch)[0]).numpy()[0]
    valid = obs[ACTION_MASK].astype(bool)
    assert valid.sum() == n
    np.testing.assert_allclose(log_pi[valid], obs[PRIOR_LOGPROBS][valid], atol=1e-5)  # the initial policy is the prior
