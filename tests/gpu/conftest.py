"""Fixtures of the GPU test layer (``gpu_support.py`` says how its tests run on CUDA and on the CPU)."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from typing import Any

import pytest
import torch
from gpu_support import TARGETS, Target, tokenizer_for_tests


@pytest.fixture(params=TARGETS)
def target(request: pytest.FixtureRequest) -> Target:
    """The device and geometry of this variant of the test (CUDA ones are marked ``gpu``)."""
    return request.param


@pytest.fixture(scope="session")
def tokenizer() -> Any:
    """The offline tokenizer, trained once per session on :func:`gpu_support.corpus`."""
    return tokenizer_for_tests()


@pytest.fixture(autouse=True)
def _free_cuda_memory() -> Iterator[None]:
    """Each test's models and caches are gone before the next test measures memory."""
    yield
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
