"""Candidate-factored networks: one shared network scores every candidate slot.

A slot's input is its command encoding ``candidate_features[k]`` (or a one-hot of the slot index when the
wrapper has no encoder), optionally concatenated with ``observation_features`` and the slot's prior
log-probability. The same weights score every slot, so the network generalises across commands and the number
of slots K only changes the batch shape. Empty slots (``action_mask == 0``) get :data:`MASKED_VALUE`: they never
win an argmax and never get probability.
"""

from __future__ import annotations

from functools import partial
from typing import Any

import numpy as np
import torch as th
from gymnasium import spaces
from stable_baselines3.common.distributions import CategoricalDistribution
from stable_baselines3.common.policies import ActorCriticPolicy, BasePolicy
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor, create_mlp
from stable_baselines3.common.type_aliases import PyTorchObs, Schedule
from stable_baselines3.dqn.policies import DQNPolicy
from torch import nn

from prior_wrappers.sb3.masking import masked_fill, valid_slots
from prior_wrappers.sb3.support import CandidateSupport
from prior_wrappers.spaces import ACTION_MASK, CANDIDATE_FEATURES, OBSERVATION_FEATURES, PRIOR_LOGPROBS


def check_candidate_action_space(action_space: spaces.Space, policy_kwargs: dict[str, Any]) -> None:
    """Raise ``ValueError`` unless a candidate policy can act in ``action_space`` (``Discrete(K)``, one action per
    slot) with SB3's on-policy keyword arguments ``policy_kwargs`` (no gSDE, which is for continuous actions).

    :param action_space: the algorithm's action space.
    :param policy_kwargs: the keyword arguments SB3 passes that a candidate policy does not use (``use_sde``, ...).
    """
    if not isinstance(action_space, spaces.Discrete):
        raise ValueError(f"candidate policies need a Discrete(K) action space, got {action_space}")
    if policy_kwargs.get("use_sde"):
        raise ValueError("gSDE is for continuous actions; candidate slots are discrete")


class CandidateInputs(BaseFeaturesExtractor):
    """Turns the prior observation into one input row per slot, ``(batch, K, features_dim)``.

    Row k is ``[candidate_features[k], observation_features, prior_logprobs[k]]``; without feature keys in the
    observation it is ``[one_hot(k), prior_logprobs[k]]`` (slots are sorted by prior, so the index is the
    prior's rank). Parameter-free: the learnable part is the network that consumes the rows.

    :param observation_space: the ``Dict`` space of :func:`prior_wrappers.spaces.prior_observation_space`.
    :param use_prior_logprob: append the slot's prior log-probability to its row.
    :param use_observation_features: append ``observation_features`` (when present) to every row.
    """

    def __init__(
        self,
        observation_space: spaces.Dict,
        use_prior_logprob: bool = True,
        use_observation_features: bool = True,
    ) -> None:
        for key in (PRIOR_LOGPROBS, ACTION_MASK):
            if key not in observation_space.spaces:
                raise ValueError(
                    f"observation has no {key!r} key: the prior algorithms need the Dict observation of "
                    "LLMPriorWrapper / VecLLMPrior (see prior_wrappers.spaces)"
                )
        # gymnasium types Space.shape as Optional; a Box's is a tuple
        self.k = int(observation_space[PRIOR_LOGPROBS].shape[0])  # type: ignore[index]
        self.has_features = CANDIDATE_FEATURES in observation_space.spaces
        self.use_prior_logprob = use_prior_logprob
        self.use_observation_features = use_observation_features and OBSERVATION_FEATURES in observation_space.spaces
        dim = observation_space[CANDIDATE_FEATURES].shape[-1] if self.has_features else self.k  # type: ignore[index]
        if self.use_observation_features:
            dim += observation_space[OBSERVATION_FEATURES].shape[-1]  # type: ignore[index]
        if use_prior_logprob:
            dim += 1
        super().__init__(observation_space, features_dim=int(dim))

    def forward(self, observations: dict[str, th.Tensor]) -> th.Tensor:
        log_prior = observations[PRIOR_LOGPROBS]
        batch = log_prior.shape[0]
        if self.has_features:
            rows = [observations[CANDIDATE_FEATURES]]
        else:
            rows = [th.eye(self.k, device=log_prior.device, dtype=log_prior.dtype).expand(batch, -1, -1)]
        if self.use_observation_features:
            rows.append(observations[OBSERVATION_FEATURES].unsqueeze(1).expand(-1, self.k, -1))
        if self.use_prior_logprob:
            rows.append(log_prior.unsqueeze(-1))
        return th.cat(rows, dim=-1)


class CandidateQNetwork(BasePolicy):
    """Q(s, a_k) = MLP(row_k) for every slot; :data:`MASKED_VALUE` in empty slots.

    The reference's network is an MLP 768→64→64→1 over a frozen BERT encoding of "Observation: s, Action: a".

    :param observation_space: observation space.
    :param action_space: ``Discrete(K)``.
    :param features_extractor: a :class:`CandidateInputs` (or any extractor returning ``(batch, K, dim)``).
    :param features_dim: ``dim``, the size of one slot's row.
    :param net_arch: hidden layer sizes of the per-slot MLP (default ``[64, 64]``, the reference's).
    :param activation_fn: activation function.
    :param normalize_images: unused (no images), kept for SB3's signature.
    """

    action_space: spaces.Discrete

    def __init__(
        self,
        observation_space: spaces.Space,
        action_space: spaces.Discrete,
        features_extractor: BaseFeaturesExtractor,
        features_dim: int,
        net_arch: list[int] | None = None,
        activation_fn: type[nn.Module] = nn.ReLU,
        normalize_images: bool = True,
    ) -> None:
        super().__init__(
            observation_space, action_space, features_extractor=features_extractor, normalize_images=normalize_images
        )
        self.net_arch = [64, 64] if net_arch is None else net_arch
        self.activation_fn = activation_fn
        self.features_dim = features_dim
        self.q_net = nn.Sequential(*create_mlp(features_dim, 1, self.net_arch, activation_fn))

    def forward(self, obs: PyTorchObs) -> th.Tensor:
        """Q-values ``(batch, K)``, :data:`MASKED_VALUE` in empty slots."""
        rows = self.extract_features(obs, self.features_extractor)
        q_values = self.q_net(rows).squeeze(-1)
        return masked_fill(q_values, valid_slots(obs))  # type: ignore[arg-type]  # SB3's PyTorchObs: here a dict

    def _predict(self, observation: PyTorchObs, deterministic: bool = True) -> th.Tensor:
        return self(observation).argmax(dim=1).reshape(-1)

    def _get_constructor_parameters(self) -> dict[str, Any]:
        data = super()._get_constructor_parameters()
        data.update(
            net_arch=self.net_arch,
            features_dim=self.features_dim,
            activation_fn=self.activation_fn,
            features_extractor=self.features_extractor,
        )
        return data


class DQNPriorPolicy(DQNPolicy):
    """SB3's DQN policy (``q_net`` and ``q_net_target``) with a :class:`CandidateQNetwork`.

    Defaults follow the reference: per-slot MLP ``[64, 64]`` with ReLU, AdamW.

    :param observation_space: the prior wrapper's ``Dict`` observation space.
    :param action_space: ``Discrete(K)``.
    :param lr_schedule: learning rate schedule.
    :param net_arch: hidden layer sizes of the per-slot MLP.
    :param activation_fn: activation function.
    :param features_extractor_class: builds the per-slot rows (default :class:`CandidateInputs`).
    :param features_extractor_kwargs: keyword arguments for it, e.g. ``dict(use_prior_logprob=False)``.
    :param normalize_images: unused (no images), kept for SB3's signature.
    :param optimizer_class: optimizer (default ``AdamW``, the reference's).
    :param optimizer_kwargs: keyword arguments for the optimizer, excluding the learning rate.
    :param behavior_cloning: also build ``behavior_net``, a second :class:`CandidateQNetwork` whose per-slot outputs
        are logits of the data's behaviour policy (discrete BCQ's imitation network), trained by the same optimizer;
        :class:`~prior_wrappers.sb3.CQLPrior` sets it for ``behavior_threshold``.
    """

    # SB3 types them QNetwork; CandidateQNetwork has its interface (forward, _predict, set_training_mode)
    q_net: CandidateQNetwork  # type: ignore[assignment]
    q_net_target: CandidateQNetwork  # type: ignore[assignment]
    behavior_net: CandidateQNetwork | None

    def __init__(
        self,
        observation_space: spaces.Dict,
        action_space: spaces.Discrete,
        lr_schedule: Schedule,
        net_arch: list[int] | None = None,
        activation_fn: type[nn.Module] = nn.ReLU,
        features_extractor_class: type[BaseFeaturesExtractor] = CandidateInputs,
        features_extractor_kwargs: dict[str, Any] | None = None,
        normalize_images: bool = True,
        optimizer_class: type[th.optim.Optimizer] = th.optim.AdamW,
        optimizer_kwargs: dict[str, Any] | None = None,
        behavior_cloning: bool = False,
    ) -> None:
        self.behavior_cloning = behavior_cloning
        super().__init__(
            observation_space,
            action_space,
            lr_schedule,
            net_arch,
            activation_fn,
            features_extractor_class,
            features_extractor_kwargs,
            normalize_images,
            optimizer_class,
            optimizer_kwargs,
        )

    def _build(self, lr_schedule: Schedule) -> None:
        super()._build(lr_schedule)
        self.behavior_net = None
        if self.behavior_cloning:
            self.behavior_net = self.make_q_net()
            self.optimizer = self.optimizer_class(  # type: ignore[call-arg]
                [*self.q_net.parameters(), *self.behavior_net.parameters()], lr=lr_schedule(1), **self.optimizer_kwargs
            )

    def make_q_net(self) -> CandidateQNetwork:  # type: ignore[override]
        net_args = self._update_features_extractor(self.net_args, features_extractor=None)
        return CandidateQNetwork(**net_args).to(self.device)

    def set_training_mode(self, mode: bool) -> None:
        super().set_training_mode(mode)
        if self.behavior_net is not None:
            self.behavior_net.set_training_mode(mode)

    def _get_constructor_parameters(self) -> dict[str, Any]:
        return {**super()._get_constructor_parameters(), "behavior_cloning": self.behavior_cloning}


class CandidateActorCriticPolicy(ActorCriticPolicy):
    """Actor-critic over candidate slots: per-slot logits, a value head over pooled slot embeddings.

    ``logits_k = f(row_k)`` (``+ log p_LLM(a_k|s)`` with ``residual_prior=True``, so that the untrained policy,
    whose output layer starts near 0, is the prior); empty slots get :data:`MASKED_VALUE`.
    ``V(s) = w · mean_{valid k} g(row_k)``. The mask is read from the observation, so plain SB3 ``PPO``
    collection works, terminal observations included.

    :param observation_space: the prior wrapper's ``Dict`` observation space.
    :param action_space: ``Discrete(K)``.
    :param lr_schedule: learning rate schedule.
    :param net_arch: hidden sizes, a list shared by both heads or ``dict(pi=[...], vf=[...])``
        (default ``dict(pi=[64, 64], vf=[64, 64])``, SB3's).
    :param activation_fn: activation function (default ``Tanh``, SB3's).
    :param ortho_init: orthogonal initialisation as in SB3 (output gains 0.01 for logits, 1 for the value).
    :param residual_prior: add the prior log-probabilities to the logits.
    :param prior_floor: with ``residual_prior``, the logits add log p̃ = log((1 − λ)·p + λ/n) over the candidate
        (= valid) slots instead of log p (see :func:`~prior_wrappers.sb3.support.floored_log_prior`; ``PPOPrior``
        sets it to its own ``prior_floor``, so that :attr:`support` is the algorithm's); ``0``: log p.
    :param features_extractor_class: builds the per-slot rows (default :class:`CandidateInputs`).
    :param features_extractor_kwargs: keyword arguments for it.
    :param normalize_images: unused (no images), kept for SB3's signature.
    :param optimizer_class: optimizer (default ``Adam``, SB3's).
    :param optimizer_kwargs: keyword arguments for the optimizer, excluding the learning rate.
    """

    def __init__(
        self,
        observation_space: spaces.Dict,
        action_space: spaces.Discrete,
        lr_schedule: Schedule,
        net_arch: list[int] | dict[str, list[int]] | None = None,
        activation_fn: type[nn.Module] = nn.Tanh,
        ortho_init: bool = True,
        residual_prior: bool = True,
        prior_floor: float = 0.0,
        features_extractor_class: type[BaseFeaturesExtractor] = CandidateInputs,
        features_extractor_kwargs: dict[str, Any] | None = None,
        normalize_images: bool = True,
        optimizer_class: type[th.optim.Optimizer] = th.optim.Adam,
        optimizer_kwargs: dict[str, Any] | None = None,
        **unused_sde_kwargs: Any,  # use_sde, log_std_init, ...: passed by SB3's PPO, meaningless here
    ) -> None:
        check_candidate_action_space(action_space, unused_sde_kwargs)
        self.residual_prior = residual_prior
        self.prior_floor = CandidateSupport(floor=prior_floor).floor  # checked (ValueError), as a float
        super().__init__(
            observation_space,
            action_space,
            lr_schedule,
            net_arch=net_arch,
            activation_fn=activation_fn,
            ortho_init=ortho_init,
            features_extractor_class=features_extractor_class,
            features_extractor_kwargs=features_extractor_kwargs,
            share_features_extractor=True,
            normalize_images=normalize_images,
            optimizer_class=optimizer_class,
            optimizer_kwargs=optimizer_kwargs,
        )

    def _build(self, lr_schedule: Schedule) -> None:
        arch = self.net_arch
        pi_arch, vf_arch = (arch["pi"], arch["vf"]) if isinstance(arch, dict) else (list(arch), list(arch))
        self.action_net = nn.Sequential(*create_mlp(self.features_dim, 1, pi_arch, self.activation_fn))
        self.slot_value_net = nn.Sequential(*create_mlp(self.features_dim, -1, vf_arch, self.activation_fn))
        self.value_net = nn.Linear(vf_arch[-1] if vf_arch else self.features_dim, 1)
        if self.ortho_init:
            for module in (self.action_net, self.slot_value_net):
                module.apply(partial(self.init_weights, gain=np.sqrt(2)))
            self.init_weights(self.action_net[-1], gain=0.01)
            self.init_weights(self.value_net, gain=1.0)
        self.optimizer = self.optimizer_class(self.parameters(), lr=lr_schedule(1), **self.optimizer_kwargs)  # type: ignore[call-arg]

    def _get_constructor_parameters(self) -> dict[str, Any]:
        data = super()._get_constructor_parameters()
        for key in ("use_sde", "log_std_init", "squash_output", "full_std", "use_expln"):
            data.pop(key, None)
        data.update(residual_prior=self.residual_prior, prior_floor=self.prior_floor)
        return data

    @property
    def support(self) -> CandidateSupport:
        """The slots the policy may choose (all the valid slots) and the floored prior its residual logits add:
        equal to its ``PPOPrior``'s support."""
        return CandidateSupport(floor=self.prior_floor)

    def _logits(self, obs: PyTorchObs, rows: th.Tensor) -> th.Tensor:
        logits = self.action_net(rows).squeeze(-1)
        support = self.support
        candidates = support.candidates(obs)
        if self.residual_prior:
            # without a floor log p as it comes, not renormalised over the candidates (the softmax is the same)
            log_prior = support.log_prior(obs, candidates) if support.floor else obs[PRIOR_LOGPROBS]  # type: ignore[index]
            logits = logits + log_prior
        return masked_fill(logits, candidates)

    def _values(self, obs: PyTorchObs, rows: th.Tensor) -> th.Tensor:
        valid = valid_slots(obs).unsqueeze(-1).to(rows.dtype)  # type: ignore[arg-type]
        pooled = (self.slot_value_net(rows) * valid).sum(dim=1) / valid.sum(dim=1).clamp(min=1.0)
        return self.value_net(pooled)

    def _distribution(self, obs: PyTorchObs, rows: th.Tensor) -> CategoricalDistribution:
        return self.action_dist.proba_distribution(action_logits=self._logits(obs, rows))  # type: ignore[return-value]

    def forward(self, obs: PyTorchObs, deterministic: bool = False) -> tuple[th.Tensor, th.Tensor, th.Tensor]:
        # SB3 types extract_features as a tuple too (separate actor/critic extractors); this policy shares one
        rows: th.Tensor = self.extract_features(obs)  # type: ignore[assignment]
        distribution = self._distribution(obs, rows)
        actions = distribution.get_actions(deterministic=deterministic)
        return actions, self._values(obs, rows), distribution.log_prob(actions)

    def evaluate_actions(self, obs: PyTorchObs, actions: th.Tensor) -> tuple[th.Tensor, th.Tensor, th.Tensor]:
        rows: th.Tensor = self.extract_features(obs)  # type: ignore[assignment]
        distribution = self._distribution(obs, rows)
        return self._values(obs, rows), distribution.log_prob(actions), distribution.entropy()

    def get_distribution(self, obs: PyTorchObs) -> CategoricalDistribution:
        return self._distribution(obs, self.extract_features(obs))  # type: ignore[arg-type]

    def predict_values(self, obs: PyTorchObs) -> th.Tensor:
        return self._values(obs, self.extract_features(obs))  # type: ignore[arg-type]
