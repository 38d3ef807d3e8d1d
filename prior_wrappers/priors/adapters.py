"""LoRA adapters of an LLM prior: the adapted prior, its identity, and saving / loading the adapters.

:class:`AdaptedPrior` is an :class:`~prior_wrappers.priors.hf.HFPrior` over a model carrying peft LoRA adapters, made
by :func:`~prior_wrappers.priors.adaptation.fit_lora` (which trains them) or by :func:`load_adapter`;
:func:`save_adapter` writes the adapters to a small directory, with what they were trained for.

**Scoring.** The adapted prior's engine runs the model with the adapters injected and unmerged (peft's LoRA layers
add ``B A x`` to each adapted linear layer): ``model`` is the transformers model inside the ``PeftModel`` (its
``base_model_prefix``, output embeddings and key/value cache are the plain model's), so packing, the prefix cache
and both attention modes work unchanged, and ``peft_model`` can still save the adapters. Nothing is merged, so
there is one copy of the base weights per adapted prior (plus the adapters' own: about 5M parameters at r=16 on
SmolLM2-135M); the extra low-rank products cost a few percent of a forward.

**Identity.** :attr:`AdaptedPrior.fingerprint` is the base model's (as :class:`HFPrior` computes it) plus a digest of
the adapters: every adapter weight hashed exactly (names, shapes, dtypes, all values) and the LoRA settings that
change scores (rank, alpha, rsLoRA, DoRA, bias, per-module patterns). The same adapters loaded in another process
give the same fingerprint; other adapters, or none, give another, so a ``CachedPrior`` file or a saved SB3 model
never mixes base and adapted scores. (``model_fingerprint`` of a ``PeftModel`` would differ from the base's too,
since the module names change, but it samples 1024 values per tensor and does not see the scaling alpha/r.)
"""

from __future__ import annotations

import copy
import hashlib
import json
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch

from prior_wrappers.priors.base import digest, model_fingerprint, tokenizer_fingerprint
from prior_wrappers.priors.hf import HFPrior

ADAPTER_INFO_FILE = "prior_adapter.json"  # written next to peft's adapter_config.json / adapter_model.safetensors
ADAPTER_FORMAT = 1
# LoRA options that change what an adapter computes (beyond its weights, which are hashed whole)
_SCORING_LORA_OPTIONS = (
    "r",
    "lora_alpha",
    "use_rslora",
    "use_dora",
    "bias",
    "lora_bias",
    "rank_pattern",
    "alpha_pattern",
    "fan_in_fan_out",
    "modules_to_save",
)


class AdaptedPrior(HFPrior):
    """An :class:`HFPrior` over a model carrying LoRA adapters (made by
    :func:`~prior_wrappers.priors.adaptation.fit_lora` or :func:`load_adapter`).

    ``model`` is the transformers model inside ``peft_model``, adapters injected and active; the engine scores it
    as any model. Treat it as frozen: changing the adapters' weights in place would leave :attr:`fingerprint`
    stale.

    :param peft_model: the ``peft.PeftModel``.
    :param tokenizer: the base model's tokenizer.
    :param base_fingerprint: the base model's part of an :class:`HFPrior` fingerprint (``_model_fingerprint()``
        of the prior it was made from).
    :param base_identity: the base as saved adapters record it: portable model fingerprint and tokenizer fingerprint.
    :param info: how the adapters were made (settings, decision points, ...), saved with them.
    :param kwargs: :class:`HFPrior` options (``separator``, ``candidate_suffix``, ``token_budget``, ...).
    """

    def __init__(
        self,
        peft_model: Any,
        tokenizer: Any,
        *,
        base_fingerprint: dict[str, Any],
        base_identity: dict[str, Any],
        info: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        self.peft_model = peft_model.eval()
        self.base_fingerprint = dict(base_fingerprint)
        self.base_identity = base_identity
        self.adapter_info: dict[str, Any] = dict(info or {})
        super().__init__(peft_model.get_base_model(), tokenizer, **kwargs)

    @property
    def adapter_digest(self) -> str:
        """A digest of the adapters: all their weights, exactly, and the LoRA options that change scores."""
        return adapter_digest(self.peft_model)

    def _model_fingerprint(self) -> dict[str, Any]:
        return {**self.base_fingerprint, "adapter": self.adapter_digest}

    def save_adapter(self, path: str | Path) -> Path:
        """See :func:`save_adapter`."""
        return save_adapter(self, path)


# ---------------------------------------------------------------------------------------------------- identity
def adapter_digest(peft_model: Any) -> str:
    """Digest of a ``PeftModel``'s active adapter: every weight (``get_peft_model_state_dict``: names, shapes, dtypes
    and all values, hashed exactly) and the LoRA options in ``_SCORING_LORA_OPTIONS``."""
    get_peft_model_state_dict = peft_module().get_peft_model_state_dict

    hasher = hashlib.sha256()
    for name, tensor in sorted(get_peft_model_state_dict(peft_model).items()):
        data = tensor.detach().cpu().contiguous()
        hasher.update(f"{name}|{tuple(data.shape)}|{data.dtype}|".encode())
        hasher.update(data.reshape(-1).view(torch.uint8).numpy().tobytes())
    config = peft_model.peft_config[peft_model.active_adapter]
    options = {key: _plain(getattr(config, key, None)) for key in _SCORING_LORA_OPTIONS}
    return digest({"weights": hasher.hexdigest(), "options": options})


def _plain(value: Any) -> Any:
    """A JSON-able, order-independent form of a peft config value (sets become sorted lists)."""
    if isinstance(value, (set, frozenset)):
        return sorted(value)
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value if value is None or isinstance(value, (bool, int, float, str)) else str(value)


def base_identity(prior: HFPrior) -> dict[str, Any]:
    """What saved adapters record of the base they were trained on, and :func:`load_adapter` checks: the model's
    portable fingerprint (config and weights, independent of the dtype it was loaded in, see
    :func:`~prior_wrappers.priors.base.model_fingerprint`) and the tokenizer's."""
    return {"model": model_fingerprint(prior.model, portable=True), "tokenizer": tokenizer_fingerprint(prior.tokenizer)}


def _same_base(saved: dict[str, Any], current: dict[str, Any]) -> bool:
    """Same weights, config and tokenizer (the checkpoint's directory name may differ)."""
    keys = ("class", "config", "weights")
    return (
        all(saved["model"].get(k) == current["model"].get(k) for k in keys)
        and saved["tokenizer"] == current["tokenizer"]
    )


def _describe(identity: dict[str, Any]) -> str:
    model, tok = identity["model"], identity["tokenizer"]
    name = model.get("name") or model.get("class")
    return (
        f"{name} (weights {model.get('weights')}, config {model.get('config')}; tokenizer {tok.get('class')} "
        f"with {tok.get('vocab_size')} tokens, vocabulary {tok.get('vocab')})"
    )


# ---------------------------------------------------------------------------------------------------- shared
def check_plain(prior: Any, what: str) -> None:
    """Refuse (``what`` names the caller) anything but an :class:`HFPrior` over a model without adapters."""
    if not isinstance(prior, HFPrior):
        raise TypeError(f"{what} needs an HFPrior, got {type(prior).__name__}")
    model = prior.model
    if (
        isinstance(prior, AdaptedPrior)
        or getattr(model, "peft_config", None)
        or any("lora_" in name for name, _ in model.named_parameters())
    ):
        raise ValueError(
            f"{what} needs a prior over a plain base model, but this one's model already carries adapters; "
            "pass the base prior (e.g. HFPrior.default())"
        )


def engine_options(prior: HFPrior) -> dict[str, Any]:
    """The given prior's engine settings, for a new prior over the adapted model."""
    options: dict[str, Any] = dict(
        separator=prior.separator,
        candidate_suffix=prior.candidate_suffix,
        token_budget=prior.token_budget,
        truncation=prior.truncation,
        max_length=prior.max_length,
        prefix_cache=prior.prefix_cache,
        attention=prior.attention,
    )
    if prior.kv_cache is not None:
        options["kv_cache_bytes"] = prior.kv_cache.max_bytes
    return options


def peft_module() -> Any:
    """The peft module, or an ImportError that says how to install it."""
    try:
        import peft
    except ImportError as exc:
        raise ImportError(
            "adapting a prior with LoRA needs peft: pip install 'prior-wrappers[lora]' (or pip install 'peft>=0.18')"
        ) from exc
    return peft


@contextmanager
def quiet_peft() -> Iterator[None]:
    """Silence the FutureWarning that peft triggers in transformers."""
    with warnings.catch_warnings():  # peft reads transformers' deprecated is_gradient_checkpointing
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
        yield


# ---------------------------------------------------------------------------------------------------- saving
def save_adapter(prior: AdaptedPrior, path: str | Path) -> Path:
    """Write the adapters of ``prior`` to the directory ``path``: peft's files (``adapter_config.json``,
    ``adapter_model.safetensors``: the adapter weights only, never the base's) and ``prior_adapter.json`` (the base
    model's and tokenizer's fingerprints, which :func:`load_adapter` checks, how the adapters were trained, and
    the number of decision points). Returns the directory."""
    if not isinstance(prior, AdaptedPrior):
        raise TypeError(f"save_adapter needs a prior made by fit_lora or load_adapter, got {type(prior).__name__}")
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    with quiet_peft():
        prior.peft_model.save_pretrained(str(path))
    info = {
        "format": ADAPTER_FORMAT,
        "base": prior.base_identity,
        "adapter": prior.adapter_digest,
        "engine": {"separator": prior.separator, "candidate_suffix": prior.candidate_suffix},
        "training": prior.adapter_info,
    }
    (path / ADAPTER_INFO_FILE).write_text(json.dumps(info, indent=2, sort_keys=True, default=str))
    return path


def read_adapter_info(path: str | Path) -> dict[str, Any]:
    """The ``prior_adapter.json`` of a saved adapter (see :func:`save_adapter`)."""
    file = Path(path) / ADAPTER_INFO_FILE
    if not file.is_file():
        raise FileNotFoundError(
            f"{str(file)!r} not found: {str(path)!r} is not an adapter saved by save_adapter (which records the base "
            "model the adapters were trained on)"
        )
    info = json.loads(file.read_text())
    if info.get("format") != ADAPTER_FORMAT:
        raise ValueError(f"{str(file)!r} has format {info.get('format')!r}; this version reads {ADAPTER_FORMAT}")
    return info


def load_adapter(prior: HFPrior, path: str | Path, *, copy_model: bool = True) -> AdaptedPrior:
    """A new prior over ``prior``'s model with the adapters saved at ``path`` (by :func:`save_adapter`).

    :param prior: a prior over the base model the adapters were trained on (same weights, in any dtype, and same
        tokenizer); its engine settings carry over (a warning says when its separator or candidate_suffix differ
        from the ones the adapters were trained with).
    :param path: the adapter directory.
    :param copy_model: ``True`` (default): peft injects the adapters into a copy of the model (``copy.deepcopy``:
        one more copy of the base weights), so ``prior`` keeps scoring the base. ``False``: into ``prior``'s own
        model, which saves the memory but changes ``prior`` (its scores would become the adapted ones, under the
        base's cached fingerprint): do not use ``prior`` afterwards (``HFPrior.from_pretrained(..., adapter=)``
        does this with the model it has just loaded).
    :raises ValueError: the adapters were trained for another base model or tokenizer (both are named), or the
        prior already carries adapters.
    """
    PeftModel = peft_module().PeftModel

    check_plain(prior, "load_adapter")
    info = read_adapter_info(path)
    identity = base_identity(prior)
    if not _same_base(info["base"], identity):
        raise ValueError(
            f"the adapter at {str(path)!r} was trained for base model {_describe(info['base'])}, but this prior's "
            f"model is {_describe(identity)}: load it over the model it was trained on"
        )
    engine = info.get("engine", {})
    for key in ("separator", "candidate_suffix"):
        if key in engine and engine[key] != getattr(prior, key):
            warnings.warn(
                f"the adapter at {str(path)!r} was trained with {key}={engine[key]!r} but this prior uses "
                f"{getattr(prior, key)!r}: its scores may be worse than it learnt",
                stacklevel=2,
            )
    base_fp = prior._model_fingerprint()
    model = copy.deepcopy(prior.model) if copy_model else prior.model
    with quiet_peft():
        peft_model = PeftModel.from_pretrained(model, str(path), is_trainable=False)
    peft_model.eval().requires_grad_(False)
    adapted = AdaptedPrior(
        peft_model,
        prior.tokenizer,
        base_fingerprint=base_fp,
        base_identity=info["base"],
        info=info.get("training", {}),
        **engine_options(prior),
    )
    if adapted.adapter_digest != info.get("adapter", adapted.adapter_digest):
        warnings.warn(
            f"the adapter at {str(path)!r} loaded with digest {adapted.adapter_digest}, not the {info['adapter']} it "
            "was saved with (a different dtype or peft version?): its fingerprint differs from the saving prior's",
            stacklevel=2,
        )
    return adapted
