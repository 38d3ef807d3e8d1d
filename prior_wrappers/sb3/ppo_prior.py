"""PPO-Prior: PPO with a KL(π ‖ p_LLM) penalty, the variational-inference form of an LLM action prior."""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import torch as th
from stable_baselines3 import PPO
from stable_baselines3.common.buffers import RolloutBuffer
from stable_baselines3.common.policies import BasePolicy
from stable_baselines3.common.type_aliases import GymEnv, MaybeCallback, PyTorchObs, Schedule
from stable_baselines3.common.utils import FloatSchedule, explained_variance
from torch.nn import functional as F

from prior_wrappers.sb3.dqn_prior import scalars_to_host
from prior_wrappers.sb3.policies import CandidateActorCriticPolicy
from prior_wrappers.sb3.prior_stats import PriorStatsLogging
from prior_wrappers.sb3.prior_trust import PriorTrustVecEnv, Trust, check_trust, uniform_logprobs
from prior_wrappers.sb3.signature import PriorSignatureMixin
from prior_wrappers.sb3.support import PRIOR_FLOOR, CandidateSupport, SupportMixin, floored_log_prior
from prior_wrappers.spaces import ACTION_MASK, PRIOR_LOGPROBS


def kl_to_prior(log_pi: th.Tensor, prior_logprobs: th.Tensor, valid: th.Tensor, floor: float = 0.0) -> th.Tensor:
    """KL(π ‖ p̃)(s) = Σ_{valid a} π(a|s)·[log π(a|s) − log p̃(a|s)], p̃ the prior renormalised over the valid
    slots and mixed with ``floor`` of the uniform distribution over them (see
    :func:`~prior_wrappers.sb3.support.floored_log_prior`); ``(batch,)``.

    A valid slot at ``LOGPROB_MIN`` (a command the prior gives almost no mass) counts with log p̃ ≈ −30: π may
    put mass on it, at a finite price of π(a)·(log π(a) + 30) nats, never an infinite KL.

    :param log_pi: ``(batch, K)`` normalised log-probabilities of the policy (0 probability off ``valid``).
    :param prior_logprobs: ``(batch, K)`` the observation's prior log-probabilities.
    :param valid: ``(batch, K)`` boolean valid slots.
    :param floor: λ in [0, 1], the share of the uniform distribution in p̃.
    """
    log_prior = floored_log_prior(prior_logprobs, valid, floor)
    terms = log_pi.exp() * (log_pi - log_prior)
    return th.where(valid, terms, th.zeros_like(terms)).sum(dim=-1)


class PPOPrior(SupportMixin, PriorStatsLogging, PriorSignatureMixin, PPO):
    """PPO-Prior: KL-regularised PPO towards an LLM action prior.

    Paper: Yan et al., "Efficient Reinforcement Learning with Large Language Model Priors", ICLR 2025
    (https://arxiv.org/abs/2410.07927). Maximises E_π[Σ γ^t r_t] − α·E_s[KL(π(·|s) ‖ p_LLM(·|s))]: the PPO
    loss plus α·KL (logged as ``train/kl_prior``). The policy acts, and the KL is computed exactly, over the
    candidate slots, which for PPO-Prior are all the valid slots (``model.support``, which its policy holds too;
    see :mod:`prior_wrappers.sb3.support`): a valid command at ``LOGPROB_MIN`` keeps a (tiny, with the residual
    policy) probability and costs π(a)·(log π(a) + 30) in the KL. With α = 0 the updates are exactly PPO's. The default
    :class:`CandidateActorCriticPolicy` uses residual logits f(s, a) + log p_LLM(a|s), so training starts at
    the prior. With ``UniformPrior`` in the wrapper this is the
    baseline, PPO over the admissible commands with the same network (KL to uniform = log n − entropy, so α
    acts as an entropy bonus; ``alpha=0`` for none).

    The paper applies the KL to an LLM policy and gives no coefficient for this small-policy form; α = 0.1 is
    ours. The other defaults are SB3's PPO defaults. The zip stores the wrapper's ``prior_signature``;
    ``load(path, env=...)`` and ``set_env`` raise a ``ValueError`` for an env with other wrapper settings.

    :param policy: the policy model to use (``"CandidatePolicy"`` or a :class:`CandidateActorCriticPolicy`).
    :param env: the environment to learn from: a prior-wrapped env (``LLMPriorWrapper`` / ``VecLLMPrior``).
    :param alpha: α, weight of KL(π ‖ p_LLM); a float, or a schedule of the remaining progress (1 → 0) for
        annealing, e.g. ``stable_baselines3.common.utils.LinearSchedule(0.5, 0.0, 1.0)``.
    :param prior_floor: λ: the prior that the KL pulls towards, and that the residual policy starts from, is
        p̃ = (1 − λ)·p + λ/n over the candidates, so a command the prior all but rules out keeps a probability
        of about λ/n of being tried and a price of at most log(n/λ) nats in the KL (the policy's own
        ``prior_floor``, set from this); ``0`` is the plain prior.
    :param prior_trust: the probability that a training episode is collected with the prior; in the others the
        observations carry a uniform prior (log 1/n over the valid slots), so the policy acts and is trained there
        as PPO with ``UniformPrior`` (see :class:`~prior_wrappers.sb3.prior_trust.PriorTrustVecEnv`). ``"adaptive"``
        (default) follows the two kinds' recent episode returns (each kind at least 5% of the episodes; logged as
        ``rollout/prior_trust``); ``1.0``: every episode with the prior. Evaluation (``predict``) always sees
        the env's prior.
    :param learning_rate: learning rate, constant or a schedule of the remaining progress.
    :param n_steps: steps per environment per update (rollout buffer size is ``n_steps * n_envs``).
    :param batch_size: minibatch size.
    :param n_epochs: epochs over the rollout buffer per update.
    :param gamma: discount factor.
    :param gae_lambda: GAE λ.
    :param clip_range: PPO clipping parameter, constant or schedule.
    :param clip_range_vf: clipping of the value function (None: no clipping).
    :param normalize_advantage: normalise the advantages per minibatch.
    :param ent_coef: entropy coefficient.
    :param vf_coef: value loss coefficient.
    :param max_grad_norm: gradient clipping norm.
    :param rollout_buffer_class: rollout buffer class (default: SB3's ``DictRolloutBuffer``).
    :param rollout_buffer_kwargs: keyword arguments for the rollout buffer.
    :param target_kl: stop an update's epochs early when the approximate KL to the old policy exceeds 1.5×this.
    :param stats_window_size: episodes averaged in the rollout logs.
    :param tensorboard_log: TensorBoard log directory (None: no TensorBoard).
    :param policy_kwargs: keyword arguments for the policy, e.g. ``dict(residual_prior=False)``.
    :param verbose: 0 silent, 1 info, 2 debug.
    :param seed: seed of the pseudo-random generators.
    :param device: ``"cpu"``, ``"cuda"`` or ``"auto"``.
    :param _init_setup_model: build the networks at construction.
    """

    policy_aliases: ClassVar[dict[str, type[BasePolicy]]] = {"CandidatePolicy": CandidateActorCriticPolicy}
    run_name = "PPOPrior"

    def __init__(
        self,
        policy: str | type[CandidateActorCriticPolicy],
        env: GymEnv | str,
        alpha: float | Schedule = 0.1,
        prior_floor: float = PRIOR_FLOOR,
        prior_trust: Trust = "adaptive",
        learning_rate: float | Schedule = 3e-4,
        n_steps: int = 2048,
        batch_size: int = 64,
        n_epochs: int = 10,
        gamma: float = 0.99,
        gae_lambda: float = 0.95,
        clip_range: float | Schedule = 0.2,
        clip_range_vf: float | Schedule | None = None,
        normalize_advantage: bool = True,
        ent_coef: float = 0.0,
        vf_coef: float = 0.5,
        max_grad_norm: float = 0.5,
        rollout_buffer_class: type[RolloutBuffer] | None = None,
        rollout_buffer_kwargs: dict[str, Any] | None = None,
        target_kl: float | None = None,
        stats_window_size: int = 100,
        tensorboard_log: str | None = None,
        policy_kwargs: dict[str, Any] | None = None,
        verbose: int = 0,
        seed: int | None = None,
        device: th.device | str = "auto",
        _init_setup_model: bool = True,
    ) -> None:
        if isinstance(alpha, (int, float)) and alpha < 0:
            raise ValueError(f"alpha must be >= 0, got {alpha}")
        self.alpha = alpha
        self.prior_floor = prior_floor
        self.prior_floor = self.support.floor  # the support checks it (ValueError) and makes it a float
        self.prior_trust = check_trust(prior_trust)
        self.trusts_prior = True  # whether the policy acts with the prior: the trust's last verdict (saved)
        policy_class = self.policy_aliases.get(policy, policy) if isinstance(policy, str) else policy
        if isinstance(policy_class, type) and issubclass(policy_class, CandidateActorCriticPolicy):
            given = (policy_kwargs or {}).get("prior_floor", self.prior_floor)
            if given != self.prior_floor:
                raise ValueError(
                    f"policy_kwargs prior_floor={given} differs from PPOPrior(prior_floor={self.prior_floor}): the "
                    "policy must start from the prior that the KL pulls towards; set PPOPrior's prior_floor only"
                )
            policy_kwargs = {**(policy_kwargs or {}), "prior_floor": self.prior_floor}
        super().__init__(
            policy,
            env,
            learning_rate=learning_rate,
            n_steps=n_steps,
            batch_size=batch_size,
            n_epochs=n_epochs,
            gamma=gamma,
            gae_lambda=gae_lambda,
            clip_range=clip_range,
            clip_range_vf=clip_range_vf,
            normalize_advantage=normalize_advantage,
            ent_coef=ent_coef,
            vf_coef=vf_coef,
            max_grad_norm=max_grad_norm,
            rollout_buffer_class=rollout_buffer_class,
            rollout_buffer_kwargs=rollout_buffer_kwargs,
            target_kl=target_kl,
            stats_window_size=stats_window_size,
            tensorboard_log=tensorboard_log,
            policy_kwargs=policy_kwargs,
            verbose=verbose,
            seed=seed,
            device=device,
            _init_setup_model=_init_setup_model,
        )
        self._remember_prior_signature()

    def _setup_learn(
        self,
        total_timesteps: int,
        callback: MaybeCallback = None,
        reset_num_timesteps: bool = True,
        tb_log_name: str = "run",
        progress_bar: bool = False,
    ) -> tuple[int, Any]:
        if self.env is not None and self.prior_trust != 1.0 and not isinstance(self.env, PriorTrustVecEnv):
            self.env = PriorTrustVecEnv(self.env, self.prior_trust, seed=self.seed)
            self._last_obs = None  # collected again through the wrapper
        return super()._setup_learn(total_timesteps, callback, reset_num_timesteps, tb_log_name, progress_bar)

    def _update_info_buffer(self, infos: list[dict[str, Any]], dones: np.ndarray | None = None) -> None:
        super()._update_info_buffer(infos, dones)
        if isinstance(self.env, PriorTrustVecEnv) and dones is not None and np.any(dones):
            self.trusts_prior = self.env.trust.prefers_prior()
            self.logger.record("rollout/prior_trust", self.env.trust.probability())

    def predict(
        self,
        observation: np.ndarray | dict[str, np.ndarray],
        state: tuple[np.ndarray, ...] | None = None,
        episode_start: np.ndarray | None = None,
        deterministic: bool = False,
    ) -> tuple[np.ndarray, tuple[np.ndarray, ...] | None]:
        """SB3's ``predict``; while the training episodes without the prior do better (:attr:`trusts_prior`
        False), the policy acts as in them, on a uniform ``prior_logprobs``."""
        if not self.trusts_prior and isinstance(observation, dict):
            observation = {**observation, PRIOR_LOGPROBS: uniform_logprobs(observation[ACTION_MASK])}
        return super().predict(observation, state, episode_start, deterministic)

    @property
    def support(self) -> CandidateSupport:
        """The slots the policy acts on and the KL sums over (all the valid slots: PPO-Prior has no rule that
        narrows them), and the floored prior p̃ of ``prior_floor`` that the KL pulls towards."""
        return CandidateSupport(floor=self.prior_floor)

    def kl_prior(self, obs: PyTorchObs, log_pi: th.Tensor | None = None) -> th.Tensor:
        """KL(π(·|s) ‖ p̃(·|s)) over the candidate slots, ``(batch,)``.

        :param obs: the observations.
        :param log_pi: ``(batch, K)`` log π(·|s); ``None``: the current policy's.
        """
        if log_pi is None:
            # SB3 types Distribution.distribution as one torch distribution or a list; a Categorical's has logits
            log_pi = self.policy.get_distribution(obs).distribution.logits  # type: ignore[union-attr]
        support = self.support
        return kl_to_prior(log_pi, obs[PRIOR_LOGPROBS], support.candidates(obs), support.floor)  # type: ignore[index]

    def evaluate_policy(
        self, obs: PyTorchObs, actions: th.Tensor, kl_grad: bool
    ) -> tuple[th.Tensor, th.Tensor, th.Tensor, th.Tensor]:
        """``(values, log π(a|s), entropy, log π(·|s))`` of a minibatch: SB3's ``evaluate_actions`` and the
        normalised log-probabilities of every slot for the KL, with gradients only when ``kl_grad``.

        :param obs: the minibatch's observations.
        :param actions: its actions.
        :param kl_grad: whether the KL term needs gradients (α > 0).
        """
        values, log_prob, entropy = self.policy.evaluate_actions(obs, actions)
        with th.set_grad_enabled(kl_grad):
            log_pi = self.policy.get_distribution(obs).distribution.logits  # type: ignore[union-attr]
        return values, log_prob, entropy, log_pi  # type: ignore[return-value]  # SB3: entropy is None for some

    def _setup_model(self) -> None:
        super()._setup_model()
        self.alpha_schedule = FloatSchedule(self.alpha)

    def train(self) -> None:
        """PPO's update (SB3's ``PPO.train``) with α·KL(π ‖ p_LLM) added to the loss.

        The minibatches' losses stay on the device as tensors and come to the host together at the end (one
        copy, not one ``.item()`` per value and minibatch); only ``target_kl`` needs each minibatch's approximate
        KL on the host, to stop early.
        """
        self.policy.set_training_mode(True)
        self._update_learning_rate(self.policy.optimizer)
        clip_range = self.clip_range(self._current_progress_remaining)  # type: ignore[operator]
        if self.clip_range_vf is not None:
            clip_range_vf = self.clip_range_vf(self._current_progress_remaining)  # type: ignore[operator]
        alpha = self.alpha_schedule(self._current_progress_remaining)

        entropy_losses: list[th.Tensor] = []
        pg_losses: list[th.Tensor] = []
        value_losses: list[th.Tensor] = []
        clip_fractions: list[th.Tensor] = []
        kl_priors: list[th.Tensor] = []
        continue_training = True
        for epoch in range(self.n_epochs):
            approx_kl_divs: list[th.Tensor] = []  # the last epoch's are logged, as in SB3
            for rollout_data in self.rollout_buffer.get(self.batch_size):
                observations = rollout_data.observations
                actions = rollout_data.actions.long().flatten()

                values, log_prob, entropy, log_pi = self.evaluate_policy(observations, actions, kl_grad=alpha > 0)
                values = values.flatten()
                advantages = rollout_data.advantages
                if self.normalize_advantage and len(advantages) > 1:
                    advantages = (advantages - advantages.mean()) / (advantages.std() + 1e-8)

                ratio = th.exp(log_prob - rollout_data.old_log_prob)
                policy_loss_1 = advantages * ratio
                policy_loss_2 = advantages * th.clamp(ratio, 1 - clip_range, 1 + clip_range)
                policy_loss = -th.min(policy_loss_1, policy_loss_2).mean()
                pg_losses.append(policy_loss.detach())
                clip_fractions.append(th.mean((th.abs(ratio - 1) > clip_range).float()))

                if self.clip_range_vf is None:
                    values_pred = values
                else:
                    values_pred = rollout_data.old_values + th.clamp(
                        values - rollout_data.old_values, -clip_range_vf, clip_range_vf
                    )
                value_loss = F.mse_loss(rollout_data.returns, values_pred)
                value_losses.append(value_loss.detach())

                entropy_loss = -th.mean(-log_prob) if entropy is None else -th.mean(entropy)
                entropy_losses.append(entropy_loss.detach())

                loss = policy_loss + self.ent_coef * entropy_loss + self.vf_coef * value_loss

                # α · E_s[ KL(π(·|s) ‖ p_LLM(·|s)) ], exact over the candidate (= valid) slots
                kl_prior = self.kl_prior(observations, log_pi).mean()
                kl_priors.append(kl_prior.detach())
                if alpha > 0:  # skipped at α = 0 so that the update is bit-for-bit PPO's
                    loss = loss + alpha * kl_prior

                with th.no_grad():
                    log_ratio = log_prob - rollout_data.old_log_prob
                    approx_kl_divs.append(th.mean((th.exp(log_ratio) - 1) - log_ratio))

                if self.target_kl is not None:  # the one per-minibatch device -> host copy, and only when asked
                    approx_kl_div = approx_kl_divs[-1].cpu().numpy()
                    if approx_kl_div > 1.5 * self.target_kl:
                        continue_training = False
                        if self.verbose >= 1:
                            print(f"Early stopping at step {epoch} due to reaching max kl: {approx_kl_div:.2f}")
                        break

                self.policy.optimizer.zero_grad()
                loss.backward()
                th.nn.utils.clip_grad_norm_(self.policy.parameters(), self.max_grad_norm)
                self.policy.optimizer.step()

            self._n_updates += 1
            if not continue_training:
                break

        explained_var = explained_variance(self.rollout_buffer.values.flatten(), self.rollout_buffer.returns.flatten())
        logs = scalars_to_host(
            {  # one device -> host copy for the whole update
                "entropy_loss": entropy_losses,
                "policy_gradient_loss": pg_losses,
                "value_loss": value_losses,
                "kl_prior": kl_priors,
                "approx_kl": approx_kl_divs,
                "clip_fraction": clip_fractions,
                "loss": [loss],
            }
        )
        self.logger.record("train/entropy_loss", np.mean(logs["entropy_loss"]))
        self.logger.record("train/policy_gradient_loss", np.mean(logs["policy_gradient_loss"]))
        self.logger.record("train/value_loss", np.mean(logs["value_loss"]))
        self.logger.record("train/kl_prior", np.mean(logs["kl_prior"]))
        self.logger.record("train/alpha", alpha)
        # float32, as SB3 averages its per-minibatch numpy values (the others are Python floats, as from .item())
        self.logger.record("train/approx_kl", np.mean(np.asarray(logs["approx_kl"], dtype=np.float32)))
        self.logger.record("train/clip_fraction", np.mean(logs["clip_fraction"]))
        self.logger.record("train/loss", logs["loss"][0])
        self.logger.record("train/explained_variance", explained_var)
        self.logger.record("train/n_updates", self._n_updates, exclude="tensorboard")
        self.logger.record("train/clip_range", clip_range)
        if self.clip_range_vf is not None:
            self.logger.record("train/clip_range_vf", clip_range_vf)
