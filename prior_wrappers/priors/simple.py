"""Priors without an LLM: the uniform baseline and a prior computed by a Python function."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from prior_wrappers.priors.base import Normalization, PriorScores, Proposals, log_softmax, validate_request


class UniformPrior:
    """p(a|s) = 1/|A(s)|: the no-LLM baseline. With it, the prior algorithms reduce to plain RL over the
    admissible commands."""

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

    def propose(self, prompts: Sequence[str], admissible: Sequence[Sequence[str]], k: int = 5) -> Proposals:
        validate_request(prompts, admissible)
        counts = [np.full(len(a), k / len(a)) for a in admissible]
        return Proposals([list(a) for a in admissible], counts, [[] for _ in prompts], invalid_rate=0.0)


class FunctionPrior:
    """A prior from a function ``fn(prompt, candidates) -> scores`` (unnormalised log-weights).

    Deterministic and fast: for tests, for hand-written domain knowledge, and for ablations that replace
    the LLM by an oracle.

    >>> prior = FunctionPrior(lambda prompt, cands: [2.0 if "chop" in c else 0.0 for c in cands])
    >>> prior.score(["You hold a tomato."], [["chop tomato", "go north"]]).logprobs[0].round(2)
    array([-0.13, -2.13])
    """

    def __init__(self, fn: Callable[[str, Sequence[str]], Sequence[float]]) -> None:
        self.fn = fn

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
        for r, c in zip(raw, candidates):
            if r.shape != (len(c),):
                raise ValueError(f"prior function returned shape {r.shape} for {len(c)} candidates")
        return PriorScores(
            logprobs=[log_softmax(r) for r in raw],
            raw_logprobs=raw,
            num_tokens=[np.ones(len(c), int) for c in candidates],
        )

    def propose(self, prompts: Sequence[str], admissible: Sequence[Sequence[str]], k: int = 5) -> Proposals:
        """Expected counts under the function's distribution (deterministic)."""
        scores = self.score(prompts, admissible)
        counts = [k * np.exp(lp) for lp in scores.logprobs]
        return Proposals([list(a) for a in admissible], counts, [[] for _ in prompts], invalid_rate=0.0)
