"""How much a value-based learner trusts its prior while it explores: whole episodes with or without it.

A prior that is wrong in some state (it puts the right command many nats below others) traps posterior
sampling: the command is never tried, so its value is never learned. Mixing a little uniform probability into
every step (``prior_floor``) does not cure it where the way to a reward is several right commands in a row:
each step's small chance multiplies. Exploring *whole episodes* without the prior does, and costs a correct
prior little once the returns show that episodes with it do better. :class:`PriorTrust` decides, at each
episode's start and for each environment, whether the episode samples the posterior p̃(a|s)·exp(Q(s,a)/α) or
softmax(Q(s,a)/α) alone (what the same algorithm does with ``UniformPrior``).
"""

from __future__ import annotations

import math
from collections import deque
from typing import Any, Literal

import numpy as np
from stable_baselines3.common.vec_env import VecEnv, VecEnvWrapper

from prior_wrappers.spaces import ACTION_MASK, LOGPROB_MIN, PRIOR_LOGPROBS

Trust = float | Literal["adaptive"]


def check_trust(trust: Trust) -> Trust:
    """``trust`` as given, or a ``ValueError`` that says what it may be."""
    if trust == "adaptive":
        return trust
    if isinstance(trust, (int, float)) and not isinstance(trust, bool) and 0.0 <= float(trust) <= 1.0:
        return float(trust)
    raise ValueError(f"prior_trust must be 'adaptive' or a probability in [0, 1], got {trust!r}")


class PriorTrust:
    """Per environment, whether its current episode explores with the prior, and the probability of it.

    ``trust="adaptive"``: the probability that an episode uses the prior follows the recent episode returns of
    the two kinds of episode, probability matching on their means: P(mean with prior > mean without) under a
    normal approximation, Φ((m₁ − m₀) / √(v₁/n₁ + v₀/n₀)), over each kind's last ``window`` episodes; it is
    kept in [``min_share``, 1 − ``min_share``] so that neither kind stops being checked. Until each kind has two
    episodes, and while their returns cannot be told apart (all zero, as before any reward), it is ``start``,
    3/4 by default: the prior is trusted first, as its user does, and one episode in four checks it. The two
    mistakes cost differently, and a short budget decides. A lower start protects better against a wrong prior
    (on the misleading chain of ``benchmarks/misleading_prior.py``, development seeds 0-3, DQN-Prior needed 1.6×
    the uniform baseline's steps at 1/4 and 2.2× at 3/4), but it takes a correct prior's advantage away while
    few episodes have ended: on a tw-cooking-easy development game (``examples/demo.py --game-seed 3``, 300
    steps, about six episodes), DQN-Prior's first greedy win came after 150 steps at 3/4 (and with the prior in
    every episode) and not within 300 at 1/4.
    A float fixes the probability (``1.0``: always with the prior, the reference's acting).

    :param trust: ``"adaptive"`` or a fixed probability in [0, 1].
    :param n_envs: environments stepped together.
    :param seed: seed of the draws.
    :param window: episodes of each kind remembered.
    :param min_share: least share of episodes of each kind (adaptive only).
    :param start: the probability until the returns tell the kinds apart (adaptive only).
    """

    def __init__(
        self,
        trust: Trust,
        n_envs: int,
        seed: int | None = None,
        window: int = 50,
        min_share: float = 0.05,
        start: float = 0.75,
    ) -> None:
        self.trust = check_trust(trust)
        self.start = start
        self.window = window
        self.min_share = min_share
        self.rng = np.random.default_rng(seed)
        self.returns: dict[bool, deque[float]] = {True: deque(maxlen=window), False: deque(maxlen=window)}
        self.episode_return = np.zeros(n_envs)
        self.with_prior = np.array([self._draw() for _ in range(n_envs)], dtype=bool)

    @property
    def n_envs(self) -> int:
        return len(self.with_prior)

    def probability(self) -> float:
        """The probability that the next episode explores with the prior."""
        if self.trust != "adaptive":
            return float(self.trust)
        evidence = self.evidence()
        if evidence is None:
            return self.start
        return min(max(evidence, self.min_share), 1.0 - self.min_share)

    def evidence(self) -> float | None:
        """P(episodes with the prior return more than those without), from their recent returns; ``None`` while
        the returns cannot tell them apart (fewer than two episodes of a kind, or all alike)."""
        with_prior, without = self.returns[True], self.returns[False]
        if len(with_prior) < 2 or len(without) < 2:
            return None
        difference = float(np.mean(with_prior) - np.mean(without))
        spread = math.sqrt(np.var(with_prior) / len(with_prior) + np.var(without) / len(without))
        if spread == 0.0:
            return None if difference == 0.0 else float(difference > 0)
        return 0.5 * (1.0 + math.erf(difference / (spread * math.sqrt(2.0))))

    def prefers_prior(self) -> bool:
        """Whether acting should use the prior: unless the returns show that episodes without it do better."""
        if self.trust != "adaptive":
            return float(self.trust) >= 0.5
        evidence = self.evidence()
        return evidence is None or evidence >= 0.5

    def _draw(self) -> bool:
        return bool(self.rng.random() < self.probability())

    def step(self, rewards: np.ndarray, dones: np.ndarray) -> None:
        """Add one vector step's rewards; an environment whose episode ended records its return under its kind
        and draws the kind of its next episode."""
        self.episode_return += np.asarray(rewards, dtype=np.float64).reshape(-1)
        for i in np.flatnonzero(np.asarray(dones).reshape(-1)):
            self.returns[bool(self.with_prior[i])].append(float(self.episode_return[i]))
            self.episode_return[i] = 0.0
            self.with_prior[i] = self._draw()


class PriorTrustVecEnv(VecEnvWrapper):
    """The on-policy form of :class:`PriorTrust` (PPO-Prior): an episode explored without the prior sees a
    uniform ``prior_logprobs`` (log 1/n over its valid slots) in its observations, so the policy's residual
    logits and the KL term treat it as the same algorithm with ``UniformPrior`` would, and the rollout holds
    what the policy acted on. ``PPOPrior.learn`` wraps its training env in it; evaluation envs stay as they are.

    :param venv: the prior-wrapped vector env.
    :param trust: as :class:`PriorTrust`.
    :param seed: seed of the draws.
    """

    def __init__(self, venv: VecEnv, trust: Trust, seed: int | None = None) -> None:
        super().__init__(venv)
        self.trust = PriorTrust(trust, venv.num_envs, seed=seed)

    def _hide_prior(self, obs: dict[str, np.ndarray], rows: np.ndarray) -> dict[str, np.ndarray]:
        if rows.size:
            obs = {**obs, PRIOR_LOGPROBS: obs[PRIOR_LOGPROBS].copy()}
            obs[PRIOR_LOGPROBS][rows] = uniform_logprobs(obs[ACTION_MASK][rows])
        return obs

    def reset(self) -> Any:
        return self._hide_prior(self.venv.reset(), np.flatnonzero(~self.trust.with_prior))  # type: ignore[arg-type]

    def step_wait(self) -> Any:
        obs, rewards, dones, infos = self.venv.step_wait()
        ended_without = [i for i in np.flatnonzero(dones) if not self.trust.with_prior[i]]
        for i in ended_without:  # the ended episode's last observation, as the episode saw its observations
            terminal = infos[i].get("terminal_observation")
            if terminal is not None:
                infos[i] = {
                    **infos[i],
                    "terminal_observation": {**terminal, PRIOR_LOGPROBS: uniform_logprobs(terminal[ACTION_MASK])},
                }
        self.trust.step(rewards, dones)
        # SB3's VecEnvObs is any observation; the prior's is a Dict
        return self._hide_prior(obs, np.flatnonzero(~self.trust.with_prior)), rewards, dones, infos  # type: ignore[arg-type]


def uniform_logprobs(action_mask: np.ndarray) -> np.ndarray:
    """log 1/n over the ``n`` valid slots of each observation (the last axis; any leading batch axes),
    ``LOGPROB_MIN`` in the empty ones."""
    valid = np.asarray(action_mask) > 0.5
    n = np.maximum(valid.sum(axis=-1, keepdims=True), 1)
    return np.where(valid, -np.log(n), LOGPROB_MIN).astype(np.float32)
