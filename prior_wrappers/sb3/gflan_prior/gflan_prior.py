"""GFlan-Prior: PPO-Prior with the LLM itself as the policy (LoRA adapters), KL-regularised to the same LLM frozen."""

from __future__ import annotations

import io
import pathlib
from typing import Any, ClassVar

import torch as th
from stable_baselines3.common.policies import BasePolicy
from stable_baselines3.common.type_aliases import GymEnv, PyTorchObs, Schedule

from prior_wrappers.sb3.gflan_prior.llm import GFlanLLM
from prior_wrappers.sb3.gflan_prior.policies import LLMActorCriticPolicy
from prior_wrappers.sb3.ppo_prior import PPOPrior
from prior_wrappers.sb3.signature import _saved_data


def _same_device(a: th.device, b: th.device) -> bool:
    """``"cuda"`` is the LLM's ``cuda:0``; ``"cuda:1"`` is not."""
    return a.type == b.type and (a.index is None or b.index is None or a.index == b.index)


class GFlanPrior(PPOPrior):
    """GFlan-Prior: PPO over an LLM policy with LoRA adapters, plus α·KL(π ‖ p_LLM) to the same LLM frozen.

    Paper: Yan et al., "Efficient Reinforcement Learning with Large Language Model Priors", ICLR 2025
    (https://arxiv.org/abs/2410.07927), its variational method with an LLM policy (GLAM/TWOSOME style): π(a|s) is
    the adapted LLM's normalised likelihood of each slot's command given the prompt
    (:class:`LLMActorCriticPolicy`), V(s) a head on the prompt's last hidden state, and the loss PPO's plus
    α·KL(π(·|s) ‖ p_LLM(·|s)) over the valid slots, p_LLM the observation's ``prior_logprobs``. The prior is the
    same model with the adapters off (:class:`GFlanLLM`): one copy of the weights. LoRA starts at zero, so the
    first policy is the prior (KL = 0); α = 0 is plain LLM-PPO (TWOSOME). Everything else is :class:`PPOPrior`'s
    (and SB3's PPO's): one LLM forward per minibatch gives the PPO terms and the KL. The LLM stays in eval mode in
    PPO's epochs too (:meth:`LLMActorCriticPolicy.train`): no dropout of the base model, so with the default
    ``lora_dropout=0`` an epoch scores the rollout's log-probs exactly (importance ratio 1 at epoch 0).

    The env needs the wrappers' ``token_ids=llm.token_id_spec(...)`` observation. The zip holds the adapters and
    the value head (and their optimizer state), never the base weights, and the base's ``base_model_fingerprint``;
    :meth:`load` needs the base model (``llm=``) and refuses another one.

    The paper gives no hyperparameters for this variant: α = 0.1 as PPO-Prior, and the LoRA-PPO settings below
    (smaller rollouts and minibatches, lr 1e-4) are ours, sized for an LLM forward per minibatch.

    :param policy: ``"LLMPolicy"`` or an :class:`LLMActorCriticPolicy` subclass.
    :param env: a prior-wrapped env (``LLMPriorWrapper`` / ``VecLLMPrior``) with ``token_ids=``.
    :param llm: the :class:`GFlanLLM` whose model the wrapper's prior scores with (``llm.prior()``); required
        unless the model is being loaded.
    :param alpha: α, weight of KL(π ‖ p_LLM) (float or schedule of the remaining progress).
    :param learning_rate: learning rate of the adapters and the value head.
    :param n_steps: steps per environment per update.
    :param batch_size: minibatch size (one LLM forward and backward each).
    :param n_epochs: epochs over the rollout buffer per update.
    :param gamma: discount factor.
    :param device: ``"auto"``: the LLM's device; anything else must be it.
    :param prior_floor: as :class:`PPOPrior`, but ``0`` by default: the policy is the LLM itself and starts at
        the unfloored prior whatever the KL's target, so a floor would only change what the KL pulls towards.
    :param prior_trust: as :class:`PPOPrior`, but ``1.0`` by default: the LLM policy scores the prompt's token
        ids, not ``prior_logprobs``, so an episode "without the prior" would change only the KL's target.
    :param kwargs: the other :class:`PPOPrior` parameters (``gae_lambda``, ``clip_range``, ``ent_coef``,
        ``vf_coef``, ``max_grad_norm``, ``target_kl``, ``policy_kwargs``, ``seed``, ``verbose``, ...).
    """

    policy_aliases: ClassVar[dict[str, type[BasePolicy]]] = {"LLMPolicy": LLMActorCriticPolicy}

    def __init__(
        self,
        policy: str | type[LLMActorCriticPolicy],
        env: GymEnv | str,
        llm: GFlanLLM | None = None,
        alpha: float | Schedule = 0.1,
        learning_rate: float | Schedule = 1e-4,
        n_steps: int = 128,
        batch_size: int = 16,
        n_epochs: int = 4,
        gamma: float = 0.99,
        device: th.device | str = "auto",
        prior_floor: float = 0.0,
        prior_trust: float = 1.0,
        **kwargs: Any,
    ) -> None:
        self.llm = llm
        if llm is not None:
            if str(device) == "auto":
                device = llm.device
            elif not _same_device(th.device(device), llm.device):
                raise ValueError(
                    f"device={device!r} but the LLM is on {llm.device}: move the LLM, or leave device='auto'"
                )
            self.base_model_fingerprint = llm.fingerprint
        super().__init__(
            policy,  # type: ignore[arg-type]  # LLMActorCriticPolicy has the actor-critic interface PPO calls
            env,
            alpha=alpha,
            learning_rate=learning_rate,
            n_steps=n_steps,
            batch_size=batch_size,
            n_epochs=n_epochs,
            gamma=gamma,
            device=device,
            prior_floor=prior_floor,
            prior_trust=prior_trust,
            **kwargs,
        )
        if llm is not None:
            self._check_tokenizer(llm)

    def _check_tokenizer(self, llm: GFlanLLM) -> None:
        token_ids = (self.prior_signature or {}).get("token_ids")
        if token_ids is not None and token_ids.get("tokenizer") != llm.tokenizer_digest:
            raise ValueError(
                "the env's token ids come from another tokenizer than the LLM's: build the wrapper with "
                "token_ids=llm.token_id_spec(...)"
            )

    def _setup_model(self) -> None:
        if self.llm is None:
            raise ValueError("GFlanPrior needs llm=GFlanLLM(...): the model its policy adapts and its prior shares")
        saved = self.policy_kwargs
        self.policy_kwargs = {**saved, "llm": self.llm}  # handed to the policy, never saved with the zip's kwargs
        try:
            super()._setup_model()
        finally:
            self.policy_kwargs = saved

    def _excluded_save_params(self) -> list[str]:
        return [*super()._excluded_save_params(), "llm"]

    def evaluate_policy(
        self, obs: PyTorchObs, actions: th.Tensor, kl_grad: bool
    ) -> tuple[th.Tensor, th.Tensor, th.Tensor, th.Tensor]:
        """PPOPrior's minibatch evaluation from a single forward of the LLM (the KL reuses its logits)."""
        values, log_prob, entropy, log_pi = self.policy.evaluate_actions_and_log_pi(obs, actions)  # type: ignore[operator]
        return values, log_prob, entropy, log_pi if kl_grad else log_pi.detach()

    @classmethod
    def load(  # type: ignore[override]
        cls,
        path: str | pathlib.Path | io.BufferedIOBase,
        env: Any = None,
        device: Any = "auto",
        custom_objects: dict[str, Any] | None = None,
        print_system_info: bool = False,
        force_reset: bool = True,
        *,
        llm: GFlanLLM | str | pathlib.Path,
        **kwargs: Any,
    ) -> GFlanPrior:
        """Load a saved GFlan-Prior model onto its base LLM.

        :param path: the zip written by ``save``.
        :param env: the environment to run it on (checked as in :meth:`PPOPrior.load`); ``None``: predictions only.
        :param device: ``"auto"``: the LLM's device.
        :param custom_objects: objects to use instead of the saved ones (see SB3).
        :param print_system_info: print the system info of the saved model and of this one.
        :param force_reset: reset the env before the next training.
        :param llm: the base model: a :class:`GFlanLLM` without an adapter, or a path for
            :meth:`GFlanLLM.from_pretrained`.
        :param kwargs: attributes to change on the loaded model.
        :raises ValueError: when ``llm`` is not the base model the saved one was trained on (its fingerprint differs).
        """
        if not isinstance(llm, GFlanLLM):
            llm = GFlanLLM.from_pretrained(llm, device=None if str(device) == "auto" else device)
        data = _saved_data(path, custom_objects) or {}
        saved = data.get("base_model_fingerprint")
        if saved != llm.fingerprint:
            raise ValueError(
                f"the saved model's adapters were trained on the base model {saved!r}, but llm is {llm.fingerprint!r}: "
                "load the same base model (the same weights and tokenizer; float32 or bfloat16 both match)"
            )
        if str(device) == "auto":
            device = llm.device
        return super().load(
            path,
            env=env,
            device=device,
            custom_objects=custom_objects,
            print_system_info=print_system_info,
            force_reset=force_reset,
            llm=llm,
            **kwargs,
        )
