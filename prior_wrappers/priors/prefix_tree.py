"""A radix tree of token prefixes holding their keys/values, bounded by a byte budget (LRU over leaves).

Exactness: a causal LM's keys and values at position ``t`` depend only on tokens ``0..t`` (and the position ids,
which always start at 0 here), so the keys/values of any prefix of a scored prompt are those of every other prompt
that starts with the same tokens. The tree stores them once per distinct prefix: a prompt that extends a cached
one (the next step of the same episode, another env with the same instruction and demonstrations) looks up its
longest cached prefix and computes only the tokens after it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch

KV = list[tuple[torch.Tensor, torch.Tensor]]  # per layer: (keys, values), each (kv_heads, tokens, head_dim)


@dataclass(eq=False)
class _Node:
    tokens: tuple[int, ...]  # the edge's tokens (the root's is empty)
    kv: KV
    parent: _Node | None
    children: dict[int, _Node] = field(default_factory=dict)  # by first token
    last_used: int = 0

    @property
    def nbytes(self) -> int:
        return sum(k.nbytes + v.nbytes for k, v in self.kv)


@dataclass
class PrefixMatch:
    """The longest cached prefix of a token sequence: its length and the tree's pieces that hold it."""

    length: int
    pieces: list[tuple[_Node, int]]  # (node, how many of its tokens are used), root first

    def layers(self) -> KV:
        """Per layer ``(keys, values)`` of the matched tokens, ``(kv_heads, length, head_dim)`` each (copies)."""
        if not self.pieces:
            return []
        n_layers = len(self.pieces[0][0].kv)
        return [
            (
                torch.cat([node.kv[i][0][:, :used] for node, used in self.pieces], dim=1),
                torch.cat([node.kv[i][1][:, :used] for node, used in self.pieces], dim=1),
            )
            for i in range(n_layers)
        ]

    def copy_into(self, keys: Sequence[torch.Tensor], values: Sequence[torch.Tensor], row: int) -> None:
        """Write the matched keys/values into ``keys[i][row, :, :length]`` (and values) for every layer ``i``."""
        start = 0
        for node, used in self.pieces:
            for i, (k, v) in enumerate(node.kv):
                keys[i][row, :, start : start + used] = k[:, :used]
                values[i][row, :, start : start + used] = v[:, :used]
            start += used


class PrefixKVCache:
    """Keys/values of recently scored token prefixes, shared across calls, envs and states.

    >>> cache = PrefixKVCache(max_bytes=256 << 20)
    >>> match = cache.match(prompt_ids)                  # longest cached prefix (touches it: recently used)
    >>> cache.insert(prompt_ids, kv_of_tokens_after_match, start=match.length)
    >>> cache.evict()                                    # drop least recently used leaves until within budget

    :param max_bytes: the budget for the stored keys/values; :meth:`evict` brings the tree back under it by
        dropping least recently used leaves (a leaf's parent becomes a leaf, so a long unused branch goes whole).
    """

    def __init__(self, max_bytes: int) -> None:
        if max_bytes < 0:
            raise ValueError(f"max_bytes must be >= 0, got {max_bytes}")
        self.max_bytes = int(max_bytes)
        self.root = _Node((), [], None)
        self.bytes = 0
        self.nodes = 0
        self.evictions = 0  # leaves dropped
        self.evicted_tokens = 0
        self._clock = 0

    def _tick(self) -> int:
        self._clock += 1
        return self._clock

    def match(self, ids: Sequence[int], limit: int | None = None) -> PrefixMatch:
        """The longest prefix of ``ids[:limit]`` held by the tree; marks its nodes as just used."""
        limit = len(ids) if limit is None else min(limit, len(ids))
        node, pos, pieces, now = self.root, 0, [], self._tick()
        while pos < limit:
            child = node.children.get(ids[pos])
            if child is None:
                break
            used = 0
            edge = child.tokens
            while used < len(edge) and pos + used < limit and edge[used] == ids[pos + used]:
                used += 1
            child.last_used = now
            pieces.append((child, used))
            pos += used
            if used < len(edge):
                break
            node = child
        return PrefixMatch(pos, pieces)

    def insert(self, ids: Sequence[int], kv: KV, start: int) -> int:
        """Store the keys/values of ``ids[start:]`` (``kv``: per layer, ``(kv_heads, len(ids) - start, head_dim)``),
        given that ``ids[:start]`` is (or was) cached. Tokens the tree already holds are skipped; returns how many
        new tokens were stored. Tensors are copied, so ``kv`` may be a view of a larger batch."""
        if len(ids) <= start:
            return 0
        now = self._tick()
        node, pos = self.root, 0
        while pos < len(ids):
            child = node.children.get(ids[pos])
            if child is None:
                break
            edge = child.tokens
            used = 0
            while used < len(edge) and pos + used < len(ids) and edge[used] == ids[pos + used]:
                used += 1
            child.last_used = now
            if used < len(edge):
                if pos + used == len(ids):
                    return 0  # ids end inside this edge: all held already
                child = self._split(child, used)
            pos += used
            node = child
        if pos == len(ids):
            return 0
        if pos < start:
            # ids[pos:start] is not held (evicted since it was matched): the caller has no keys/values for it
            return 0
        offset = pos - start
        leaf_kv = [(k[:, offset:].clone(), v[:, offset:].clone()) for k, v in kv]
        leaf = _Node(tuple(ids[pos:]), leaf_kv, node, last_used=now)
        node.children[ids[pos]] = leaf
        self.bytes += leaf.nbytes
        self.nodes += 1
        return len(ids) - pos

    def _split(self, node: _Node, at: int) -> _Node:
        """Cut ``node``'s edge after ``at`` tokens; returns the new upper part (the parent of the rest)."""
        parent = node.parent
        assert parent is not None
        upper = _Node(
            node.tokens[:at],
            [(k[:, :at].clone(), v[:, :at].clone()) for k, v in node.kv],
            parent,
            last_used=node.last_used,
        )
        node.tokens = node.tokens[at:]
        node.kv = [(k[:, at:].clone(), v[:, at:].clone()) for k, v in node.kv]
        node.parent = upper
        upper.children[node.tokens[0]] = node
        parent.children[upper.tokens[0]] = upper
        self.nodes += 1
        return upper

    def leaves(self) -> list[_Node]:
        out, stack = [], list(self.root.children.values())
        while stack:
            node = stack.pop()
            if node.children:
                stack.extend(node.children.values())
            else:
                out.append(node)
        return out

    def evict(self, max_bytes: int | None = None) -> int:
        """Drop least recently used leaves until the tree holds at most ``max_bytes`` (default: the budget);
        returns the bytes freed."""
        budget = self.max_bytes if max_bytes is None else max_bytes
        freed = 0
        if self.bytes <= budget:
            return 0
        leaves = self.leaves()
        while self.bytes > budget and leaves:
            leaves.sort(key=lambda n: n.last_used, reverse=True)
            leaf = leaves.pop()
            parent = leaf.parent
            assert parent is not None
            del parent.children[leaf.tokens[0]]
            size = leaf.nbytes
            self.bytes -= size
            freed += size
            self.nodes -= 1
            self.evictions += 1
            self.evicted_tokens += len(leaf.tokens)
            if parent is not self.root and not parent.children:
                leaves.append(parent)
        return freed

    def clear(self) -> None:
        """Forget every stored prefix (counters are kept)."""
        self.root = _Node((), [], None)
        self.bytes = 0
        self.nodes = 0

    @property
    def tokens(self) -> int:
        """Tokens held (each stored once, whatever the number of prompts sharing it)."""
        total, stack = 0, list(self.root.children.values())
        while stack:
            node = stack.pop()
            total += len(node.tokens)
            stack.extend(node.children.values())
        return total
