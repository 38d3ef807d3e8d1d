"""GFlan-Prior (Yan et al., ICLR 2025): PPO over the LLM itself as the policy (LoRA adapters), KL to the same LLM
frozen.

Needs the ``gflan`` extra (``pip install prior-wrappers[gflan]``: peft).

- :class:`GFlanLLM`: the model and tokenizer shared by the wrapper's prior (``llm.prior()``, adapters off) and the
  policy; ``llm.token_id_spec(...)`` is the wrappers' ``token_ids=`` option the policy reads.
- :class:`LLMActorCriticPolicy` (alias ``"LLMPolicy"``): π(a_k|s) the adapted LLM's normalised likelihood of slot k.
- :class:`GFlanPrior`: :class:`~prior_wrappers.sb3.PPOPrior` with that policy; saves adapters and value head only.
"""

from prior_wrappers.sb3.gflan_prior.gflan_prior import GFlanPrior
from prior_wrappers.sb3.gflan_prior.llm import AdapterOffPrior, GFlanLLM
from prior_wrappers.sb3.gflan_prior.policies import LLMActorCriticPolicy

LLMPolicy = LLMActorCriticPolicy

__all__ = ["AdapterOffPrior", "GFlanLLM", "GFlanPrior", "LLMActorCriticPolicy", "LLMPolicy"]
