"""Aggregate metrics (prior_wrappers.aggregates) against hand computation."""

import numpy as np
import pytest

from prior_wrappers.aggregates import (
    bootstrap_interval,
    interquartile_mean,
    probability_of_improvement,
    probability_of_improvement_interval,
    ratio_interval,
    stratified_resamples,
)


def test_iqm_cuts_a_quarter_from_each_end_pooled_over_tasks():
    # 8 scores: int(0.25 * 8) = 2 cut from each end -> mean of 3, 4, 5, 6
    assert interquartile_mean([[1, 5], [2, 6], [3, 7], [4, 100]]) == pytest.approx(4.5)
    # 5 scores: int(1.25) = 1 cut from each end -> mean of 2, 3, 4 (scipy's trim_mean)
    assert interquartile_mean([5, 1, 4, 2, 3]) == pytest.approx(3.0)
    # fewer than 4 scores: nothing is cut
    assert interquartile_mean([1, 2, 9]) == pytest.approx(4.0)


def test_probability_of_improvement_by_hand():
    # task 0: x=(3,4) vs y=(1,3): pairs 3>1, 3=3 (1/2), 4>1, 4>3 -> 3.5/4; task 1: x always below -> 0
    x = [[3, 0], [4, 0]]
    y = [[1, 5], [3, 5]]
    assert probability_of_improvement(x, y) == pytest.approx((3.5 / 4 + 0.0) / 2)
    assert probability_of_improvement([1, 2], [1, 2]) == pytest.approx(0.5)


def test_stratified_resampling_never_mixes_tasks():
    scores = np.array([[0.0, 10.0], [1.0, 11.0], [2.0, 12.0]])
    resampled = stratified_resamples(scores, 200, np.random.default_rng(0))
    assert resampled.shape == (200, 3, 2)
    assert np.isin(resampled[:, :, 0], scores[:, 0]).all() and np.isin(resampled[:, :, 1], scores[:, 1]).all()
    # the tasks are drawn independently: some resample pairs a task-0 run with another run's task-1 score
    assert np.any(resampled[:, :, 1] - resampled[:, :, 0] != 10.0)


def test_bootstrap_interval_brackets_the_estimate_and_is_degenerate_for_constant_runs():
    rng = np.random.default_rng(1)
    scores = rng.normal(100, 10, size=(10, 1))
    est = bootstrap_interval(scores, reps=500)
    assert est.low <= est.value <= est.high
    assert est.value == pytest.approx(interquartile_mean(scores))
    assert est.high - est.low > 1  # ten noisy runs: a real interval
    same = bootstrap_interval([7, 7, 7, 7], reps=100)
    assert (same.value, same.low, same.high) == (7, 7, 7)
    assert bootstrap_interval(scores, reps=300, seed=3) == bootstrap_interval(scores, reps=300, seed=3)


def test_ratio_interval_of_two_arms():
    base = [1000, 1100, 900, 1000, 1000]
    prior = [100, 110, 90, 100, 100]
    est = ratio_interval(base, prior, reps=500)
    assert est.value == pytest.approx(10.0)
    assert est.low <= 10.0 <= est.high and est.high / est.low < 1.6
    with pytest.raises(ValueError, match="positive"):
        ratio_interval(base, [0, 0, 0], reps=10)


def test_probability_of_improvement_interval_contains_its_estimate():
    est = probability_of_improvement_interval([5, 6, 7, 8], [1, 2, 6, 9], reps=300)
    assert est.value == pytest.approx(probability_of_improvement([5, 6, 7, 8], [1, 2, 6, 9]))
    assert 0 <= est.low <= est.value <= est.high <= 1


def test_bad_scores_are_refused_with_a_reason():
    with pytest.raises(ValueError, match="budget"):
        interquartile_mean([1.0, np.inf])
    with pytest.raises(ValueError, match="runs, tasks"):
        interquartile_mean(np.zeros((2, 2, 2)))
    with pytest.raises(ValueError, match="same tasks"):
        probability_of_improvement([[1, 2]], [[1, 2, 3]])
