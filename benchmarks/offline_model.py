"""Random-weight causal LMs of real geometries and a tokenizer built in-process: benchmarks and GPU tests that need
no network, no hub cache and no weight files (a GPU machine with only torch, transformers and peft installed).

- :data:`GEOMETRIES`: ``"tiny"`` (a 2-layer Llama for CPU tests), ``"0.5b"`` (Qwen2-0.5B's shapes), ``"7b"``
  (Mistral-7B-v0.2's: Llama layers, grouped-query attention, no sliding window).
- :func:`offline_tokenizer`: a byte-level BPE trained on the given texts (plus a small built-in corpus), wrapped as a
  transformers tokenizer with ``<pad>``/``<s>``/``</s>`` and a leading BOS. Any text encodes (unknown words fall
  back to bytes); words of the training texts are single tokens, as in a real tokenizer's vocabulary.
- :func:`random_model`: the geometry's model with random weights, built directly on the target device (a 7B model
  initialised on the GPU takes seconds; on a CPU in fp32 it would take 28 GB and minutes).

Scores from random weights are meaningless as a prior but cost exactly what a trained model of the same shapes
costs, and exercise the same kernels: what the throughput benchmark and the GPU tests measure.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch

PAD, BOS, EOS = "<pad>", "<s>", "</s>"

# How far a candidate's summed log-probability in half precision may be from float32's, per candidate token (the
# GPU tests' and gpu_check.py's bound). Measured on the CPU with the 0.5B geometry (3 states x 8 commands): at most
# 0.020 (bf16) and 0.0021 (fp16) per token; the bounds leave a factor of 4-5 for other kernels (cuBLAS, SDPA's fused
# attention), deeper models and longer prompts. float32: another kernel or batch shape, same precision.
TOLERANCE_PER_TOKEN: dict[str, float] = {"bfloat16": 0.08, "float16": 0.01, "float32": 1e-3}

# Generic text-game vocabulary, so that prompts beyond the caller's texts still get word-sized tokens.
_CORPUS = [
    "You are playing a text adventure. Choose the next action.",
    "You are in room 1 of 3. The exit is to the east. Observation: Action: Task: Inventory: Step",
    "go east go west go north go south go up go down wait look inventory take drop open close examine eat put unlock",
    "reach the exit. You walk and see lamps. doors lead north and south. you stand in a corridor of room",
    "the kitchen pantry living room bedroom bathroom garden cellar study a an the of to in on with and is it you",
    "red apple rusty key wooden box silver knife glass bottle old map blue book candle painting door hatch table",
    "0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 . , ; : ! ? - = ( ) ' \" \n",
]


def _tiny() -> Any:
    from transformers import LlamaConfig

    return LlamaConfig(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                       num_key_value_heads=2, vocab_size=4096, max_position_embeddings=4096)


def _qwen2_05b() -> Any:
    from transformers import Qwen2Config

    return Qwen2Config(hidden_size=896, intermediate_size=4864, num_hidden_layers=24, num_attention_heads=14,
                       num_key_value_heads=2, vocab_size=151936, max_position_embeddings=32768,
                       tie_word_embeddings=True, rope_theta=1_000_000.0, use_sliding_window=False)


def _mistral_7b() -> Any:
    from transformers import LlamaConfig

    return LlamaConfig(hidden_size=4096, intermediate_size=14336, num_hidden_layers=32, num_attention_heads=32,
                       num_key_value_heads=8, vocab_size=32000, max_position_embeddings=32768,
                       rope_theta=1_000_000.0, tie_word_embeddings=False)


GEOMETRIES: dict[str, Callable[[], Any]] = {"tiny": _tiny, "0.5b": _qwen2_05b, "7b": _mistral_7b}


def geometry_config(name: str) -> Any:
    """A fresh transformers config of the named geometry (one of :data:`GEOMETRIES`)."""
    if name not in GEOMETRIES:
        raise ValueError(f"unknown geometry {name!r}; one of {sorted(GEOMETRIES)}")
    return GEOMETRIES[name]()


def offline_tokenizer(texts: Iterable[str] = (), vocab_size: int = 4096) -> Any:
    """A byte-level BPE tokenizer trained here on ``texts`` and a small built-in corpus (deterministic for the same
    texts), as a ``transformers.PreTrainedTokenizerFast``: ids ``0, 1, 2`` are ``<pad>``, ``<s>``, ``</s>``;
    encoding with special tokens prepends ``<s>``.

    :param texts: texts whose words should be single tokens (the prompts and commands to score).
    :param vocab_size: at most this many tokens (the 256 bytes and the specials included); keep it at or below the
        model's ``vocab_size``.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=[PAD, BOS, EOS], show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(list(_CORPUS) + list(texts), trainer=trainer)
    tok.post_processor = processors.TemplateProcessing(single=f"{BOS} $A", pair=f"{BOS} $A {BOS} $B",
                                                       special_tokens=[(BOS, tok.token_to_id(BOS))])
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=BOS, eos_token=EOS, pad_token=PAD)


def random_model(
    geometry: str | Any,
    *,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
    seed: int = 0,
    tokenizer: Any = None,
    **overrides: Any,
) -> Any:
    """A causal LM of ``geometry`` (a :data:`GEOMETRIES` name or a config) with random weights, made on ``device``
    in ``dtype`` and put in eval mode.

    :param tokenizer: when given, its special tokens are written into the config and its ids are checked to fit
        the model's vocabulary.
    :param overrides: config fields to change (``num_hidden_layers=2``, ``attention_dropout=0.1``, ...).
    """
    from transformers import AutoModelForCausalLM

    config = geometry_config(geometry) if isinstance(geometry, str) else geometry
    for key, value in overrides.items():
        setattr(config, key, value)
    if tokenizer is not None:
        if len(tokenizer) > config.vocab_size:
            raise ValueError(f"the tokenizer has {len(tokenizer)} tokens, more than the model's {config.vocab_size}")
        config.pad_token_id = tokenizer.pad_token_id
        config.bos_token_id = tokenizer.bos_token_id
        config.eos_token_id = tokenizer.eos_token_id
    torch.manual_seed(seed)
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)  # parameters are made in dtype (no fp32 copy first), on device below
    try:
        with torch.device(device):
            model = AutoModelForCausalLM.from_config(config)
    finally:
        torch.set_default_dtype(previous)
    return model.eval()


def parameter_count(model: Any) -> int:
    """Parameters of ``model`` (tied weights once)."""
    return sum(p.numel() for p in model.parameters())
