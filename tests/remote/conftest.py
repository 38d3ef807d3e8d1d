"""Fixtures for the remote-prior tests: one real vLLM server (CPU) per session, stopped by pid whatever happens.

The server needs vLLM's own venv (``make vllm``; ``make test`` runs it first). Without it these tests fail and say
so, unless ``PRIOR_WRAPPERS_REMOTE_OPTIONAL=1`` marks the remote tests as optional on this machine: then they skip.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # vllm_server, stub_server, tcp_proxy

from vllm_server import SERVED_NAME, VLLM_PYTHON_ENV, VLLMServer, vllm_python  # noqa: E402

OPTIONAL_ENV = "PRIOR_WRAPPERS_REMOTE_OPTIONAL"


@pytest.fixture(scope="session")
def vllm_server(smollm_dir) -> VLLMServer:
    python = vllm_python()
    if not python.exists():
        reason = f"vLLM's venv is missing ({python}); `make vllm` installs it, or set ${VLLM_PYTHON_ENV}"
        if os.environ.get(OPTIONAL_ENV) == "1":
            pytest.skip(f"{reason} ({OPTIONAL_ENV}=1 makes the remote tests optional)")
        pytest.fail(reason, pytrace=False)
    server = VLLMServer(smollm_dir, python=python)
    try:
        server.start()
        yield server
    finally:
        server.stop()


@pytest.fixture
def remote_prior(vllm_server, smollm_tokenizer):
    from prior_wrappers.priors import OpenAIPrior

    with OpenAIPrior(vllm_server.base_url, model=SERVED_NAME, tokenizer=smollm_tokenizer, max_retries=1) as prior:
        yield prior
