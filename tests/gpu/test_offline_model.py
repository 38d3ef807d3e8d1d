"""benchmarks/offline_model.py, on the CPU: the in-process tokenizer is a usable transformers tokenizer for the
engine, and the random-weight models have the real geometries (Qwen2-0.5B's and Mistral-7B's parameter counts),
the dtype and device asked for, and seeded weights."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from gpu_support import make_states
from offline_model import TOLERANCE_PER_TOKEN, geometry_config, offline_tokenizer, parameter_count, random_model

from prior_wrappers.priors import HFPrior
from prior_wrappers.priors.hf import naive_candidate_logprob


def test_the_offline_tokenizer_encodes_any_text_with_word_tokens_and_a_bos():
    prompts, candidates = make_states(2, 30)
    tok = offline_tokenizer(prompts + candidates[0])
    assert tok.convert_ids_to_tokens([0, 1, 2]) == ["<pad>", "<s>", "</s>"]
    assert (tok.pad_token_id, tok.bos_token_id, tok.eos_token_id) == (0, 1, 2)
    ids = tok("take rusty key")["input_ids"]
    assert ids[0] == tok.bos_token_id and len(ids) == 4  # <s> take Ġrusty Ġkey: the training texts' words whole
    assert tok(["take rusty key", "go east"], add_special_tokens=False)["input_ids"][0] == ids[1:]
    text = "Zebra café ☕ at 42°C\n\tend"  # unseen words and characters fall back to bytes
    assert tok.decode(tok(text)["input_ids"], skip_special_tokens=True) == text
    assert len(tok) <= 4096 and offline_tokenizer(prompts + candidates[0]).get_vocab() == tok.get_vocab()
    assert len(offline_tokenizer(prompts, vocab_size=300)) <= 300


def test_the_engine_scores_with_it_as_the_naive_loop_does():
    prompts, candidates = make_states(3, 8)
    tok = offline_tokenizer(prompts)
    model = random_model("tiny", tokenizer=tok)
    scores = HFPrior(model, tok).score(prompts, candidates)
    for i in range(3):
        naive = [naive_candidate_logprob(model, tok, prompts[i], c) for c in candidates[i]]
        np.testing.assert_allclose(scores.raw_logprobs[i], [s for s, _ in naive], atol=1e-4)
        assert list(scores.num_tokens[i]) == [n for _, n in naive]
    assert TOLERANCE_PER_TOKEN["bfloat16"] > TOLERANCE_PER_TOKEN["float16"] > TOLERANCE_PER_TOKEN["float32"]


@pytest.mark.parametrize(("geometry", "params", "cls"), [("0.5b", 494_032_768, "Qwen2ForCausalLM"),
                                                         ("7b", 7_241_732_096, "LlamaForCausalLM")])
def test_the_geometries_have_the_real_models_shapes(geometry: str, params: int, cls: str):
    model = random_model(geometry, device="meta", dtype=torch.bfloat16)  # shapes only, no memory
    assert type(model).__name__ == cls and parameter_count(model) == params
    assert all(p.device.type == "meta" and p.dtype == torch.bfloat16 for p in model.parameters())
    assert not getattr(model.config, "use_sliding_window", False) and not getattr(model.config, "sliding_window", None)


def test_random_models_are_seeded_made_in_dtype_and_checked_against_the_tokenizer():
    tok = offline_tokenizer()
    a = random_model("tiny", dtype=torch.bfloat16, tokenizer=tok)
    b = random_model("tiny", dtype=torch.bfloat16, tokenizer=tok)
    assert all(p.dtype == torch.bfloat16 for p in a.parameters()) and not a.training
    assert all(torch.equal(x, y) for x, y in zip(a.parameters(), b.parameters()))
    assert not torch.equal(next(a.parameters()), next(random_model("tiny", seed=1).parameters()).bfloat16())
    assert a.config.pad_token_id == tok.pad_token_id and a.config.bos_token_id == tok.bos_token_id
    assert torch.get_default_dtype() == torch.float32  # restored
    assert random_model("tiny", num_hidden_layers=1).config.num_hidden_layers == 1
    with pytest.raises(ValueError, match="more than the model's"):
        random_model(geometry_config("tiny"), tokenizer=tok, vocab_size=100)
    with pytest.raises(ValueError, match="unknown geometry"):
        geometry_config("13b")
