"""The caches' LRU: :class:`cachetools.LRUCache` bounded by bytes, with a bound on entries as well."""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable
from typing import Generic, TypeVar

from cachetools import Cache, LRUCache

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class BoundedLRU(LRUCache[K, V], Generic[K, V]):
    """An LRU cache holding at most ``max_entries`` values and ``max_bytes`` bytes (``getsizeof(value)`` each);
    the least recently used values are evicted first.

    The bytes are cachetools' own bound (``maxsize``, ``currsize``); the entries are a second one. Storing a value
    leaves the cache as appending it and then evicting until both bounds hold would: a value it replaces leaves
    first (cachetools would still count it while making room), and a value larger than ``max_bytes`` evicts
    everything and is not kept (cachetools would raise ``ValueError``). :meth:`put_all` does the same for a batch.
    Reading values through ``items()`` or ``values()`` marks each one used, in the order of insertion: list them
    with :meth:`lru_items`.

    >>> lru = BoundedLRU(max_entries=2, max_bytes=10, getsizeof=len)
    >>> lru.put_all([("a", "xxxx"), ("b", "xxxx"), ("c", "xxxx")])
    >>> lru.lru_items(), lru.currsize
    ([('b', 'xxxx'), ('c', 'xxxx')], 8)

    :param max_entries: values kept.
    :param max_bytes: bytes kept, as measured by ``getsizeof``.
    :param getsizeof: a value's size in bytes.
    :param on_evict: called with ``(key, value)`` for each value evicted (not for those replaced or popped).
    """

    def __init__(
        self,
        max_entries: int,
        max_bytes: int,
        getsizeof: Callable[[V], int],
        on_evict: Callable[[K, V], None] | None = None,
    ) -> None:
        super().__init__(max_bytes, getsizeof=getsizeof)
        self.max_entries = max_entries
        self.on_evict = on_evict

    def __setitem__(self, key: K, value: V) -> None:
        self.pop(key, None)
        if self.getsizeof(value) > self.maxsize:
            while self:
                self.popitem()
            if self.on_evict is not None:
                self.on_evict(key, value)
            return
        while len(self) >= self.max_entries:
            self.popitem()
        super().__setitem__(key, value)  # evicts until the value's bytes fit

    def popitem(self) -> tuple[K, V]:
        key, value = super().popitem()
        if self.on_evict is not None:
            self.on_evict(key, value)
        return key, value

    def peek(self, key: K) -> V | None:
        """The value of ``key`` (``None`` if absent), without making it the most recently used."""
        return Cache.__getitem__(self, key) if key in self else None

    def lru_items(self) -> list[tuple[K, V]]:
        """The ``(key, value)`` pairs, least recently used first (iterating a cachetools cache follows the order
        of insertion instead). Takes them out with ``popitem`` and stores them back in that order, O(n), measuring
        each again: a value must not have grown since it was stored."""
        items = []
        while self:
            items.append(LRUCache.popitem(self))  # not an eviction: on_evict is not called
        for key, value in items:
            LRUCache.__setitem__(self, key, value)
        return items

    def put_all(self, items: Iterable[tuple[K, V]]) -> None:
        """Store ``items`` as the most recently used, in order, evicting as if they were all appended first: the
        keys among them leave before any is stored, so their old values evict nothing."""
        items = list(items)
        for key, _ in items:
            self.pop(key, None)
        for key, value in items:
            self[key] = value
