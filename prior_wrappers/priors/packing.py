"""Packed candidate scoring: one row per prompt, ``[prompt | candidate tokens]``, a block attention mask, and the
log-probability of every candidate token from the hidden state that predicts it.

One place for the maths that both the prior engine (:class:`~prior_wrappers.priors.hf.HFPrior`, frozen, with a
prefix cache) and the LLM policy of :mod:`prior_wrappers.sb3.gflan_prior` (LoRA-adapted, with gradients) use, so
that the policy's log-likelihoods of the candidates are the engine's to float precision.

A row computes its prompt's tokens after ``offset`` (the leading ones may come from a key/value cache) and then
its candidates' tokens as *nodes*: ``(token, parent, context, depth)``. A node attends to the prompt's first
``context`` tokens and to its ancestors; its position id is ``context + depth``, so every candidate continues at
its own context, exactly as in a full forward of ``prompt[:context] + candidate``. With sharing, candidates that
continue the same context with the same first tokens share those nodes (a token trie).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

Node = tuple[int, int, int, int]  # (token, parent node or -1, context, depth)


def candidate_nodes(
    contexts: Sequence[int], candidate_ids: Sequence[Sequence[int]], share: bool = True
) -> tuple[list[Node], list[list[int]]]:
    """Lay out the candidates' tokens as nodes: a token trie with ``share`` (a node per distinct (context, prefix)),
    else one chain per candidate. Returns the nodes and, per candidate, its path of node indices.

    :param contexts: per candidate, how many prompt tokens it continues from.
    :param candidate_ids: per candidate, its tokens.
    :param share: share the common leading tokens of candidates with the same context.
    """
    nodes: list[Node] = []
    index: dict[tuple[int, int, int], int] = {}
    paths = []
    for j, (ctx, ids) in enumerate(zip(contexts, candidate_ids)):
        parent, path = -1, []
        for depth, token in enumerate(ids):
            key = (ctx, parent, int(token)) if share else (-1 - j, depth, 0)
            node = index.get(key)
            if node is None:
                node = index[key] = len(nodes)
                nodes.append((int(token), parent, int(ctx), depth))
            path.append(node)
            parent = node
        paths.append(path)
    return nodes, paths


@dataclass
class PackedRows:
    """A batch of packed rows, ready for the model (tensors on the CPU).

    :param input_ids: ``(rows, width)`` token ids (padding: ``pad_id``).
    :param position_ids: ``(rows, width)``.
    :param allowed: ``(rows, width, width)`` which column each column attends to (within the row).
    :param pred_rows: per predicted token, its row.
    :param pred_cols: per predicted token, the column whose hidden state predicts it.
    :param targets: per predicted token, its id.
    :param spans: per row, per candidate: its tokens' places in the prediction lists.
    :param last_cols: per row, per candidate: the column of its last token.
    :param prompt_cols: per row, how many prompt tokens it computes (column ``prompt_cols - 1`` is the last).
    :param lengths: per row, the columns it uses (the rest is padding).
    """

    input_ids: torch.Tensor
    position_ids: torch.Tensor
    allowed: torch.Tensor
    pred_rows: list[int]
    pred_cols: list[int]
    targets: list[int]
    spans: list[list[np.ndarray]]
    last_cols: list[list[int]]
    prompt_cols: list[int]
    lengths: list[int]


def pack_rows(
    rows: Sequence[tuple[Sequence[int], int, Sequence[Node], Sequence[Sequence[int]]]], pad_id: int
) -> PackedRows:
    """Pack rows ``(prompt_ids, offset, nodes, paths)`` into one batch (see the module docstring).

    The prompt part is causal; a candidate's first token sees the context (its last token must be in the row:
    ``context > offset``), a later one what its parent sees and the parent. Padding attends to itself only (a
    fully masked row would give NaN).

    :param rows: per row, the whole prompt, how many of its leading tokens are not in the row (cached), the
        candidate nodes and paths of :func:`candidate_nodes`.
    :param pad_id: the token id of padding.
    """
    lengths = [len(p) - offset + len(nodes) for p, offset, nodes, _ in rows]
    width = max(lengths)
    n = len(rows)
    input_ids = torch.full((n, width), pad_id, dtype=torch.long)
    position_ids = torch.zeros((n, width), dtype=torch.long)
    allowed = torch.zeros((n, width, width), dtype=torch.bool)
    causal = torch.ones((width, width), dtype=torch.bool).tril()
    pred_rows: list[int] = []
    pred_cols: list[int] = []
    targets: list[int] = []
    spans: list[list[np.ndarray]] = []
    last_cols: list[list[int]] = []
    prompt_cols: list[int] = []
    for r, (prompt_ids, offset, nodes, paths) in enumerate(rows):
        lp = len(prompt_ids) - offset
        input_ids[r, :lp] = torch.as_tensor(list(prompt_ids[offset:]), dtype=torch.long)
        position_ids[r, :lp] = torch.arange(offset, offset + lp)
        allowed[r, :lp, :lp] = causal[:lp, :lp]
        start = len(targets)
        for k, (token, parent, ctx, depth) in enumerate(nodes):
            col = lp + k
            input_ids[r, col] = token
            position_ids[r, col] = ctx + depth
            if parent < 0:  # a candidate's first token: sees the context
                allowed[r, col, : ctx - offset] = True
                pred_cols.append(ctx - offset - 1)
            else:  # sees what its parent sees, and the parent
                allowed[r, col] = allowed[r, lp + parent]
                pred_cols.append(lp + parent)
            allowed[r, col, col] = True
            pred_rows.append(r)
            targets.append(token)
        for c in range(lp + len(nodes), width):
            allowed[r, c, c] = True
        spans.append([start + np.asarray(path, dtype=np.int64) for path in paths])
        last_cols.append([lp + path[-1] for path in paths])
        prompt_cols.append(lp)
    return PackedRows(
        input_ids, position_ids, allowed, pred_rows, pred_cols, targets, spans, last_cols, prompt_cols, lengths
    )


def additive_mask(visible: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """A boolean ``(rows, queries, keys)`` visibility as the ``(rows, 1, queries, keys)`` additive mask that
    transformers' attention takes (0 where visible, the dtype's minimum elsewhere).

    :param visible: which key each query sees.
    :param dtype: the model's dtype.
    """
    mask = torch.zeros((visible.shape[0], 1, *visible.shape[1:]), dtype=dtype, device=visible.device)
    return mask.masked_fill_(~visible.unsqueeze(1), torch.finfo(dtype).min)


def candidate_token_logprobs(
    hidden: torch.Tensor, lm_head: Any, packed: PackedRows, softcap: float | None = None
) -> torch.Tensor:
    """log p(target | what it sees) of every predicted candidate token, ``(predictions,)`` in float32.

    Only the hidden states that predict candidate tokens go through the output layer.

    :param hidden: the model's last hidden states ``(rows, width, hidden)``.
    :param lm_head: the output embeddings (``model.get_output_embeddings()``).
    :param packed: the batch that produced ``hidden``.
    :param softcap: the model's final logit soft-capping (Gemma 2), if any.
    """
    dev = hidden.device
    rows = torch.tensor(packed.pred_rows, dtype=torch.long, device=dev)
    cols = torch.tensor(packed.pred_cols, dtype=torch.long, device=dev)
    logits = lm_head(hidden[rows, cols]).float()
    if softcap:
        logits = torch.tanh(logits / softcap) * softcap
    targets = torch.tensor(packed.targets, dtype=torch.long, device=dev).unsqueeze(-1)
    return logits.log_softmax(-1).gather(-1, targets).squeeze(-1)


def span_sums(token_logprobs: torch.Tensor, spans: Sequence[np.ndarray]) -> torch.Tensor:
    """Per candidate, the sum of its tokens' log-probabilities (candidates of a trie share tokens), ``(len(spans),)``
    in the dtype of ``token_logprobs``; differentiable.

    :param token_logprobs: the output of :func:`candidate_token_logprobs` (or a copy in another dtype).
    :param spans: per candidate, its tokens' places in ``token_logprobs``.
    """
    longest = max(len(s) for s in spans)
    places = np.zeros((len(spans), longest), dtype=np.int64)
    present = np.zeros((len(spans), longest), dtype=bool)
    for j, s in enumerate(spans):
        places[j, : len(s)] = s
        present[j, : len(s)] = True
    dev = token_logprobs.device
    gathered = token_logprobs[torch.as_tensor(places, device=dev)]
    return torch.where(torch.as_tensor(present, device=dev), gathered, torch.zeros_like(gathered)).sum(-1)
