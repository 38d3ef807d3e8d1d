"""CachedPrior files: prior fingerprints, a safe file format, byte bounds; CachedEncoder bounds; CommandMatcher
duplicates; FunctionPrior's checks of its function."""

from __future__ import annotations

import copy
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from prior_wrappers.encoders import CachedEncoder, HashingEncoder
from prior_wrappers.priors import CachedPrior, CommandMatcher, FunctionPrior, HFPrior, UniformPrior
from prior_wrappers.priors.base import prior_fingerprint
from prior_wrappers.priors.matching import count_matches

PROMPTS = ["You are in room 2. The exit is east.\nAction:", "The door is locked.\nAction:"]
CANDS = [["go east", "go west", "wait"], ["unlock door", "look"]]


def length_prior() -> FunctionPrior:
    return FunctionPrior(lambda p, c: [float(len(x)) for x in c])


def shortness_prior() -> FunctionPrior:
    return FunctionPrior(lambda p, c: [-float(len(x)) for x in c])


@pytest.fixture()
def tiny_prior(tiny_llama, smollm_tokenizer) -> HFPrior:
    return HFPrior(tiny_llama, smollm_tokenizer)


# ---------------------------------------------------------------- fingerprints


def test_fingerprints_tell_priors_apart_and_are_stable():
    assert UniformPrior().fingerprint == "UniformPrior"
    a, b = length_prior(), shortness_prior()
    assert a.fingerprint == length_prior().fingerprint  # same function code, another object
    assert a.fingerprint != b.fingerprint  # same qualname ('<lambda>' in a function), different code
    assert "length_prior.<locals>.<lambda>" in a.fingerprint
    assert FunctionPrior(lambda p, c: [0.0] * len(c), name="oracle-v2").fingerprint == "FunctionPrior:oracle-v2"

    class NoFingerprint(UniformPrior):
        fingerprint = None

    assert prior_fingerprint(NoFingerprint()) == "NoFingerprint"
    assert CachedPrior(a).fingerprint == a.fingerprint


def test_hf_fingerprint_covers_weights_tokenizer_and_scoring_options(tiny_llama, smollm_tokenizer, tiny_prior):
    fp = tiny_prior.fingerprint
    assert fp.startswith("HFPrior:") and fp == HFPrior(tiny_llama, smollm_tokenizer).fingerprint
    assert HFPrior(copy.deepcopy(tiny_llama), smollm_tokenizer).fingerprint == fp  # same weights, another object
    assert HFPrior(tiny_llama, smollm_tokenizer, separator="").fingerprint != fp
    assert HFPrior(tiny_llama, smollm_tokenizer, candidate_suffix="\n").fingerprint != fp
    assert HFPrior(tiny_llama, smollm_tokenizer, max_length=64).fingerprint != fp
    changed = copy.deepcopy(tiny_llama)
    with torch.no_grad():
        changed.model.layers[1].mlp.down_proj.weight.mul_(1.01)  # a fine-tune of one matrix
    assert HFPrior(changed, smollm_tokenizer).fingerprint != fp
    other_tokenizer = copy.deepcopy(smollm_tokenizer)
    other_tokenizer.add_tokens(["<my-new-token>"])
    assert HFPrior(tiny_llama, other_tokenizer).fingerprint != fp


# ---------------------------------------------------------------- cache files


def test_saved_cache_is_refused_by_a_different_prior(tmp_path):
    cached = CachedPrior(length_prior())
    cached.score(PROMPTS, CANDS)
    cached.save(tmp_path / "scores.npz")
    same = CachedPrior(length_prior())
    assert same.load(tmp_path / "scores.npz") == 2
    other = CachedPrior(shortness_prior())
    with pytest.raises(ValueError, match="holds scores of the prior .*length_prior"):
        other.load(tmp_path / "scores.npz")
    assert other.cache_info()["size"] == 0
    assert other.load(tmp_path / "scores.npz", check_fingerprint=False) == 2


def test_hf_cache_round_trip_with_features_and_refusal_after_a_change(tmp_path, tiny_llama, smollm_tokenizer, tiny_prior):
    cached = CachedPrior(tiny_prior)
    first = cached.score(PROMPTS, CANDS, return_features=True)
    cached.save(tmp_path / "hf.cache")  # any file name; the content is an .npz archive
    fresh = CachedPrior(HFPrior(tiny_llama, smollm_tokenizer))
    fresh.load(tmp_path / "hf.cache")
    before = fresh.prior.forward_passes
    again = fresh.score(PROMPTS, CANDS, return_features=True)
    assert fresh.prior.forward_passes == before and fresh.hits == 2
    for x, y in zip(first.features, again.features):
        np.testing.assert_array_equal(x, y)
    for x, y in zip(first.raw_logprobs, again.raw_logprobs):
        np.testing.assert_array_equal(x, y)
    with pytest.raises(ValueError, match="holds scores of the prior"):
        CachedPrior(HFPrior(tiny_llama, smollm_tokenizer, candidate_suffix="\n")).load(tmp_path / "hf.cache")


def test_cached_prior_with_features_recomputes_entries_cached_without_them(tiny_prior):
    cached = CachedPrior(tiny_prior)
    plain = cached.score(PROMPTS[:1], CANDS[:1])
    assert plain.features is None
    with_features = cached.score(PROMPTS[:1], CANDS[:1], return_features=True)
    assert cached.misses == 2 and with_features.features[0].shape == (3, 64)
    # recomputed, not copied: equal to fp32 precision (the engine's prefix cache now serves the prompt's tokens)
    np.testing.assert_allclose(with_features.logprobs[0], plain.logprobs[0], atol=1e-6)
    cached.score(PROMPTS[:1], CANDS[:1], return_features=True)
    cached.score(PROMPTS[:1], CANDS[:1])  # an entry with features also answers a request without
    assert cached.hits == 2 and cached.cache_info()["size"] == 1
    with pytest.raises(ValueError, match="read-only"):
        with_features.features[0][0, 0] = 1.0  # a hit is shared: it cannot be changed in place


class Boom:
    """A pickle that would run code on load: writes a marker file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.write_text, (self.marker, "pwned"))


def test_corrupted_foreign_and_pickle_files_get_a_clear_error_and_run_no_code(tmp_path):
    cached = CachedPrior(length_prior())
    marker = tmp_path / "marker"
    (tmp_path / "old.pkl").write_bytes(pickle.dumps({"x": Boom(marker)}))
    (tmp_path / "garbage.npz").write_bytes(b"\x00not a cache at all" * 10)
    np.savez(tmp_path / "foreign.npz", weights=np.zeros(3))
    cached.score(PROMPTS, CANDS)
    cached.save(tmp_path / "good.npz")
    data = (tmp_path / "good.npz").read_bytes()
    (tmp_path / "truncated.npz").write_bytes(data[: len(data) // 2])
    for name in ("old.pkl", "garbage.npz", "foreign.npz", "truncated.npz"):
        with pytest.raises(ValueError, match="is not a CachedPrior cache file"):
            CachedPrior(length_prior()).load(tmp_path / name)
    assert not marker.exists()
    with pytest.raises(FileNotFoundError, match="no CachedPrior cache file"):
        cached.load(tmp_path / "missing.npz")


def test_cached_prior_is_bounded_by_bytes_and_reports_its_size():
    inner = length_prior()
    cached = CachedPrior(inner, max_bytes=800)
    for i in range(20):
        cached.score([f"state {i} " + "x" * 40], [["go east", "go west", "wait"]])
        assert cached.cache_info()["bytes"] <= 800
    info = cached.cache_info()
    assert 0 < info["size"] < 20 and info["max_bytes"] == 800 and info["bytes"] == cached.nbytes > 0
    # least recently used first: the newest state is still a hit, the oldest is gone
    cached.score(["state 19 " + "x" * 40], [["go east", "go west", "wait"]])
    assert cached.hits == 1
    cached.score(["state 0 " + "x" * 40], [["go east", "go west", "wait"]])
    assert cached.hits == 1
    with pytest.raises(ValueError, match="max_bytes"):
        CachedPrior(inner, max_bytes=0)


def test_cached_encoder_is_bounded_by_bytes_and_reports_its_size():
    enc = CachedEncoder(HashingEncoder(dim=16), max_bytes=1000)
    texts = [f"text number {i}" for i in range(40)]
    out = enc.encode(texts)
    np.testing.assert_allclose(out, HashingEncoder(dim=16).encode(texts))  # results unaffected by eviction
    info = enc.cache_info()
    assert info["bytes"] <= 1000 and 0 < info["size"] < 40 and info["misses"] == 40 and info["max_bytes"] == 1000
    enc.encode(texts[-1:])
    assert enc.hits == 1 and enc.name == "hashing:16"


def test_a_saved_cache_keeps_the_order_of_use(tmp_path):
    cached = CachedPrior(UniformPrior(), maxsize=2)
    cached.score(["a", "b"], [["x", "y"]] * 2)
    cached.score(["a"], [["x", "y"]])  # "a" is now the most recently used, though stored first
    cached.save(tmp_path / "c.npz")
    restored = CachedPrior(UniformPrior(), maxsize=2)
    restored.load(tmp_path / "c.npz")
    restored.score(["c"], [["x", "y"]])  # a third state evicts the least recently used: "b"
    restored.score(["a", "b"], [["x", "y"]] * 2)
    assert (restored.hits, restored.misses) == (1, 2)


def test_caches_pickle_and_copy_with_their_contents():
    cached, encoder = CachedPrior(UniformPrior()), CachedEncoder(HashingEncoder(dim=8))
    cached.score(PROMPTS, CANDS)
    encoder.encode(["go east", "go west"])
    for copied in (pickle.loads(pickle.dumps(cached)), copy.deepcopy(cached)):
        copied.score(PROMPTS, CANDS)
        assert (copied.hits, copied.nbytes) == (2, cached.nbytes)
    for copied_encoder in (pickle.loads(pickle.dumps(encoder)), copy.deepcopy(encoder)):
        copied_encoder.encode(["go east"])
        assert (copied_encoder.hits, copied_encoder.nbytes) == (1, encoder.nbytes)


# ---------------------------------------------------------------- matching and FunctionPrior


def test_command_matcher_gives_duplicates_to_the_first_under_every_rule():
    m = CommandMatcher(["go", "take apple", "go", "Take Apple"])
    assert m.match_index("go") == 0  # exact duplicate
    assert m.match_index("go now") == 0  # word-boundary rule
    assert m.match_index("Take Apple") == 3 and m.match_index("take apple!") == 1  # exact wins, else the first
    counts, bad = count_matches(["go", "go", "GO!"], ["go", "take", "go"], "drop")
    np.testing.assert_array_equal(counts, [3, 0, 0])
    assert bad == 0
    # rule 3 reads the first line only, as documented
    assert CommandMatcher(["open the fridge"]).match("I think\nopen the fridge") is None


def test_function_prior_refuses_nan_and_names_the_prompt():
    with pytest.raises(ValueError, match=r"NaN.*room 2"):
        FunctionPrior(lambda p, c: [np.nan, 0.0, 0.0]).score(PROMPTS[:1], CANDS[:1])
    with pytest.raises(TypeError, match="callable"):
        FunctionPrior("not a function")  # type: ignore[arg-type]


def test_openai_prior_fingerprint_names_model_and_tokenization_not_the_url(smollm_tokenizer):
    from prior_wrappers.priors import OpenAIPrior

    fp = OpenAIPrior("http://127.0.0.1:9", model="smollm2", tokenizer=smollm_tokenizer).fingerprint  # no request
    assert fp.startswith("OpenAIPrior:smollm2:")
    assert OpenAIPrior("http://gpu-box:8000/v1", model="smollm2", tokenizer=smollm_tokenizer).fingerprint == fp
    assert OpenAIPrior("http://127.0.0.1:9", model="smollm2-ft", tokenizer=smollm_tokenizer).fingerprint != fp
    assert OpenAIPrior("http://127.0.0.1:9", model="smollm2", tokenizer=smollm_tokenizer, separator="").fingerprint != fp


def test_each_prior_gets_a_cache_file_of_its_own(tmp_path):
    from prior_wrappers import CachedPrior, FunctionPrior

    a = CachedPrior(FunctionPrior(lambda p, c: [0.0] * len(c), name="a"))
    b = CachedPrior(FunctionPrior(lambda p, c: [1.0] * len(c), name="b"))
    path_a, path_b = a.file_for(tmp_path, "game-0"), b.file_for(tmp_path, "game-0")
    assert path_a != path_b and path_a.parent == tmp_path and path_a.name.startswith("game-0-")
    assert path_a == CachedPrior(FunctionPrior(lambda p, c: [0.0] * len(c), name="a")).file_for(tmp_path, "game-0")
    a.score(["s"], [["x", "y"]])
    a.save(path_a)
    assert not path_b.is_file() and b.load(path_a, check_fingerprint=False) == 1
