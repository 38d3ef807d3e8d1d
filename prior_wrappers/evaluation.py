"""Learning curves: success rate and return against environment steps, for comparing a prior with its baseline."""

from __future__ import annotations

import csv
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.evaluation import evaluate_policy
from stable_baselines3.common.vec_env import VecEnv


@dataclass
class LearningCurve:
    """Evaluations of one training run (one algorithm, one seed)."""

    label: str
    seed: int
    steps: list[int] = field(default_factory=list)
    success_rate: list[float] = field(default_factory=list)
    mean_return: list[float] = field(default_factory=list)

    def steps_to(self, success: float) -> int | None:
        """First evaluated step count whose success rate reached ``success`` (None if never)."""
        return _first_reaching(self.steps, self.success_rate, success)

    def steps_to_return(self, threshold: float) -> int | None:
        """First evaluated step count whose mean return reached ``threshold`` (None if never)."""
        return _first_reaching(self.steps, self.mean_return, threshold)

    def area_under_curve(self, values: Sequence[float] | None = None, budget: int | None = None) -> float:
        """Mean of ``values`` (default: the success rate) over training, as the step-weighted area under the
        piecewise-constant curve (each evaluation holds until the next) from step 0 to ``budget`` (default: the last
        evaluation), divided by the budget: 1.0 for a run that succeeds from the start."""
        values = self.success_rate if values is None else values
        end = budget if budget is not None else (self.steps[-1] if self.steps else 0)
        if end <= 0 or not self.steps:
            return float(values[0]) if len(values) else 0.0
        edges = [min(s, end) for s in self.steps] + [end]
        area = sum(v * (b - a) for v, a, b in zip(values, edges, edges[1:]))
        return float(area / end)


def _first_reaching(steps: Sequence[int], values: Sequence[float], threshold: float) -> int | None:
    for s, v in zip(steps, values):
        if v >= threshold:
            return s
    return None


class LearningCurveCallback(BaseCallback):
    """Evaluates the model greedily every ``eval_freq`` environment steps (summed over sub-envs) into a
    :class:`LearningCurve`; success comes from ``info["is_success"]`` at episode ends.

    :param curve: the curve the evaluations are appended to (its points so far count for ``stop_after``).
    :param eval_env: the env the greedy episodes run in.
    :param eval_freq: environment steps between evaluations.
    :param n_eval_episodes: episodes per evaluation.
    :param stop_after: stop training (``learn`` returns) once the curve's last ``stop_after`` evaluations all reached
        ``stop_success``, as SB3's ``StopTrainingOnRewardThreshold`` does for a reward; 0 (default): never. The
        steps to a success rate are the first evaluation that reaches it, so stopping later changes none of them.
    :param stop_success: the success rate ``stop_after`` waits for.
    """

    def __init__(
        self,
        curve: LearningCurve,
        eval_env: VecEnv,
        eval_freq: int,
        n_eval_episodes: int = 10,
        *,
        stop_after: int = 0,
        stop_success: float = 1.0,
    ) -> None:
        super().__init__()
        if stop_after < 0:
            raise ValueError(f"stop_after must be >= 0 (0: never stop early), got {stop_after}")
        self.curve = curve
        self.eval_env = eval_env
        self.eval_freq = eval_freq
        self.n_eval_episodes = n_eval_episodes
        self.stop_after = stop_after
        self.stop_success = stop_success
        self._next = eval_freq

    def _on_step(self) -> bool:
        if self.num_timesteps >= self._next:
            self._next += self.eval_freq
            evaluate_into(self.curve, self.model, self.eval_env, self.num_timesteps, self.n_eval_episodes)
            return not self.reached()
        return True

    def reached(self) -> bool:
        """Whether the last ``stop_after`` evaluations all reached ``stop_success`` (False when ``stop_after`` is 0)."""
        recent = self.curve.success_rate[-self.stop_after :] if self.stop_after else []
        return len(recent) == self.stop_after > 0 and min(recent) >= self.stop_success


def train_with_curve(
    model: BaseAlgorithm,
    eval_env: VecEnv,
    total_timesteps: int,
    *,
    label: str,
    seed: int,
    eval_freq: int,
    n_eval_episodes: int = 10,
    progress_bar: bool = False,
    stop_after: int = 0,
    stop_success: float = 1.0,
) -> LearningCurve:
    """Train ``model``, evaluating it before training and every ``eval_freq`` environment steps; with
    ``stop_after``, until that many evaluations in a row reach ``stop_success`` (see :class:`LearningCurveCallback`)."""
    curve = LearningCurve(label, seed)
    evaluate_into(curve, model, eval_env, 0, n_eval_episodes)
    callback = LearningCurveCallback(
        curve, eval_env, eval_freq, n_eval_episodes, stop_after=stop_after, stop_success=stop_success
    )
    if not callback.reached():
        model.learn(total_timesteps, callback=callback, progress_bar=progress_bar)
    return curve


def evaluate_into(curve: LearningCurve, model: BaseAlgorithm, eval_env: VecEnv, steps: int, n_episodes: int) -> None:
    """Evaluate greedily now and append the point to ``curve``."""
    successes: list[bool] = []

    def on_step(locals_: dict, _globals: dict) -> None:
        if locals_["done"]:
            successes.append(bool(locals_["info"].get("is_success", False)))

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*Monitor.*")  # our wrappers do not alter rewards or lengths
        returns, _ = evaluate_policy(
            model,
            eval_env,
            n_eval_episodes=n_episodes,
            deterministic=True,
            return_episode_rewards=True,
            callback=on_step,
        )
    curve.steps.append(steps)
    curve.mean_return.append(float(np.mean(returns)))
    curve.success_rate.append(float(np.mean(successes)) if successes else 0.0)


def write_curves_csv(curves: Sequence[LearningCurve], path: str | Path) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["label", "seed", "steps", "success_rate", "mean_return"])
        for c in curves:
            for s, r, ret in zip(c.steps, c.success_rate, c.mean_return):
                writer.writerow([c.label, c.seed, s, f"{r:.4f}", f"{ret:.4f}"])


def seed_count(n: int) -> str:
    """``"1 seed"``, ``"5 seeds"``: how a legend counts runs."""
    return f"{n} seed" if n == 1 else f"{n} seeds"


def plot_curves(
    curves: Sequence[LearningCurve],
    path: str | Path,
    title: str = "",
    values: str = "success_rate",
    ylabel: str = "success rate (greedy evaluation)",
) -> list[str]:
    """Mean ``values`` (``"success_rate"`` or ``"mean_return"``; min–max band over seeds) against environment steps,
    one line per label; returns the legend's entries ("DQN-Prior (1 seed)", "DQN (5 seeds)")."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    entries = []
    for label in dict.fromkeys(c.label for c in curves):
        runs = [c for c in curves if c.label == label]
        n = min(len(c.steps) for c in runs)
        steps = np.array(runs[0].steps[:n])
        rates = np.array([getattr(c, values)[:n] for c in runs])
        mean = rates.mean(0)
        entries.append(f"{label} ({seed_count(len(runs))})")
        ax.plot(steps, mean, label=entries[-1])
        ax.fill_between(steps, rates.min(0), rates.max(0), alpha=0.2)
    ax.set_xlabel("environment steps")
    ax.set_ylabel(ylabel)
    if values == "success_rate":
        ax.set_ylim(-0.02, 1.02)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return entries
