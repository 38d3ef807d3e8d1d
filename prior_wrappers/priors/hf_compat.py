"""The one place that knows how transformers passes a key/value cache, across the versions we support.

transformers 4.56–5.x take the cache as ``past_key_values=`` and return it as ``output.past_key_values``; newer 5.x
releases renamed both to ``cache`` (the old name warns, and is removed in 5.40). The engine calls only these
functions, so a rename touches this file alone.

A batch's cached past goes into the forward as a :func:`prefilled_cache`: ``Cache(layers=...)`` over
``PrefilledLayer``, a subclass of transformers' ``DynamicLayer`` (both public, exported from ``transformers`` since
4.56, as is the ``CacheLayerMixin`` interface it overrides: ``lazy_initialization``, ``update``,
``get_seq_length``) whose keys/values live in the engine's preallocated workspace. transformers has no public cache
that does this: ``DynamicCache`` concatenates the new keys/values to the past at every layer (a copy of the whole past
per layer and forward), and ``StaticCache``/``StaticLayer`` allocate buffers of their own on first use (the engine's
reused workspace cannot be handed over without writing their internals), keep only the window for a model's sliding
layers (the engine windows its own masks and needs every position), and in 4.56 write at the position the model
derives from the first row's non-zero keys, wrong for a batch whose rows have cached pasts of different lengths.
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from functools import cache
from typing import Any

import torch

CACHE_KWARGS = ("cache", "past_key_values")


@cache
def _forward_parameters(forward: Any) -> frozenset[str]:
    return frozenset(inspect.signature(forward).parameters)


def cache_kwarg(model: Any) -> str | None:
    """The keyword argument under which ``model.forward`` takes a key/value cache: ``"cache"`` where the installed
    transformers has it, else ``"past_key_values"``; ``None`` for a model that takes neither."""
    params = _forward_parameters(type(model).forward)
    for name in CACHE_KWARGS:
        if name in params:
            return name
    return None


def forward_with_cache(model: Any, cache: Any, *, kwarg: str | None = None, **inputs: Any) -> Any:
    """``model(**inputs)`` with ``cache`` passed under the installed transformers' name for it.

    :param kwarg: force ``"cache"`` or ``"past_key_values"`` (tests use it to check both paths agree).
    """
    name = kwarg or cache_kwarg(model)
    if name is None:
        raise TypeError(
            f"{type(model).__name__}.forward takes no key/value cache (neither 'cache' nor 'past_key_values')"
        )
    return model(**inputs, **{name: cache})


def output_cache(output: Any) -> Any:
    """The key/value cache a forward with ``use_cache=True`` returned, read without the deprecated name."""
    names = {f.name for f in dataclasses.fields(output)} if dataclasses.is_dataclass(output) else set(output.keys())
    for name in CACHE_KWARGS:
        if name in names:
            return getattr(output, name)
    raise TypeError(f"{type(output).__name__} carries no key/value cache")


def cache_layers(cache: Any) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """``[(keys, values), ...]`` per layer, each ``(batch, kv_heads, seq, head_dim)``."""
    return [(layer.keys, layer.values) for layer in cache.layers]


def cache_from_layers(layers: Sequence[tuple[torch.Tensor, torch.Tensor]]) -> Any:
    """A ``DynamicCache`` holding the given per-layer keys/values, built through ``Cache.update`` (the call every
    attention layer makes), not through constructor arguments that have changed between releases."""
    from transformers import DynamicCache

    cache = DynamicCache()
    for index, (keys, values) in enumerate(layers):
        cache.update(keys, values, index)
    return cache


def prefilled_cache(keys: Sequence[torch.Tensor], values: Sequence[torch.Tensor], filled: int) -> Any:
    """A key/value cache over preallocated per-layer buffers ``(batch, kv_heads, filled + room, head_dim)`` whose
    first ``filled`` positions hold the past: the forward writes its new keys/values in place after them and attends
    over ``[:filled + new]``, instead of concatenating (which copies the whole past at every layer). ``filled`` is
    what ``get_seq_length`` reports, as for a cache that holds exactly the past."""
    from transformers import Cache

    layer_class = _prefilled_layer_class()
    return Cache(layers=[layer_class(k, v, filled) for k, v in zip(keys, values)])


@cache
def _prefilled_layer_class() -> type:
    from transformers import DynamicLayer

    class PrefilledLayer(DynamicLayer):
        """A ``DynamicLayer`` whose keys/values live in a buffer with room for the forward's new tokens."""

        keys: torch.Tensor  # set in __init__ (DynamicLayer's may be None before its lazy initialisation)
        values: torch.Tensor

        def __init__(self, keys: torch.Tensor, values: torch.Tensor, filled: int) -> None:
            super().__init__()
            self.keys, self.values, self.filled = keys, values, filled
            self.dtype, self.device = keys.dtype, keys.device
            self.is_initialized = True

        def lazy_initialization(self, *args: Any, **kwargs: Any) -> None:  # already initialised
            return None

        def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
            end = self.filled + key_states.shape[-2]
            if end > self.keys.shape[-2]:
                raise RuntimeError(f"prefilled cache has room for {self.keys.shape[-2]} positions, not {end}")
            self.keys[:, :, self.filled : end] = key_states
            self.values[:, :, self.filled : end] = value_states
            self.filled = end
            return self.keys[:, :, :end], self.values[:, :, :end]

        def get_seq_length(self, *args: Any, **kwargs: Any) -> int:
            return self.filled

    return PrefilledLayer


@contextmanager
def quiet_loading() -> Iterator[None]:
    """Load models without transformers' per-load progress bars and info logs (users see our progress bars, not
    theirs); errors and warnings still show. Restores transformers' settings afterwards."""
    from transformers.utils import logging as hf_logging

    bars_were_on = hf_logging.is_progress_bar_enabled()
    verbosity = hf_logging.get_verbosity()
    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity(max(verbosity, hf_logging.WARNING))
    try:
        yield
    finally:
        hf_logging.set_verbosity(verbosity)
        if bars_were_on:
            hf_logging.enable_progress_bar()


def enable_activation_checkpointing(model: Any) -> None:
    """Recompute activations in the backward pass (non-reentrant): ``activation_checkpointing_enable`` where
    transformers has it, ``gradient_checkpointing_enable`` (its deprecated name, removed in v6) before that."""
    if hasattr(model, "activation_checkpointing_enable"):
        model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
    else:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
