"""Loading a causal LM for :class:`~prior_wrappers.priors.hf.HFPrior`: where it comes from (a hub id, a model
directory or a GGUF file, nothing downloaded for a local path) and the dtype it scores in."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from prior_wrappers.priors.hf_compat import quiet_loading


def native_bf16_cpu() -> bool:
    """Whether this CPU computes bfloat16 matrix products natively (AVX512-BF16 or AMX tiles), where bf16 scoring
    is faster than fp32; elsewhere torch emulates bf16 and it is slower."""
    probes = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(bool(getattr(torch.cpu, probe, lambda: False)()) for probe in probes)


def scoring_dtype(device: str | torch.device) -> torch.dtype:
    """The dtype ``HFPrior.from_pretrained(dtype="auto")`` loads a model in for scoring on ``device``: bf16 on CUDA;
    on a CPU, bf16 where it computes bf16 natively (:func:`native_bf16_cpu`), fp32 elsewhere. Measured with
    ``benchmarks/cpu_dtype.py`` on an AVX512-BF16 CPU (SmolLM2-135M, 120 expert states of tw-cooking, Overcooked
    tomato and TextWorldExpress cooking, game seeds 0 and 20): bf16 1.67-1.68x faster than fp32, the same top
    command in 119 of 120 states, MRR within 0.006. Exact comparisons (tests against a reference forward) pin
    ``dtype="float32"``."""
    device = torch.device(device)
    if device.type == "cuda" or (device.type == "cpu" and native_bf16_cpu()):
        return torch.bfloat16
    return torch.float32


def load_causal_lm(
    name_or_path: str | Path,
    *,
    gguf_file: str | None = None,
    dtype: torch.dtype | str | None = "auto",
    device: str | torch.device | None = None,
    local_files_only: bool | None = None,
) -> tuple[Any, Any]:
    """``(model, tokenizer)`` as :meth:`HFPrior.from_pretrained <prior_wrappers.priors.hf.HFPrior.from_pretrained>`
    documents its parameters: the model on ``device`` in ``dtype``.

    :raises FileNotFoundError: for a local path, GGUF file or model directory that is not there.
    :raises ValueError: for a ``dtype`` name that is not a torch dtype.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = Path(str(name_or_path)).expanduser()
    looks_local = path.is_absolute() or str(name_or_path).startswith((".", "~")) or path.suffix == ".gguf"
    if path.suffix == ".gguf":
        gguf_file, path = path.name, path.parent
    if looks_local and not path.exists():
        raise FileNotFoundError(
            f"model path {str(name_or_path)!r} does not exist; pass a model directory, a .gguf file or a hub id"
        )
    if gguf_file is not None and not (path / gguf_file).is_file():
        raise FileNotFoundError(f"GGUF file {str(path / gguf_file)!r} not found")
    if path.is_dir() and gguf_file is None and not (path / "config.json").is_file():
        raise FileNotFoundError(f"{str(path)!r} has no config.json: it is not a transformers model directory")
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    dtype = scoring_dtype(device) if dtype in (None, "auto") else dtype
    if isinstance(dtype, str):
        if not isinstance(getattr(torch, dtype, None), torch.dtype):
            raise ValueError(f"dtype {dtype!r} is not a torch dtype: use 'auto', 'float32', 'bfloat16' or 'float16'")
        dtype = getattr(torch, dtype)
    source = str(path) if path.exists() else str(name_or_path)
    if local_files_only is None:
        local_files_only = path.exists()
    load_kwargs: dict[str, Any] = {"local_files_only": local_files_only}
    if gguf_file is not None:
        load_kwargs["gguf_file"] = gguf_file
    with quiet_loading():
        tokenizer = AutoTokenizer.from_pretrained(source, **load_kwargs)
        model = AutoModelForCausalLM.from_pretrained(source, dtype=dtype, **load_kwargs).to(device)  # type: ignore[arg-type]
    return model, tokenizer
