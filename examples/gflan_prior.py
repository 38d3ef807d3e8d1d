"""GFlan-Prior on text Overcooked (Tomato salad): PPO over the embedded SmolLM2 itself, LoRA adapters on its
attention, with α·KL(π ‖ p_LLM) to the same model frozen (its adapters switched off), on the CPU.

π(a|s) is SmolLM2's normalised likelihood of each admissible command given the prompt, so the first policy is
the prior (KL = 0); PPO then moves the adapters and the KL grows. One copy of the weights serves both roles.
``--alpha 0`` is plain LLM-PPO (TWOSOME-style).

    python examples/gflan_prior.py [--updates 3] [--n-steps 16] [--alpha 0.1] [--fast]

Prints, per PPO update, the episodes the rollout finished and their mean return, the rollout's mean reward per
step, and KL(π ‖ p_LLM) on the rollout's states (of the policy that collected it: 0 for the first) and during the
update (:class:`~prior_wrappers.sb3.UpdateLog`). ``--fast`` swaps SmolLM2 for a tiny random-weight Llama with
SmolLM2's tokenizer (seconds; its numbers show the mechanics only).
"""

from __future__ import annotations

import argparse

import gymnasium as gym
import torch

import envs  # noqa: F401  (registers the text environments)
from prior_wrappers import LLMPriorWrapper, PromptTemplate
from prior_wrappers.sb3 import GFlanLLM, GFlanPrior, UpdateLog


def tiny_llm() -> GFlanLLM:
    """--fast: a 2-layer random-weight Llama with SmolLM2's tokenizer."""
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from prior_wrappers.priors.embedded import embedded_gguf_path, ensure_converted

    tokenizer = AutoTokenizer.from_pretrained(str(ensure_converted(embedded_gguf_path())), local_files_only=True)
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                         pad_token_id=tokenizer.pad_token_id)
    return GFlanLLM(LlamaForCausalLM(config).eval(), tokenizer)


def main(argv: list[str] | None = None) -> float:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--updates", type=int, default=3, help="PPO updates (rollouts of --n-steps steps)")
    parser.add_argument("--n-steps", type=int, default=16, help="steps per rollout")
    parser.add_argument("--alpha", type=float, default=0.1, help="weight of KL(pi || p_LLM); 0: plain LLM-PPO")
    parser.add_argument("--lr", type=float, default=1e-3, help="learning rate of the adapters and the value head")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--fast", action="store_true", help="a tiny random-weight Llama instead of SmolLM2")
    args = parser.parse_args(argv)
    torch.manual_seed(args.seed)

    llm = tiny_llm() if args.fast else GFlanLLM.default()  # fp32 on the CPU, bf16 on CUDA
    # history=0 and no example episode: ~90-token prompts, so that an update takes seconds, not minutes, on a CPU
    env = LLMPriorWrapper(gym.make("prior_wrappers/OvercookedTomato-v0"), llm.prior(), k=8, encoder=None,
                          history=0, prompt=PromptTemplate(use_example=False),
                          token_ids=llm.token_id_spec(max_prompt_tokens=160, max_candidate_tokens=12))
    model = GFlanPrior("LLMPolicy", env, llm=llm, alpha=args.alpha, n_steps=args.n_steps, batch_size=8,
                       n_epochs=1, learning_rate=args.lr, gamma=0.95, seed=args.seed,
                       policy_kwargs=dict(value_net_arch=[64]))
    log = UpdateLog(kl_batch_size=8, verbose=1)
    model.learn(args.updates * args.n_steps, callback=log)
    first, last = log.rows[0], log.rows[-1]
    print(f"GFlan-Prior (alpha={args.alpha}{', tiny random LLM' if args.fast else ', SmolLM2-135M'}) over "
          f"{len(log.rows)} updates: reward/step {first['reward_per_step']:.4f} -> {last['reward_per_step']:.4f}, "
          f"KL on the rollout {first['kl_rollout']:.5f} -> {last['kl_rollout']:.5f} "
          f"(during the last update {last['kl_update']:.5f})")
    return last["kl_update"]


if __name__ == "__main__":
    main()
