"""Learning-curve metrics against hand computation."""

from __future__ import annotations

import pytest

from prior_wrappers.evaluation import LearningCurve


def curve() -> LearningCurve:
    return LearningCurve("x", 0, steps=[0, 100, 300], success_rate=[0.0, 0.5, 1.0], mean_return=[0.0, 2.0, 3.0])


def test_steps_to_success_and_to_a_return_threshold():
    c = curve()
    assert c.steps_to(0.5) == 100 and c.steps_to(1.0) == 300 and c.steps_to(1.1) is None
    assert c.steps_to_return(2.5) == 300 and c.steps_to_return(0.0) == 0 and c.steps_to_return(4) is None


def test_area_under_the_piecewise_constant_curve():
    c = curve()
    # 0.0 on [0, 100), 0.5 on [100, 300), 1.0 on [300, 400): (0 + 100 + 100) / 400
    assert c.area_under_curve(budget=400) == pytest.approx(0.5)
    # to the last evaluation: (0 + 100) / 300
    assert c.area_under_curve() == pytest.approx(1 / 3)
    # returns, cut at a budget inside the second segment: (0 + 2 * 100) / 200
    assert c.area_under_curve(c.mean_return, budget=200) == pytest.approx(1.0)


def test_the_legend_counts_seeds_in_words(tmp_path):
    from prior_wrappers.evaluation import plot_curves

    curves = [LearningCurve("DQN-Prior", 0, [0, 100], [0.0, 1.0], [0.0, 1.0])]
    curves += [LearningCurve("DQN", seed, [0, 100], [0.0, 0.5], [0.0, 0.5]) for seed in range(3)]
    entries = plot_curves(curves, tmp_path / "curves.png")
    assert entries == ["DQN-Prior (1 seed)", "DQN (3 seeds)"]
    assert (tmp_path / "curves.png").stat().st_size > 0
