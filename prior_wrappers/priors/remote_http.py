"""The HTTP side of a remote prior: one connection pool per process, requests with bounded retries and backoff,
and the errors that say why the server could not give an answer to use.

:class:`RemoteConnection` is the connection half of :class:`~prior_wrappers.priors.remote.OpenAIPrior`, which sets
the settings declared on it. A request that fails for a reason worth another try (connection refused or reset,
no answer within the timeout, HTTP 408/429/5xx) is sent again after a jittered, doubling pause; after
``max_retries`` more tries it raises :class:`ServerUnavailableError`, whose message says how to start a server.
"""

from __future__ import annotations

import math
import os
import random
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np

if TYPE_CHECKING:
    import httpx

T = TypeVar("T")
Connection = TypeVar("Connection", bound="RemoteConnection")

# Answers worth another try: overload and a restarting or briefly unreachable server.
RETRYABLE_STATUS = frozenset({408, 429, 500, 502, 503, 504})


class RemotePriorError(RuntimeError):
    """The inference server could not give a prior that can be trusted; the message says why."""


class ServerUnavailableError(RemotePriorError):
    """No answer after every retry: connection refused or reset, or the per-request timeout passed."""


class ModelNotServedError(RemotePriorError):
    """The server answers but does not serve the model asked for."""


class RemoteConnection:
    """Requests to an OpenAI-compatible server over a pool of at most ``max_concurrency`` connections, opened on
    first use. The pool belongs to one process: a forked child opens its own, and a pickled copy carries none.
    Successful requests and retries are counted (:meth:`request_stats`)."""

    base_url: str
    model_name: str  # named in the error messages
    timeout: float
    connect_timeout: float
    max_retries: int
    backoff: float
    max_concurrency: int
    api_key: str | None
    _ready: bool  # the server was checked over this process's connection (set by the prior's handshake)

    def _reset_connection(self) -> None:
        self._pid = os.getpid()
        self._client: httpx.Client | None = None
        self._pool: ThreadPoolExecutor | None = None
        self._ready = False
        self._lock = threading.Lock()
        self.requests = 0  # successful completion requests
        self.retries = 0
        self._latencies: deque[float] = deque(maxlen=100_000)

    def _http(self) -> httpx.Client:
        if self._pid != os.getpid():  # a forked child must not share the parent's sockets
            self._reset_connection()
        if self._client is None:
            httpx = import_httpx()
            headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}
            self._client = httpx.Client(
                base_url=self.base_url,
                headers=headers,
                timeout=httpx.Timeout(self.timeout, connect=self.connect_timeout),
                limits=httpx.Limits(
                    max_connections=self.max_concurrency, max_keepalive_connections=self.max_concurrency
                ),
            )
        return self._client

    def _map(self, fn: Callable[[int], T], n: int) -> list[T]:
        """``[fn(0), ..., fn(n - 1)]``, at most ``max_concurrency`` of them in flight at once."""
        if n == 1:
            return [fn(0)]
        self._http()
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self.max_concurrency, thread_name_prefix="openai-prior")
        return list(self._pool.map(fn, range(n)))

    def close(self) -> None:
        """Close the connection pool and stop its threads; a later call opens new ones."""
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
        if self._client is not None:
            self._client.close()
        self._client, self._pool = None, None

    def __enter__(self: Connection) -> Connection:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        for key in ("_client", "_pool", "_lock", "_latencies"):
            state.pop(key)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._reset_connection()

    def _request(self, method: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        """One API call with bounded retries; returns the decoded JSON answer."""
        client, httpx = self._http(), import_httpx()
        last = ""
        for attempt in range(self.max_retries + 1):
            if attempt:
                with self._lock:
                    self.retries += 1
                time.sleep(self.backoff * 2 ** (attempt - 1) * random.uniform(0.5, 1.0))
            start = time.perf_counter()
            try:
                response = client.request(method, path, json=body)
            except httpx.TimeoutException:
                last = f"no answer within the timeout ({self.timeout:g} s)"
                continue
            except httpx.TransportError as err:  # refused, reset, or the server died mid-request
                last = f"{type(err).__name__}: {err}"
                continue
            if response.status_code < 400:
                if body is not None:  # count the prior's own requests, not the model listing
                    with self._lock:
                        self.requests += 1
                        self._latencies.append(time.perf_counter() - start)
                try:
                    return response.json()
                except ValueError as err:
                    raise RemotePriorError(f"{self.base_url}{path} answered non-JSON: {response.text[:200]!r}") from err
            message = error_message(response)
            if response.status_code in RETRYABLE_STATUS:
                last = f"HTTP {response.status_code}: {message}"
                continue
            if response.status_code == 404 and "model" in message.lower():
                raise ModelNotServedError(f"{self.base_url} does not serve model {self.model_name!r}: {message}")
            raise RemotePriorError(f"{self.base_url}{path} answered HTTP {response.status_code}: {message}")
        raise ServerUnavailableError(
            f"no answer from {self.base_url}{path} after {self.max_retries + 1} attempt(s) ({last}). Is the "
            f"inference server running there? e.g. `vllm serve <model dir> --served-model-name {self.model_name}`"
        )

    def request_stats(self) -> dict[str, float]:
        """Requests sent, retries, and latency percentiles (ms) of the successful requests."""
        with self._lock:
            latencies = np.array(self._latencies) * 1000.0
        p50, p95 = np.percentile(latencies, [50, 95]) if len(latencies) else (math.nan, math.nan)
        return {"requests": self.requests, "retries": self.retries, "p50_ms": float(p50), "p95_ms": float(p95)}


def import_httpx() -> Any:
    """The ``httpx`` module, or an ``ImportError`` that says how to install it."""
    try:
        import httpx
    except ImportError as err:  # an optional dependency: only remote priors need an HTTP client
        raise ImportError("OpenAIPrior needs httpx: pip install 'prior-wrappers[remote]'") from err
    return httpx


def error_message(response: httpx.Response) -> str:
    """The reason an error answer gives (OpenAI's ``{"error": {"message": ...}}``, else its text), shortened."""
    try:
        payload = response.json()
    except ValueError:
        return response.text[:300]
    error = payload.get("error", payload) if isinstance(payload, dict) else payload
    return str(error.get("message", error) if isinstance(error, dict) else error)[:500]
