"""DQN-Prior: DQN that acts by sampling the posterior p_LLM(a|s)·exp(Q(s,a)/α) over the candidate slots."""

from __future__ import annotations

import warnings
from typing import Any, ClassVar, Literal

import numpy as np
import torch as th
from stable_baselines3 import DQN
from stable_baselines3.common.buffers import ReplayBuffer
from stable_baselines3.common.noise import ActionNoise
from stable_baselines3.common.policies import BasePolicy
from stable_baselines3.common.type_aliases import GymEnv, PyTorchObs, ReplayBufferSamples, Schedule
from torch.nn import functional as F

from prior_wrappers.sb3.masking import masked_fill, masked_logsumexp, masked_max, sample_masked
from prior_wrappers.sb3.policies import DQNPriorPolicy
from prior_wrappers.sb3.prior_stats import PriorStatsLogging
from prior_wrappers.sb3.prior_trust import PriorTrust, Trust, check_trust
from prior_wrappers.sb3.signature import PriorSignatureMixin
from prior_wrappers.sb3.support import PRIOR_FLOOR, CandidateSupport, SupportMixin

Sampling = Literal["posterior", "greedy"]
Target = Literal["max", "soft"]


GREEDY_EPSILON = 0.2  # the reference's ε with sampling="greedy" (its ALFWorld variant)


def scalars_to_host(logs: dict[str, list[th.Tensor]]) -> dict[str, list[float]]:
    """The 0-d tensors recorded under each key, as Python floats, copied from the device in one transfer.

    Training records its losses as tensors and converts them here once per ``train`` call: an ``.item()`` per
    gradient step would make the host wait for the device (a GPU's queue of kernels runs dry) at every step.
    The floats are those ``.item()`` gives (the dtypes are only widened to a common one, which is exact).

    :param logs: key -> the scalar tensors recorded under it, all on one device.
    """
    values = [value.detach().reshape(()) for series in logs.values() for value in series]
    flat: list[float] = th.stack(values).tolist() if values else []
    host, start = {}, 0
    for key, series in logs.items():
        host[key], start = flat[start : start + len(series)], start + len(series)
    return host


class DQNPrior(SupportMixin, PriorStatsLogging, PriorSignatureMixin, DQN):
    """DQN-Prior: direct posterior sampling with an LLM action prior.

    Paper: Yan et al., "Efficient Reinforcement Learning with Large Language Model Priors", ICLR 2025
    (https://arxiv.org/abs/2410.07927). Acting samples P(a|s) ∝ p_LLM(a|s)·exp(Q(s,a)/α) over the candidate
    slots of the observation; ``predict(deterministic=True)`` takes argmax Q over them. The LLM lives in the env
    wrapper (the observation carries ``prior_logprobs`` and ``action_mask``), so the algorithm, its buffer and
    its saved zip never touch it. With ``UniformPrior`` in the wrapper this is plain DQN over the admissible
    commands with Boltzmann exploration softmax(Q/α): the baseline, same network.

    The candidates are all the valid slots unless ``prior_top_k``, ``prior_mass`` or ``prior_min_logprob`` narrow
    them (``model.support``, a :class:`~prior_wrappers.sb3.support.CandidateSupport` built from these arguments):
    a valid command that the prior gives almost no mass (log p clipped to ``LOGPROB_MIN``) is rarely sampled, but
    greedy acting and the ``max`` target still take it when its Q is the highest. The zip stores the wrapper's
    ``prior_signature``; ``load(path, env=...)`` and ``set_env`` raise a ``ValueError`` for an env with other
    wrapper settings (k, features, encoder, ...).

    Defaults are the reference implementation's where it has one (α⁻¹ = 10, AdamW, lr 5e-4, batch 64,
    γ 0.99, τ 0.005 every step, gradient clip 1.0, ``max`` target, no ε); the others are SB3's DQN defaults.

    :param policy: the policy model to use (``"CandidatePolicy"`` or a :class:`DQNPriorPolicy` subclass).
    :param env: the environment to learn from: a prior-wrapped env (``LLMPriorWrapper`` / ``VecLLMPrior``).
    :param alpha: temperature α of the posterior; the reference uses 1/α = 10.
    :param sampling: ``"posterior"`` samples softmax(Q/α + log p) when acting; ``"greedy"`` takes argmax Q
        (the reference's ALFWorld variant, with ε-greedy exploration over the candidates).
    :param target: ``"max"``: y = r + γ(1−d)·max_{a'} Q_target(s', a') over the next state's candidates
        (reference); ``"soft"``: y = r + γ(1−d)·α·log Σ_{a'} p̃(a'|s')·exp(Q_target(s', a')/α), p̃ the prior
        renormalised over the next state's candidates (so a ``prior_top_k`` cut does not lower V).
    :param double_q: with ``target="max"``, choose a' by the online network and evaluate it with the target one.
    :param prior_top_k: keep only the prior's ``top_k`` valid slots as candidates (like the reference's k
        proposals); ``None`` keeps every valid slot, whatever its prior.
    :param prior_min_logprob: an explicit support rule: valid slots with log p(a|s) below it are not candidates
        (the prior's favourite always is), e.g. ``LOGPROB_MIN + 1`` to act only among the commands a
        propose-mode prior named; ``None`` (default) keeps every valid slot.
    :param prior_mass: a support rule that adapts to the prior's confidence: the candidates are the smallest set of
        valid slots, in the prior's order, holding at least this fraction of the prior's mass over the valid
        slots (top-p). ``0.9`` keeps one slot where the prior puts 0.9 on it and many where it is unsure;
        ``None`` (default) or ``1.0`` keeps every valid slot. Combined with the other rules, a slot must pass all.
    :param prior_floor: λ, the share of the uniform distribution over the candidates mixed into the prior that
        acting uses (and the ``soft`` target and ``predict_with_prior``): p̃ = (1 − λ)·p + λ/n (see
        :func:`~prior_wrappers.sb3.support.floored_log_prior`). It keeps a wrong prior from trapping the
        learner: a command the prior puts 12 nats down is otherwise never tried (α = 0.1 and rewards in [0, 1]
        span at most 10 nats of Q/α), so its value is never learned, while the ``max`` target bootstraps from
        it. ``0`` is the reference's pure posterior.
    :param prior_trust: the probability that a training episode explores with the prior; the others sample
        softmax(Q/α) alone, as the same algorithm with ``UniformPrior`` does. ``"adaptive"`` (default) follows
        the two kinds' recent episode returns (probability matching, each kind at least 5% of the episodes; see
        :class:`~prior_wrappers.sb3.prior_trust.PriorTrust`; logged as ``rollout/prior_trust``): a correct prior
        soon acts in most episodes, a wrong one in few. Whole episodes, since a way to a reward that takes
        several commands the prior rules out is found only by an episode that leaves the prior at every step.
        ``1.0``: every episode with the prior (the reference). ``predict`` always uses the prior.
    :param predict_with_prior: ``predict(deterministic=True)`` takes argmax (Q + α·log p̃) instead of argmax Q.
    :param learning_rate: learning rate, constant or a schedule of the remaining progress (reference: 5e-4).
    :param buffer_size: size of the replay buffer.
    :param learning_starts: steps collected before learning starts; these actions are sampled from the prior.
    :param batch_size: minibatch size of each gradient step (reference: 64).
    :param tau: soft update coefficient of the target network (reference: 0.005).
    :param gamma: discount factor (reference: 0.99).
    :param train_freq: update the model every ``train_freq`` steps, or a tuple ``(n, "step" | "episode")``.
    :param gradient_steps: gradient steps after each rollout; -1 for as many as environment steps.
    :param replay_buffer_class: replay buffer class (default: SB3's ``DictReplayBuffer``).
    :param replay_buffer_kwargs: keyword arguments for the replay buffer.
    :param target_update_interval: update the target network every this many environment steps
        (1 with ``tau=0.005``: Polyak averaging at every step, the reference's).
    :param exploration_fraction: fraction of training over which ε decays from its initial to its final value.
    :param exploration_initial_eps: initial ε, the probability of a uniform choice among the candidates.
        ``None`` (default): 0 with ``sampling="posterior"`` (the posterior's samples explore), and with
        ``"greedy"`` the reference's constant ε = 0.2 (its ALFWorld variant; argmax Q alone would explore nothing).
    :param exploration_final_eps: final ε; ``None`` (default): as ``exploration_initial_eps``'s default.
    :param max_grad_norm: gradient clipping norm (reference: 1.0).
    :param stats_window_size: episodes averaged in the rollout logs.
    :param tensorboard_log: TensorBoard log directory (None: no TensorBoard).
    :param policy_kwargs: keyword arguments for the policy, e.g. ``dict(net_arch=[64, 64])``.
    :param verbose: 0 silent, 1 info, 2 debug.
    :param seed: seed of the pseudo-random generators.
    :param device: ``"cpu"``, ``"cuda"`` or ``"auto"``.
    :param _init_setup_model: build the networks at construction.
    """

    policy_aliases: ClassVar[dict[str, type[BasePolicy]]] = {
        "CandidatePolicy": DQNPriorPolicy,
    }
    policy: DQNPriorPolicy
    run_name = "DQNPrior"

    def __init__(
        self,
        policy: str | type[DQNPriorPolicy],
        env: GymEnv | str,
        alpha: float = 0.1,
        sampling: Sampling = "posterior",
        target: Target = "max",
        double_q: bool = False,
        prior_top_k: int | None = None,
        prior_min_logprob: float | None = None,
        prior_mass: float | None = None,
        prior_floor: float = PRIOR_FLOOR,
        prior_trust: Trust = "adaptive",
        predict_with_prior: bool = False,
        learning_rate: float | Schedule = 5e-4,
        buffer_size: int = 100_000,
        learning_starts: int = 100,
        batch_size: int = 64,
        tau: float = 0.005,
        gamma: float = 0.99,
        train_freq: int | tuple[int, str] = 4,
        gradient_steps: int = 1,
        replay_buffer_class: type[ReplayBuffer] | None = None,
        replay_buffer_kwargs: dict[str, Any] | None = None,
        target_update_interval: int = 1,
        exploration_fraction: float = 0.1,
        exploration_initial_eps: float | None = None,
        exploration_final_eps: float | None = None,
        max_grad_norm: float = 1.0,
        stats_window_size: int = 100,
        tensorboard_log: str | None = None,
        policy_kwargs: dict[str, Any] | None = None,
        verbose: int = 0,
        seed: int | None = None,
        device: th.device | str = "auto",
        _init_setup_model: bool = True,
    ) -> None:
        if alpha <= 0:
            raise ValueError(f"alpha must be > 0 (it divides Q), got {alpha}")
        if sampling not in ("posterior", "greedy"):
            raise ValueError(f"sampling must be 'posterior' or 'greedy', got {sampling!r}")
        if target not in ("max", "soft"):
            raise ValueError(f"target must be 'max' or 'soft', got {target!r}")
        default_eps = GREEDY_EPSILON if sampling == "greedy" else 0.0
        exploration_initial_eps = default_eps if exploration_initial_eps is None else exploration_initial_eps
        exploration_final_eps = default_eps if exploration_final_eps is None else exploration_final_eps
        if double_q and target != "max":
            raise ValueError("double_q applies to the 'max' target only")
        self.prior_top_k = prior_top_k
        self.prior_min_logprob = prior_min_logprob
        self.prior_mass = prior_mass
        self.prior_floor = prior_floor
        self.prior_floor = self.support.floor  # the support checks the rules (ValueError) and makes the floor a float
        self.alpha = alpha
        self.sampling = sampling
        self.target = target
        self.double_q = double_q
        self.prior_trust = check_trust(prior_trust)
        self._prior_trust: PriorTrust | None = None
        self.predict_with_prior = predict_with_prior
        super().__init__(
            policy,
            env,
            learning_rate=learning_rate,
            buffer_size=buffer_size,
            learning_starts=learning_starts,
            batch_size=batch_size,
            tau=tau,
            gamma=gamma,
            train_freq=train_freq,
            gradient_steps=gradient_steps,
            replay_buffer_class=replay_buffer_class,
            replay_buffer_kwargs=replay_buffer_kwargs,
            target_update_interval=target_update_interval,
            exploration_fraction=exploration_fraction,
            exploration_initial_eps=exploration_initial_eps,
            exploration_final_eps=exploration_final_eps,
            max_grad_norm=max_grad_norm,
            stats_window_size=stats_window_size,
            tensorboard_log=tensorboard_log,
            policy_kwargs=policy_kwargs,
            verbose=verbose,
            seed=seed,
            device=device,
            _init_setup_model=_init_setup_model,
        )
        self._remember_prior_signature()

    def _setup_model(self) -> None:
        with warnings.catch_warnings():
            # Polyak averaging at every (vector) step is the intent of target_update_interval=1, not a mistake
            warnings.filterwarnings("ignore", message="The number of environments used is greater than the target")
            super()._setup_model()
        self._train_logs: dict[str, list[th.Tensor]] = {}

    @property
    def support(self) -> CandidateSupport:
        """The slots this algorithm may act on and bootstrap from, and the floored prior acting samples with: the
        rules of ``prior_top_k``, ``prior_mass``, ``prior_min_logprob`` and ``prior_floor`` (as they are now)."""
        return CandidateSupport(
            top_k=self.prior_top_k, mass=self.prior_mass, min_logprob=self.prior_min_logprob, floor=self.prior_floor
        )

    # ------------------------------------------------------------------ acting
    def _sample_action(
        self, learning_starts: int, action_noise: ActionNoise | None = None, n_envs: int = 1
    ) -> tuple[np.ndarray, np.ndarray]:
        obs, _ = self.policy.obs_to_tensor(self._last_obs)  # type: ignore[arg-type]
        candidates = self.candidates(obs)
        if self._prior_trust is None or self._prior_trust.n_envs != n_envs:
            self._prior_trust = PriorTrust(self.prior_trust, n_envs, seed=self.seed)
        # an episode without the prior explores as the same algorithm with UniformPrior does
        with_prior = th.as_tensor(self._prior_trust.with_prior, device=candidates.device).unsqueeze(1)
        log_prior = self.support.log_prior(obs, candidates)
        log_prior = th.where(with_prior, log_prior, th.zeros_like(log_prior))
        if self.num_timesteps < learning_starts:
            # Warm-up: with Q ≡ 0 the posterior is the prior itself (uniform over candidates without it).
            action = sample_masked(log_prior, candidates)
        else:
            self.policy.set_training_mode(False)
            with th.no_grad():
                q_values = self.q_net(obs)
            action = self._explore(q_values, log_prior, candidates)
        actions = action.cpu().numpy()
        return actions, actions

    def _store_transition(
        self,
        replay_buffer: ReplayBuffer,
        buffer_action: np.ndarray,
        new_obs: Any,
        reward: np.ndarray,
        dones: np.ndarray,
        infos: list[dict[str, Any]],
    ) -> None:
        super()._store_transition(replay_buffer, buffer_action, new_obs, reward, dones, infos)
        if self._prior_trust is not None:
            self._prior_trust.step(reward, dones)
            if np.any(dones):
                self.logger.record("rollout/prior_trust", self._prior_trust.probability())

    def _explore(self, q_values: th.Tensor, log_prior: th.Tensor, candidates: th.Tensor) -> th.Tensor:
        """An exploring action per row: the posterior's sample (or argmax Q), then ε uniform over the candidates."""
        if self.sampling == "posterior":
            # P(a|s) ∝ p̃(a|s)·exp(Q(s,a)/α), over the candidates (p̃: the prior with its floor)
            action = sample_masked(q_values / self.alpha + log_prior, candidates)
        else:
            action = masked_fill(q_values, candidates).argmax(dim=1)
        explore = th.rand(action.shape, device=action.device) < self.exploration_rate
        if explore.any():  # ε: uniform over the candidates
            action = th.where(explore, sample_masked(th.zeros_like(q_values), candidates), action)
        return action

    def predict(
        self,
        observation: np.ndarray | dict[str, np.ndarray],
        state: tuple[np.ndarray, ...] | None = None,
        episode_start: np.ndarray | None = None,
        deterministic: bool = False,
    ) -> tuple[np.ndarray, tuple[np.ndarray, ...] | None]:
        """Greedy (``deterministic=True``) or exploring action (with the prior) for an observation, batched or not."""
        self.policy.set_training_mode(False)
        obs, vectorized = self.policy.obs_to_tensor(observation)
        with th.no_grad():
            q_values = self.q_net(obs)
        candidates = self.candidates(obs)
        log_prior = self.support.log_prior(obs, candidates)
        if deterministic:
            scores = q_values + self.alpha * log_prior if self.predict_with_prior else q_values
            action = masked_fill(scores, candidates).argmax(dim=1)
        else:
            action = self._explore(q_values, log_prior, candidates)
        actions = action.cpu().numpy()
        if not vectorized:
            actions = actions.squeeze(axis=0)
        return actions, state

    # ------------------------------------------------------------------ learning
    def next_state_values(self, next_observations: PyTorchObs) -> th.Tensor:
        """V(s') for the TD target, ``(batch, 1)``, over the candidates stored with s' (0 if it has none)."""
        next_q_values = self.q_net_target(next_observations)
        candidates = self.candidates(next_observations)
        if self.target == "soft":
            # V(s') = α · log Σ_{a'} p̃(a'|s') · exp(Q_target(s', a') / α), p̃ the acting prior over the candidates
            log_prior = self.support.log_prior(next_observations, candidates)
            values = self.alpha * masked_logsumexp(next_q_values / self.alpha + log_prior, candidates)
        elif self.double_q:
            # a* = argmax_{a'} Q(s', a'),  V(s') = Q_target(s', a*)
            best = masked_fill(self.q_net(next_observations), candidates).argmax(dim=1, keepdim=True)
            values = next_q_values.gather(1, best).squeeze(1)
            values = th.where(candidates.any(dim=1), values, th.zeros_like(values))
        else:
            # V(s') = max_{a'} Q_target(s', a')
            values = masked_max(next_q_values, candidates)
        return values.reshape(-1, 1)

    def _td_loss(self, replay_data: ReplayBufferSamples) -> tuple[th.Tensor, th.Tensor]:
        """Huber TD loss and the current Q-values of all slots (for losses that add to it)."""
        discounts = replay_data.discounts if replay_data.discounts is not None else self.gamma
        with th.no_grad():
            target_q_values = replay_data.rewards + (1 - replay_data.dones) * discounts * self.next_state_values(
                replay_data.next_observations
            )
        q_values = self.q_net(replay_data.observations)
        current_q_values = q_values.gather(1, replay_data.actions.long())
        self._record("train/q_values", current_q_values.mean())
        return F.smooth_l1_loss(current_q_values, target_q_values), q_values

    def _loss(self, replay_data: ReplayBufferSamples) -> th.Tensor:
        return self._td_loss(replay_data)[0]

    def train(self, gradient_steps: int, batch_size: int = 64) -> None:
        self.policy.set_training_mode(True)
        self._update_learning_rate(self.policy.optimizer)
        self._train_logs = {}
        for _ in range(gradient_steps):
            replay_data = self.replay_buffer.sample(batch_size, env=self._vec_normalize_env)  # type: ignore[union-attr]
            loss = self._loss(replay_data)
            self._record("train/loss", loss)
            self.policy.optimizer.zero_grad()
            loss.backward()
            th.nn.utils.clip_grad_norm_(self.policy.parameters(), self.max_grad_norm)
            self.policy.optimizer.step()
        self._n_updates += gradient_steps
        self.logger.record("train/n_updates", self._n_updates, exclude="tensorboard")
        for key, values in scalars_to_host(self._train_logs).items():  # one device -> host copy per call
            self.logger.record_mean(key, float(np.mean(values)))  # averaged until the next dump

    def _record(self, key: str, value: th.Tensor) -> None:
        """Keep a scalar of this gradient step under ``key``, detached and where it is (no device -> host copy):
        :meth:`train` logs the mean of each key's values, all brought to the host together at its end."""
        self._train_logs.setdefault(key, []).append(value.detach())

    def _excluded_save_params(self) -> list[str]:
        return [*super()._excluded_save_params(), "_train_logs", "_prior_trust"]
