"""Aggregate metrics over training runs, with the interval estimates a reviewer expects (the `rliable` method).

Agarwal et al., "Deep Reinforcement Learning at the Edge of the Statistical Precipice" (NeurIPS 2021) recommend,
for a handful of runs per task: the **interquartile mean** (IQM: the mean of the middle 50% of all runs' scores,
pooled over tasks) with a **95% stratified-bootstrap confidence interval** (resample the runs of each task with
replacement, independently per task; the 2.5th and 97.5th percentiles of the statistic over the resamples), and the
**probability of improvement** P(X > Y) (for each task, the Mann-Whitney U statistic over every pair of runs, ties
counting one half, averaged over tasks). Their library, ``rliable``, needs scipy, arch, pandas and seaborn; these
few lines compute the same numbers with numpy (``trim_mean(..., 0.25)`` is scipy's, percentile intervals as its
default) and are checked against hand computation in the tests.

Scores are arrays of shape ``(runs, tasks)`` (a 1-D array is one task). For costs (steps to a success rate, where
lower is better), the IQM and its interval read the same way; :func:`ratio_interval` gives the ratio of two arms'
IQMs with a bootstrap interval that resamples both arms.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

Statistic = Callable[[np.ndarray], float]


def _matrix(scores: np.ndarray | list) -> np.ndarray:
    scores = np.asarray(scores, dtype=float)
    if scores.ndim == 1:
        scores = scores[:, None]
    if scores.ndim != 2 or scores.shape[0] == 0:
        raise ValueError(f"scores must be a (runs, tasks) array with at least one run, got shape {scores.shape}")
    if not np.isfinite(scores).all():
        raise ValueError("scores must be finite: count a run that never reached a threshold as its budget")
    return scores


def interquartile_mean(scores: np.ndarray | list) -> float:
    """The mean of the middle 50% of all scores (pooled over runs and tasks): ``int(0.25 n)`` cut from each end,
    as ``scipy.stats.trim_mean(scores, 0.25, axis=None)``.

    >>> interquartile_mean([1, 2, 3, 4, 100, 5, 6, 7])  # 1, 2 and 7, 100 cut
    4.5
    """
    flat = np.sort(_matrix(scores), axis=None)
    cut = int(0.25 * flat.size)
    return float(flat[cut : flat.size - cut].mean())


def stratified_resamples(scores: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` resampled score matrices, shape ``(n, runs, tasks)``: each task's runs drawn with replacement, every
    task independently."""
    runs, tasks = scores.shape
    picks = rng.integers(runs, size=(n, runs, tasks))
    return np.take_along_axis(np.broadcast_to(scores, (n, runs, tasks)), picks, axis=1)


@dataclass(frozen=True)
class Estimate:
    """A point estimate with its confidence interval."""

    value: float
    low: float
    high: float

    def text(self, fmt: str = "{:.0f}") -> str:
        return f"{fmt.format(self.value)} [{fmt.format(self.low)}, {fmt.format(self.high)}]"

    @classmethod
    def percentile(cls, value: float, resampled: np.ndarray, confidence: float) -> Estimate:
        """``value`` with the percentile interval of its ``resampled`` values at ``confidence``."""
        tail = 100 * (1 - confidence) / 2
        low, high = np.percentile(resampled, [tail, 100 - tail])
        return cls(float(value), float(low), float(high))


def bootstrap_interval(
    scores: np.ndarray | list,
    statistic: Statistic = interquartile_mean,
    *,
    reps: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
) -> Estimate:
    """``statistic(scores)`` with its stratified-bootstrap percentile interval (``reps`` resamples).

    :param scores: ``(runs, tasks)`` or one task's runs.
    :param statistic: of a ``(runs, tasks)`` matrix (default: the IQM).
    :param confidence: the interval's coverage (0.95: the 2.5th to the 97.5th percentile).
    :param seed: of the resampling (the interval is reproducible).
    """
    scores = _matrix(scores)
    resampled = stratified_resamples(scores, reps, np.random.default_rng(seed))
    return Estimate.percentile(statistic(scores), np.array([statistic(r) for r in resampled]), confidence)


def probability_of_improvement(x: np.ndarray | list, y: np.ndarray | list) -> float:
    """P(X > Y): the chance that a run of X scores above a run of Y on the same task (ties count one half),
    averaged over tasks. X and Y may have different numbers of runs, the same tasks.

    >>> probability_of_improvement([3, 4], [1, 3])  # pairs: 3>1, 3=3, 4>1, 4>3 -> (1 + 0.5 + 1 + 1) / 4
    0.875
    """
    x, y = _matrix(x), _matrix(y)
    if x.shape[1] != y.shape[1]:
        raise ValueError(f"x and y must have the same tasks, got {x.shape[1]} and {y.shape[1]}")
    per_task = [
        float(np.mean((x[:, t, None] > y[None, :, t]) + 0.5 * (x[:, t, None] == y[None, :, t])))
        for t in range(x.shape[1])
    ]
    return float(np.mean(per_task))


def probability_of_improvement_interval(
    x: np.ndarray | list, y: np.ndarray | list, *, reps: int = 2000, confidence: float = 0.95, seed: int = 0
) -> Estimate:
    """:func:`probability_of_improvement` with a stratified-bootstrap interval (both arms resampled)."""
    x, y = _matrix(x), _matrix(y)
    rng = np.random.default_rng(seed)
    xs, ys = stratified_resamples(x, reps, rng), stratified_resamples(y, reps, rng)
    values = np.array([probability_of_improvement(a, b) for a, b in zip(xs, ys)])
    return Estimate.percentile(probability_of_improvement(x, y), values, confidence)


def ratio_interval(
    numerator: np.ndarray | list,
    denominator: np.ndarray | list,
    statistic: Statistic = interquartile_mean,
    *,
    reps: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
) -> Estimate:
    """``statistic(numerator) / statistic(denominator)`` (e.g. the baseline's IQM steps to success over the prior
    arm's) with a percentile interval from resampling both arms independently (stratified by task)."""
    a, b = _matrix(numerator), _matrix(denominator)
    rng = np.random.default_rng(seed)
    tops = np.array([statistic(r) for r in stratified_resamples(a, reps, rng)])
    bottoms = np.array([statistic(r) for r in stratified_resamples(b, reps, rng)])
    if statistic(b) <= 0 or (bottoms <= 0).any():
        raise ValueError("the denominator's statistic must be positive in every resample (a cost such as steps)")
    return Estimate.percentile(statistic(a) / statistic(b), tops / bottoms, confidence)
