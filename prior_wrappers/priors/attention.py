"""How the engine's packed rows attend: a dense additive mask, or FlexAttention with a block mask.

A packed row ``[prompt | cand_1 | cand_2 | ...]`` needs a mask that is neither causal nor padding-only: each candidate
sees the prompt (or its cached prefix) and its own earlier tokens, never another candidate. Two ways to apply it:

- ``"dense"`` (default): a 4-D additive float mask ``(rows, 1, width, past + width)`` through the model's own eager or
  SDPA attention. Every query meets every key; the mask zeroes what it must not see. Exact everywhere.
- ``"flex"``: PyTorch's FlexAttention with a :class:`~torch.nn.attention.flex_attention.BlockMask` built from the
  same visibility: blocks (128 x 128) that no query of the block may see are skipped, so long rows with many
  candidates compute far fewer scores (candidates never look at each other, padding at nothing). On CUDA the kernel
  is compiled by ``torch.compile`` on first use; on CPU it runs PyTorch's unfused reference (exact, slower than
  ``"dense"``: the CPU path exists to test the GPU path's maths). The block mask is still derived from the dense
  boolean visibility ``(rows, width, past + width)`` that the packing builds: one byte per query-key pair, at most
  ``token_budget`` x ``width`` bytes per forward (about 100 MB for the CUDA default 32,768 and 3,000-token rows),
  small next to the forward's keys and values; the kernel itself never reads a dense mask.

Sliding-window models (Mistral v0.1, Gemma 2/3, Qwen2 with ``use_sliding_window``) let some or all layers see only
the last ``sliding_window`` positions. transformers returns a caller's 4-D mask unchanged, so the engine windows it
itself (:func:`layer_masks`): by position ids, exactly as the model's own mask would for a full forward of
``prompt[:context] + candidate``; a model whose layers slide only in part gets one mask per layer type (the mapping
such models accept). Layer types the packed rows cannot express (chunked or linear attention) are refused.

A model loaded with a flash-attention implementation (which rejects 4-D masks) is scored through SDPA with the dense
mask, or through FlexAttention: the engine switches the attention implementation for its own forwards only
(:func:`attention_implementation`), so the model's other uses (``propose``'s generation) keep theirs.
"""

from __future__ import annotations

import threading
import warnings
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Literal

import torch

AttentionMode = Literal["dense", "flex"]
ATTENTION_MODES: tuple[str, ...] = ("dense", "flex")
FLEX_IMPLEMENTATION = "prior_wrappers_flex"  # the name under which the engine registers its FlexAttention function
DENSE_IMPLEMENTATIONS = ("eager", "sdpa")  # implementations that take a 4-D additive mask as it is

FULL_ATTENTION, SLIDING_ATTENTION = "full_attention", "sliding_attention"  # transformers' ``config.layer_types``

_compiled_flex: Callable[..., torch.Tensor] | None = None


@dataclass(frozen=True)
class LayerWindows:
    """Which layers of a model attend through a sliding window.

    :param window: positions a sliding layer sees (itself included: a query at position q sees keys at positions
        ``> q - window``); ``None`` when no layer slides.
    :param mixed: some layers slide and others attend fully: the model takes ``{layer type: mask}``.
    """

    window: int | None = None
    mixed: bool = False

    @classmethod
    def of(cls, config: Any) -> LayerWindows:
        """Read them from a transformers config as its own masks do: ``layer_types`` where the config has it, else
        every layer slides when ``sliding_window`` is set (Mistral, Phi-3).

        :raises ValueError: for layer types other than full and sliding attention (chunked, linear): the engine's
            packed rows cannot express them.
        """
        window = getattr(config, "sliding_window", None)
        types = getattr(config, "layer_types", None)
        if types is not None:
            unknown = sorted(set(types) - {FULL_ATTENTION, SLIDING_ATTENTION})
            if unknown:
                raise ValueError(
                    f"{type(config).__name__} has layers of type {unknown}: the packed scoring engine masks only "
                    f"{FULL_ATTENTION!r} and {SLIDING_ATTENTION!r} layers; score this model with one forward per "
                    "candidate (naive_candidate_logprob) or use another model"
                )
            if not window or SLIDING_ATTENTION not in types:
                return cls()
            return cls(int(window), mixed=FULL_ATTENTION in types)
        return cls(int(window)) if window else cls()


def layer_masks(
    visible: torch.Tensor,
    query_positions: torch.Tensor,
    key_positions: torch.Tensor,
    windows: LayerWindows,
    build: Callable[[torch.Tensor], Any],
) -> Any:
    """The attention mask of a forward over packed rows: ``build(visible)`` for a model without sliding layers (or
    whose window covers every distance in the batch), else the visibility cut to the window, for every layer or,
    for a model that slides only in part, as ``{"full_attention": ..., "sliding_attention": ...}``.

    :param visible: ``(rows, queries, keys)``, True where the query sees the key.
    :param query_positions: ``(rows, queries)`` position ids of the queries.
    :param key_positions: ``(rows, keys)`` position ids of the keys.
    :param windows: the model's :class:`LayerWindows`.
    :param build: turns a visibility into the mask the forward takes (additive 4-D, or a ``BlockMask``).
    """
    window = windows.window
    if window is None or int(query_positions.max()) - int(key_positions.min()) < window:
        return build(visible)
    distance = query_positions[:, :, None] - key_positions[:, None, :]
    windowed = build(visible & (distance < window))
    if not windows.mixed:
        return windowed
    return {FULL_ATTENTION: build(visible), SLIDING_ATTENTION: windowed}


def flex_available() -> bool:
    """Whether the installed torch has FlexAttention (torch >= 2.5)."""
    try:
        from torch.nn.attention.flex_attention import create_block_mask, flex_attention  # noqa: F401
    except ImportError:
        return False
    return True


def _flex_kernel(device: torch.device) -> Callable[..., torch.Tensor]:
    """The compiled kernel on CUDA (compiled once per process, shapes dynamic), the unfused reference elsewhere."""
    from torch.nn.attention.flex_attention import flex_attention

    global _compiled_flex
    if device.type != "cuda":
        return flex_attention
    if _compiled_flex is None:
        _compiled_flex = torch.compile(flex_attention, dynamic=True)
    return _compiled_flex


def flex_attention_forward(
    module: torch.nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: Any,
    scaling: float | None = None,
    softcap: float | None = None,
    **kwargs: Any,
) -> tuple[torch.Tensor, None]:
    """A transformers attention function (``AttentionInterface``) over a ``BlockMask``; ``(batch, q, heads, dim)``."""
    from torch.nn.attention.flex_attention import BlockMask

    if not isinstance(attention_mask, BlockMask):
        raise TypeError(
            f"{FLEX_IMPLEMENTATION} takes a BlockMask, got {type(attention_mask).__name__}: it is meant for HFPrior's "
            "scoring forwards only (HFPrior(attention='flex')), which set it for their own calls"
        )
    if kwargs.get("dropout", 0.0):
        raise ValueError("FlexAttention scoring runs without attention dropout: put the model in eval mode")

    def capped(score: torch.Tensor, b: Any, h: Any, q: Any, kv: Any) -> torch.Tensor:
        return softcap * torch.tanh(score / softcap)  # type: ignore[operator]

    with warnings.catch_warnings():  # the CPU reference warns that it is unfused: known, and said in the docstring
        warnings.filterwarnings("ignore", message=".*flex_attention.*torch.compile.*")
        out = _flex_kernel(query.device)(
            query,
            key,
            value,
            score_mod=capped if softcap else None,
            block_mask=attention_mask,
            scale=scaling,
            enable_gqa=query.shape[1] != key.shape[1],
        )
    return out.transpose(1, 2).contiguous(), None


def register_flex() -> None:
    """Make :data:`FLEX_IMPLEMENTATION` a transformers attention implementation (idempotent)."""
    from transformers import AttentionInterface

    AttentionInterface.register(FLEX_IMPLEMENTATION, flex_attention_forward)


def block_mask(visible: torch.Tensor, device: torch.device, block_size: int = 128) -> Any:
    """A ``BlockMask`` equal to the boolean ``visible`` ``(rows, queries, keys)`` (True: the query sees the key)."""
    from torch.nn.attention.flex_attention import create_block_mask

    visible = visible.to(device)
    rows, queries, keys = visible.shape

    def mask_mod(b: torch.Tensor, h: torch.Tensor, q: torch.Tensor, kv: torch.Tensor) -> torch.Tensor:
        return visible[b, q, kv]

    return create_block_mask(mask_mod, B=rows, H=None, Q_LEN=queries, KV_LEN=keys, device=device, BLOCK_SIZE=block_size)


def scoring_implementation(model: Any, mode: AttentionMode) -> str:
    """The attention implementation the engine's forwards use: FlexAttention for ``"flex"``; for ``"dense"`` the
    model's own when it takes a 4-D mask (eager, SDPA), else SDPA (never a flash kernel, which rejects 4-D masks)."""
    if mode == "flex":
        return FLEX_IMPLEMENTATION
    current = getattr(model.config, "_attn_implementation", None) or "eager"
    return current if current in DENSE_IMPLEMENTATIONS else "sdpa"


_model_locks: weakref.WeakKeyDictionary[Any, threading.RLock] = weakref.WeakKeyDictionary()
_locks_guard = threading.Lock()


def model_lock(model: Any) -> threading.RLock:
    """The lock that the engine's forwards over ``model`` hold (one per model object, re-entrant): the attention
    implementation is a field of the model's config, shared by everything that runs the model."""
    with _locks_guard:
        lock = _model_locks.get(model)
        if lock is None:
            lock = _model_locks[model] = threading.RLock()
        return lock


@contextmanager
def attention_implementation(model: Any, name: str) -> Iterator[None]:
    """Run the model's forwards with attention implementation ``name``, restoring the model's own afterwards.

    transformers reads the implementation from ``model.config`` at every forward, so it is switched for the
    duration of the block, under :func:`model_lock`: the engine's and the GFlan policy's forwards over one model,
    from any threads, take turns. A forward of the same model that does not go through this library (your own
    ``generate`` in another thread) is not serialised and would run with the switched implementation.

    Both switches go through transformers' ``PreTrainedModel.set_attn_implementation`` (4.56+), which checks that the
    implementation exists and that the model can use it, and sets its sub-models' configs too. It walks the model's
    modules: under a millisecond per switch and restore for SmolLM2-135M (0.8 ms on a busy 2-core CPU, 25x a bare
    write of the config field), paid only where the model's own implementation is not the scoring one (FlexAttention,
    or a model loaded with a flash kernel; dense scoring of an eager or SDPA model switches nothing). A model whose
    implementation transformers cannot switch (its attention does not go through ``AttentionInterface``) raises here
    rather than be handed a mask its kernel rejects.
    """
    with model_lock(model):
        current = getattr(model.config, "_attn_implementation", None)
        if current == name:
            yield
            return
        _switch(model, name)
        try:
            yield
        finally:
            _switch(model, current)


def _switch(model: Any, name: str | None) -> None:
    """``model.set_attn_implementation(name)``, checked: transformers only logs a warning when it cannot switch."""
    if name == FLEX_IMPLEMENTATION:
        register_flex()  # idempotent: the name must be registered before transformers validates it
    model.set_attn_implementation(name)
    now = getattr(model.config, "_attn_implementation", None)
    if name is not None and now != name:
        raise RuntimeError(
            f"transformers could not switch {type(model).__name__} to attention implementation {name!r} (it has "
            f"{now!r}): its attention layers do not go through transformers' AttentionInterface, which the packed "
            "scoring needs (a 4-D or block mask per forward)"
        )
