"""The action-prior protocol: what every source of p_LLM(a|s) provides.

A prior answers two questions about text states:

- :meth:`ActionPrior.score`: how likely is each admissible command? (exact log-probabilities)
- :meth:`ActionPrior.propose`: which commands does the model suggest? (k samples mapped to admissible commands)

Both take many prompts at once (one per environment) so that implementations can batch.
"""

from __future__ import annotations

import hashlib
import inspect
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol, runtime_checkable

import numpy as np

Normalization = Literal["token", "word", "sum"]
NORMALIZATIONS: tuple[str, ...] = ("token", "word", "sum")


@dataclass(frozen=True)
class PriorScores:
    """Scores of one :meth:`ActionPrior.score` call, one array per prompt.

    :param logprobs: normalised prior log-probabilities, log-softmax over the prompt's candidates
        of the normalised scores; ``exp`` sums to 1 per prompt.
    :param raw_logprobs: sum over each candidate's tokens of log p(token | prompt, earlier candidate tokens).
    :param num_tokens: number of tokens each candidate adds to the prompt.
    :param features: optional ``(n_candidates, hidden)`` arrays, the model's last hidden state at each
        candidate's last token (``None`` unless asked for).
    """

    logprobs: list[np.ndarray]
    raw_logprobs: list[np.ndarray]
    num_tokens: list[np.ndarray]
    features: list[np.ndarray] | None = None


@dataclass(frozen=True)
class Proposals:
    """Result of :meth:`ActionPrior.propose`, one entry per prompt.

    :param commands: the admissible commands of each prompt (same order as given); for a prompt proposed
        without an admissible list (``None``, a free-text env), the distinct generations, by count then first
        appearance (see :func:`~prior_wrappers.priors.matching.count_free_text`).
    :param counts: how many of the k samples mapped to each command (floats: the ``uniform`` fallback spreads
        an invalid sample over all commands).
    :param generations: the sampled texts (their first lines).
    :param invalid_rate: fraction of all samples that matched no admissible command (without a list: that were
        empty).
    :param invalid: per prompt, how many of its samples were invalid (``None`` when the prior does not say).
    """

    commands: list[list[str]]
    counts: list[np.ndarray]
    generations: list[list[str]]
    invalid_rate: float
    invalid: list[int] | None = None

    def logprobs(self, smoothing: float = 0.0) -> list[np.ndarray]:
        """Empirical log-prior per prompt, ``log((counts + smoothing) / sum)``; -inf where the count is 0."""
        out = []
        for c in self.counts:
            c = c.astype(np.float64) + smoothing
            total = c.sum()
            if total <= 0:  # nothing valid was proposed: fall back to uniform
                c, total = np.ones_like(c), float(len(c))
            with np.errstate(divide="ignore"):
                out.append(np.log(c / total))
        return out


@runtime_checkable
class ActionPrior(Protocol):
    """Anything that scores and proposes text commands for text states.

    Optionally a prior has a ``fingerprint`` (``str``) identifying everything its scores depend on;
    :class:`~prior_wrappers.priors.cached.CachedPrior` stores it with saved scores (see :func:`prior_fingerprint`).
    """

    def score(
        self,
        prompts: Sequence[str],
        candidates: Sequence[Sequence[str]],
        *,
        normalization: Normalization = "token",
        return_features: bool = False,
    ) -> PriorScores:
        """Log-probabilities of each prompt's candidate commands."""
        ...

    def propose(
        self,
        prompts: Sequence[str],
        admissible: Sequence[Sequence[str] | None],
        k: int = 5,
    ) -> Proposals:
        """Sample ``k`` commands per prompt and map them to the prompt's admissible commands.

        Priors that generate text also take ``admissible[i] = None`` (an env without an admissible list: the
        distinct generations become the commands) and ``seed=`` (an int for one generator over the whole call,
        or one int per prompt, so that each prompt's samples do not depend on the other prompts of the call).
        """
        ...


def prior_fingerprint(prior: object) -> str:
    """What a cache of ``prior``'s scores is valid for: the prior's ``fingerprint`` (a property, or a method
    called without arguments), else its class name.

    Implementations make it change whenever scores could change (model weights, tokenizer, separator, ...) and
    keep it stable across processes and machines (no memory addresses, no local paths).

    :param prior: any :class:`ActionPrior`.
    """
    fp = getattr(prior, "fingerprint", None)
    if callable(fp):
        fp = fp()
    return str(fp) if fp else type(prior).__name__


def digest(payload: object, length: int = 16) -> str:
    """Stable hex digest of a JSON-serialisable ``payload`` (keys sorted; other objects via ``str``).

    :param payload: what to hash.
    :param length: hex characters kept.
    """
    text = json.dumps(payload, sort_keys=True, default=str, ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:length]


def tokenizer_fingerprint(tokenizer: Any) -> dict[str, Any]:
    """Class, vocabulary size, a hash of the vocabulary and special tokens, and the ids of ``""`` (whether it
    adds BOS/EOS): everything of a tokenizer that decides which tokens a candidate is scored on.

    :param tokenizer: a transformers tokenizer.
    """
    vocab = tokenizer.get_vocab() if hasattr(tokenizer, "get_vocab") else {}
    try:
        empty = list(tokenizer("", add_special_tokens=True)["input_ids"])
    except Exception:  # a tokenizer-like object that cannot be called: its vocabulary still identifies it
        empty = None
    return {
        "class": type(tokenizer).__name__,
        "vocab_size": len(tokenizer) if hasattr(tokenizer, "__len__") else len(vocab),
        "vocab": digest(sorted(vocab.items())),
        "special_tokens": digest(getattr(tokenizer, "special_tokens_map", {})),
        "empty_ids": empty,
    }


def model_fingerprint(model: Any, sample: int = 1024, portable: bool = False) -> dict[str, Any]:
    """Identify a transformers model by what decides its outputs: its config (without paths and versions),
    parameter dtype, and a hash of every tensor's name, shape, dtype and ``sample`` evenly strided values.

    Hashing a strided sample instead of every weight keeps this at milliseconds for a 135M model while
    any fine-tuning, re-quantisation or different random init (which change almost every value) still shows.

    :param model: a transformers model (``config``, ``state_dict()``).
    :param sample: values hashed per tensor.
    :param portable: identify the checkpoint rather than its loaded copy: values are hashed rounded to bfloat16
        and dtypes are left out, so the same weights loaded in float32 or bfloat16 give the same fingerprint.
    """
    config = model.config.to_dict() if hasattr(model.config, "to_dict") else dict(vars(model.config))
    config = {
        k: v
        for k, v in config.items()
        if not k.startswith("_") and k not in ("transformers_version", "dtype", "torch_dtype")
    }
    import torch  # only models have fingerprints: the protocol module itself needs no torch

    hasher = hashlib.sha256()
    dtypes = set()
    for name, tensor in sorted(model.state_dict().items()):
        flat = tensor.detach().reshape(-1)
        step = max(1, flat.numel() // sample)
        values = flat[::step][:sample]
        values = (values.to(torch.bfloat16) if portable else values).float().cpu().numpy()
        dtypes.add(str(tensor.dtype))
        hasher.update(f"{name}|{tuple(tensor.shape)}|{'' if portable else tensor.dtype}|".encode())
        hasher.update(values.tobytes())
    return {
        "name": str(getattr(model, "name_or_path", "") or "").rstrip("/").rsplit("/", 1)[-1],
        "class": type(model).__name__,
        "config": digest(config),
        "dtypes": [] if portable else sorted(dtypes),
        "weights": hasher.hexdigest()[:16],
    }


def validate_request(
    prompts: Sequence[str], candidates: Sequence[Sequence[str] | None], *, free_text: bool = False
) -> None:
    """Raise a ``ValueError``/``TypeError`` that says what to fix for malformed score/propose input.

    :param prompts: one prompt per state.
    :param candidates: one candidate list per prompt.
    :param free_text: allow ``None`` in place of a list (``propose`` of a generating prior: no admissible list).
    """
    if isinstance(prompts, str):
        raise TypeError("prompts must be a sequence of strings (one per state), not a single string; wrap it: [prompt]")
    if len(prompts) != len(candidates):
        raise ValueError(f"got {len(prompts)} prompts but {len(candidates)} candidate lists: pass one list per prompt")
    for i, (prompt, cands) in enumerate(zip(prompts, candidates)):
        if not isinstance(prompt, str):
            raise TypeError(f"prompt {i} is {type(prompt).__name__}, expected str")
        if cands is None:
            if free_text:
                continue
            raise TypeError(
                f"candidates[{i}] is None (an env without an admissible list): only propose() of a prior that "
                "generates text (HFPrior, OpenAIPrior) can do without one"
            )
        if isinstance(cands, str):
            raise TypeError(f"candidates[{i}] is a single string; pass a list of commands, e.g. [{cands!r}]")
        if len(cands) == 0:
            raise ValueError(
                f"candidates[{i}] is empty: a prior needs at least one admissible command per state "
                "(check that the environment reports info['admissible_commands'])"
            )
        for j, c in enumerate(cands):
            if not isinstance(c, str):
                raise TypeError(f"candidates[{i}][{j}] is {type(c).__name__}, expected str")
            if not c.strip():
                raise ValueError(f"candidates[{i}][{j}] is an empty command; drop empty strings before scoring")


def normalization_divisors(
    num_tokens: np.ndarray, candidates: Sequence[str], normalization: Normalization
) -> np.ndarray:
    """What each candidate's summed token log-probability is divided by: its token count (``token``), its
    whitespace word count (``word``) or 1 (``sum``); at least 1.

    :param num_tokens: tokens each candidate adds to the prompt.
    :param candidates: the candidate commands.
    :param normalization: ``"token"``, ``"word"`` or ``"sum"``.
    """
    if normalization == "token":
        return np.maximum(np.asarray(num_tokens, dtype=np.float64), 1.0)
    if normalization == "word":
        return np.array([max(len(c.split()), 1) for c in candidates], dtype=np.float64)
    if normalization == "sum":
        return np.ones(len(candidates), dtype=np.float64)
    raise ValueError(f"normalization must be one of {NORMALIZATIONS}, got {normalization!r}")


def normalize_scores(
    raw_logprobs: np.ndarray,
    num_tokens: np.ndarray,
    candidates: Sequence[str],
    normalization: Normalization,
) -> np.ndarray:
    """Turn summed token log-probs into a normalised log-distribution over the candidates.

    ``token`` divides by the token count, ``word`` by the whitespace word count, ``sum`` keeps the raw sum
    (:func:`normalization_divisors`); the result is a log-softmax over the candidates.
    """
    raw = np.asarray(raw_logprobs, dtype=np.float64)
    return log_softmax(raw / normalization_divisors(num_tokens, candidates, normalization))


def log_softmax(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    m = np.max(x)
    return x - (m + np.log(np.sum(np.exp(x - m))))


def prompt_seeds(seed: int | Sequence[int] | None, n_prompts: int) -> list[int] | None:
    """``seed`` of a ``propose`` call as one seed per prompt, or ``None`` when it is not per prompt (no seed, or
    one int for the whole call).

    :param seed: ``None``, an int, or a sequence of ints.
    :param n_prompts: how many prompts the call has.
    :raises ValueError: a sequence of the wrong length.
    """
    if seed is None or isinstance(seed, (int, np.integer)):
        return None
    seeds = [int(s) for s in seed]
    if len(seeds) != n_prompts:
        raise ValueError(f"got {len(seeds)} seeds for {n_prompts} prompts: pass one seed per prompt (or one int)")
    return seeds


def propose_options(prior: Any, **options: Any) -> dict[str, Any]:
    """The ``options`` that ``prior.propose`` takes (all of them if it takes ``**kwargs``); the others are left
    out, so that deterministic priors (``FunctionPrior``, ``UniformPrior``) need no sampling options.

    :param prior: the prior whose ``propose`` is called.
    :param options: keyword arguments to pass when accepted.
    """
    try:
        params = inspect.signature(prior.propose).parameters
    except (TypeError, ValueError):
        return options
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return options
    return {k: v for k, v in options.items() if k in params}
