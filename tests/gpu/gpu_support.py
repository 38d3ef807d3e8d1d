"""What the GPU test layer shares (its fixtures are in ``conftest.py``).

Every test here runs twice: on CUDA with a random-weight Qwen2-0.5B-geometry model (marked ``gpu``, skipped without
CUDA) and on the CPU with a 2-layer model (so that ``make test`` runs the same test bodies on any machine). Models
are random weights built from configs and the tokenizer is trained in-process (``benchmarks/offline_model.py``):
nothing is downloaded and no weight file is read.

    pytest -m gpu tests/gpu -q        # the CUDA variants only (what benchmarks/gpu_check.py runs)
    pytest -m "not gpu" tests/gpu -q  # the CPU variants only
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks"))  # offline_model, prior_throughput
sys.path.insert(0, str(ROOT / "tests"))  # toy_text_env

import offline_model  # noqa: E402
from offline_model import offline_tokenizer, random_model  # noqa: E402
from prior_throughput import make_states  # noqa: E402

# a candidate's summed log-probability against float32's, per candidate token (see offline_model)
TOLERANCE_PER_TOKEN = {getattr(torch, name): tol for name, tol in offline_model.TOLERANCE_PER_TOKEN.items()}


@dataclass(frozen=True)
class Target:
    """Where a variant of a test runs: the device and the model geometry (``benchmarks/offline_model.py``)."""

    device: str
    geometry: str

    @property
    def cuda(self) -> bool:
        return self.device == "cuda"


GPU = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")]
TARGETS = [
    pytest.param(Target("cpu", "tiny"), id="cpu-tiny"),
    pytest.param(Target("cuda", "0.5b"), id="cuda-0.5b", marks=GPU),
]


def corpus() -> list[str]:
    """Texts whose words the offline tokenizer keeps whole: the throughput benchmark's states, the toy corridor's
    prompts and the memory test's transcripts."""
    prompts, candidates = make_states(8, 30)
    words = [f"Env {e}: you stand in a corridor of room {e}; doors lead north and south." for e in range(64)]
    words += [f" Step {s}: you walk and see {s} lamps.\nAction: go north." for s in range(128)]
    words += ["You are in room 1 of 4. The exit is to the east. reach the exit look at the painting wait"]
    return prompts + [c for cands in candidates for c in cands] + words


def tokenizer_for_tests() -> Any:
    """The offline tokenizer, trained on :func:`corpus`."""
    return offline_tokenizer(corpus())


def build(target: Target, tokenizer: Any, dtype: torch.dtype = torch.float32, *, geometry: Any = None,
          **overrides: Any) -> Any:
    """The target's random-weight model (seed 0) in ``dtype`` on its device (``geometry``: another config)."""
    shapes = target.geometry if geometry is None else geometry
    return random_model(shapes, device=target.device, dtype=dtype, tokenizer=tokenizer, **overrides)
