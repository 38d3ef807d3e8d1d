"""The completions requests that score candidates on a remote server, and the checks on their answers.

Two ways to score, both over token ids computed locally (:class:`~prior_wrappers.priors.tokenization.TokenizedPrompt`):

- echo: each candidate's sequence ``prompt[:ctx] + candidate`` is sent with ``echo: true, logprobs: 1,
  max_tokens: 0``; the echoed tokens must be the ids sent and the first must carry no log-prob before the
  candidate's log-probs are summed.
- next token: each distinct prefix ``prompt + candidate[:i]`` generates one token with the log-probs of exactly the
  candidates' next tokens asked for (vLLM's ``logprob_token_ids``), packed into requests of bounded size; the
  prompts go in a first round of their own, so that the later prefixes read them from the server's prefix cache.

An answer that does not line up with its request raises :class:`EchoLogprobsError` rather than give a wrong prior.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from prior_wrappers.priors.remote_http import RemotePriorError
from prior_wrappers.priors.tokenization import TokenizedPrompt

TOKEN_ID_PREFIX = "token_id:"  # vLLM's spelling of echoed tokens under return_tokens_as_token_ids
MAX_TARGET_IDS = 128  # vLLM's bound on logprob_token_ids per request (vllm.sampling_params.MAX_LOGPROB_TOKEN_IDS)
MAX_SEQUENCES = 256  # sequences per next-token request

EchoSequence = tuple[list[int], int]  # token ids to echo, where the candidate's tokens start in them
Query = tuple[tuple[int, ...], set[int]]  # a prefix, and the tokens whose log-prob after it is wanted
Scores = tuple[np.ndarray, np.ndarray]  # per candidate: summed log-prob, number of tokens


class EchoLogprobsError(RemotePriorError):
    """The server's echoed log-probs are missing or do not line up with the tokens that were sent."""


def indexed_choices(answer: dict[str, Any], n: int, why: str = "") -> list[dict[str, Any]]:
    """The answer's ``choices``, after checking that they are indexed ``0 .. n - 1`` (one per sequence sent)."""
    choices = answer.get("choices") or []
    if sorted(c.get("index") for c in choices) != list(range(n)):
        raise EchoLogprobsError(
            f"sent {n} sequences but the answer's choices are indexed {[c.get('index') for c in choices]}{why}"
        )
    return choices


# ---------------------------------------------------------------------------------------------------- echo
def echo_sequences(tp: TokenizedPrompt) -> list[EchoSequence]:
    """Per candidate of one prompt: the token ids to echo and where the candidate's tokens start in them."""
    return [(tp.prompt_ids[:ctx] + ids, ctx) for ctx, ids in zip(tp.contexts, tp.candidate_ids)]


def echo_request(
    model: str, sequences: list[EchoSequence], *, token_ids: bool, read_prefix_cache: bool
) -> dict[str, Any]:
    """The body that echoes all ``sequences`` of one prompt with their prompt log-probs."""
    body: dict[str, Any] = {
        "model": model,
        "prompt": [ids for ids, _ in sequences],
        "echo": True,
        "logprobs": 1,
        "max_tokens": 0,
    }
    if token_ids:
        body["return_tokens_as_token_ids"] = True
    if read_prefix_cache:
        body["skip_reading_prefix_cache"] = False
    return body


def echo_scores(
    answer: dict[str, Any], sequences: list[EchoSequence], tokenizer: Any, read_prefix_cache: bool
) -> Scores:
    """Each candidate's summed log-prob and token count, from the answer to :func:`echo_request`."""
    choices = indexed_choices(answer, len(sequences), ": cannot tell which log-probs belong to which candidate")
    raw, ntok = np.zeros(len(sequences)), np.zeros(len(sequences), dtype=np.int64)
    for choice in choices:
        j = choice["index"]
        ids, ctx = sequences[j]
        token_logprobs = checked_logprobs(choice, ids, ctx, tokenizer, read_prefix_cache)
        raw[j] = float(np.sum(token_logprobs[ctx:]))
        ntok[j] = len(ids) - ctx
    return raw, ntok


def checked_logprobs(
    choice: dict[str, Any], ids: list[int], ctx: int, tokenizer: Any, read_prefix_cache: bool
) -> np.ndarray:
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
    if tokens[:n] != expected_tokens(ids, tokens[0], tokenizer):
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
    if read_prefix_cache:
        array[: max(ctx - 1, 0)] = np.nan_to_num(array[: max(ctx - 1, 0)], nan=0.0)
    if not np.all(np.isfinite(array)) or np.any(array > 1e-4):
        raise EchoLogprobsError("the server's echoed log-probs contain missing, infinite or positive values")
    return np.concatenate([[0.0], array])


def expected_tokens(ids: list[int], first: str, tokenizer: Any) -> list[str]:
    """How the server echoes ``ids``, judged by how it echoed the first (``first``)."""
    if first.startswith(TOKEN_ID_PREFIX):
        return [f"{TOKEN_ID_PREFIX}{i}" for i in ids]
    # a server that ignored return_tokens_as_token_ids echoes text: vLLM decodes each id alone
    decoded = [tokenizer.decode([i]) for i in ids]
    return decoded if decoded[0] == first else tokenizer.convert_ids_to_tokens(ids)


# ---------------------------------------------------------------------------------------------------- next token
def next_token_rounds(tokenized: list[TokenizedPrompt]) -> list[list[list[Query]]]:
    """The requests that give log p(c_i | prompt, c_<i) for every candidate token, in two rounds whose requests
    go out together: first the prompts themselves (each prompt's candidates' first tokens), which computes them
    and fills the server's prefix cache; then the prefixes that end inside a candidate, which read the prompt's
    cached blocks."""
    queries: list[dict[tuple[int, ...], set[int]]] = []
    for tp in tokenized:
        wanted: dict[tuple[int, ...], set[int]] = {}
        for ctx, ids in zip(tp.contexts, tp.candidate_ids):
            for i, target in enumerate(ids):
                wanted.setdefault(tuple(tp.prompt_ids[:ctx] + ids[:i]), set()).add(target)
        queries.append(wanted)
    bases = {tuple(tp.prompt_ids[:ctx]) for tp in tokenized for ctx in tp.contexts}
    rounds = []
    for first_round in (True, False):
        batches: list[list[Query]] = []
        for wanted in queries:
            items = []
            for key, targets in wanted.items():
                if (key in bases) == first_round:
                    # a prefix followed by more distinct tokens than a request may ask for goes in several
                    ordered = sorted(targets)
                    items += [
                        (key, set(ordered[j : j + MAX_TARGET_IDS])) for j in range(0, len(ordered), MAX_TARGET_IDS)
                    ]
            batches.extend(pack_requests(items))
        rounds.append(batches)
    return rounds


def pack_requests(items: list[Query]) -> list[list[Query]]:
    """Group next-token queries into requests of at most MAX_SEQUENCES sequences and MAX_TARGET_IDS target ids."""
    batches: list[list[Query]] = []
    current: list[Query] = []
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


def next_token_request(model: str, items: list[Query], *, token_ids: bool) -> dict[str, Any]:
    """The body in which every prefix of ``items`` generates one token, with its targets' log-probs asked for."""
    body: dict[str, Any] = {
        "model": model,
        "prompt": [list(key) for key, _ in items],
        "max_tokens": 1,
        "temperature": 0.0,
        "logprobs": 1,
        "logprob_token_ids": sorted(set().union(*(t for _, t in items))),
    }
    if token_ids:
        body["return_tokens_as_token_ids"] = True
    return body


def next_token_logprobs(
    answer: dict[str, Any], items: list[Query], tokenizer: Any, token_ids: bool
) -> dict[tuple[int, ...], dict[int, float]]:
    """Per prefix of ``items``, its targets' log-probs, from the answer to :func:`next_token_request`."""
    out: dict[tuple[int, ...], dict[int, float]] = {}
    for choice in indexed_choices(answer, len(items)):
        key, wanted = items[choice["index"]]
        tops = ((choice.get("logprobs") or {}).get("top_logprobs") or [None])[0] or {}
        values = out.setdefault(key, {})
        for target in wanted:
            name = f"{TOKEN_ID_PREFIX}{target}" if token_ids else tokenizer.decode([target])
            value = tops.get(name)
            if value is None or not math.isfinite(value) or value > 1e-4:
                raise EchoLogprobsError(
                    f"the server returned no usable log-prob for token {target} (got {value!r} among "
                    f"{list(tops)[:5]}): it must support `logprob_token_ids` on /v1/completions (vLLM >= 0.32); "
                    "use scoring='echo' otherwise"
                )
            values[target] = float(value)
    return out


def next_token_scores(tokenized: list[TokenizedPrompt], found: dict[tuple[int, ...], dict[int, float]]) -> list[Scores]:
    """Per prompt, each candidate's summed log-prob and token count, from the log-probs ``found`` per prefix."""
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
