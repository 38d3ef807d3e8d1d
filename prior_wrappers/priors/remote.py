"""A prior served by an inference server through the OpenAI-compatible completions API (vLLM and alike).

Scoring asks the server to echo a prompt with its log-probs (``echo: true, logprobs: 1, max_tokens: 0``).
Tokenisation happens here, with the served model's own tokenizer, so that a candidate's tokens are exactly
those :class:`~prior_wrappers.priors.hf.HFPrior` scores: each candidate becomes one token-id sequence
``prompt[:ctx] + candidate tokens``, all candidates of a prompt travel in one request, and the requests of all
prompts of one call go out concurrently over one connection pool. Every answer is checked against the request
(the echoed tokens must be the ids sent, the first token must carry no log-prob) before a number is used: a server
whose echo is missing or shifted raises :class:`EchoLogprobsError` instead of returning a wrong prior.
"""

from __future__ import annotations

import math
import os
import random
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypeVar, cast

import numpy as np

from prior_wrappers.priors.base import (
    Normalization,
    PriorScores,
    Proposals,
    digest,
    normalize_scores,
    prompt_seeds,
    tokenizer_fingerprint,
    validate_request,
)
from prior_wrappers.priors.matching import Fallback, tally_proposals
from prior_wrappers.priors.tokenization import CandidateTokenization, TokenizedPrompt, Truncation

if TYPE_CHECKING:
    import httpx

T = TypeVar("T")

# Answers worth another try: overload and a restarting or briefly unreachable server.
RETRYABLE_STATUS = frozenset({408, 429, 500, 502, 503, 504})
TOKEN_ID_PREFIX = "token_id:"  # vLLM's spelling of echoed tokens under return_tokens_as_token_ids
MAX_TARGET_IDS = 128  # vLLM's bound on logprob_token_ids per request (vllm.sampling_params.MAX_LOGPROB_TOKEN_IDS)
MAX_SEQUENCES = 256  # sequences per next-token request

Scoring = Literal["echo", "next_token"]


class RemotePriorError(RuntimeError):
    """The inference server could not give a prior that can be trusted; the message says why."""


class ServerUnavailableError(RemotePriorError):
    """No answer after every retry: connection refused or reset, or the per-request timeout passed."""


class ModelNotServedError(RemotePriorError):
    """The server answers but does not serve the model asked for."""


class EchoLogprobsError(RemotePriorError):
    """The server's echoed log-probs are missing or do not line up with the tokens that were sent."""


class OpenAIPrior(CandidateTokenization):
    """LLM action prior from a model served over the OpenAI-compatible ``/v1/completions`` API (e.g. vLLM).

    >>> prior = OpenAIPrior("http://127.0.0.1:8000", model="smollm2", tokenizer="/models/SmolLM2-135M-Instruct")
    >>> scores = prior.score(["You are hungry. Action:"], [["eat apple", "go north"]])
    >>> scores.logprobs[0]                              # the same numbers as HFPrior on the same model

    Nothing is sent before the first :meth:`score`/:meth:`propose`, which checks once per process that the server
    serves ``model`` (and reads its context length). The object pickles without its connection pool, so a copy
    sent to another process opens its own.

    :param base_url: the server's root, e.g. ``"http://gpu-box:8000"`` (a trailing ``/v1`` is accepted).
    :param model: the served model name (vLLM: ``--served-model-name``, else the ``--model`` argument).
    :param tokenizer: the served model's tokenizer, or a path or hub id to load it from; default ``model``.
        Token boundaries are computed here, so it must be the server's tokenizer.
    :param separator: text between prompt and candidate (as :class:`~prior_wrappers.priors.hf.HFPrior`).
    :param candidate_suffix: text appended to each candidate and scored with it (as ``HFPrior``).
    :param truncation: a prompt too long for the context window: ``"left"`` drops its oldest tokens (as
        ``HFPrior``), ``"error"`` raises.
    :param max_length: context window; default the server's ``max_model_len``, else the tokenizer's.
    :param timeout: seconds a request may wait without progress (for the answer to start, or for more of it)
        before it counts as failed.
    :param connect_timeout: seconds to open a connection; small, so that a server that is down fails fast.
    :param max_retries: further attempts after a failed request (connection error, timeout, HTTP 429/5xx).
    :param backoff: seconds before the first retry, doubled each time (with jitter, so workers do not stampede).
    :param max_concurrency: requests in flight at once, and the connection pool's size.
    :param api_key: sent as a bearer token (vLLM ``--api-key``).
    :param token_ids_in_echo: ask for echoed tokens as ids (a vLLM extension) so they are compared exactly;
        with ``False`` they are compared as text, for servers that reject unknown fields.
    :param scoring: ``"echo"`` (default): one request per prompt echoes every candidate's sequence with its
        prompt log-probs. vLLM skips its prefix cache for requests that ask for prompt log-probs, so each
        candidate recomputes the whole prompt. ``"next_token"``: each distinct prefix ``prompt + candidate[:i]``
        is a one-token generation request whose log-probs are asked for exactly the candidates' next tokens
        (vLLM's ``logprob_token_ids``); such requests read the prefix cache, so the server computes only what
        follows the prompt's cached blocks (the prompt itself goes first, alone, to fill them). Needs vLLM
        0.32 or later; a server that ignores ``logprob_token_ids`` raises :class:`EchoLogprobsError`.
    :param read_prefix_cache: with ``scoring="echo"``, ask the server to read its prefix cache anyway
        (``skip_reading_prefix_cache: false``, for servers that honour it per request): prompt positions served
        from the cache may then come back without log-probs, which is accepted before the candidates' tokens
        only. vLLM 0.32's ``/v1/completions`` does not take the option (it is ignored): see
        :meth:`server_metrics` for what the server computed.
    """

    def __init__(
        self,
        base_url: str,
        model: str,
        *,
        tokenizer: Any = None,
        separator: str = " ",
        candidate_suffix: str = "",
        truncation: Truncation = "left",
        max_length: int | None = None,
        timeout: float = 60.0,
        connect_timeout: float = 5.0,
        max_retries: int = 3,
        backoff: float = 0.5,
        max_concurrency: int = 8,
        api_key: str | None = None,
        token_ids_in_echo: bool = True,
        scoring: Scoring = "echo",
        read_prefix_cache: bool = False,
    ) -> None:
        if truncation not in ("left", "error"):
            raise ValueError(f"truncation must be 'left' or 'error', got {truncation!r}")
        if scoring not in ("echo", "next_token"):
            raise ValueError(f"scoring must be 'echo' or 'next_token', got {scoring!r}")
        if max_retries < 0 or max_concurrency < 1 or timeout <= 0:
            raise ValueError("need max_retries >= 0, max_concurrency >= 1 and timeout > 0")
        base = base_url.rstrip("/")
        self.base_url = base[: -len("/v1")] if base.endswith("/v1") else base
        self.model_name = model  # not `model`: elsewhere that attribute means a transformers model
        self.tokenizer = _load_tokenizer(tokenizer if tokenizer is not None else model)
        self.separator = separator
        self.candidate_suffix = candidate_suffix
        self.truncation = truncation
        self.max_length = max_length  # type: ignore[assignment]  # None: read from the server on first use
        self.timeout = timeout
        self.connect_timeout = connect_timeout
        self.max_retries = max_retries
        self.backoff = backoff
        self.max_concurrency = max_concurrency
        self.api_key = api_key
        self.token_ids_in_echo = token_ids_in_echo
        self.scoring = scoring
        self.read_prefix_cache = read_prefix_cache
        self._warned_truncation = False
        self._reset_connection()

    # ------------------------------------------------------------------ connection
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
            httpx = _import_httpx()
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

    def __enter__(self) -> OpenAIPrior:
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

    def __repr__(self) -> str:
        return f"OpenAIPrior({self.base_url!r}, model={self.model_name!r})"

    @property
    def fingerprint(self) -> str:
        """``"OpenAIPrior:<model>:<hash>"`` over the served model's name, the tokenizer (vocabulary hash and size,
        special tokens), ``separator``, ``candidate_suffix`` and ``truncation``. The server's weights are not
        visible from here: serve a changed model under a new name. No URL, so a cache outlives a server move."""
        parts = {
            "model": self.model_name,
            "tokenizer": tokenizer_fingerprint(self.tokenizer),
            "separator": self.separator,
            "candidate_suffix": self.candidate_suffix,
            "truncation": self.truncation,
        }
        return f"OpenAIPrior:{self.model_name}:{digest(parts)}"

    def _request(self, method: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        """One API call with bounded retries; returns the decoded JSON answer."""
        client, httpx = self._http(), _import_httpx()
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
            message = _error_message(response)
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

    def served_models(self) -> list[str]:
        """Names of the models the server serves (``GET /v1/models``)."""
        return [m["id"] for m in self._request("GET", "/v1/models").get("data", [])]

    def wait_until_ready(self, timeout: float = 300.0, interval: float = 1.0) -> None:
        """Block until the server answers and serves ``model`` (for a server that is still starting)."""
        httpx = _import_httpx()
        deadline = time.monotonic() + timeout
        while True:
            try:
                response = self._http().get("/v1/models", timeout=min(self.timeout, 10.0))
                if response.status_code == 200:
                    self._handshake(response.json())
                    return
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise ServerUnavailableError(f"{self.base_url} did not serve {self.model_name!r} within {timeout:g} s")
            time.sleep(interval)

    def _handshake(self, listing: dict[str, Any] | None = None) -> None:
        """Check once per process that ``model`` is served, and learn the context window."""
        if self._ready and self._pid == os.getpid():
            return
        listing = listing if listing is not None else self._request("GET", "/v1/models")
        entries = {m.get("id"): m for m in listing.get("data", [])}
        if self.model_name not in entries:
            raise ModelNotServedError(
                f"{self.base_url} serves {sorted(entries)}, not {self.model_name!r}; pass model= one of these "
                "(vLLM names a model by --served-model-name, else by its --model argument)"
            )
        if self.max_length is None:
            served = entries[self.model_name].get("max_model_len")
            own = getattr(self.tokenizer, "model_max_length", None)
            self.max_length = int(served or (own if own and own < 10**7 else 10**9))
        self._ready = True

    def request_stats(self) -> dict[str, float]:
        """Requests sent, retries, and latency percentiles (ms) of the successful requests."""
        with self._lock:
            latencies = np.array(self._latencies) * 1000.0
        p50, p95 = np.percentile(latencies, [50, 95]) if len(latencies) else (math.nan, math.nan)
        return {"requests": self.requests, "retries": self.retries, "p50_ms": float(p50), "p95_ms": float(p95)}

    # ------------------------------------------------------------------ scoring
    def _sequences(
        self, prompts: Sequence[str], candidates: Sequence[Sequence[str]]
    ) -> list[list[tuple[list[int], int]]]:
        """Per prompt, per candidate: the token ids to echo and where the candidate's tokens start in them."""
        return [self._echo_sequences(tp) for tp in self._tokenize_candidates(prompts, candidates)]

    @staticmethod
    def _echo_sequences(tp: TokenizedPrompt) -> list[tuple[list[int], int]]:
        return [(tp.prompt_ids[:ctx] + ids, ctx) for ctx, ids in zip(tp.contexts, tp.candidate_ids)]

    def _score_prompt(self, sequences: list[tuple[list[int], int]]) -> tuple[np.ndarray, np.ndarray]:
        body: dict[str, Any] = {
            "model": self.model_name,
            "prompt": [ids for ids, _ in sequences],
            "echo": True,
            "logprobs": 1,
            "max_tokens": 0,
        }
        if self.token_ids_in_echo:
            body["return_tokens_as_token_ids"] = True
        if self.read_prefix_cache:
            body["skip_reading_prefix_cache"] = False
        choices = self._request("POST", "/v1/completions", body).get("choices") or []
        if sorted(c.get("index") for c in choices) != list(range(len(sequences))):
            raise EchoLogprobsError(
                f"sent {len(sequences)} sequences but the answer's choices are indexed "
                f"{[c.get('index') for c in choices]}: cannot tell which log-probs belong to which candidate"
            )
        raw, ntok = np.zeros(len(sequences)), np.zeros(len(sequences), dtype=np.int64)
        for choice in choices:
            j = choice["index"]
            ids, ctx = sequences[j]
            token_logprobs = self._checked_logprobs(choice, ids, ctx)
            raw[j] = float(np.sum(token_logprobs[ctx:]))
            ntok[j] = len(ids) - ctx
        return raw, ntok

    def _checked_logprobs(self, choice: dict[str, Any], ids: list[int], ctx: int | None = None) -> np.ndarray:
        """The echoed log-probs of ``ids``, after checking that they belong to exactly these tokens. With
        ``read_prefix_cache``, positions before ``ctx`` (served from the server's cache) may lack a log-prob; they
        come back as 0 and are never used."""
        logprobs = choice.get("logprobs") or {}
        values, tokens = logprobs.get("token_logprobs"), logprobs.get("tokens")
        n = len(ids)
        if not values or not tokens:
            raise EchoLogprobsError(
                "the server returned no echoed log-probs (choices[].logprobs.token_logprobs); it must support "
                "`echo: true` with `logprobs` on /v1/completions, as vLLM does"
            )
        if len(values) < n or len(tokens) < n:  # more is fine: a server may generate a token despite max_tokens=0
            raise EchoLogprobsError(f"sent {n} tokens but {len(tokens)} came back echoed: the echo is truncated")
        if tokens[:n] != self._expected_tokens(ids, tokens[0]):
            raise EchoLogprobsError(
                f"the echoed tokens differ from the ids sent (first tokens {tokens[:5]} for ids {ids[:5]}): the server "
                "tokenised or shifted the prompt, so its log-probs would belong to other tokens"
            )
        if values[0] is not None:
            raise EchoLogprobsError(
                f"the first echoed token has log-prob {values[0]} though nothing precedes it: the server's "
                "log-probs are shifted by one position"
            )
        array = np.array([math.nan if v is None else v for v in values[1:n]], dtype=np.float64)
        if self.read_prefix_cache and ctx is not None:
            array[: max(ctx - 1, 0)] = np.nan_to_num(array[: max(ctx - 1, 0)], nan=0.0)
        if not np.all(np.isfinite(array)) or np.any(array > 1e-4):
            raise EchoLogprobsError("the server's echoed log-probs contain missing, infinite or positive values")
        return np.concatenate([[0.0], array])

    def _expected_tokens(self, ids: list[int], first: str) -> list[str]:
        if first.startswith(TOKEN_ID_PREFIX):
            return [f"{TOKEN_ID_PREFIX}{i}" for i in ids]
        # a server that ignored return_tokens_as_token_ids echoes text: vLLM decodes each id alone
        decoded = [self.tokenizer.decode([i]) for i in ids]
        return decoded if decoded[0] == first else self.tokenizer.convert_ids_to_tokens(ids)

    def score(
        self,
        prompts: Sequence[str],
        candidates: Sequence[Sequence[str]],
        *,
        normalization: Normalization = "token",
        return_features: bool = False,
    ) -> PriorScores:
        validate_request(prompts, candidates)
        if return_features:
            raise ValueError(
                "OpenAIPrior has no hidden states (the completions API returns log-probs only); "
                "use a text encoder for candidate features"
            )
        self._handshake()
        tokenized = self._tokenize_candidates(prompts, candidates)
        if self.scoring == "next_token":
            results = self._score_next_token(tokenized)
        else:
            sequences = [self._echo_sequences(tp) for tp in tokenized]
            results = self._map(lambda i: self._score_prompt(sequences[i]), len(prompts))
        raw = [r for r, _ in results]
        ntok = [t for _, t in results]
        logprobs = [normalize_scores(r, t, c, normalization) for r, t, c in zip(raw, ntok, candidates)]
        return PriorScores(logprobs=logprobs, raw_logprobs=raw, num_tokens=ntok)

    def _score_next_token(self, tokenized: list[TokenizedPrompt]) -> list[tuple[np.ndarray, np.ndarray]]:
        """``scoring="next_token"``: log p(c_i | prompt, c_<i) for every candidate token, from one-token generation
        requests over the distinct prefixes, with the candidates' next tokens as ``logprob_token_ids``.

        Two rounds, each with its requests in flight together: first the prompts themselves (each prompt's
        candidates' first tokens), which computes them and fills the server's prefix cache; then the prefixes
        that end inside a candidate, which read the prompt's cached blocks."""
        queries: list[dict[tuple[int, ...], set[int]]] = []
        for tp in tokenized:
            wanted: dict[tuple[int, ...], set[int]] = {}
            for ctx, ids in zip(tp.contexts, tp.candidate_ids):
                for i, target in enumerate(ids):
                    wanted.setdefault(tuple(tp.prompt_ids[:ctx] + ids[:i]), set()).add(target)
            queries.append(wanted)
        # a prefix followed by more distinct tokens than a request may ask for goes out in several requests
        bases = {tuple(tp.prompt_ids[:ctx]) for tp in tokenized for ctx in tp.contexts}
        found: dict[tuple[int, ...], dict[int, float]] = {}
        for first_round in (True, False):
            batches: list[list[tuple[tuple[int, ...], set[int]]]] = []
            for wanted in queries:
                items = []
                for key, targets in wanted.items():
                    if (key in bases) == first_round:
                        ordered = sorted(targets)
                        items += [
                            (key, set(ordered[j : j + MAX_TARGET_IDS])) for j in range(0, len(ordered), MAX_TARGET_IDS)
                        ]
                batches.extend(_pack_requests(items))
            # _map calls the lambda before the loop moves on
            for answer in self._map(lambda i: self._next_token_request(batches[i]), len(batches)):  # noqa: B023
                for key, values in answer.items():
                    found.setdefault(key, {}).update(values)
        results = []
        for tp in tokenized:
            raw = np.array(
                [
                    sum(found[tuple(tp.prompt_ids[:ctx] + ids[:i])][t] for i, t in enumerate(ids))
                    for ctx, ids in zip(tp.contexts, tp.candidate_ids)
                ]
            )
            results.append((raw, np.array([len(ids) for ids in tp.candidate_ids], dtype=np.int64)))
        return results

    def _next_token_request(
        self, items: list[tuple[tuple[int, ...], set[int]]]
    ) -> dict[tuple[int, ...], dict[int, float]]:
        """One request: every sequence generates one token; returns, per sequence, its targets' log-probs."""
        targets = sorted(set().union(*(t for _, t in items)))
        body: dict[str, Any] = {
            "model": self.model_name,
            "prompt": [list(key) for key, _ in items],
            "max_tokens": 1,
            "temperature": 0.0,
            "logprobs": 1,
            "logprob_token_ids": targets,
        }
        if self.token_ids_in_echo:
            body["return_tokens_as_token_ids"] = True
        choices = self._request("POST", "/v1/completions", body).get("choices") or []
        if sorted(c.get("index") for c in choices) != list(range(len(items))):
            raise EchoLogprobsError(
                f"sent {len(items)} sequences but the answer's choices are indexed {[c.get('index') for c in choices]}"
            )
        out: dict[tuple[int, ...], dict[int, float]] = {}
        for choice in choices:
            key, wanted = items[choice["index"]]
            tops = ((choice.get("logprobs") or {}).get("top_logprobs") or [None])[0] or {}
            values = out.setdefault(key, {})
            for target in wanted:
                name = f"{TOKEN_ID_PREFIX}{target}" if self.token_ids_in_echo else self.tokenizer.decode([target])
                value = tops.get(name)
                if value is None or not math.isfinite(value) or value > 1e-4:
                    raise EchoLogprobsError(
                        f"the server returned no usable log-prob for token {target} (got {value!r} among "
                        f"{list(tops)[:5]}): it must support `logprob_token_ids` on /v1/completions (vLLM >= 0.32); "
                        "use scoring='echo' otherwise"
                    )
                values[target] = float(value)
        return out

    def server_metrics(self) -> dict[str, float]:
        """The server's prompt-token counters (vLLM's Prometheus ``/metrics``), summed over its engines and models:
        ``prompt_tokens`` (all prompt tokens of the requests so far), ``cached_prompt_tokens`` (served from its
        prefix cache) and ``computed_prompt_tokens`` (the rest). Counters only grow: take differences. Missing
        counters (another server, an older vLLM) are NaN."""
        response = self._http().get("/metrics")
        if response.status_code >= 400:
            raise RemotePriorError(f"{self.base_url}/metrics answered HTTP {response.status_code}")
        totals: dict[str, float] = {}
        for line in response.text.splitlines():
            if not line.startswith("vllm:prompt_tokens"):
                continue
            name_and_labels, _, value = line.rpartition(" ")
            name = name_and_labels.split("{", 1)[0]
            if name == "vllm:prompt_tokens_by_source_total":
                name += ":" + name_and_labels.split('source="', 1)[-1].split('"', 1)[0]
            totals[name] = totals.get(name, 0.0) + float(value)
        prompt = totals.get("vllm:prompt_tokens_total", math.nan)
        cached = totals.get("vllm:prompt_tokens_cached_total", math.nan)
        computed = totals.get("vllm:prompt_tokens_by_source_total:local_compute", prompt - cached)
        return {"prompt_tokens": prompt, "cached_prompt_tokens": cached, "computed_prompt_tokens": computed}

    # ------------------------------------------------------------------ proposing
    def propose(
        self,
        prompts: Sequence[str],
        admissible: Sequence[Sequence[str] | None],
        k: int = 5,
        *,
        temperature: float = 1.0,
        max_new_tokens: int = 10,
        fallback: Fallback = "drop",
        seed: int | Sequence[int] | None = None,
    ) -> Proposals:
        """Sample ``k`` completions per prompt (one request with ``n=k``) and map each to an admissible command
        (or, for ``None`` in ``admissible``, keep the distinct generations), as :meth:`HFPrior.propose
        <prior_wrappers.priors.hf.HFPrior.propose>` does; ``seed`` makes it repeatable on servers that honour
        per-request seeds (vLLM does): one int gives prompt ``i`` the seed ``seed + i``, a sequence one seed
        per prompt."""
        validate_request(prompts, admissible, free_text=True)
        per_prompt = prompt_seeds(seed, len(prompts))
        if k < 1:
            raise ValueError("k must be >= 1")
        self._handshake()
        # the prompt and its sampled tokens within the context window, as HFPrior.propose keeps them
        prompt_ids = [
            self._fit_generation(i, ids, max_new_tokens)
            for i, ids in enumerate(self._encode([p + self.separator.rstrip(" ") for p in prompts]))
        ]

        def sample(i: int) -> list[str]:
            body: dict[str, Any] = {
                "model": self.model_name,
                "prompt": prompt_ids[i],
                "n": k,
                "temperature": temperature,
                "top_p": 1.0,
                "max_tokens": max_new_tokens,
            }
            if per_prompt is not None:
                body["seed"] = per_prompt[i]
            elif seed is not None:  # one int (not per prompt)
                # distinct per prompt, like one generator drawing for all prompts
                body["seed"] = int(cast(int, seed)) + i
            choices = self._request("POST", "/v1/completions", body).get("choices") or []
            if len(choices) != k:
                raise RemotePriorError(f"asked for n={k} samples, the server returned {len(choices)}")
            texts = [c.get("text") or "" for c in sorted(choices, key=lambda c: c.get("index", 0))]
            return [t.strip().split("\n", 1)[0].strip() for t in texts]  # first line, as HFPrior

        return tally_proposals(self._map(sample, len(prompts)), admissible, fallback)


def _pack_requests(
    items: list[tuple[tuple[int, ...], set[int]]],
) -> list[list[tuple[tuple[int, ...], set[int]]]]:
    """Group next-token queries into requests of at most MAX_SEQUENCES sequences and MAX_TARGET_IDS target ids."""
    batches: list[list[tuple[tuple[int, ...], set[int]]]] = []
    current: list[tuple[tuple[int, ...], set[int]]] = []
    ids: set[int] = set()
    for key, targets in items:
        if current and (len(current) >= MAX_SEQUENCES or len(ids | targets) > MAX_TARGET_IDS):
            batches.append(current)
            current, ids = [], set()
        current.append((key, targets))
        ids |= targets
    if current:
        batches.append(current)
    return batches


def _import_httpx() -> Any:
    try:
        import httpx
    except ImportError as err:  # an optional dependency: only remote priors need an HTTP client
        raise ImportError("OpenAIPrior needs httpx: pip install 'prior-wrappers[remote]'") from err
    return httpx


def _load_tokenizer(source: Any) -> Any:
    if not isinstance(source, (str, Path)):
        return source  # already a tokenizer
    from transformers import AutoTokenizer

    path = Path(str(source)).expanduser()
    if path.is_absolute() and not path.exists():
        raise FileNotFoundError(
            f"tokenizer path {str(source)!r} does not exist; pass tokenizer= the served model's directory or hub id"
        )
    try:
        return AutoTokenizer.from_pretrained(
            str(path) if path.exists() else str(source), local_files_only=path.exists()
        )
    except OSError as err:  # e.g. a served name such as "smollm2" that is no hub id
        raise OSError(
            f"could not load a tokenizer from {str(source)!r}; pass tokenizer= the served model's directory or hub id "
            "(token boundaries are computed locally, so it must be the server's tokenizer)"
        ) from err


def _error_message(response: httpx.Response) -> str:
    try:
        payload = response.json()
    except ValueError:
        return response.text[:300]
    error = payload.get("error", payload) if isinstance(payload, dict) else payload
    return str(error.get("message", error) if isinstance(error, dict) else error)[:500]
