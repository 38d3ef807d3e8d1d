"""The propose setting of ``benchmarks/prior_quality.py``: k sampled proposals per state as the prior.

Each expert state's prompt is given to ``prior.propose`` with k samples (seeded per state, as the wrappers'
``prior_mode="propose"`` does); the expert command is ranked by the smoothed counts
(:func:`~prior_wrappers.proposals.smoothed_logprobs`, beta = 1). Counts tie often (every unproposed command has
0), so ranks are *expected* ranks under random tie-breaking: an expert tied with t others at rank r scores
``mean(1/r .. 1/(r+t))`` (the uniform baseline's MRR is computed the same way), not the optimistic rank that
``expert_metrics`` gives continuous scores.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from prior_wrappers.priors.base import ActionPrior, propose_options
from prior_wrappers.prompts import PromptTemplate, TextState
from prior_wrappers.proposals import smoothed_logprobs, state_seed


def tied_rank_metrics(logprobs: np.ndarray, expert: int) -> tuple[float, float, float, float]:
    """Top-1, top-3, reciprocal rank and p(expert), averaged over random orders of the expert's ties.

    :param logprobs: the prior over the candidates.
    :param expert: index of the expert command.
    """
    better = int(np.sum(logprobs > logprobs[expert]))
    tied = int(np.sum(logprobs == logprobs[expert])) - 1
    ranks = np.arange(better + 1, better + tied + 2, dtype=np.float64)  # equally likely
    return float(np.mean(ranks == 1)), float(np.mean(ranks <= 3)), float(np.mean(1 / ranks)), float(np.exp(logprobs[expert]))


def propose_setting(
    prior: ActionPrior, states: Sequence[Any], example: str | None, history: int, k: int, seed: int = 0,
    smoothing: float = 1.0,
) -> dict[str, Any]:
    """Propose ``k`` samples for every state (one call each); metrics from the smoothed counts, cost per state.

    :param prior: a prior that samples (``HFPrior``; a ``FunctionPrior`` gives its expected counts).
    :param states: ``ExpertState`` objects of ``prior_quality.py``.
    :param example: the prompt's example text (demonstrations or the env's).
    :param history: previous steps shown in the prompt.
    :param k: samples per state.
    :param seed: base seed; each state's seed is :func:`~prior_wrappers.proposals.state_seed` of it.
    :param smoothing: beta of the smoothed counts.
    """
    template = PromptTemplate(history=history)
    rows, seconds, invalid, distinct = [], [], [], []
    for s in states:
        prompt = template(TextState(s.observation, s.admissible, s.task, s.history, example))
        start = time.perf_counter()
        props = prior.propose([prompt], [s.admissible], k, **propose_options(prior, seed=[state_seed(seed, prompt, k)]))
        seconds.append(time.perf_counter() - start)
        counts = np.asarray(props.counts[0], dtype=np.float64)
        rows.append(tied_rank_metrics(smoothed_logprobs(counts, smoothing), s.admissible.index(s.expert)))
        invalid.append(props.invalid[0] / k if props.invalid is not None else props.invalid_rate)
        distinct.append(int(np.sum(counts > 0)))
    top1, top3, mrr, p_expert = (float(v) for v in np.mean(np.asarray(rows), axis=0))
    return {
        "top1": top1, "top3": top3, "mrr": mrr, "p_expert": p_expert,
        "s_per_state": float(np.median(seconds)), "s_first": float(seconds[0]),
        "invalid_rate": float(np.mean(invalid)), "distinct_proposed": float(np.mean(distinct)),
    }
