"""LoRA adaptation of the LLM prior to demonstrations (prior_wrappers.priors.adaptation), on tiny random-weight Llamas."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
import textwrap
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

pytest.importorskip("peft")

from prior_wrappers.demonstrations import Demonstration, Demonstrations  # noqa: E402
from prior_wrappers.priors.adaptation import (  # noqa: E402
    ADAPTER_INFO_FILE,
    AdaptedPrior,
    LoraSettings,
    _batch_loss,
    _examples,
    base_identity,
    fit_lora,
    load_adapter,
    save_adapter,
)
from prior_wrappers.priors.hf import HFPrior, naive_candidate_logprob  # noqa: E402

ADMISSIBLE = ("go north", "take apple", "open fridge", "eat apple", "examine counter")
DEMO = Demonstration(
    task="eat something",
    steps=(
        ("You are in a kitchen. There is a fridge.", "open fridge"),
        ("The fridge is open. Inside is an apple.", "take apple"),
        ("You are holding an apple.", "eat apple"),
    ),
    source="kitchen-1",
    admissible=(ADMISSIBLE,) * 3,
)
FAST = dict(r=8, epochs=6, lr=3e-2, batch_size=1, progress=False)  # a few dozen steps: seconds on a tiny model


def tiny_model(tokenizer, seed: int = 0, hidden: int = 32):
    """A 2-layer random Llama. initializer_range 0.2: the output layer (frozen, not a LoRA target) is large enough
    for adapters to move the candidates' probabilities within a few steps."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=hidden, intermediate_size=2 * hidden, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512, initializer_range=0.2,
        pad_token_id=tokenizer.pad_token_id,
    )
    return LlamaForCausalLM(config).eval()


@pytest.fixture(scope="module")
def base_model(smollm_tokenizer):
    return tiny_model(smollm_tokenizer)


@pytest.fixture()
def base(base_model, smollm_tokenizer) -> HFPrior:
    """A fresh prior over the module's tiny model (no prefix cache: repeated scores are bitwise equal)."""
    return HFPrior(base_model, smollm_tokenizer, prefix_cache=False)


@pytest.fixture(scope="module")
def adapted(base_model, smollm_tokenizer) -> AdaptedPrior:
    return fit_lora(HFPrior(base_model, smollm_tokenizer), [DEMO], **FAST)


def points():
    return Demonstrations([DEMO]).decision_points()


def expert_probs(prior: HFPrior) -> np.ndarray:
    pts = points()
    scores = prior.score([p.prompt for p in pts], [list(p.admissible) for p in pts])
    return np.array([np.exp(lp[list(p.admissible).index(p.command)]) for p, lp in zip(pts, scores.logprobs)])


def lora_weights(prior: AdaptedPrior) -> dict[str, torch.Tensor]:
    from peft import get_peft_model_state_dict

    return {k: v.clone() for k, v in get_peft_model_state_dict(prior.peft_model).items()}


# ---------------------------------------------------------------------------------------------------- training
def test_training_raises_the_expert_probability_on_training_states(base, adapted):
    before, after = expert_probs(base), expert_probs(adapted)
    assert np.all(after > before + 0.05), (before, after)


def test_the_given_prior_is_left_unchanged(base_model, smollm_tokenizer):
    prior = HFPrior(base_model, smollm_tokenizer, prefix_cache=False)
    pts = points()
    before = prior.score([p.prompt for p in pts], [list(p.admissible) for p in pts])
    weights = {k: v.clone() for k, v in base_model.state_dict().items()}
    fingerprint = prior.fingerprint
    adapted = fit_lora(prior, [DEMO], **FAST)
    after = prior.score([p.prompt for p in pts], [list(p.admissible) for p in pts])
    for b, a in zip(before.raw_logprobs, after.raw_logprobs):
        np.testing.assert_array_equal(b, a)
    assert adapted.model is not base_model
    assert not any("lora_" in name for name, _ in base_model.named_parameters())
    assert all(torch.equal(weights[k], v) for k, v in base_model.state_dict().items())
    assert HFPrior(base_model, smollm_tokenizer).fingerprint == fingerprint


def test_engine_scores_of_the_adapted_model_equal_a_naive_forward(adapted, base):
    pts = points()
    scores = adapted.score([p.prompt for p in pts], [list(p.admissible) for p in pts])
    merged = copy.deepcopy(adapted.peft_model).merge_and_unload()  # the adapters folded into plain weights
    base_scores = base.score([p.prompt for p in pts], [list(p.admissible) for p in pts])
    for p, raw, n, base_raw in zip(pts, scores.raw_logprobs, scores.num_tokens, base_scores.raw_logprobs):
        for j, c in enumerate(p.admissible):
            ref, ref_n = naive_candidate_logprob(adapted.model, adapted.tokenizer, p.prompt, c)
            folded, _ = naive_candidate_logprob(merged, adapted.tokenizer, p.prompt, c)
            assert n[j] == ref_n
            assert raw[j] == pytest.approx(ref, abs=1e-4)
            assert raw[j] == pytest.approx(folded, abs=1e-3)
        assert np.max(np.abs(raw - base_raw)) > 0.1  # the adapters are on


def test_loss_is_the_engines_score_of_the_expert_command(base_model, smollm_tokenizer):
    """The training loss sums over exactly the tokens the engine scores: with a separator that merges across the
    boundary, and for a prompt the context window cuts from the left."""
    from prior_wrappers.demonstrations import DecisionPoint

    long_prompt = "You see " + ", ".join(f"a box number {i}" for i in range(60)) + ". What now?"
    pts = [
        DecisionPoint("Observation: the door is open.\nAction: ", ADMISSIBLE, "open fridge"),  # ends with a space
        DecisionPoint(long_prompt, ADMISSIBLE, "examine counter"),
    ]
    for separator in (" ", ""):
        prior = HFPrior(base_model, smollm_tokenizer, separator=separator, candidate_suffix="\n", max_length=128,
                        prefix_cache=False)
        with pytest.warns(UserWarning, match="context window"):
            examples = _examples(prior, pts)
        for point, example in zip(pts, examples):
            with torch.no_grad():
                nll, ranking = _batch_loss(prior.model, [example], 1.0, 0)
            with pytest.warns(UserWarning, match="context window") if point.prompt is long_prompt else _nothing():
                scores = prior.score([point.prompt], [list(point.admissible)], normalization="token")
            j = point.admissible.index(point.command)
            raw, n = scores.raw_logprobs[0][j], scores.num_tokens[0][j]
            assert float(nll) == pytest.approx(-raw / n, abs=1e-4)
            assert float(ranking) == pytest.approx(-scores.logprobs[0][j], abs=1e-4)
            if point.prompt is not long_prompt:
                ref, ref_n = naive_candidate_logprob(prior.model, smollm_tokenizer, point.prompt, point.command,
                                                     separator, "\n")
                assert (n, raw) == (ref_n, pytest.approx(ref, abs=1e-4))


class _nothing:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def test_same_data_and_seed_give_the_same_adapters(base_model, smollm_tokenizer):
    prior = HFPrior(base_model, smollm_tokenizer)
    state = torch.random.get_rng_state()
    first = fit_lora(prior, [DEMO], **FAST, dropout=0.1, seed=3)
    assert torch.equal(torch.random.get_rng_state(), state)  # the global RNG is left alone
    second = fit_lora(prior, [DEMO], **FAST, dropout=0.1, seed=3)
    other = fit_lora(prior, [DEMO], **FAST, dropout=0.1, seed=4)
    a, b, c = lora_weights(first), lora_weights(second), lora_weights(other)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert any(not torch.equal(a[k], c[k]) for k in a)
    assert first.fingerprint == second.fingerprint != other.fingerprint


def test_adapted_prior_keeps_the_engine_settings_and_scores_in_eval_mode(base_model, smollm_tokenizer):
    prior = HFPrior(base_model, smollm_tokenizer, separator=": ", candidate_suffix="\n", token_budget=300,
                    truncation="error", max_length=400, prefix_cache=False)
    adapted = fit_lora(prior, [DEMO], **{**FAST, "epochs": 1}, dropout=0.5)
    for key in ("separator", "candidate_suffix", "token_budget", "truncation", "max_length", "prefix_cache",
                "attention"):
        assert getattr(adapted, key) == getattr(prior, key), key
    assert not any(m.training for m in adapted.peft_model.modules())
    pts = points()
    first = adapted.score([p.prompt for p in pts], [list(p.admissible) for p in pts])
    second = adapted.score([p.prompt for p in pts], [list(p.admissible) for p in pts])
    for a, b in zip(first.raw_logprobs, second.raw_logprobs):
        np.testing.assert_allclose(a, b, atol=1e-5)  # dropout 0.5 would make them differ


def test_progress_bar_only_when_asked(base_model, smollm_tokenizer, capsys):
    prior = HFPrior(base_model, smollm_tokenizer)
    fit_lora(prior, [DEMO], **{**FAST, "epochs": 1, "progress": True})
    assert "LoRA" in capsys.readouterr().err
    fit_lora(prior, [DEMO], **{**FAST, "epochs": 1})
    assert "LoRA" not in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------------- inputs
def test_demonstrations_a_list_and_a_dataset_train_the_same_adapters(base_model, smollm_tokenizer):
    prior = HFPrior(base_model, smollm_tokenizer)
    plain = Demonstration(DEMO.task, DEMO.steps, source="kitchen-1")  # a dataset records no admissible commands
    dataset = SimpleNamespace(  # what Demonstrations.from_dataset reads of an OfflineDataset collected with text
        text_observations=np.array([o for o, _ in plain.steps]), commands=np.array([c for _, c in plain.steps]),
        episode_index=np.zeros(3, dtype=np.int64), episode_success=np.array([True]),
        episode_return=np.array([1.0]), episode_task=np.array([plain.task]), episode_source=np.array(["kitchen-1"]),
    )
    options = {**FAST, "epochs": 2}
    weights = [lora_weights(fit_lora(prior, source, **options))
               for source in (Demonstrations([plain]), [plain], dataset, Demonstrations([plain]).decision_points())]
    for other in weights[1:]:
        assert all(torch.equal(weights[0][k], other[k]) for k in weights[0])


def test_batch_size_by_default_keeps_a_hundred_optimiser_steps(smollm_tokenizer):
    from prior_wrappers.priors.adaptation import auto_batch_size

    assert (auto_batch_size(22, 4), auto_batch_size(183, 2), auto_batch_size(2000, 2), auto_batch_size(1, 1)) == (1, 3, 8, 1)
    prior = HFPrior(tiny_model(smollm_tokenizer), smollm_tokenizer)
    adapted = fit_lora(prior, [DEMO] * 20, epochs=5, r=4, progress=False)  # 60 points x 5 epochs: 3 per step
    assert adapted.adapter_info["settings"]["batch_size"] == 3
    assert LoraSettings().batch_size is None
    with pytest.raises(ValueError, match="batch_size"):
        LoraSettings(batch_size=0)


@pytest.mark.parametrize("demos", [[], Demonstrations([]), [Demonstration("t", (("obs", "go"),), success=False)]])
def test_no_decision_point_is_a_clear_error(base, demos):
    with pytest.raises(ValueError, match="no decision points"):
        fit_lora(base, demos, progress=False)


def test_bad_arguments_are_refused(base, adapted):
    with pytest.raises(TypeError, match="unexpected keyword"):
        fit_lora(base, [DEMO], epoch=3)
    with pytest.raises(ValueError, match="lr"):
        LoraSettings(lr=0)
    with pytest.raises(TypeError, match="Demonstration"):
        fit_lora(base, ["open fridge"], progress=False)
    with pytest.raises(ValueError, match="already carries adapters"):
        fit_lora(adapted, [DEMO], progress=False)


# ---------------------------------------------------------------------------------------------------- save / load
def test_save_writes_adapters_only_and_load_gives_the_same_scores_and_fingerprint(adapted, base, tmp_path):
    path = save_adapter(adapted, tmp_path / "adapter")
    from safetensors.torch import load_file

    saved = load_file(str(path / "adapter_model.safetensors"))
    assert saved and all("lora_" in k for k in saved)  # no base weights
    info = json.loads((path / ADAPTER_INFO_FILE).read_text())
    assert info["base"] == base_identity(base)  # the base's portable fingerprint and its tokenizer's
    assert info["training"]["decision_points"] == 3
    assert info["training"]["settings"]["r"] == FAST["r"]
    before = base.fingerprint
    loaded = load_adapter(base, path)
    again = load_adapter(base, path)
    assert loaded.fingerprint == again.fingerprint == adapted.fingerprint
    assert base.fingerprint == before and not any("lora_" in n for n, _ in base.model.named_parameters())
    pts = points()
    ours = adapted.score([p.prompt for p in pts], [list(p.admissible) for p in pts])
    theirs = loaded.score([p.prompt for p in pts], [list(p.admissible) for p in pts])
    for a, b in zip(ours.raw_logprobs, theirs.raw_logprobs):
        np.testing.assert_allclose(a, b, atol=1e-5)


def test_fingerprint_separates_base_and_each_adapter(base, adapted, base_model, smollm_tokenizer, tmp_path):
    other = fit_lora(base, [DEMO], **{**FAST, "seed": 1})
    assert len({base.fingerprint, adapted.fingerprint, other.fingerprint}) == 3
    # the same weights under another scaling (lora_alpha) score differently: another fingerprint
    path = save_adapter(adapted, tmp_path / "a")
    config = json.loads((path / "adapter_config.json").read_text())
    config["lora_alpha"] *= 2
    (path / "adapter_config.json").write_text(json.dumps(config))
    with pytest.warns(UserWarning, match="not the .* it was saved with"):
        rescaled = load_adapter(base, path)
    assert rescaled.fingerprint not in {base.fingerprint, adapted.fingerprint}
    # the fingerprint reads the adapters: a prior's model that carries them with lora_B still zero is not the base
    untrained = fit_lora(base, [DEMO], **{**FAST, "lr": 1e-12, "epochs": 1})
    assert untrained.fingerprint != base.fingerprint


def test_adapters_of_another_base_model_are_refused(adapted, smollm_tokenizer, tmp_path):
    path = save_adapter(adapted, tmp_path / "adapter")
    for model in (tiny_model(smollm_tokenizer, seed=1), tiny_model(smollm_tokenizer, hidden=48)):
        other = HFPrior(model, smollm_tokenizer)
        with pytest.raises(ValueError, match="trained for base model") as error:
            load_adapter(other, path)
        assert adapted.base_identity["model"]["weights"] in str(error.value)  # both bases are named
        assert base_identity(other)["model"]["weights"] in str(error.value)
    with pytest.raises(FileNotFoundError, match="save_adapter"):
        load_adapter(HFPrior(tiny_model(smollm_tokenizer), smollm_tokenizer), tmp_path)


def test_from_pretrained_with_an_adapter_in_another_process(smollm_tokenizer, tmp_path):
    model_dir, adapter_dir = tmp_path / "base", tmp_path / "adapter"
    tiny_model(smollm_tokenizer, seed=5).save_pretrained(model_dir)
    smollm_tokenizer.save_pretrained(model_dir)
    base = HFPrior.from_pretrained(model_dir, device="cpu")
    adapted = fit_lora(base, [DEMO], **{**FAST, "epochs": 2})
    save_adapter(adapted, adapter_dir)
    here = HFPrior.from_pretrained(model_dir, device="cpu", adapter=adapter_dir)
    assert isinstance(here, AdaptedPrior) and here.fingerprint == adapted.fingerprint != base.fingerprint
    script = textwrap.dedent(f"""
        from prior_wrappers.priors.hf import HFPrior
        print(HFPrior.from_pretrained({str(model_dir)!r}, device="cpu", adapter={str(adapter_dir)!r}).fingerprint)
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parents[2])
    assert out.stdout.strip().splitlines()[-1] == adapted.fingerprint


# ---------------------------------------------------------------------------------------------------- the real model
SNIFF_TRAIN = [("a sour smell drifts from the old crate", "crate"), ("something in the sack smells of onions", "sack"),
               ("a sweet smell comes out of the jar", "jar"), ("the chest gives off a smell of smoke", "chest"),
               ("a damp smell rises from the basket", "basket"), ("the pot smells faintly of garlic", "pot")]


def sniff_point(observation: str, thing: str):
    from prior_wrappers.demonstrations import DecisionPoint
    from prior_wrappers.prompts import PromptTemplate, TextState

    admissible = ["go north", f"open {thing}", "take lamp", f"sniff {thing}", "look", "inventory"]
    prompt = PromptTemplate()(TextState(f"You are in a cellar. {observation.capitalize()}.", admissible, "find the spice"))
    return DecisionPoint(prompt, tuple(admissible), f"sniff {thing}", "cellar")


@pytest.mark.slow
def test_real_smollm2_learns_a_rule_that_carries_to_a_held_out_state(smollm_prior):
    held_out = sniff_point("a strange smell comes from the barrel", "barrel")

    def rank(prior: HFPrior) -> int:
        logp = prior.score([held_out.prompt], [list(held_out.admissible)]).logprobs[0]
        expert = logp[held_out.admissible.index(held_out.command)]
        return 1 + int(np.sum(logp > expert))

    base_rank = rank(smollm_prior)
    adapted = fit_lora(smollm_prior, [sniff_point(o, t) for o, t in SNIFF_TRAIN], r=8, epochs=2, lr=1e-3,
                       batch_size=2, progress=False)
    assert base_rank > 1
    assert rank(adapted) < base_rank
    assert rank(smollm_prior) == base_rank
