"""One causal LM in two roles: the LoRA-adapted policy of GFlan-Prior and, with its adapters off, the frozen prior.

GPU memory holds one copy of the weights. The prior (:class:`AdapterOffPrior`, an
:class:`~prior_wrappers.priors.hf.HFPrior`) scores under peft's ``disable_adapter()`` context, so its
log-probabilities are the base model's whatever the adapters have learnt; the policy
(:class:`~prior_wrappers.sb3.gflan_prior.policies.LLMActorCriticPolicy`) runs the same modules with the adapters on.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from prior_wrappers.priors.base import digest, model_fingerprint, tokenizer_fingerprint
from prior_wrappers.priors.hf import HFPrior
from prior_wrappers.priors.tokenization import Truncation
from prior_wrappers.token_ids import TokenIdSpec


class GFlanLLM:
    """A causal LM and its tokenizer, shared by the wrapper's prior and the GFlan-Prior policy.

    >>> llm = GFlanLLM.default()                                   # the embedded SmolLM2-135M-Instruct
    >>> env = LLMPriorWrapper(text_env, llm.prior(), k=8, encoder=None,
    ...                       token_ids=llm.token_id_spec(max_prompt_tokens=256, max_candidate_tokens=12))
    >>> model = GFlanPrior("LLMPolicy", env, llm=llm)               # attaches the LoRA adapter to the same model

    The base weights are frozen (``requires_grad=False``). :attr:`fingerprint` identifies them (and the tokenizer)
    independently of the dtype they were loaded in; a saved GFlan-Prior model records it and loads only onto the
    same base. One LLM carries at most one policy's adapter.

    :param model: a transformers causal LM.
    :param tokenizer: its tokenizer.
    :param separator: text between prompt and command, for the prior and the token ids alike.
    :param candidate_suffix: text scored after each command.
    """

    def __init__(self, model: Any, tokenizer: Any, *, separator: str = " ", candidate_suffix: str = "") -> None:
        if getattr(model, "peft_config", None) or any("lora_" in name for name, _ in model.named_parameters()):
            raise ValueError("the model already carries adapters: GFlanLLM needs the plain base model")
        self.model = model.requires_grad_(False)
        self.tokenizer = tokenizer
        self.separator = separator
        self.candidate_suffix = candidate_suffix
        # before any adapter is injected: with one, the module names (and the state dict) change
        self.base_fingerprint = model_fingerprint(model)
        portable = {"model": model_fingerprint(model, portable=True), "tokenizer": tokenizer_fingerprint(tokenizer)}
        name = self.base_fingerprint["name"] or self.base_fingerprint["class"]
        self.fingerprint = f"{name}:{digest(portable)}"
        self.peft_model: Any = None

    @classmethod
    def from_pretrained(
        cls,
        name_or_path: str | Path,
        *,
        dtype: torch.dtype | str | None = None,
        device: str | torch.device | None = None,
        separator: str = " ",
        candidate_suffix: str = "",
        **kwargs: Any,
    ) -> GFlanLLM:
        """Load a causal LM as :meth:`HFPrior.from_pretrained` does (a local directory, a ``.gguf`` file or a hub
        id; nothing is downloaded for a local path).

        :param name_or_path: the model.
        :param dtype: default bf16 on CUDA, fp32 on CPU.
        :param device: default ``cuda`` when available, else ``cpu``.
        :param separator: text between prompt and command.
        :param candidate_suffix: text scored after each command.
        :param kwargs: forwarded to :meth:`HFPrior.from_pretrained` (``gguf_file``, ``local_files_only``).
        """
        if dtype is None:  # trained here: fp32 on every CPU (not the scoring engine's "auto"), bf16 on CUDA
            dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
            dtype = torch.bfloat16 if dev.type == "cuda" else torch.float32
        loaded = HFPrior.from_pretrained(name_or_path, dtype=dtype, device=device, **kwargs)
        return cls(loaded.model, loaded.tokenizer, separator=separator, candidate_suffix=candidate_suffix)

    @classmethod
    def default(cls, **kwargs: Any) -> GFlanLLM:
        """The embedded SmolLM2-135M-Instruct (see :meth:`HFPrior.default`); ``kwargs`` as :meth:`from_pretrained`."""
        from prior_wrappers.priors.embedded import embedded_gguf_path, ensure_converted

        return cls.from_pretrained(ensure_converted(embedded_gguf_path()), **kwargs)

    @property
    def device(self) -> torch.device:
        """Where the model's weights are (the policy and the prior run there)."""
        return next(self.model.parameters()).device

    @property
    def tokenizer_digest(self) -> str:
        """The tokenizer part of a :class:`TokenIdSpec` signature made with this LLM's tokenizer."""
        return digest(tokenizer_fingerprint(self.tokenizer))

    def prior(self, **kwargs: Any) -> AdapterOffPrior:
        """The frozen prior: an :class:`HFPrior` over this model that scores with the adapters off.

        :param kwargs: :class:`HFPrior` options (``token_budget``, ``prefix_cache``, ...).
        """
        return AdapterOffPrior(self, **kwargs)

    def token_id_spec(
        self, max_prompt_tokens: int, max_candidate_tokens: int, *, truncation: Truncation = "left"
    ) -> TokenIdSpec:
        """The wrappers' ``token_ids=`` option for this LLM (its tokenizer, separator and suffix).

        :param max_prompt_tokens: the prompt's padded length (a longer prompt keeps its last tokens, see
            ``truncation``).
        :param max_candidate_tokens: a command's padded length (a longer command raises).
        :param truncation: for a longer prompt, ``"left"`` drops its oldest tokens (warned once), ``"error"`` raises
            (:class:`TokenIdSpec`).
        """
        window = int(getattr(self.model.config, "max_position_embeddings", 1 << 30))
        if max_prompt_tokens + max_candidate_tokens > window:
            raise ValueError(
                f"max_prompt_tokens + max_candidate_tokens = {max_prompt_tokens + max_candidate_tokens} exceeds the "
                f"model's context window ({window})"
            )
        return TokenIdSpec(
            self.tokenizer,
            max_prompt_tokens,
            max_candidate_tokens,
            separator=self.separator,
            candidate_suffix=self.candidate_suffix,
            truncation=truncation,
        )

    def attach_adapter(self, config: Any) -> None:
        """Inject a LoRA adapter (a ``peft.LoraConfig``) into the model, in place: the prior's modules get it too,
        and switch it off while they score.

        :raises RuntimeError: when the model already carries one (another policy's): load the base again.
        """
        from peft import get_peft_model

        if self.peft_model is not None:
            raise RuntimeError(
                "this GFlanLLM already carries the LoRA adapter of another policy; give each GFlan-Prior model (and "
                "each GFlanPrior.load) its own GFlanLLM, e.g. GFlanLLM.from_pretrained(path)"
            )
        with warnings.catch_warnings():  # peft reads transformers' deprecated is_gradient_checkpointing
            warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
            self.peft_model = get_peft_model(self.model, config)

    @contextlib.contextmanager
    def adapter_off(self) -> Iterator[None]:
        """Within this context the model is the frozen base (peft's ``disable_adapter()``), in eval mode; after it,
        every module is back in its own mode (the policy's :meth:`~LLMActorCriticPolicy.train` sets some apart)."""
        modes = [(module, module.training) for module in self.model.modules()]
        self.model.eval()
        try:
            if self.peft_model is None:
                yield
            else:
                with self.peft_model.disable_adapter():
                    yield
        finally:
            for module, training in modes:
                module.training = training


class AdapterOffPrior(HFPrior):
    """:class:`HFPrior` over a :class:`GFlanLLM`'s model with its adapters switched off: the frozen p_LLM of
    GFlan-Prior, sharing the policy's weights. Its scores, prefix cache and :attr:`fingerprint` are those of a plain
    ``HFPrior`` over the base model.

    :param llm: the shared LLM.
    :param kwargs: :class:`HFPrior` options (``token_budget``, ``prefix_cache``, ...; not ``separator`` and
        ``candidate_suffix``, which are the LLM's).
    """

    def __init__(self, llm: GFlanLLM, **kwargs: Any) -> None:
        self.llm = llm
        super().__init__(
            llm.model, llm.tokenizer, separator=llm.separator, candidate_suffix=llm.candidate_suffix, **kwargs
        )

    def score(self, *args: Any, **kwargs: Any) -> Any:  # noqa: D102 (HFPrior.score, adapters off)
        with self.llm.adapter_off():
            return super().score(*args, **kwargs)

    def propose(self, *args: Any, **kwargs: Any) -> Any:  # noqa: D102 (HFPrior.propose, adapters off)
        with self.llm.adapter_off():
            return super().propose(*args, **kwargs)

    def _model_fingerprint(self) -> dict[str, Any]:
        return self.llm.base_fingerprint
