"""Priors without an LLM: the uniform baseline and a prior computed by a Python function."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence

import numpy as np

from prior_wrappers.priors.base import Normalization, PriorScores, Proposals, log_softmax, validate_request


def admissible_lists(prompts: Sequence[str], admissible: Sequence[Sequence[str] | None]) -> list[Sequence[str]]:
    """``admissible`` checked (a ``None`` list raises: a prior that cannot generate text proposes only among
    admissible commands) and typed as lists."""
    validate_request(prompts, admissible)
    return [a for a in admissible if a is not None]


class UniformPrior:
    """p(a|s) = 1/|A(s)|: the no-LLM baseline. With it, the prior algorithms reduce to plain RL over the
    admissible commands."""

    fingerprint = "UniformPrior"

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
            raise ValueError("UniformPrior has no hidden states; use a text encoder for candidate features")
        logps = [np.full(len(c), -np.log(len(c))) for c in candidates]
        zeros = [np.zeros(len(c)) for c in candidates]
        return PriorScores(logprobs=logps, raw_logprobs=zeros, num_tokens=[np.zeros(len(c), int) for c in candidates])

    def propose(self, prompts: Sequence[str], admissible: Sequence[Sequence[str] | None], k: int = 5) -> Proposals:
        lists = admissible_lists(prompts, admissible)
        counts = [np.full(len(a), k / len(a)) for a in lists]
        return Proposals([list(a) for a in lists], counts, [[] for _ in prompts], invalid_rate=0.0)


class FunctionPrior:
    """A prior from a function ``fn(prompt, candidates) -> scores`` (unnormalised log-weights).

    Deterministic and fast: for tests, for hand-written domain knowledge, and for ablations that replace
    the LLM by an oracle.

    >>> prior = FunctionPrior(lambda prompt, cands: [2.0 if "chop" in c else 0.0 for c in cands])
    >>> prior.score(["You hold a tomato."], [["chop tomato", "go north"]]).logprobs[0].round(2)
    array([-0.13, -2.13])

    A score of ``-inf`` gives a command zero probability; NaN, ``+inf`` or ``-inf`` for every command raise
    ``ValueError``.

    :param fn: ``fn(prompt, candidates)`` returning one float per candidate.
    :param name: the prior's :attr:`fingerprint` (what a saved ``CachedPrior`` file is checked against);
        default the function's module, qualified name and a hash of its byte code. Values it captures from
        an enclosing scope are not part of that default: name the prior when they change its scores.
    """

    def __init__(self, fn: Callable[[str, Sequence[str]], Sequence[float]], *, name: str | None = None) -> None:
        if not callable(fn):
            raise TypeError(f"FunctionPrior needs a callable fn(prompt, candidates), got {type(fn).__name__}")
        self.fn = fn
        self.name = name

    @property
    def fingerprint(self) -> str:
        """``"FunctionPrior:<name>"``, by default ``"FunctionPrior:<module>.<qualname>#<code hash>"``."""
        if self.name:
            return f"FunctionPrior:{self.name}"
        fn = self.fn
        qualname = getattr(fn, "__qualname__", None) or type(fn).__qualname__
        module = getattr(fn, "__module__", None) or type(fn).__module__
        # the code of a callable object's __call__ (not a callable() test)
        code = getattr(fn, "__code__", None) or getattr(getattr(type(fn), "__call__", None), "__code__", None)  # noqa: B004
        digest = hashlib.sha256(b"\0".join(_code_parts(code))).hexdigest()[:12]
        return f"FunctionPrior:{module}.{qualname}#{digest}"

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
            raise ValueError("FunctionPrior has no hidden states; use a text encoder for candidate features")
        raw = [np.asarray(self.fn(p, list(c)), dtype=np.float64) for p, c in zip(prompts, candidates)]
        for r, p, c in zip(raw, prompts, candidates):
            if r.shape != (len(c),):
                raise ValueError(f"prior function returned shape {r.shape} for {len(c)} candidates")
            bad = np.isnan(r) | (r == np.inf)
            if bad.any() or np.all(r == -np.inf):
                what = "NaN/+inf scores" if bad.any() else "-inf for every candidate"
                raise ValueError(
                    f"the prior function returned {what} {dict(zip(c, r.tolist()))} for the prompt ending "
                    f"{p[-300:]!r}; return finite scores (-inf gives a command zero probability)"
                )
        return PriorScores(
            logprobs=[log_softmax(r) for r in raw],
            raw_logprobs=raw,
            num_tokens=[np.ones(len(c), int) for c in candidates],
        )

    def propose(self, prompts: Sequence[str], admissible: Sequence[Sequence[str] | None], k: int = 5) -> Proposals:
        """Expected counts under the function's distribution (deterministic)."""
        lists = admissible_lists(prompts, admissible)
        scores = self.score(prompts, lists)
        counts = [k * np.exp(lp) for lp in scores.logprobs]
        return Proposals([list(a) for a in lists], counts, [[] for _ in prompts], invalid_rate=0.0)


def _code_parts(code: object) -> list[bytes]:
    """Byte code, names and simple constants of ``code`` and its nested code objects (comprehensions, inner
    functions): stable across processes, unlike reprs that hold memory addresses."""
    if code is None or not hasattr(code, "co_code"):
        return []
    parts = [code.co_code, repr(code.co_names).encode()]  # type: ignore[attr-defined]
    for const in code.co_consts:  # type: ignore[attr-defined]
        if hasattr(const, "co_code"):
            parts.extend(_code_parts(const))
        elif isinstance(const, (str, bytes, int, float, bool, type(None), tuple)):
            parts.append(repr(const).encode("utf-8", "surrogatepass"))
    return parts
