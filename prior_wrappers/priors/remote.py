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
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

from prior_wrappers.priors.base import (
    Normalization,
    PriorScores,
    digest,
    normalize_scores,
    tokenizer_fingerprint,
    validate_request,
)
from prior_wrappers.priors.proposing import SampledProposals, Seed
from prior_wrappers.priors.remote_http import (
    RETRYABLE_STATUS,
    ModelNotServedError,
    RemoteConnection,
    RemotePriorError,
    ServerUnavailableError,
    import_httpx,
)
from prior_wrappers.priors.remote_scoring import (
    MAX_SEQUENCES,
    MAX_TARGET_IDS,
    TOKEN_ID_PREFIX,
    EchoLogprobsError,
    EchoSequence,
    Query,
    Scores,
    echo_request,
    echo_scores,
    echo_sequences,
    next_token_logprobs,
    next_token_request,
    next_token_rounds,
    next_token_scores,
)
from prior_wrappers.priors.tokenization import CandidateTokenization, TokenizedPrompt, Truncation

__all__ = [
    "MAX_SEQUENCES",
    "MAX_TARGET_IDS",
    "RETRYABLE_STATUS",
    "TOKEN_ID_PREFIX",
    "EchoLogprobsError",
    "ModelNotServedError",
    "OpenAIPrior",
    "RemotePriorError",
    "Scoring",
    "ServerUnavailableError",
]

Scoring = Literal["echo", "next_token"]


class OpenAIPrior(CandidateTokenization, RemoteConnection, SampledProposals):
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

    # ------------------------------------------------------------------ the served model
    def served_models(self) -> list[str]:
        """Names of the models the server serves (``GET /v1/models``)."""
        return [m["id"] for m in self._request("GET", "/v1/models").get("data", [])]

    def wait_until_ready(self, timeout: float = 300.0, interval: float = 1.0) -> None:
        """Block until the server answers and serves ``model`` (for a server that is still starting)."""
        httpx = import_httpx()
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

    # ------------------------------------------------------------------ scoring
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
            sequences = [echo_sequences(tp) for tp in tokenized]
            results = self._map(lambda i: self._score_prompt(sequences[i]), len(prompts))
        raw = [r for r, _ in results]
        ntok = [t for _, t in results]
        logprobs = [normalize_scores(r, t, c, normalization) for r, t, c in zip(raw, ntok, candidates)]
        return PriorScores(logprobs=logprobs, raw_logprobs=raw, num_tokens=ntok)

    def _score_prompt(self, sequences: list[EchoSequence]) -> Scores:
        """``scoring="echo"``: one request echoes every candidate of one prompt."""
        body = echo_request(
            self.model_name, sequences, token_ids=self.token_ids_in_echo, read_prefix_cache=self.read_prefix_cache
        )
        answer = self._request("POST", "/v1/completions", body)
        return echo_scores(answer, sequences, self.tokenizer, self.read_prefix_cache)

    def _score_next_token(self, tokenized: list[TokenizedPrompt]) -> list[Scores]:
        """``scoring="next_token"``: log p(c_i | prompt, c_<i) for every candidate token, from one-token generation
        requests over the distinct prefixes, with the candidates' next tokens as ``logprob_token_ids``: the prompts
        first, then the prefixes that read them from the server's prefix cache (see
        :func:`~prior_wrappers.priors.remote_scoring.next_token_rounds`)."""
        found: dict[tuple[int, ...], dict[int, float]] = {}
        for batches in next_token_rounds(tokenized):
            # _map calls the lambda before the loop moves on
            for answer in self._map(lambda i: self._next_token_request(batches[i]), len(batches)):  # noqa: B023
                for key, values in answer.items():
                    found.setdefault(key, {}).update(values)
        return next_token_scores(tokenized, found)

    def _next_token_request(self, items: list[Query]) -> dict[tuple[int, ...], dict[int, float]]:
        """One request: every sequence generates one token; returns, per sequence, its targets' log-probs."""
        body = next_token_request(self.model_name, items, token_ids=self.token_ids_in_echo)
        answer = self._request("POST", "/v1/completions", body)
        return next_token_logprobs(answer, items, self.tokenizer, self.token_ids_in_echo)

    # ------------------------------------------------------------------ proposing
    def _before_sampling(self, temperature: float, max_new_tokens: int) -> None:
        self._handshake()  # learns the context window, which the prompts are fitted to

    def _sample(
        self, prompt_ids: list[list[int]], k: int, *, temperature: float, max_new_tokens: int, seed: Seed
    ) -> list[list[str]]:
        """One request per prompt with ``n=k``, all in flight together. A seed makes it repeatable on servers
        that honour per-request seeds (vLLM does): one int gives prompt ``i`` the seed ``seed + i``, a list one
        seed per prompt."""

        def sample(i: int) -> list[str]:
            body: dict[str, Any] = {
                "model": self.model_name,
                "prompt": prompt_ids[i],
                "n": k,
                "temperature": temperature,
                "top_p": 1.0,
                "max_tokens": max_new_tokens,
            }
            if isinstance(seed, list):
                body["seed"] = seed[i]
            elif seed is not None:  # one int (not per prompt): distinct per prompt, like one generator for all
                body["seed"] = int(seed) + i
            choices = self._request("POST", "/v1/completions", body).get("choices") or []
            if len(choices) != k:
                raise RemotePriorError(f"asked for n={k} samples, the server returned {len(choices)}")
            texts = [c.get("text") or "" for c in sorted(choices, key=lambda c: c.get("index", 0))]
            return [t.strip().split("\n", 1)[0].strip() for t in texts]  # first line, as HFPrior

        return self._map(sample, len(prompt_ids))


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
