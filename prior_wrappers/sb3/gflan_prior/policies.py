"""The LLM policy of GFlan-Prior: the LoRA-adapted LLM's normalised likelihood of each slot's command.

``logits_k = log p_θ(a_k | prompt) / n_k`` (``n_k`` the slot's ``candidate_norms``: its token or word count, as the
wrapper normalises), so π(·|s) is a softmax over the valid slots (GLAM/TWOSOME). The log-likelihoods are computed
from the observation's token ids with the prior engine's packing (:mod:`prior_wrappers.priors.packing`): one row per
state, the prompt once, the commands packed behind it as a token trie. ``V(s)`` is an MLP on the last hidden state
of the prompt's last token. With the adapters at zero (LoRA's B initialised to 0) π is the prior exactly.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch as th
from gymnasium import spaces
from stable_baselines3.common.distributions import CategoricalDistribution
from stable_baselines3.common.policies import BasePolicy
from stable_baselines3.common.torch_layers import create_mlp
from stable_baselines3.common.type_aliases import PyTorchObs, Schedule
from torch import nn

from prior_wrappers.priors.attention import LayerWindows, attention_implementation, layer_masks, scoring_implementation
from prior_wrappers.priors.hf_compat import enable_activation_checkpointing
from prior_wrappers.priors.packing import additive_mask, candidate_nodes, candidate_token_logprobs, pack_rows, span_sums
from prior_wrappers.sb3.gflan_prior.llm import GFlanLLM
from prior_wrappers.sb3.masking import masked_fill, valid_slots
from prior_wrappers.token_ids import (
    CANDIDATE_CONTEXTS,
    CANDIDATE_IDS,
    CANDIDATE_LENS,
    CANDIDATE_NORMS,
    PROMPT_IDS,
    PROMPT_LEN,
    TOKEN_ID_KEYS,
)


def _ints(tensor: th.Tensor) -> np.ndarray:
    """An observation entry as integers (SB3's rollout buffers hold them as float32, exactly)."""
    tensor = tensor.detach().cpu()
    return (tensor.round() if tensor.is_floating_point() else tensor).long().numpy()


class LLMActorCriticPolicy(BasePolicy):
    """Actor-critic over candidate slots whose actor is a LoRA-adapted causal LM (GFlan-Prior's policy).

    Paper: Yan et al., "Efficient Reinforcement Learning with Large Language Model Priors", ICLR 2025 (GFlan-Prior);
    the LLM-as-policy form follows GLAM (Carta et al., 2023) and TWOSOME (Tan et al., 2024). Needs the wrappers'
    ``token_ids=`` observation (:mod:`prior_wrappers.token_ids`). Only the adapters and the value head are trained
    and saved; the LLM itself is passed in by :class:`~prior_wrappers.sb3.gflan_prior.GFlanPrior` (``llm=``), never
    pickled.

    :param observation_space: the prior wrapper's ``Dict`` space, with the token id keys.
    :param action_space: ``Discrete(K)``.
    :param lr_schedule: learning rate schedule.
    :param llm: the shared :class:`GFlanLLM`; the adapter is attached to it here.
    :param lora_rank: LoRA rank r (ours: 8).
    :param lora_alpha: LoRA scaling α (ours: 16, i.e. 2r).
    :param lora_dropout: dropout on the adapters' input in training mode (PPO's epochs). The default 0 keeps the
        LLM deterministic (see :meth:`train`): rollouts and PPO epochs compute the same log-probs, the importance
        ratio is exactly 1 at epoch 0. Above 0 it is not: the epochs see the adapters through dropout.
    :param target_modules: the modules that get adapters; ``None``: peft's default for the architecture (the
        attention's query and value projections for Llama).
    :param value_net_arch: hidden sizes of the value MLP on the prompt's last hidden state.
    :param gradient_checkpointing: recompute the LLM's activations in the backward pass (less memory); ``None``:
        on CUDA only.
    :param candidate_trie: pack commands that share their first tokens as a trie (as the prior engine does).
    :param optimizer_class: optimizer (default ``Adam``, SB3's).
    :param optimizer_kwargs: keyword arguments for the optimizer, excluding the learning rate.
    """

    def __init__(
        self,
        observation_space: spaces.Dict,
        action_space: spaces.Discrete,
        lr_schedule: Schedule,
        llm: GFlanLLM | None = None,
        lora_rank: int = 8,
        lora_alpha: float = 16.0,
        lora_dropout: float = 0.0,
        target_modules: list[str] | str | None = None,
        value_net_arch: list[int] | None = None,
        gradient_checkpointing: bool | None = None,
        candidate_trie: bool = True,
        optimizer_class: type[th.optim.Optimizer] = th.optim.Adam,
        optimizer_kwargs: dict[str, Any] | None = None,
        **unused_sde_kwargs: Any,  # use_sde: passed by SB3's PPO, meaningless here
    ) -> None:
        from peft import LoraConfig

        if llm is None:
            raise ValueError("LLMActorCriticPolicy needs llm=GFlanLLM(...) (GFlanPrior passes its own llm)")
        if not isinstance(action_space, spaces.Discrete):
            raise ValueError(f"candidate policies need a Discrete(K) action space, got {action_space}")
        if unused_sde_kwargs.get("use_sde"):
            raise ValueError("gSDE is for continuous actions; candidate slots are discrete")
        missing = [key for key in TOKEN_ID_KEYS if key not in observation_space.spaces]
        if missing:
            raise ValueError(
                f"the observation has no {missing} keys: the LLM policy scores token ids; build the wrapper with "
                "token_ids=llm.token_id_spec(max_prompt_tokens=..., max_candidate_tokens=...)"
            )
        super().__init__(
            observation_space,
            action_space,
            optimizer_class=optimizer_class,
            optimizer_kwargs=optimizer_kwargs,
            normalize_images=False,
        )
        self.lora_rank, self.lora_alpha, self.lora_dropout = lora_rank, lora_alpha, lora_dropout
        self.target_modules = target_modules
        self.value_net_arch = [256] if value_net_arch is None else list(value_net_arch)
        self.candidate_trie = candidate_trie
        self.llm = llm
        model = llm.model
        if gradient_checkpointing is None:
            gradient_checkpointing = llm.device.type == "cuda"
        self.gradient_checkpointing = gradient_checkpointing
        llm.attach_adapter(
            LoraConfig(
                r=lora_rank,
                lora_alpha=lora_alpha,  # type: ignore[arg-type]  # peft types it int; a float scales as well
                lora_dropout=lora_dropout,
                target_modules=target_modules,
                bias="none",
            )
        )
        if gradient_checkpointing:
            enable_activation_checkpointing(model)
        self.lm = model  # a submodule (so .to/.train reach it); state_dict keeps its adapters only
        self._trunk = getattr(model, model.base_model_prefix)
        self._lm_head = model.get_output_embeddings()
        self._softcap = getattr(model.config, "final_logit_softcapping", None)
        self._windows = LayerWindows.of(model.config)  # sliding-window layers: windowed in our own masks
        self._pad_id = int(llm.tokenizer.pad_token_id or 0)  # as the prior engine pads
        hidden = int(model.config.hidden_size)
        self.value_net = nn.Sequential(*create_mlp(hidden, 1, self.value_net_arch, nn.Tanh)).to(llm.device)
        for layer in self.value_net:
            if isinstance(layer, nn.Linear):
                self.init_weights(layer, gain=np.sqrt(2) if layer is not self.value_net[-1] else 1.0)
        self.action_dist = CategoricalDistribution(int(action_space.n))
        self._saved_keys = {name for name, p in self.named_parameters() if p.requires_grad}
        trainable = [p for p in self.parameters() if p.requires_grad]
        self.optimizer = self.optimizer_class(trainable, lr=lr_schedule(1), **self.optimizer_kwargs)  # type: ignore[call-arg]
        self.train(self.training)  # the LLM in eval mode from the start, whatever mode it came in

    # ------------------------------------------------------------------ training mode: the LLM never drops out
    def train(self, mode: bool = True) -> LLMActorCriticPolicy:
        """SB3's training mode (``set_training_mode``, on in PPO's epochs, off in rollouts) for the value head only.

        The LLM, base model and adapters, stays in eval mode: dropout in the base model's config (attention or
        hidden dropout) would make the epochs score other log-probs than the rollout did, biasing PPO's importance
        ratio, and GFlan keeps the LLM deterministic. In training mode two things differ: the adapters' own dropout
        is on when ``lora_dropout > 0`` (asked for explicitly), and with gradient checkpointing the decoder layers
        themselves (not their attention, MLP or dropout modules) are flagged as training, which transformers needs
        to recompute them in the backward pass. An architecture whose decoder layers apply dropout in their own
        forward (OPT, Falcon) would then drop out: give such a model zero dropout in its config, or no checkpointing.

        :param mode: SB3's training mode.
        """
        super().train(mode)
        self.lm.eval()
        if mode:
            from transformers.modeling_layers import GradientCheckpointingLayer

            for module in self.lm.modules():
                adapter_dropout = getattr(module, "lora_dropout", None)
                if self.lora_dropout > 0 and isinstance(adapter_dropout, nn.ModuleDict):
                    adapter_dropout.train()
                if isinstance(module, GradientCheckpointingLayer) and module.gradient_checkpointing:
                    module.training = True  # this module only: its children stay in eval mode
        return self

    # ------------------------------------------------------------------ saving: adapters and value head only
    def state_dict(  # type: ignore[override]
        self, *args: Any, destination: Any = None, prefix: str = "", keep_vars: bool = False
    ) -> dict[str, Any]:
        """The trainable tensors only (LoRA adapters, value head): never the base weights. Under the policy's own
        names: peft's ``get_peft_model_state_dict`` holds the same adapter tensors named from the ``PeftModel``
        without the adapter's name, so the saved zips of earlier releases would no longer load."""
        full = super().state_dict(*args, destination=destination, prefix=prefix, keep_vars=keep_vars)
        for key in [k for k in full if k.startswith(prefix) and k[len(prefix) :] not in self._saved_keys]:
            del full[key]
        return full

    def load_state_dict(self, state_dict: Mapping[str, Any], strict: bool = True, assign: bool = False) -> Any:
        """Load adapters and value head (the base weights stay the LLM's); ``strict``: exactly those keys."""
        unexpected = sorted(set(state_dict) - self._saved_keys)
        missing = sorted(self._saved_keys - set(state_dict))
        if strict and (unexpected or missing):
            raise RuntimeError(
                f"the saved policy does not match this one (missing {missing[:5]}, unexpected {unexpected[:5]}): "
                "another LoRA configuration or value head?"
            )
        result = super().load_state_dict(state_dict, strict=False, assign=assign)
        return type(result)([k for k in result.missing_keys if k in self._saved_keys], result.unexpected_keys)

    def _get_constructor_parameters(self) -> dict[str, Any]:
        data = super()._get_constructor_parameters()
        data.update(
            lora_rank=self.lora_rank,
            lora_alpha=self.lora_alpha,
            lora_dropout=self.lora_dropout,
            target_modules=self.target_modules,
            value_net_arch=self.value_net_arch,
            gradient_checkpointing=self.gradient_checkpointing,
            candidate_trie=self.candidate_trie,
        )
        return data

    # ------------------------------------------------------------------ the LLM's scores
    def _rows(self, obs: PyTorchObs, with_candidates: bool) -> list[tuple[list[int], int, list, list]]:
        prompt_ids, prompt_len = _ints(obs[PROMPT_IDS]), _ints(obs[PROMPT_LEN])[:, 0]  # type: ignore[index]
        valid = valid_slots(obs).cpu().numpy()  # type: ignore[arg-type]
        cand_ids, lens, contexts = (_ints(obs[key]) for key in (CANDIDATE_IDS, CANDIDATE_LENS, CANDIDATE_CONTEXTS))  # type: ignore[index]
        rows = []
        for b in range(len(prompt_ids)):
            prompt = prompt_ids[b, : prompt_len[b]].tolist()
            slots: np.ndarray | list[int] = np.flatnonzero(valid[b]) if with_candidates else []
            nodes, paths = candidate_nodes(
                [int(contexts[b, k]) for k in slots],
                [cand_ids[b, k, : lens[b, k]].tolist() for k in slots],
                self.candidate_trie,
            )
            rows.append((prompt, 0, nodes, paths))
        return rows

    def _run(self, obs: PyTorchObs, with_candidates: bool = True) -> tuple[th.Tensor | None, th.Tensor]:
        """``(logits (batch, K) or None, values (batch, 1))`` from one forward of the adapted LLM."""
        rows = self._rows(obs, with_candidates)
        packed = pack_rows(rows, self._pad_id)
        dev = self.llm.device
        dtype = next(self._trunk.parameters()).dtype
        # the packed rows' 4-D mask through eager/SDPA attention, never a flash kernel (which rejects it)
        positions = packed.position_ids
        mask = layer_masks(
            packed.allowed, positions, positions, self._windows, lambda v: additive_mask(v.to(dev), dtype)
        )
        with attention_implementation(self.llm.model, scoring_implementation(self.llm.model, "dense")):
            output = self._trunk(
                input_ids=packed.input_ids.to(dev),
                attention_mask=mask,
                position_ids=packed.position_ids.to(dev),
                use_cache=False,
            )
        hidden = output.last_hidden_state
        last = hidden[th.arange(len(rows), device=dev), th.tensor(packed.prompt_cols, device=dev) - 1]
        values = self.value_net(last.float())
        if not with_candidates:
            return None, values
        valid = valid_slots(obs)  # type: ignore[arg-type]
        sums = span_sums(
            candidate_token_logprobs(hidden, self._lm_head, packed, self._softcap),
            [span for spans in packed.spans for span in spans],
        )
        scores = th.zeros(valid.shape, dtype=sums.dtype, device=dev)
        scores[valid] = sums  # row-major: the rows' valid slots in order, as _rows packed them
        logits = scores / obs[CANDIDATE_NORMS].to(dev, sums.dtype).clamp(min=1.0)  # type: ignore[index]
        return masked_fill(logits, valid), values

    def candidate_logprobs(self, obs: PyTorchObs) -> th.Tensor:
        """log π(a_k|s) of every slot, ``(batch, K)`` (:data:`~prior_wrappers.sb3.masking.MASKED_VALUE` where empty)."""
        return self.get_distribution(obs).distribution.logits

    # ------------------------------------------------------------------ SB3's policy interface
    def _distribution(self, logits: th.Tensor) -> CategoricalDistribution:
        return self.action_dist.proba_distribution(action_logits=logits)

    def forward(self, obs: PyTorchObs, deterministic: bool = False) -> tuple[th.Tensor, th.Tensor, th.Tensor]:
        logits, values = self._run(obs)
        distribution = self._distribution(logits)  # type: ignore[arg-type]
        actions = distribution.get_actions(deterministic=deterministic)
        return actions, values, distribution.log_prob(actions)

    def evaluate_actions_and_log_pi(
        self, obs: PyTorchObs, actions: th.Tensor
    ) -> tuple[th.Tensor, th.Tensor, th.Tensor, th.Tensor]:
        """``(values, log π(a|s), entropy, log π(·|s))`` from one forward (PPO's loss and the KL share it)."""
        logits, values = self._run(obs)
        distribution = self._distribution(logits)  # type: ignore[arg-type]
        return values, distribution.log_prob(actions), distribution.entropy(), distribution.distribution.logits

    def evaluate_actions(self, obs: PyTorchObs, actions: th.Tensor) -> tuple[th.Tensor, th.Tensor, th.Tensor]:
        return self.evaluate_actions_and_log_pi(obs, actions)[:3]

    def get_distribution(self, obs: PyTorchObs) -> CategoricalDistribution:
        return self._distribution(self._run(obs)[0])  # type: ignore[arg-type]

    def predict_values(self, obs: PyTorchObs) -> th.Tensor:
        return self._run(obs, with_candidates=False)[1]

    def _predict(self, observation: PyTorchObs, deterministic: bool = False) -> th.Tensor:
        return self.get_distribution(observation).get_actions(deterministic=deterministic)
