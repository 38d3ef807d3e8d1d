"""Fixtures for the SB3 algorithm tests: one CPU thread (the machine is shared), the synthetic chain env."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))  # candidate_env.py
# tests/ is on sys.path and tests/envs/ has no __init__.py: without the repository root first, `import envs`
# could resolve to that test folder as a namespace package instead of the envs package.
_REPO_ROOT = str(Path(__file__).resolve().parents[2])
if _REPO_ROOT not in sys.path:
    sys.path.insert(0, _REPO_ROOT)

torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)
    yield
