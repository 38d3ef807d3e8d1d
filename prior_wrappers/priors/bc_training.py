"""The network of :class:`~prior_wrappers.priors.behavior_cloning.BCPrior` and its training: the MLP, the training
states drawn from demonstrations, and the softmax cross-entropy loop over each state's candidate commands.

Everything here works on texts and feature rows; the text encoder, the prior's configuration and its files stay
with :class:`~prior_wrappers.priors.behavior_cloning.BCPrior`. All randomness comes from the ``torch.Generator``
passed in, in a fixed order (negatives, initial weights, minibatch order), so a seed gives the same weights.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from prior_wrappers.demonstrations import Demonstration, Demonstrations
from prior_wrappers.prompts import PromptFn


def build_mlp(input_dim: int, hidden: Sequence[int], generator: torch.Generator | None = None) -> nn.Sequential:
    """The MLP from a feature row to one logit; with a generator, initialised from it (PyTorch's default Linear
    init, without the global RNG); without, left uninitialised (for weights about to be loaded)."""
    sizes = [input_dim, *hidden, 1]
    layers: list[nn.Module] = []
    for i, (n_in, n_out) in enumerate(zip(sizes, sizes[1:])):
        linear = nn.utils.skip_init(nn.Linear, n_in, n_out)
        if generator is not None:
            bound = 1.0 / np.sqrt(n_in)
            with torch.no_grad():
                linear.weight.uniform_(-bound, bound, generator=generator)
                linear.bias.uniform_(-bound, bound, generator=generator)
        layers.append(linear)
        if i < len(sizes) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


def training_episodes(demonstrations: Any) -> list[Demonstration]:
    """The successful, non-empty episodes of any accepted training input."""
    pool = Demonstrations.training_pool(demonstrations, "fit()")
    episodes = [e for e in pool.episodes if e.success and e.steps]
    if not episodes:
        raise ValueError(
            f"no demonstration to learn from: the {type(demonstrations).__name__} given holds no "
            "successful, non-empty episode (unsuccessful and empty episodes are dropped)"
        )
    return episodes


def training_states(
    episodes: Sequence[Demonstration], prompt: PromptFn | None, history: int, state_text: Callable[[str], str]
) -> tuple[list[str], list[list[str]], list[int]]:
    """``(states, candidates, labels)`` of every step: the state text of its prompt, its admissible commands (or
    the expert's command alone when none were recorded), and the expert's index among them."""
    states, candidates, labels = [], [], []
    for e, episode in enumerate(episodes):
        for j, point in enumerate(episode.decision_points(prompt, history=history)):
            command = point.command
            if not isinstance(command, str) or not command.strip():
                raise ValueError(f"step {j} of demonstration {e} (source {episode.source!r}) has an empty command")
            admissible = [a for a in point.admissible if a.strip()]
            if admissible and command not in admissible:
                shown = admissible[:8] + (["..."] if len(admissible) > 8 else [])
                raise ValueError(
                    f"step {j} of demonstration {e} (source {episode.source!r}): the expert's command "
                    f"{command!r} is not among its {len(admissible)} admissible commands {shown}; fix the "
                    "demonstration (or record it with Demonstrations.from_expert)"
                )
            states.append(state_text(point.prompt))
            candidates.append(admissible or [command])
            labels.append(admissible.index(command) if admissible else 0)
    return states, candidates, labels


def add_negatives(
    candidates: list[list[str]], labels: list[int], negatives: int, generator: torch.Generator
) -> list[list[str]]:
    """Steps with only their own command (no recorded admissible list) get at most ``negatives`` expert commands
    of other steps as alternatives (the label stays 0); ``candidates`` is changed in place and returned."""
    pool = list(dict.fromkeys(c[labels[i]] for i, c in enumerate(candidates)))
    for i, cands in enumerate(candidates):
        if len(cands) > 1:
            continue
        others = [c for c in pool if c != cands[0]]
        if len(others) > negatives:
            chosen = torch.randperm(len(others), generator=generator)[:negatives]
            others = [others[k] for k in sorted(chosen.tolist())]
        candidates[i] = cands + others
    return candidates


def train_mlp(
    rows: torch.Tensor, counts: Sequence[int], labels: Sequence[int], config: dict[str, Any], generator: torch.Generator
) -> tuple[nn.Sequential, dict[str, Any]]:
    """Train a new MLP (``config``: a BCPrior's ``hidden``, ``lr``, ``weight_decay``, ``batch_size``, ``epochs``,
    ``updates``) with softmax cross-entropy over each state's candidates.

    :param rows: one feature row per (state, candidate), states in order.
    :param counts: the number of candidates of each state.
    :param labels: the index of the expert's command among each state's candidates.
    :returns: the model in eval mode and ``{"epochs", "updates", "final_loss"}`` (the last epoch's mean loss).
    """
    offsets = np.cumsum([0, *counts])
    n = len(counts)
    index = torch.full((n, max(counts)), rows.shape[0], dtype=torch.long)  # the padding row
    for i in range(n):
        index[i, : counts[i]] = torch.arange(offsets[i], offsets[i + 1])
    rows = torch.cat([rows, torch.zeros(1, rows.shape[1])])
    target = torch.tensor(labels, dtype=torch.long)

    model = build_mlp(rows.shape[1], config["hidden"], generator)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config["lr"], weight_decay=config["weight_decay"])
    per_epoch = -(-n // config["batch_size"])
    epochs = config["epochs"] or max(1, -(-config["updates"] // per_epoch))
    loss_sum = 0.0
    for _ in range(epochs):
        order = torch.randperm(n, generator=generator)
        loss_sum = 0.0
        for start in range(0, n, config["batch_size"]):
            batch = order[start : start + config["batch_size"]]
            idx = index[batch]
            logits = model(rows[idx]).squeeze(-1).masked_fill(idx == rows.shape[0] - 1, float("-inf"))
            loss = nn.functional.cross_entropy(logits, target[batch])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            loss_sum += loss.item() * len(batch)
    return model.eval(), {"epochs": epochs, "updates": epochs * per_epoch, "final_loss": loss_sum / n}
