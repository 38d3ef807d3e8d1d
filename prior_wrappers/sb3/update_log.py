"""A per-update record of a PPO-Prior / GFlan-Prior run: the rollout's returns and the policy's KL to the prior."""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import torch as th
from stable_baselines3.common.callbacks import BaseCallback


class UpdateLog(BaseCallback):
    """One row per PPO update (``rows``), printed with ``verbose=1``:

    ``steps`` (environment steps so far), ``episodes`` (finished in the rollout), ``mean_return`` (theirs, NaN for
    none), ``reward_per_step`` (the rollout's mean env reward, without the time-out bootstraps SB3 adds to the
    buffer's rewards), ``kl_rollout`` (KL(π ‖ p_LLM) of the policy that collected the rollout, on the rollout's
    states: exactly 0 for a first policy that is the prior), ``kl_update`` (``train/kl_prior``, the mean KL over the
    update's minibatches) and ``seconds`` (since training started).

    :param kl_batch_size: states per forward when computing ``kl_rollout`` (an LLM policy runs one forward each).
    :param verbose: 1: print each row when its update is done.
    """

    def __init__(self, kl_batch_size: int = 16, verbose: int = 0) -> None:
        super().__init__(verbose)
        self.kl_batch_size = kl_batch_size
        self.rows: list[dict[str, float]] = []
        self._returns: list[float] = []
        self._running: np.ndarray | None = None
        self._reward, self._steps = 0.0, 0
        self._start = time.perf_counter()

    def _on_training_start(self) -> None:
        self._start = time.perf_counter()

    def _on_step(self) -> bool:
        rewards, dones = np.asarray(self.locals["rewards"], dtype=np.float64), self.locals["dones"]
        if self._running is None:
            self._running = np.zeros(len(rewards))
        self._running += rewards
        self._reward += float(rewards.sum())
        self._steps += len(rewards)
        for i in np.flatnonzero(dones):
            self._returns.append(float(self._running[i]))
            self._running[i] = 0.0
        return True

    def _rollout_kl(self) -> float:
        buffer = self.model.rollout_buffer  # type: ignore[attr-defined]  # SB3 types the model as BaseAlgorithm
        obs = {key: value.reshape(-1, *value.shape[2:]) for key, value in buffer.observations.items()}
        n = len(next(iter(obs.values())))
        kls = []
        with th.no_grad():
            for start in range(0, n, self.kl_batch_size):
                batch = {
                    k: th.as_tensor(v[start : start + self.kl_batch_size], device=self.model.device)
                    for k, v in obs.items()
                }
                kls.append(self.model.kl_prior(batch).cpu())  # type: ignore[attr-defined]  # a PPOPrior
        return max(float(th.cat(kls).mean()), 0.0)  # a KL is >= 0; float rounding at the prior gives -1e-8

    def _on_rollout_end(self) -> None:
        self.rows.append(
            {
                "steps": self.num_timesteps,
                "episodes": len(self._returns),
                "mean_return": float(np.mean(self._returns)) if self._returns else float("nan"),
                "reward_per_step": self._reward / max(self._steps, 1),
                "kl_rollout": self._rollout_kl(),
            }
        )
        self._returns, self._reward, self._steps = [], 0.0, 0

    def _on_rollout_start(self) -> None:
        self.close_update()

    def _on_training_end(self) -> None:
        self.close_update()

    def close_update(self) -> None:
        """Complete the last row with its update's ``kl_update`` and the time (when its update has run)."""
        logged: dict[str, Any] = self.model.logger.name_to_value
        if not self.rows or "kl_update" in self.rows[-1] or "train/kl_prior" not in logged:
            return
        row = self.rows[-1]
        row["kl_update"] = float(logged["train/kl_prior"])
        row["seconds"] = time.perf_counter() - self._start
        if self.verbose:
            print(
                f"update {len(self.rows)}: {row['steps']} steps, {row['episodes']} episodes finished (mean return "
                f"{row['mean_return']:.3f}), reward/step {row['reward_per_step']:.4f}, KL(pi || p_LLM) on the "
                f"rollout {row['kl_rollout']:.5f}, during the update {row['kl_update']:.5f}  [{row['seconds']:.0f} s]",
                flush=True,
            )
