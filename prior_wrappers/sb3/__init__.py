"""Stable-Baselines3 algorithms with an LLM action prior (Yan et al., ICLR 2025), laid out like sb3-contrib.

- :class:`DQNPrior`: acts by sampling p_LLM(a|s)·exp(Q(s,a)/α) over the candidate slots.
- :class:`CQLPrior`: offline, conservative Q-learning over the prior's candidates (:meth:`CQLPrior.learn_offline`).
- :class:`PPOPrior`: PPO + α·KL(π ‖ p_LLM).
- :class:`GFlanPrior`: PPO-Prior with the LLM itself as the policy (LoRA adapters; the ``gflan`` extra).

All read ``prior_logprobs`` / ``action_mask`` (and the optional feature keys) from the observation of
``LLMPriorWrapper`` / ``VecLLMPrior``; with ``UniformPrior`` in the wrapper they are the plain baselines. Which
slots each may take (``prior_top_k``, ``prior_mass``, ``prior_min_logprob``, ``prior_floor``, CQL-Prior's
``behavior_threshold``) is one :class:`CandidateSupport` (``model.support``, :mod:`prior_wrappers.sb3.support`).
"""

from prior_wrappers.sb3.collection import (
    CommandPolicy,
    RandomCandidatePolicy,
    collect_dataset,
    collect_expert_mixture,
)
from prior_wrappers.sb3.cql_prior import CQLPrior, cql_penalty
from prior_wrappers.sb3.dqn_prior import DQNPrior
from prior_wrappers.sb3.gflan_prior import GFlanLLM, GFlanPrior, LLMActorCriticPolicy
from prior_wrappers.sb3.offline_dataset import OfflineDataset, transition_nbytes
from prior_wrappers.sb3.policies import (
    CandidateActorCriticPolicy,
    CandidateInputs,
    CandidateQNetwork,
    DQNPriorPolicy,
)
from prior_wrappers.sb3.ppo_prior import PPOPrior, kl_to_prior
from prior_wrappers.sb3.support import CandidateSupport
from prior_wrappers.sb3.update_log import UpdateLog

# Policy aliases: the string "CandidatePolicy" names DQNPriorPolicy for DQNPrior/CQLPrior (their
# ``policy_aliases``) and CandidateActorCriticPolicy for PPOPrior; "LLMPolicy" names LLMActorCriticPolicy for
# GFlanPrior.

__all__ = [
    "CQLPrior",
    "CandidateActorCriticPolicy",
    "CandidateInputs",
    "CandidateQNetwork",
    "CandidateSupport",
    "CommandPolicy",
    "DQNPrior",
    "DQNPriorPolicy",
    "GFlanLLM",
    "GFlanPrior",
    "LLMActorCriticPolicy",
    "OfflineDataset",
    "PPOPrior",
    "RandomCandidatePolicy",
    "UpdateLog",
    "collect_dataset",
    "collect_expert_mixture",
    "cql_penalty",
    "kl_to_prior",
    "transition_nbytes",
]
