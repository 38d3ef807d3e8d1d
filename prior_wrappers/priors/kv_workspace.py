"""The cached past that each row of :class:`~prior_wrappers.priors.hf.HFPrior`'s forwards starts from.

:class:`CachedPast` is the prefix-cache part of the engine (as
:class:`~prior_wrappers.priors.generation.ProposalSampling` is its sampling part): it decides how many leading prompt
tokens of each row come from the cache (the longest prefix held by the
:class:`~prior_wrappers.priors.prefix_tree.PrefixKVCache`; a prefix shared by every row of a call is computed once
first), and lays out a batch's past as one key/value cache: rows padded to the longest past, copied into flat buffers
kept between calls (the workspace), with room for the forward to write its own keys/values in place after them. It
also keeps the cache's counters (:meth:`CachedPast.cache_info`).
"""

from __future__ import annotations

import warnings
from typing import Any, Literal

import numpy as np
import torch

from prior_wrappers.priors.batching import Segment
from prior_wrappers.priors.hf_compat import (
    cache_from_layers,
    cache_layers,
    forward_with_cache,
    output_cache,
    prefilled_cache,
)
from prior_wrappers.priors.prefix_tree import PrefixKVCache, PrefixMatch
from prior_wrappers.priors.tokenization import common_prefix

PrefixCacheMode = Literal["tree", "off"]


def prefix_cache_on(prefix_cache: bool | str) -> bool:
    """Whether ``prefix_cache`` asks for the prefix tree: ``True``/``"tree"`` or ``False``/``"off"``; 0.4's
    ``"shared"`` was removed in 0.5."""
    if prefix_cache == "shared":
        raise ValueError(
            "prefix_cache='shared' was removed in 0.5: use prefix_cache=True (the default prefix tree, which also "
            "serves the prefix every prompt shares, and more) or prefix_cache=False"
        )
    if prefix_cache not in (True, False, "tree", "off"):
        raise ValueError(f"prefix_cache must be True, False, 'tree' or 'off', got {prefix_cache!r}")
    return prefix_cache in (True, "tree")


class CachedPast:
    """Prefix reuse for :class:`~prior_wrappers.priors.hf.HFPrior`, which sets the attributes declared here."""

    device: torch.device
    kv_cache: PrefixKVCache | None  # None: no prefix cache (prefix_cache=False)
    min_prefix_tokens: int
    prefix_passes: int
    forward_passes: int
    prompt_tokens: int
    computed_tokens: int
    hit_tokens: int
    _base: Any  # the model without its LM head
    _cache_kwarg: str | None
    _workspace: list[torch.Tensor]  # flat key/value buffers reused by the tree's batches

    @property
    def prefix_cache(self) -> bool:
        """Whether prompts are served from the prefix tree (``prefix_cache=True``, unless the model takes no cache)."""
        return self.kv_cache is not None

    @property
    def prefix_cache_mode(self) -> str:
        """``"tree"`` or ``"off"``: :attr:`prefix_cache` as :meth:`cache_info` names it."""
        return "tree" if self.kv_cache is not None else "off"

    # ------------------------------------------------------------------ the cache's state and counters
    def _init_prefix_cache(self, prefix_cache: bool | str, kv_cache_bytes: int) -> None:
        """The cache's state and counters, for :class:`~prior_wrappers.priors.hf.HFPrior`'s ``__init__`` (once it
        knows ``_base`` and ``_cache_kwarg``): its ``prefix_cache`` and ``kv_cache_bytes`` options."""
        cached = prefix_cache_on(prefix_cache)
        if cached and self._cache_kwarg is None:
            warnings.warn(
                f"{type(self._base).__name__} takes no key/value cache: the prefix cache is off (prefix_cache=False)",
                stacklevel=3,
            )
            cached = False
        self.kv_cache = PrefixKVCache(kv_cache_bytes) if cached else None
        self.min_prefix_tokens = 16
        self.prefix_passes = 0  # forwards that computed a prefix shared by the rows of a call
        self._workspace = []
        # counters (see cache_info): prompt tokens scored, tokens through the model, prompt tokens from the cache
        self.prompt_tokens = self.computed_tokens = self.hit_tokens = 0

    def cache_info(self) -> dict[str, Any]:
        """The engine's counters since it was made (or since :meth:`reset_counters`):

        ``prompt_tokens`` (tokens of the prompts scored, what a full recompute would compute before the
        candidates), ``computed_tokens`` (tokens that went through the model: uncached prompt tokens, shared
        prefixes and candidates, no padding), ``hit_tokens`` (prompt tokens served from the cache),
        ``forward_passes`` and ``prefix_passes``; with the tree also ``bytes``, ``max_bytes``, ``tokens`` (held,
        each once), ``nodes``, ``evictions`` and ``evicted_tokens``.
        """
        info: dict[str, Any] = {
            "mode": self.prefix_cache_mode,
            "prompt_tokens": self.prompt_tokens,
            "computed_tokens": self.computed_tokens,
            "hit_tokens": self.hit_tokens,
            "forward_passes": self.forward_passes,
            "prefix_passes": self.prefix_passes,
        }
        tree = self.kv_cache
        if tree is not None:
            info.update(
                bytes=tree.bytes,
                max_bytes=tree.max_bytes,
                tokens=tree.tokens,
                nodes=tree.nodes,
                evictions=tree.evictions,
                evicted_tokens=tree.evicted_tokens,
            )
        return info

    def reset_counters(self) -> None:
        """Zero the token counters (the cached keys/values stay)."""
        self.prompt_tokens = self.computed_tokens = self.hit_tokens = 0

    def clear_cache(self) -> None:
        """Forget every cached prefix (the next call recomputes its prompts in full)."""
        if self.kv_cache is not None:
            self.kv_cache.clear()
        self._workspace = []

    # ------------------------------------------------------------------ where each row's past comes from
    @torch.inference_mode()
    def _apply_prefix_tree(self, segments: list[Segment]) -> None:
        """Each row starts after its longest cached prefix.

        Before that, a prefix that every row of the call shares but the tree lacks (the instruction and
        demonstrations on a first call) is computed once in its own forward, so that the rows do not each compute it.
        """
        tree = self.kv_cache
        assert tree is not None
        if len(segments) >= 2:
            first = segments[0].prompt_ids
            n = min(min(seg.reusable, common_prefix(first, seg.prompt_ids)) for seg in segments)
            held = tree.match(first, n)
            if n - held.length >= self.min_prefix_tokens:
                self._prefill(first[:n], held)
        for seg in segments:
            self._match(seg)

    def _match(self, seg: Segment, limit: int | None = None) -> None:
        """Point a row at its longest cached prefix (at most ``limit`` tokens). Done again right before the row's
        batch runs: the inserts of earlier batches may have split the tree's nodes (or extended what it holds) since
        the first look-up; the batch's past, as planned, is then the limit, so the forward stays within the budget
        (a row served more from the cache computes fewer tokens itself)."""
        most = seg.reusable if limit is None else min(seg.reusable, limit)
        seg.match = self.kv_cache.match(seg.prompt_ids, most)  # type: ignore[union-attr]
        seg.offset = seg.match.length

    def _prefill(self, ids: list[int], held: PrefixMatch) -> None:
        """Compute the keys/values of ``ids`` after its cached part ``held`` and store them in the tree."""
        start, n = held.length, len(ids)
        # our own cache even when empty: the model's would keep only the last window of its sliding layers
        past = cache_from_layers([(k[None], v[None]) for k, v in held.layers()] if start else [])
        inputs = dict(
            input_ids=torch.tensor([ids[start:]], device=self.device),
            position_ids=torch.arange(start, n, device=self.device)[None],
        )
        output = forward_with_cache(self._base, past, kwarg=self._cache_kwarg, use_cache=True, **inputs)
        layers = cache_layers(output_cache(output))
        self.kv_cache.insert(ids, [(k[0, :, start:n], v[0, :, start:n]) for k, v in layers], start=start)  # type: ignore[union-attr]
        self.prefix_passes += 1
        self.computed_tokens += n - start

    # ------------------------------------------------------------------ a batch's past, in the workspace
    def _past(self, batch: list[Segment], room: int) -> Any:
        """The batch's cached prefixes as one key/value cache, or ``None``: ``(rows, kv_heads, P, head_dim)`` per
        layer, P the longest row's offset; row r's keys/values fill its first ``offset_r`` columns (the rest is
        zero, and masked). The buffers have ``room`` more positions, which the forward fills in place."""
        width = max(seg.offset for seg in batch)
        if width == 0:
            return None
        n = len(batch)
        template = next(seg.match for seg in batch if seg.offset == width).pieces[0][0].kv  # type: ignore[union-attr]
        shapes = [(n, k.shape[0], width + room, k.shape[2]) for k, _ in template]
        keys, values = self._workspace_views(shapes, template[0][0])
        for r, seg in enumerate(batch):
            if seg.offset:
                seg.match.copy_into(keys, values, r)  # type: ignore[union-attr]
            if seg.offset < width:  # masked, but must be finite: 0 x garbage could be NaN
                for k, v in zip(keys, values):
                    k[r, :, seg.offset : width] = 0
                    v[r, :, seg.offset : width] = 0
        return prefilled_cache(keys, values, filled=width)

    def _workspace_views(
        self, shapes: list[tuple[int, int, int, int]], like: torch.Tensor
    ) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Contiguous key and value buffers of the given per-layer shapes, carved from flat buffers kept between
        calls (grown when too small): a forward's past is written into memory that is already mapped, rather than
        into fresh allocations (whose first touch costs a page fault per 4 KB on a CPU)."""
        sizes = [int(np.prod(shape)) for shape in shapes]
        flat = self._workspace
        if (
            len(flat) != 2 * len(shapes)
            or any(f.numel() < size for f, size in zip(flat, sizes + sizes))
            or (flat and (flat[0].dtype != like.dtype or flat[0].device != like.device))
        ):
            flat = [like.new_empty(int(size * 1.25)) for size in sizes + sizes]
            self._workspace = flat
        views = [f[:size].view(shape) for f, size, shape in zip(flat, sizes + sizes, shapes + shapes)]
        return views[: len(shapes)], views[len(shapes) :]
