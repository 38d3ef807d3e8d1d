"""``LearningCurveCallback(stop_after=...)`` / ``train_with_curve``: training stops once the greedy policy has
reached the success rate that many evaluations in a row, and not before."""

from __future__ import annotations

import pytest
from candidate_env import CandidateChainEnv
from stable_baselines3.common.vec_env import DummyVecEnv

from prior_wrappers.evaluation import LearningCurve, LearningCurveCallback, train_with_curve
from prior_wrappers.sb3 import PPOPrior


def chain() -> CandidateChainEnv:
    # the prior marks the right command 12 nats above the others: PPO-Prior's greedy policy wins from the start
    return CandidateChainEnv(k=5, length=2, prior_strength=12.0)


def run(stop_after: int, stop_success: float = 1.0) -> tuple[LearningCurve, int]:
    model = PPOPrior("CandidatePolicy", DummyVecEnv([chain]), n_steps=64, batch_size=32, n_epochs=1, seed=0,
                     device="cpu")  # fmt: skip
    eval_env = DummyVecEnv([chain])
    curve = train_with_curve(model, eval_env, 512, label="x", seed=0, eval_freq=64, n_eval_episodes=4,
                             stop_after=stop_after, stop_success=stop_success)  # fmt: skip
    return curve, model.num_timesteps


def test_training_stops_after_that_many_evaluations_in_a_row_at_the_success_rate():
    curve, steps = run(stop_after=3)
    assert curve.success_rate == [1.0, 1.0, 1.0] and curve.steps == [0, 64, 128] and steps == 128
    # the evaluation before training counts: with stop_after=1 there is nothing left to learn
    curve, steps = run(stop_after=1)
    assert curve.steps == [0] and steps == 0


def test_training_runs_its_budget_without_stop_after_or_when_the_rate_is_never_reached():
    for stop_after, stop_success in ((0, 1.0), (2, 1.01)):
        curve, steps = run(stop_after, stop_success)
        assert curve.steps == list(range(0, 513, 64)) and steps == 512


def test_a_negative_stop_after_is_refused_with_what_it_means():
    with pytest.raises(ValueError, match="stop_after must be >= 0"):
        LearningCurveCallback(LearningCurve("x", 0), DummyVecEnv([chain]), 64, stop_after=-1)
