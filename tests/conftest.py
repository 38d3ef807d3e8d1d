"""Shared fixtures: the embedded model's tokenizer, a tiny random-weight Llama, the real SmolLM2 prior."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))  # tests' own helper modules (toy envs)


@pytest.fixture(scope="session", autouse=True)
def sb3_log_dir(tmp_path_factory):
    """SB3 makes a fresh ``/tmp/SB3-<date>`` folder for every ``learn()`` without a logger (thousands in a test run):
    point them all at one folder of the session's temporary directory (subprocesses inherit it)."""
    import os

    previous = os.environ.get("SB3_LOGDIR")
    os.environ["SB3_LOGDIR"] = str(tmp_path_factory.mktemp("sb3_logs"))
    yield
    if previous is None:
        os.environ.pop("SB3_LOGDIR", None)
    else:
        os.environ["SB3_LOGDIR"] = previous


@pytest.fixture(scope="session")
def smollm_dir() -> Path:
    """The embedded SmolLM2 converted to safetensors in the user cache (converted once per machine)."""
    from prior_wrappers.priors.embedded import embedded_gguf_path, ensure_converted

    return ensure_converted(embedded_gguf_path())


@pytest.fixture(scope="session")
def smollm_tokenizer(smollm_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(smollm_dir), local_files_only=True)


@pytest.fixture(scope="session")
def tiny_llama(smollm_tokenizer):
    """A 2-layer random-weight Llama with SmolLM2's vocabulary: fast, and exact maths is all we test with it."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(smollm_tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        pad_token_id=smollm_tokenizer.pad_token_id,
    )
    return LlamaForCausalLM(config).eval()


@pytest.fixture(scope="session")
def smollm_prior(smollm_dir):
    from prior_wrappers.priors import HFPrior

    return HFPrior.from_pretrained(smollm_dir, dtype="float32")  # the exact reference, whatever the CPU
