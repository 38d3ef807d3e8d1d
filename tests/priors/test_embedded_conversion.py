"""The real first-run conversion of the embedded GGUF model, on a cold cache directory."""

from __future__ import annotations

import json
import time

import pytest

from prior_wrappers.priors import embedded


@pytest.mark.slow
def test_real_gguf_conversion_on_a_cold_cache_dir(tmp_path, monkeypatch, smollm_dir):
    from safetensors import safe_open

    import torch

    reference = smollm_dir  # the suite's own converted copy (resolved before the cache dir is redirected)
    monkeypatch.setenv("PRIOR_WRAPPERS_CACHE", str(tmp_path / "cache"))
    gguf = embedded.embedded_gguf_path()
    target = embedded.ensure_converted(gguf)
    assert target == embedded.converted_model_dir(gguf) and target.is_relative_to(tmp_path / "cache")
    assert [p.name for p in target.parent.iterdir()] == [target.name]  # no temporary directory left behind
    config = json.loads((target / "config.json").read_text())
    assert "quantization_config" not in config and config["model_type"] == "llama"
    assert (target / "tokenizer.json").is_file() or (target / "tokenizer.model").is_file()
    # the same tensors as the copy the rest of the suite loads
    files = sorted(p.name for p in target.glob("*.safetensors"))
    assert files and files == sorted(p.name for p in reference.glob("*.safetensors"))
    for name in files:
        with safe_open(str(target / name), "pt") as new, safe_open(str(reference / name), "pt") as ref:
            assert set(new.keys()) == set(ref.keys())
            for key in new.keys():
                assert torch.equal(new.get_tensor(key), ref.get_tensor(key)), key
    # a second call finds the conversion and does not redo it
    stamp = (target / "config.json").stat().st_mtime_ns
    start = time.perf_counter()
    assert embedded.ensure_converted(gguf) == target
    assert time.perf_counter() - start < 1.0 and (target / "config.json").stat().st_mtime_ns == stamp


def test_the_converted_copy_is_kept_per_transformers_major_version(tmp_path, monkeypatch):
    """transformers 5 saves a tokenizer that 4.x cannot load ("Tokenizer class TokenizersBackend does not exist"):
    a copy converted under one major version must not be served to another (both are within our range)."""
    import transformers

    monkeypatch.setenv("PRIOR_WRAPPERS_CACHE", str(tmp_path))
    gguf = tmp_path / "model.gguf"
    gguf.write_bytes(b"GGUF")
    monkeypatch.setattr(transformers, "__version__", "4.56.0")
    old = embedded.converted_model_dir(gguf)
    monkeypatch.setattr(transformers, "__version__", "5.25.0")
    new = embedded.converted_model_dir(gguf)
    assert old != new and old.parent == new.parent == tmp_path / "models"
    monkeypatch.setattr(transformers, "__version__", "5.40.1.dev0")
    assert embedded.converted_model_dir(gguf) == new  # minor releases share one copy
