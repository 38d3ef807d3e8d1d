"""Adapt an LLM prior to expert demonstrations with LoRA, and save / load the adapters.

:func:`fit_lora` fine-tunes low-rank adapters (peft's LoRA) of a copy of an :class:`~prior_wrappers.priors.hf.HFPrior`'s
model on the expert commands of demonstrations and returns a new prior over the adapted model
(:class:`AdaptedPrior`); the given prior is left as it was. Each step of each demonstration becomes a decision point
(:meth:`~prior_wrappers.demonstrations.Demonstrations.decision_points`: the prompt the wrappers would build, the
admissible commands, the expert's command), and the loss is the expert command's negative log-likelihood under
exactly the engine's tokenisation: the tokens that ``prompt + separator + command + candidate_suffix`` adds to the
prompt's (:class:`~prior_wrappers.priors.tokenization.CandidateTokenization`), averaged over them as ``"token"``
normalisation scores them, after the same left cut of prompts too long for the context window. Optionally a listwise
term adds the softmax cross-entropy of the expert among the admissible commands' normalised scores.

    >>> base = HFPrior.default()
    >>> demos = Demonstrations.from_expert(env, 16, seed=0)
    >>> prior = fit_lora(base, demos, epochs=2)               # a new HFPrior; `base` scores as before
    >>> prior.save_adapter("cooking-lora")                     # the adapters (~20 MB at r=16) and what they were for
    >>> prior = load_adapter(HFPrior.default(), "cooking-lora")        # or HFPrior.default(adapter="cooking-lora")

The adapted prior, its fingerprint, and saving / loading the adapters live in
:mod:`prior_wrappers.priors.adapters` (re-exported here: :class:`AdaptedPrior`, :func:`save_adapter`,
:func:`load_adapter`, ...); this module trains them.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

# the adapted prior, its identity and its files live in adapters.py; re-exported here (`X as X`)
from prior_wrappers.priors.adapters import ADAPTER_FORMAT as ADAPTER_FORMAT
from prior_wrappers.priors.adapters import ADAPTER_INFO_FILE as ADAPTER_INFO_FILE
from prior_wrappers.priors.adapters import AdaptedPrior as AdaptedPrior
from prior_wrappers.priors.adapters import adapter_digest as adapter_digest
from prior_wrappers.priors.adapters import base_identity as base_identity
from prior_wrappers.priors.adapters import check_plain, engine_options, peft_module, quiet_peft
from prior_wrappers.priors.adapters import load_adapter as load_adapter
from prior_wrappers.priors.adapters import read_adapter_info as read_adapter_info
from prior_wrappers.priors.adapters import save_adapter as save_adapter
from prior_wrappers.priors.attention import attention_implementation, scoring_implementation
from prior_wrappers.priors.hf import HFPrior
from prior_wrappers.priors.packing import additive_mask, candidate_nodes, candidate_token_logprobs, pack_rows, span_sums
from prior_wrappers.priors.tokenization import TokenizedPrompt

MIN_STEPS = 100  # optimiser steps that LoraSettings(batch_size=None) keeps at least, when the data allows
MAX_AUTO_BATCH = 8


@dataclass(frozen=True)
class LoraSettings:
    """How :func:`fit_lora` trains: the adapters (peft ``LoraConfig``) and the optimisation.

    :param r: LoRA rank.
    :param alpha: LoRA scaling numerator (the update is ``alpha / r * B A``).
    :param dropout: dropout on the adapters' input while training (off when scoring).
    :param target_modules: the modules that get adapters; ``"all-linear"``: every linear layer but the output one.
    :param epochs: passes over the decision points.
    :param lr: AdamW's peak learning rate (linear warm-up over the first 10% of the steps, then linear decay to 0).
    :param batch_size: decision points per optimiser step; ``None`` (default): as many as leave at least
        ``MIN_STEPS`` (100) optimiser steps in all, at most 8. A few walkthroughs then still get a hundred updates
        (with 8 points per step, the 22 steps of two tw-cooking walkthroughs gave 12 in 4 epochs, and MRR 0.53
        against 0.65 with one point per step, on development games): the compute is the same either way, only the
        number of Adam steps changes.
    :param weight_decay: AdamW's weight decay.
    :param max_grad_norm: gradients are clipped to this norm (``None``: not clipped).
    :param listwise: weight of the listwise term, the softmax cross-entropy of the expert's command among the
        admissible commands' token-normalised scores (0: the expert's negative log-likelihood only; points whose
        demonstration did not record its admissible commands contribute the likelihood term only).
    :param seed: seeds the adapters' initialisation, the order of the points and dropout (the global torch random
        state is left as it was).
    """

    r: int = 16
    alpha: float = 32.0
    dropout: float = 0.05
    target_modules: str | tuple[str, ...] = "all-linear"
    epochs: int = 4
    lr: float = 5e-4
    batch_size: int | None = None
    weight_decay: float = 0.0
    max_grad_norm: float | None = 1.0
    listwise: float = 0.0
    seed: int = 0

    def __post_init__(self) -> None:
        checks = {
            "r": self.r >= 1,
            "epochs": self.epochs >= 1,
            "batch_size": self.batch_size is None or self.batch_size >= 1,
            "lr": self.lr > 0,
            "alpha": self.alpha > 0,
            "dropout": 0 <= self.dropout < 1,
            "weight_decay": self.weight_decay >= 0,
            "listwise": self.listwise >= 0,
            "max_grad_norm": self.max_grad_norm is None or self.max_grad_norm > 0,
        }
        for name, ok in checks.items():
            if not ok:
                raise ValueError(f"LoraSettings.{name} is out of range: {getattr(self, name)!r}")
        if not isinstance(self.target_modules, str):
            object.__setattr__(self, "target_modules", tuple(self.target_modules))

    def lora_config(self) -> Any:
        """The peft ``LoraConfig`` of these settings."""
        LoraConfig = peft_module().LoraConfig

        targets = self.target_modules if isinstance(self.target_modules, str) else list(self.target_modules)
        return LoraConfig(
            r=self.r,
            lora_alpha=self.alpha,
            lora_dropout=self.dropout,
            target_modules=targets,
            bias="none",
            task_type="CAUSAL_LM",
        )

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        if not isinstance(self.target_modules, str):
            out["target_modules"] = list(self.target_modules)
        return out


def auto_batch_size(points: int, epochs: int) -> int:
    """Decision points per optimiser step for ``batch_size=None``: at least ``MIN_STEPS`` steps, at most 8 points
    per step (``auto_batch_size(22, 4) == 1``, ``auto_batch_size(183, 2) == 3``, ``auto_batch_size(2000, 2) == 8``)."""
    return max(1, min(MAX_AUTO_BATCH, (points * epochs) // MIN_STEPS))


# ---------------------------------------------------------------------------------------------------- data
def decision_points(demonstrations: Any, prompt: Any = None, *, history: int = 2, example: str | None = None) -> list:
    """The decision points of ``demonstrations`` (a :class:`~prior_wrappers.demonstrations.Demonstrations`, a
    sequence of :class:`~prior_wrappers.demonstrations.Demonstration` (successful episodes only, as
    ``Demonstrations`` keeps), a sequence of :class:`~prior_wrappers.demonstrations.DecisionPoint`, or an
    ``OfflineDataset`` collected with text), rendered by ``prompt`` (default
    ``PromptTemplate(history=history)``) with ``history`` previous steps and ``example``."""
    from prior_wrappers.demonstrations import DecisionPoint, Demonstrations
    from prior_wrappers.prompts import PromptTemplate

    prompt = prompt or PromptTemplate(history=history)
    if (
        isinstance(demonstrations, Sequence)
        and demonstrations
        and all(isinstance(d, DecisionPoint) for d in demonstrations)
    ):
        return list(demonstrations)
    pool = Demonstrations.training_pool(demonstrations, "fit_lora()")
    return pool.decision_points(prompt, history=history, example=example)


@dataclass
class _Example:
    """One decision point tokenised as the engine would score it: candidate 0 is the expert's command."""

    tokens: TokenizedPrompt

    def cost(self, listwise: bool) -> int:
        """Columns of its packed row: the prompt, then the expert's tokens (or every candidate's)."""
        candidates = self.tokens.candidate_ids if listwise else self.tokens.candidate_ids[:1]
        return len(self.tokens.prompt_ids) + sum(len(c) for c in candidates)


def _examples(prior: HFPrior, points: Sequence[Any]) -> list[_Example]:
    """Tokenise each point with the engine's own :meth:`_tokenize_candidates`: candidate tokens, contexts, and the left
    cut of a prompt too long for the context window, which depends on the longest of the admissible commands, as
    when the engine scores them all."""
    prompts, candidates = [], []
    for p in points:
        prompts.append(p.prompt)
        candidates.append([p.command] + [c for c in dict.fromkeys(p.admissible) if c != p.command])
    warned = prior._warned_truncation
    out = []
    for start in range(0, len(points), 256):
        for tp in prior._tokenize_candidates(prompts[start : start + 256], candidates[start : start + 256]):
            out.append(_Example(tp))
    if prior._warned_truncation and not warned:
        prior._warned_truncation = False  # warned here about the training prompts: warn again when it scores
    return out


# ---------------------------------------------------------------------------------------------------- training
def _batch_loss(
    model: Any, examples: Sequence[_Example], listwise: float, pad_id: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Summed losses of one micro-batch: ``(nll, listwise cross-entropy)``, both summed over its points. The nll of
    a point is the mean negative log-probability of the expert command's tokens (its ``"token"``-normalised score)."""
    trunk = getattr(model, model.base_model_prefix)
    lm_head = model.get_output_embeddings()
    softcap = getattr(model.config, "final_logit_softcapping", None)
    rows, counts = [], []
    for ex in examples:
        tp = ex.tokens
        k = len(tp.candidate_ids) if listwise > 0 else 1
        nodes, paths = candidate_nodes(tp.contexts[:k], tp.candidate_ids[:k], share=True)
        rows.append((tp.prompt_ids, 0, nodes, paths))
        counts.append([len(c) for c in tp.candidate_ids[:k]])
    packed = pack_rows(rows, pad_id)
    dev = next(model.parameters()).device
    dtype = next(trunk.parameters()).dtype
    with attention_implementation(model, scoring_implementation(model, "dense")):
        hidden = trunk(
            input_ids=packed.input_ids.to(dev),
            attention_mask=additive_mask(packed.allowed.to(dev), dtype),
            position_ids=packed.position_ids.to(dev),
            use_cache=False,
        ).last_hidden_state
    sums = span_sums(
        candidate_token_logprobs(hidden, lm_head, packed, softcap), [span for spans in packed.spans for span in spans]
    )
    nll = sums.new_zeros(())
    ranking = sums.new_zeros(())
    first = 0
    for n in counts:
        scores = sums[first : first + len(n)] / torch.tensor(n, dtype=sums.dtype, device=sums.device)
        first += len(n)
        nll = nll - scores[0]
        if len(n) > 1:
            ranking = ranking - torch.log_softmax(scores, 0)[0]
    return nll, ranking


def _micro_batches(examples: Sequence[_Example], token_budget: int, listwise: bool) -> list[list[_Example]]:
    """Consecutive groups whose padded rows stay within ``token_budget`` tokens (a longer point goes alone)."""
    groups: list[list[_Example]] = []
    widest = 0
    for ex in examples:
        cost = ex.cost(listwise)
        if groups and (len(groups[-1]) + 1) * max(cost, widest) <= token_budget:
            groups[-1].append(ex)
            widest = max(widest, cost)
        else:
            groups.append([ex])
            widest = cost
    return groups


def fit_lora(
    prior: HFPrior,
    demonstrations: Any,
    settings: LoraSettings | None = None,
    *,
    prompt: Any = None,
    history: int = 2,
    example: str | None = None,
    progress: bool = True,
    token_budget: int | None = None,
    **changes: Any,
) -> AdaptedPrior:
    """Fine-tune LoRA adapters on the expert commands of ``demonstrations``; a new prior over the adapted model.

    The prior's model is copied (``copy.deepcopy``: one more copy of the base weights in memory) and the adapters are
    injected into the copy, so ``prior`` keeps scoring as before. The new prior has ``prior``'s engine settings
    (separator, candidate_suffix, token_budget, truncation, max_length, prefix cache, attention) and its model is in
    eval mode (no dropout when scoring).

    :param prior: an :class:`HFPrior` over a plain model (no adapters).
    :param demonstrations: a :class:`~prior_wrappers.demonstrations.Demonstrations`, a sequence of
        :class:`~prior_wrappers.demonstrations.Demonstration` or of ``DecisionPoint``, or an ``OfflineDataset``
        collected with text (``Demonstrations.from_dataset``). Every step of every successful episode is a training
        point, whatever the pool's ``shots``.
    :param settings: the adapters and the optimisation (default :class:`LoraSettings`).
    :param prompt: the prompt function the prior will be used with (default ``PromptTemplate(history=history)``,
        the wrappers' default): train on the prompts it will score.
    :param history: previous steps in each prompt, as the wrappers' ``history=``.
    :param example: the example text of the prompts (the env's ``prompt_example`` the wrappers would show, or a
        demonstrations text; ``None``: none).
    :param progress: a tqdm bar over the optimiser steps.
    :param token_budget: tokens per forward while training (gradient accumulation over micro-batches; memory only,
        not the result beyond float rounding); default ``prior.token_budget``.
    :param changes: :class:`LoraSettings` fields overriding ``settings`` (``epochs=2, lr=1e-3, seed=1, ...``).
    :raises ValueError: no decision point, or a prior whose model already carries adapters.

    Deterministic on CPU: the same data, settings and seed give the same adapter weights (at the same number of torch
    threads).
    """
    get_peft_model = peft_module().get_peft_model
    from tqdm.auto import tqdm

    settings = settings or LoraSettings()
    unknown = sorted(set(changes) - {f.name for f in dataclasses.fields(LoraSettings)})
    if unknown:
        raise TypeError(f"fit_lora got unexpected keyword arguments {unknown} (LoraSettings has no such fields)")
    settings = dataclasses.replace(settings, **changes)
    check_plain(prior, "fit_lora")
    points = decision_points(demonstrations, prompt, history=history, example=example)
    if not points:
        raise ValueError(
            "no decision points to train on: the demonstrations hold no successful episode with steps "
            "(Demonstrations keeps successful episodes only)"
        )
    if settings.batch_size is None:
        settings = dataclasses.replace(settings, batch_size=auto_batch_size(len(points), settings.epochs))
    identity = base_identity(prior)
    base_fp = prior._model_fingerprint()
    model = copy.deepcopy(prior.model)
    start = time.process_time()
    with torch.random.fork_rng(devices=[]), quiet_peft():
        torch.manual_seed(settings.seed)
        peft_model = get_peft_model(model, settings.lora_config())
        info = {
            "settings": settings.to_dict(),
            "decision_points": len(points),
            "history": history,
            "prompt": repr(prompt) if prompt is not None else f"PromptTemplate(history={history})",
            "example": example is not None,
            "sources": len({p.source for p in points}),
        }
        adapted = AdaptedPrior(
            peft_model,
            prior.tokenizer,
            base_fingerprint=base_fp,
            base_identity=identity,
            info=info,
            **engine_options(prior),
        )
        examples = _examples(adapted, points)
        losses = _train(
            peft_model,
            examples,
            settings,
            int(prior.tokenizer.pad_token_id or 0),
            token_budget or prior.token_budget,
            progress,
            tqdm,
        )
    peft_model.eval().requires_grad_(False)
    adapted.adapter_info.update(final_loss=losses[-1] if losses else None, cpu_seconds=time.process_time() - start)
    return adapted


def _train(
    peft_model: Any,
    examples: list[_Example],
    settings: LoraSettings,
    pad_id: int,
    token_budget: int,
    progress: bool,
    tqdm: Any,
) -> list[float]:
    """The optimisation loop (within ``fit_lora``'s seeded RNG); the mean loss of each epoch."""
    assert settings.batch_size is not None  # fit_lora resolves None
    params = [p for p in peft_model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=settings.lr, weight_decay=settings.weight_decay)
    steps_per_epoch = math.ceil(len(examples) / settings.batch_size)
    total = steps_per_epoch * settings.epochs
    warmup = max(1, total // 10)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: min((s + 1) / warmup, max(0.0, (total - s) / max(1, total - warmup)))
    )
    order_rng = np.random.default_rng(settings.seed)
    model = peft_model.get_base_model()
    losses = []
    bar = tqdm(total=total, desc="LoRA", unit="step", disable=not progress)
    try:
        peft_model.train()
        for _ in range(settings.epochs):
            order = order_rng.permutation(len(examples))
            epoch_loss = 0.0
            for s in range(steps_per_epoch):
                batch = [examples[i] for i in order[s * settings.batch_size : (s + 1) * settings.batch_size]]
                optimizer.zero_grad(set_to_none=True)
                step_loss = 0.0
                for group in _micro_batches(batch, token_budget, settings.listwise > 0):
                    nll, ranking = _batch_loss(model, group, settings.listwise, pad_id)
                    loss = (nll + settings.listwise * ranking) / len(batch)
                    loss.backward()
                    step_loss += float(loss.detach())
                if settings.max_grad_norm is not None:
                    torch.nn.utils.clip_grad_norm_(params, settings.max_grad_norm)
                optimizer.step()
                scheduler.step()
                epoch_loss += step_loss * len(batch)
                bar.update(1)
                bar.set_postfix(loss=f"{step_loss:.3f}")
            losses.append(epoch_loss / len(examples))
    finally:
        bar.close()
        peft_model.eval()
    return losses
