"""GFlan-Prior on a tiny random-weight Llama (SmolLM2's tokenizer): the LLM policy is the prior at step 0, scores
like the engine, trains only its adapters and value head, reduces to LLM-PPO at α = 0 and saves adapters only."""

from __future__ import annotations

import copy
import io
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch as th

pytest.importorskip("peft", reason="needs the gflan extra")

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/toy_text_env.py

from stable_baselines3 import PPO  # noqa: E402
from toy_text_env import CorridorTextEnv  # noqa: E402

from prior_wrappers import HFPrior, LLMPriorWrapper  # noqa: E402
from prior_wrappers.sb3 import GFlanLLM, GFlanPrior, LLMActorCriticPolicy  # noqa: E402
from prior_wrappers.spaces import PRIOR_LOGPROBS  # noqa: E402


def _tiny_llama(tokenizer, seed: int, **overrides):
    from transformers import LlamaConfig, LlamaForCausalLM

    th.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=256, pad_token_id=tokenizer.pad_token_id, **overrides,
    )
    return LlamaForCausalLM(config).eval()


@pytest.fixture(scope="module")
def base(smollm_tokenizer):
    """The base weights; every test adapts its own deep copy (adapters are injected in place)."""
    return _tiny_llama(smollm_tokenizer, seed=0)


def make_llm(base, tokenizer) -> GFlanLLM:
    return GFlanLLM(copy.deepcopy(base), tokenizer)


def make_env(llm: GFlanLLM, normalization: str = "token", max_prompt_tokens: int = 160) -> LLMPriorWrapper:
    return LLMPriorWrapper(CorridorTextEnv(length=3, max_steps=6), llm.prior(), k=4, encoder=None, history=1,
                           normalization=normalization, token_ids=llm.token_id_spec(max_prompt_tokens, 8))


def observations(env: LLMPriorWrapper, n: int = 6) -> dict[str, np.ndarray]:
    """States with 3 and 4 valid slots (odd rooms add a command), stacked."""
    obs, _ = env.reset(seed=0)
    seen = [obs]
    for action in [0, 1, 0, 2, 0][: n - 1]:
        obs, *_ = env.step(action)
        seen.append(obs)
    return {key: np.stack([o[key] for o in seen]) for key in seen[0]}


def logprobs(model: GFlanPrior, obs: dict[str, np.ndarray]) -> th.Tensor:
    with th.no_grad():
        return model.policy.candidate_logprobs(model.policy.obs_to_tensor(obs)[0])


@pytest.mark.parametrize("normalization", ["token", "word"])
def test_the_initial_policy_is_the_prior(base, smollm_tokenizer, normalization):
    llm = make_llm(base, smollm_tokenizer)
    env = make_env(llm, normalization)
    model = GFlanPrior("LLMPolicy", env, llm=llm, seed=0)
    obs = observations(env)
    valid = obs["action_mask"].astype(bool)
    assert {3, 4} <= set(valid.sum(1))
    log_pi = logprobs(model, obs).numpy()
    np.testing.assert_allclose(log_pi[valid], obs[PRIOR_LOGPROBS][valid], atol=1e-5)
    assert float(model.kl_prior(model.policy.obs_to_tensor(obs)[0]).detach().abs().max()) < 1e-5


def test_the_policy_scores_like_the_engine_and_the_prior_stays_the_base(base, smollm_tokenizer):
    """With non-zero adapters, the policy's log-probs are a plain HFPrior's over the adapted model (same packing
    maths), while the wrapper's prior (adapters off) still gives the base model's."""
    llm = make_llm(base, smollm_tokenizer)
    env = make_env(llm)
    model = GFlanPrior("LLMPolicy", env, llm=llm, seed=0)
    obs = observations(env)
    randomize_adapters(model.policy)
    adapted = HFPrior(llm.model, smollm_tokenizer, prefix_cache=False)  # adapters on: the policy's model
    state = env.reset(seed=0)
    info = state[1]
    engine = adapted.score([info["prior_prompt"]], [info["prior_candidates"]]).logprobs[0]
    n = len(info["prior_candidates"])
    log_pi = logprobs(model, {k: v[:1] for k, v in obs.items()}).numpy()[0, :n]
    np.testing.assert_allclose(log_pi, engine, atol=1e-5)
    assert np.abs(log_pi - obs[PRIOR_LOGPROBS][0, :n]).max() > 1e-3  # the adapters changed the policy...
    np.testing.assert_allclose(state[0][PRIOR_LOGPROBS], obs[PRIOR_LOGPROBS][0], atol=1e-6)  # ...not the prior
    plain = HFPrior(base, smollm_tokenizer).score([info["prior_prompt"]], [info["prior_candidates"]]).logprobs[0]
    np.testing.assert_allclose(state[0][PRIOR_LOGPROBS][:n], plain, atol=1e-5)


def randomize_adapters(policy: LLMActorCriticPolicy, seed: int = 1) -> None:
    """Non-zero LoRA weights, so that the adapters change the policy."""
    gen = th.Generator().manual_seed(seed)
    with th.no_grad():
        for name, p in policy.named_parameters():
            if "lora_" in name:
                p.copy_(th.randn(p.shape, generator=gen) * 0.5)


def test_a_truncated_prompt_is_scored_from_position_zero(base, smollm_tokenizer):
    """A prompt over max_prompt_tokens keeps its last tokens (warned once), and the policy scores each command
    after them as a plain forward of the adapted model over ``truncated prompt + command`` does (positions from 0)."""
    llm = make_llm(base, smollm_tokenizer)
    env = make_env(llm, max_prompt_tokens=24)
    model = GFlanPrior("LLMPolicy", env, llm=llm, seed=0)
    randomize_adapters(model.policy)
    with pytest.warns(UserWarning, match="max_prompt_tokens=24") as caught:
        obs = observations(env)
    assert len([w for w in caught if "max_prompt_tokens" in str(w.message)]) == 1
    assert (obs["prompt_len"][:, 0] == 24).all()
    log_pi = logprobs(model, obs)
    expected = th.full_like(log_pi, -th.inf)
    for b, mask in enumerate(obs["action_mask"].astype(bool)):
        prompt = obs["prompt_ids"][b, :24].tolist()
        scores = []
        for k in np.flatnonzero(mask):
            ctx, n = int(obs["candidate_contexts"][b, k]), int(obs["candidate_lens"][b, k])
            command = obs["candidate_ids"][b, k, :n].tolist()
            with th.no_grad():
                logits = llm.model(input_ids=th.tensor([prompt[:ctx] + command])).logits[0].log_softmax(-1)
            total = sum(logits[ctx - 1 + i, token] for i, token in enumerate(command))
            scores.append(total / float(obs["candidate_norms"][b, k]))
        expected[b, th.as_tensor(np.flatnonzero(mask))] = th.stack(scores).log_softmax(0)
    valid = th.as_tensor(obs["action_mask"].astype(bool))
    th.testing.assert_close(log_pi[valid], expected[valid], atol=1e-5, rtol=0)


@pytest.mark.parametrize("checkpointing", [False, True])
def test_the_llm_never_drops_out_so_ppo_ratios_start_at_one(smollm_tokenizer, checkpointing):
    """SB3 puts the policy in training mode for PPO's epochs and in eval mode for rollouts: a base model with
    dropout in its config still gives the rollout's log-probs in the epochs (ratio exactly 1 at epoch 0), while
    gradient checkpointing still recomputes the layers in the backward pass and the value head follows SB3's mode."""
    llm = GFlanLLM(_tiny_llama(smollm_tokenizer, seed=0, attention_dropout=0.5), smollm_tokenizer)
    env = make_env(llm)
    model = GFlanPrior("LLMPolicy", env, llm=llm, seed=0, policy_kwargs=dict(gradient_checkpointing=checkpointing))
    policy = model.policy
    randomize_adapters(policy)
    obs = policy.obs_to_tensor(observations(env))[0]
    actions = th.zeros(len(obs["action_mask"]), dtype=th.long)
    policy.set_training_mode(False)
    with th.no_grad():
        rollout_values, rollout, _ = policy.evaluate_actions(obs, actions)
    policy.set_training_mode(True)
    with llm.adapter_off():  # the prior scoring in between leaves the modes as they were
        pass
    attention = next(m for name, m in llm.model.named_modules() if name.endswith("layers.0.self_attn"))
    calls = []
    hook = attention.register_forward_hook(lambda *_: calls.append(1))
    values, log_prob, _ = policy.evaluate_actions(obs, actions)
    (values.sum() + log_prob.sum()).backward()
    hook.remove()
    assert th.equal(log_prob.detach(), rollout)
    assert th.equal(policy.evaluate_actions(obs, actions)[1].detach(), rollout)
    th.testing.assert_close(values.detach(), rollout_values, atol=0, rtol=0)
    assert len(calls) == (2 if checkpointing else 1)  # recomputed in the backward pass under checkpointing
    assert policy.value_net.training and not policy.lm.training


def test_adapter_dropout_is_the_only_dropout_when_asked(smollm_tokenizer):
    """``lora_dropout > 0``: in training mode the adapters' dropout is on (the ratio at epoch 0 is then not exactly
    1), the base model's is not; in eval mode neither."""
    llm = GFlanLLM(_tiny_llama(smollm_tokenizer, seed=0, attention_dropout=0.5), smollm_tokenizer)
    model = GFlanPrior("LLMPolicy", make_env(llm), llm=llm, seed=0, policy_kwargs=dict(lora_dropout=0.1))
    modules = dict(llm.model.named_modules())
    adapter_dropout = [m for name, m in modules.items() if "lora_dropout." in name]
    assert adapter_dropout and all(isinstance(m, th.nn.Dropout) for m in adapter_dropout)
    model.policy.set_training_mode(True)
    assert all(m.training for m in adapter_dropout)
    assert not any(m.training for name, m in modules.items() if "lora_dropout" not in name)  # no checkpointing on CPU
    model.policy.set_training_mode(False)
    assert not any(m.training for m in modules.values())


def test_gradients_reach_only_the_adapters_and_the_value_head(base, smollm_tokenizer):
    llm = make_llm(base, smollm_tokenizer)
    model = GFlanPrior("LLMPolicy", make_env(llm), llm=llm, seed=0)
    obs = model.policy.obs_to_tensor(observations(model.env.envs[0]))[0]
    values, log_prob, entropy, log_pi = model.evaluate_policy(obs, th.zeros(len(obs["action_mask"]), dtype=th.long), kl_grad=True)
    (values.sum() + log_prob.sum() + entropy.sum() + log_pi[obs["action_mask"] > 0].sum()).backward()
    with_grad = {name for name, p in model.policy.named_parameters() if p.grad is not None}
    assert with_grad and all("lora_" in name or name.startswith("value_net") for name in with_grad)
    assert any("lora_B" in name and model.policy.get_parameter(name).grad.abs().sum() > 0 for name in with_grad)
    assert all(not p.requires_grad for name, p in model.policy.named_parameters() if "lora_" not in name
               and not name.startswith("value_net"))
    optimised = {id(p) for group in model.policy.optimizer.param_groups for p in group["params"]}
    assert optimised == {id(model.policy.get_parameter(name)) for name in with_grad | {
        n for n, p in model.policy.named_parameters() if p.requires_grad}}


def lora_weights(policy: LLMActorCriticPolicy) -> dict[str, th.Tensor]:
    return {k: v.clone() for k, v in policy.state_dict().items()}


def test_alpha_zero_is_plain_llm_ppo(base, smollm_tokenizer):
    """α = 0: exactly SB3's PPO over the same LLM policy (TWOSOME-style LLM-PPO); α > 0 changes the updates."""
    settings = dict(n_steps=12, batch_size=6, n_epochs=2, learning_rate=1e-2, gamma=0.99, seed=0, device="cpu")
    weights = {}
    for name, alpha in [("ppo", None), ("alpha0", 0.0), ("alpha1", 1.0)]:
        llm = make_llm(base, smollm_tokenizer)
        env = make_env(llm)
        if alpha is None:
            model = PPO(LLMActorCriticPolicy, env, policy_kwargs=dict(llm=llm), **settings)
        else:
            model = GFlanPrior("LLMPolicy", env, llm=llm, alpha=alpha, **settings)
        model.learn(12)
        weights[name] = lora_weights(model.policy)
    for key, value in weights["ppo"].items():
        assert th.equal(value, weights["alpha0"][key]), key
    assert any(not th.equal(v, weights["alpha1"][k]) for k, v in weights["ppo"].items())
    assert any("lora_B" in k and v.abs().sum() > 0 for k, v in weights["alpha0"].items())  # it did learn


def test_save_holds_adapters_only_and_load_gives_identical_probabilities(base, smollm_tokenizer, tmp_path):
    llm = make_llm(base, smollm_tokenizer)
    env = make_env(llm)
    model = GFlanPrior("LLMPolicy", env, llm=llm, n_steps=12, batch_size=6, n_epochs=2, learning_rate=1e-2, seed=0)
    model.learn(12)
    path = tmp_path / "gflan.zip"
    model.save(path)
    with zipfile.ZipFile(path) as archive:
        saved = th.load(io.BytesIO(archive.read("policy.pth")), weights_only=True)
    assert saved and all("lora_" in key or key.startswith("value_net") for key in saved)
    base_bytes = sum(p.numel() * p.element_size() for p in base.parameters())
    assert path.stat().st_size < base_bytes / 10

    obs = observations(env)
    expected = logprobs(model, obs)
    loaded = GFlanPrior.load(path, env=make_env(fresh := make_llm(base, smollm_tokenizer)), llm=fresh)
    assert th.equal(logprobs(loaded, obs), expected)
    assert loaded.alpha == model.alpha and loaded.n_steps == 12

    # another base model: refused, naming the fingerprint; the same weights in bfloat16: accepted
    other = GFlanLLM(_tiny_llama(smollm_tokenizer, seed=1), smollm_tokenizer)
    with pytest.raises(ValueError, match="trained on the base model"):
        GFlanPrior.load(path, llm=other)
    assert GFlanLLM(copy.deepcopy(base).to(th.bfloat16), smollm_tokenizer).fingerprint == llm.fingerprint


def test_misuse_gets_clear_errors(base, smollm_tokenizer):
    llm = make_llm(base, smollm_tokenizer)
    plain = LLMPriorWrapper(CorridorTextEnv(), llm.prior(), k=4, encoder=None)
    with pytest.raises(ValueError, match="token_ids=llm.token_id_spec"):
        GFlanPrior("LLMPolicy", plain, llm=llm)
    env = make_env(llm)
    with pytest.raises(ValueError, match="needs llm="):
        GFlanPrior("LLMPolicy", env)
    GFlanPrior("LLMPolicy", env, llm=llm)
    with pytest.raises(RuntimeError, match="already carries the LoRA adapter"):
        GFlanPrior("LLMPolicy", env, llm=llm)


def test_it_trains_on_a_vector_env_with_one_prior_call_per_step(base, smollm_tokenizer):
    from prior_wrappers import VecLLMPrior, make_text_vec_env

    llm = make_llm(base, smollm_tokenizer)
    venv = make_text_vec_env(lambda: CorridorTextEnv(length=3, max_steps=6), 2, seed=0)
    env = VecLLMPrior(venv, llm.prior(), k=4, encoder=None, history=0, token_ids=llm.token_id_spec(160, 8))
    model = GFlanPrior("LLMPolicy", env, llm=llm, n_steps=4, batch_size=8, n_epochs=1, seed=0)
    model.learn(8)
    assert model.num_timesteps == 8 and env.prior_stats["calls"] == 4 + 1  # one batched call per vector step
    assert model.prior_signature["token_ids"]["tokenizer"] == llm.tokenizer_digest


def test_gradient_checkpointing_gives_the_same_gradients(base, smollm_tokenizer):
    grads = []
    for checkpointing in (False, True):
        llm = make_llm(base, smollm_tokenizer)
        model = GFlanPrior("LLMPolicy", make_env(llm), llm=llm, seed=0,
                           policy_kwargs=dict(gradient_checkpointing=checkpointing))
        on = getattr(llm.model, "is_activation_checkpointing", None)  # transformers < 5.x: is_gradient_checkpointing
        assert (on if on is not None else llm.model.is_gradient_checkpointing) == checkpointing
        model.policy.set_training_mode(True)
        obs = model.policy.obs_to_tensor(observations(model.env.envs[0]))[0]
        values, log_prob, _, _ = model.evaluate_policy(obs, th.zeros(len(obs["action_mask"]), dtype=th.long), True)
        (values.sum() + log_prob.sum()).backward()
        grads.append({n: p.grad.clone() for n, p in model.policy.named_parameters() if p.grad is not None})
    assert grads[0].keys() == grads[1].keys()
    for name, grad in grads[0].items():
        th.testing.assert_close(grads[1][name], grad, rtol=1e-5, atol=1e-7, msg=name)


def test_a_bfloat16_llm_trains_with_float32_adapters(base, smollm_tokenizer):
    llm = GFlanLLM(copy.deepcopy(base).to(th.bfloat16), smollm_tokenizer)
    env = make_env(llm)
    model = GFlanPrior("LLMPolicy", env, llm=llm, n_steps=6, batch_size=6, n_epochs=1, seed=0)
    assert all(p.dtype == th.float32 for p in model.policy.parameters() if p.requires_grad)
    obs = observations(env)
    valid = obs["action_mask"].astype(bool)
    np.testing.assert_allclose(logprobs(model, obs).numpy()[valid], obs[PRIOR_LOGPROBS][valid], atol=2e-2)
    model.learn(6)
    assert np.isfinite(model.logger.name_to_value["train/kl_prior"])
