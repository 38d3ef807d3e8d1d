"""GFlan-Prior's update on the device in bf16: one PPO train step of the LoRA-adapted LLM policy (gradient
checkpointing on CUDA, as by default there) gives finite log-probabilities, moves the adapters, and scores the
rollout's log-probabilities again at the first epoch (importance ratio 1, to bf16 precision)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch
from gpu_support import Target, build

pytest.importorskip("peft", reason="needs the gflan extra")

from toy_text_env import CorridorTextEnv  # noqa: E402

from prior_wrappers import LLMPriorWrapper  # noqa: E402
from prior_wrappers.sb3 import GFlanLLM, GFlanPrior  # noqa: E402

# |log pi_epoch0 - log pi_rollout|: the same weights scoring the same states, in one minibatch rather than one state
# per rollout step (other matrix shapes, hence other bf16 roundings)
LOG_RATIO_TOLERANCE = 2e-2


def test_one_ppo_update_in_bf16_moves_the_adapters_from_ratio_one(target: Target, tokenizer: Any):
    llm = GFlanLLM(build(target, tokenizer, torch.bfloat16), tokenizer)
    env = LLMPriorWrapper(CorridorTextEnv(length=3, max_steps=6), llm.prior(), k=4, encoder=None, history=1,
                          token_ids=llm.token_id_spec(max_prompt_tokens=160, max_candidate_tokens=8))
    model = GFlanPrior("LLMPolicy", env, llm=llm, n_steps=8, batch_size=8, n_epochs=2, learning_rate=1e-3, seed=0,
                       device=target.device)
    assert model.policy.gradient_checkpointing == target.cuda
    adapters = {n: p.detach().clone() for n, p in model.policy.named_parameters() if "lora_" in n}
    assert adapters and all(p.dtype == torch.float32 for p in adapters.values())
    assert all(p.device.type == target.device for p in model.policy.parameters())

    minibatches: list[dict[str, torch.Tensor]] = []  # per minibatch of every epoch: the rollout's and the new log pi
    buffer_get, evaluate = model.rollout_buffer.get, model.evaluate_policy

    def get(batch_size=None):
        for data in buffer_get(batch_size):
            minibatches.append({"rollout": data.old_log_prob.detach().clone()})
            yield data

    def evaluate_policy(obs, actions, kl_grad):
        out = evaluate(obs, actions, kl_grad)
        minibatches[-1]["epoch"] = out[1].detach().clone()
        return out

    model.rollout_buffer.get = get
    model.evaluate_policy = evaluate_policy
    model.learn(8)

    assert model.num_timesteps == 8 and len(minibatches) == 2  # one rollout, one update: 2 epochs of 1 minibatch
    for batch in minibatches:
        assert torch.isfinite(batch["rollout"]).all() and torch.isfinite(batch["epoch"]).all()
        assert (batch["rollout"] <= 0).all()
    first = minibatches[0]
    assert (first["epoch"] - first["rollout"]).abs().max().item() <= LOG_RATIO_TOLERANCE  # ratio 1 at epoch 0
    moved = [n for n, p in model.policy.named_parameters() if n in adapters and not torch.equal(p, adapters[n])]
    assert any("lora_B" in n for n in moved)
    for key in ("train/kl_prior", "train/loss", "train/value_loss", "train/approx_kl"):
        assert np.isfinite(model.logger.name_to_value[key]), key
