"""BoundedLRU: cachetools' LRUCache bounded by bytes and entries, evicting as appending-then-trimming would."""

from __future__ import annotations

import random
from collections import OrderedDict

import pytest

from prior_wrappers.lru import BoundedLRU


def make(max_entries: int = 100, max_bytes: int = 100, evicted: list | None = None) -> BoundedLRU[str, str]:
    on_evict = None if evicted is None else (lambda key, value: evicted.append(key))
    return BoundedLRU(max_entries, max_bytes, len, on_evict)


def keys(lru: BoundedLRU) -> list:
    return [key for key, _ in lru.lru_items()]


def test_bytes_and_entries_both_bound_it_least_recently_used_first():
    evicted: list[str] = []
    lru = make(max_entries=3, max_bytes=10, evicted=evicted)
    lru.put_all([("a", "xxx"), ("b", "xxx"), ("c", "xxx")])
    assert lru["a"] == "xxx"  # a look-up makes "a" the most recently used
    lru["d"] = "x"  # a fourth entry: "b" goes
    assert keys(lru) == ["c", "a", "d"] and lru.currsize == 7 and evicted == ["b"]
    lru["e"] = "xxxxx"  # "c" goes for the entries; then 4 + 5 bytes fit
    assert keys(lru) == ["a", "d", "e"] and lru.currsize == 9 and evicted == ["b", "c"]
    lru["f"] = "x" * 7  # "a" goes for the entries, "d" and "e" for the bytes
    assert keys(lru) == ["f"] and lru.currsize == 7 and evicted == ["b", "c", "a", "d", "e"]


def test_a_replaced_value_leaves_first_and_a_value_over_the_budget_empties_it():
    evicted: list[str] = []
    lru = make(max_bytes=10, evicted=evicted)
    lru.put_all([("a", "xxxx"), ("b", "xxxxx")])
    lru["b"] = "xxxxxx"  # 4 + 6 fit: cachetools alone would count the old "xxxxx" too and evict "a"
    assert keys(lru) == ["a", "b"] and lru.currsize == 10 and evicted == []
    lru["c"] = "x" * 11  # larger than the whole budget: as if appended and trimmed, nothing is left
    assert len(lru) == 0 and lru.currsize == 0 and evicted == ["a", "b", "c"]


def test_peek_does_not_mark_a_value_used():
    lru = make()
    lru.put_all([("a", "x"), ("b", "x")])
    assert lru.peek("a") == "x" and lru.peek("zzz") is None
    assert keys(lru) == ["a", "b"]
    assert lru.get("a") == "x"
    assert keys(lru) == ["b", "a"]


def test_lru_items_gives_the_order_of_use_and_keeps_the_cache():
    lru = make()
    lru.put_all([("a", "x"), ("b", "yy"), ("c", "z")])
    lru["a"]
    assert list(lru) == ["a", "b", "c"]  # iteration follows insertion, not use
    assert lru.lru_items() == [("b", "yy"), ("c", "z"), ("a", "x")]
    assert lru.lru_items() == [("b", "yy"), ("c", "z"), ("a", "x")] and lru.currsize == 4


def reference(state: OrderedDict, sizes: dict, items: list, max_entries: int, max_bytes: int) -> list:
    """The hand-written caches' rule: append every item (a replaced key moves), then evict from the front."""
    for key, value in items:
        state.pop(key, None)
        state[key] = value
    evicted = []
    while state and (len(state) > max_entries or sum(sizes[v] for v in state.values()) > max_bytes):
        evicted.append(state.popitem(last=False)[0])
    return evicted


@pytest.mark.parametrize("seed", range(30))
def test_put_all_evicts_exactly_as_appending_everything_then_trimming(seed):
    rng = random.Random(seed)
    max_entries, max_bytes = rng.choice([1, 2, 4, 50]), rng.choice([1, 5, 12, 40, 1000])
    evicted: list[str] = []
    lru = make(max_entries, max_bytes, evicted)
    state: OrderedDict[str, str] = OrderedDict()
    sizes = {"x" * n: n for n in range(30)}
    for _ in range(60):
        if rng.random() < 0.3 and state:
            key = rng.choice(list(state))
            assert lru[key] == state[key]
            state.move_to_end(key)
            continue
        batch = {rng.choice("abcdefghij"): "x" * rng.randrange(0, 15) for _ in range(rng.randrange(1, 6))}
        before = len(evicted)
        lru.put_all(batch.items())
        expected = reference(state, sizes, list(batch.items()), max_entries, max_bytes)
        assert keys(lru) == list(state) and lru.currsize == sum(map(len, state.values()))
        assert evicted[before:] == expected  # the same keys leave, in the same order
