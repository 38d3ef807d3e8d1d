"""How :class:`~prior_wrappers.priors.hf.HFPrior` cuts one ``score`` call into forwards.

Every prompt becomes one packed row ``[prompt | its candidates]`` (:class:`Segment`), or several when its candidates
do not fit the token budget together (:func:`split_to_budget`); the rows then go through the model in batches of at
most ``token_budget`` key/value positions, counting the cached past each row starts from (:func:`batches`).
"""

from __future__ import annotations

from dataclasses import dataclass

from prior_wrappers.priors.packing import Node, candidate_nodes
from prior_wrappers.priors.prefix_tree import PrefixMatch


@dataclass
class Segment:
    """One packed row: a (possibly truncated) prompt and some of its candidates."""

    prompt_index: int
    prompt_ids: list[int]  # the whole prompt; the row computes prompt_ids[offset:]
    candidate_indices: list[int]
    contexts: list[int]  # how many prompt tokens each candidate continues from
    candidate_ids: list[list[int]]
    offset: int = 0  # leading prompt tokens served from the KV cache (not in this row)
    match: PrefixMatch | None = None  # where those keys/values are in the prefix tree
    nodes: list[Node] | None = None  # candidate tokens in the row: (token, parent, ctx, depth)
    paths: list[list[int]] | None = None  # per candidate: its nodes, first token first

    @property
    def length(self) -> int:
        """Tokens this row computes."""
        n_candidate = len(self.nodes) if self.nodes is not None else sum(len(c) for c in self.candidate_ids)
        return len(self.prompt_ids) - self.offset + n_candidate

    @property
    def reusable(self) -> int:
        """How many leading prompt tokens of this row may come from a cache: each candidate needs the hidden state
        at its context's last token, so that token stays in the row."""
        return min(self.contexts) - 1

    def pack_candidates(self) -> None:
        """Lay out the candidates' tokens as a token trie (see :func:`~prior_wrappers.priors.packing.candidate_nodes`):
        candidates that continue the same context with the same first tokens, "take knife" and "take apple", compute
        those tokens once."""
        self.nodes, self.paths = candidate_nodes(self.contexts, self.candidate_ids)


def split_to_budget(
    prompt_index: int, prompt_ids: list[int], contexts: list[int], candidate_ids: list[list[int]], token_budget: int
) -> list[Segment]:
    """The rows of one prompt: its candidates in order, a new row whenever the next would take the row past
    ``token_budget`` tokens (each row holds the whole prompt; a row of one candidate may exceed the budget)."""
    segments, current = [], Segment(prompt_index, prompt_ids, [], [], [])
    for j, (ctx, ids) in enumerate(zip(contexts, candidate_ids)):
        if current.candidate_indices and current.length + len(ids) > token_budget:
            segments.append(current)
            current = Segment(prompt_index, prompt_ids, [], [], [])
        current.candidate_indices.append(j)
        current.contexts.append(ctx)
        current.candidate_ids.append(ids)
    segments.append(current)
    return segments


def batches(segments: list[Segment], token_budget: int) -> list[list[Segment]]:
    """Group rows into forwards of at most ``token_budget`` key/value positions: rows x (the longest cached past +
    the longest row), the workspace a forward fills (each row's past is copied into it, padded to the longest). A
    row alone may exceed it."""
    ordered = sorted(segments, key=lambda s: s.length, reverse=True)
    grouped: list[list[Segment]] = []
    past = 0
    for seg in ordered:  # longest first: a batch's padded length is its first row's length
        if grouped and (len(grouped[-1]) + 1) * (max(past, seg.offset) + grouped[-1][0].length) <= token_budget:
            grouped[-1].append(seg)
            past = max(past, seg.offset)
        else:
            grouped.append([seg])
            past = seg.offset
    return grouped
