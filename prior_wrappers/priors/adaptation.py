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

**Scoring.** The adapted prior's engine runs the model with the adapters injected and unmerged (peft's LoRA layers
add ``B A x`` to each adapted linear layer): ``model`` is the transformers model inside the ``PeftModel`` (its
``base_model_prefix``, output embeddings and key/value cache are the plain model's), so packing, the prefix cache
and both attention modes work unchanged, and ``peft_model`` can still save the adapters. Nothing is merged, so
there is one copy of the base weights per adapted prior (plus the adapters' own: about 5M parameters at r=16 on
SmolLM2-135M); the extra low-rank products cost a few percent of a forward.

**Identity.** :attr:`AdaptedPrior.fingerprint` is the base model's (as :class:`HFPrior` computes it) plus a digest of
the adapters: every adapter weight hashed exactly (names, shapes, dtypes, all values) and the LoRA settings that
change scores (rank, alpha, rsLoRA, DoRA, bias, per-module patterns). The same adapters loaded in another process
give the same fingerprint; other adapters, or none, give another, so a ``CachedPrior`` file or a saved SB3 model
never mixes base and adapted scores. (``model_fingerprint`` of a ``PeftModel`` would differ from the base's too,
since the module names change, but it samples 1024 values per tensor and does not see the scaling alpha/r.)
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import math
import time
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from prior_wrappers.priors.attention import attention_implementation, scoring_implementation
from prior_wrappers.priors.base import digest, model_fingerprint, tokenizer_fingerprint
from prior_wrappers.priors.hf import HFPrior
from prior_wrappers.priors.packing import additive_mask, candidate_nodes, candidate_token_logprobs, pack_rows, span_sums
from prior_wrappers.priors.tokenization import TokenizedPrompt

ADAPTER_INFO_FILE = "prior_adapter.json"  # written next to peft's adapter_config.json / adapter_model.safetensors
ADAPTER_FORMAT = 1
MIN_STEPS = 100  # optimiser steps that LoraSettings(batch_size=None) keeps at least, when the data allows
MAX_AUTO_BATCH = 8
# LoRA options that change what an adapter computes (beyond its weights, which are hashed whole)
_SCORING_LORA_OPTIONS = (
    "r",
    "lora_alpha",
    "use_rslora",
    "use_dora",
    "bias",
    "lora_bias",
    "rank_pattern",
    "alpha_pattern",
    "fan_in_fan_out",
    "modules_to_save",
)


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
        LoraConfig = _peft().LoraConfig

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


class AdaptedPrior(HFPrior):
    """An :class:`HFPrior` over a model carrying LoRA adapters (made by :func:`fit_lora` or :func:`load_adapter`).

    ``model`` is the transformers model inside ``peft_model``, adapters injected and active; the engine scores it
    as any model. Treat it as frozen: changing the adapters' weights in place would leave :attr:`fingerprint`
    stale.

    :param peft_model: the ``peft.PeftModel``.
    :param tokenizer: the base model's tokenizer.
    :param base_fingerprint: the base model's part of an :class:`HFPrior` fingerprint (``_model_fingerprint()``
        of the prior it was made from).
    :param base_identity: the base as saved adapters record it: portable model fingerprint and tokenizer fingerprint.
    :param info: how the adapters were made (settings, decision points, ...), saved with them.
    :param kwargs: :class:`HFPrior` options (``separator``, ``candidate_suffix``, ``token_budget``, ...).
    """

    def __init__(
        self,
        peft_model: Any,
        tokenizer: Any,
        *,
        base_fingerprint: dict[str, Any],
        base_identity: dict[str, Any],
        info: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        self.peft_model = peft_model.eval()
        self.base_fingerprint = dict(base_fingerprint)
        self.base_identity = base_identity
        self.adapter_info: dict[str, Any] = dict(info or {})
        super().__init__(peft_model.get_base_model(), tokenizer, **kwargs)

    @property
    def adapter_digest(self) -> str:
        """A digest of the adapters: all their weights, exactly, and the LoRA options that change scores."""
        return adapter_digest(self.peft_model)

    def _model_fingerprint(self) -> dict[str, Any]:
        return {**self.base_fingerprint, "adapter": self.adapter_digest}

    def save_adapter(self, path: str | Path) -> Path:
        """See :func:`save_adapter`."""
        return save_adapter(self, path)


# ---------------------------------------------------------------------------------------------------- identity
def adapter_digest(peft_model: Any) -> str:
    """Digest of a ``PeftModel``'s active adapter: every weight (``get_peft_model_state_dict``: names, shapes, dtypes
    and all values, hashed exactly) and the LoRA options in ``_SCORING_LORA_OPTIONS``."""
    get_peft_model_state_dict = _peft().get_peft_model_state_dict

    hasher = hashlib.sha256()
    for name, tensor in sorted(get_peft_model_state_dict(peft_model).items()):
        data = tensor.detach().cpu().contiguous()
        hasher.update(f"{name}|{tuple(data.shape)}|{data.dtype}|".encode())
        hasher.update(data.reshape(-1).view(torch.uint8).numpy().tobytes())
    config = peft_model.peft_config[peft_model.active_adapter]
    options = {key: _plain(getattr(config, key, None)) for key in _SCORING_LORA_OPTIONS}
    return digest({"weights": hasher.hexdigest(), "options": options})


def _plain(value: Any) -> Any:
    """A JSON-able, order-independent form of a peft config value (sets become sorted lists)."""
    if isinstance(value, (set, frozenset)):
        return sorted(value)
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value if value is None or isinstance(value, (bool, int, float, str)) else str(value)


def base_identity(prior: HFPrior) -> dict[str, Any]:
    """What saved adapters record of the base they were trained on, and :func:`load_adapter` checks: the model's
    portable fingerprint (config and weights, independent of the dtype it was loaded in, see
    :func:`~prior_wrappers.priors.base.model_fingerprint`) and the tokenizer's."""
    return {"model": model_fingerprint(prior.model, portable=True), "tokenizer": tokenizer_fingerprint(prior.tokenizer)}


def _same_base(saved: dict[str, Any], current: dict[str, Any]) -> bool:
    """Same weights, config and tokenizer (the checkpoint's directory name may differ)."""
    keys = ("class", "config", "weights")
    return (
        all(saved["model"].get(k) == current["model"].get(k) for k in keys)
        and saved["tokenizer"] == current["tokenizer"]
    )


def _describe(identity: dict[str, Any]) -> str:
    model, tok = identity["model"], identity["tokenizer"]
    name = model.get("name") or model.get("class")
    return (
        f"{name} (weights {model.get('weights')}, config {model.get('config')}; tokenizer {tok.get('class')} "
        f"with {tok.get('vocab_size')} tokens, vocabulary {tok.get('vocab')})"
    )


def _check_plain(prior: Any, what: str) -> None:
    if not isinstance(prior, HFPrior):
        raise TypeError(f"{what} needs an HFPrior, got {type(prior).__name__}")
    model = prior.model
    if (
        isinstance(prior, AdaptedPrior)
        or getattr(model, "peft_config", None)
        or any("lora_" in name for name, _ in model.named_parameters())
    ):
        raise ValueError(
            f"{what} needs a prior over a plain base model, but this one's model already carries adapters; "
            "pass the base prior (e.g. HFPrior.default())"
        )


def _engine_options(prior: HFPrior) -> dict[str, Any]:
    """The given prior's engine settings, for a new prior over the adapted model."""
    options: dict[str, Any] = dict(
        separator=prior.separator,
        candidate_suffix=prior.candidate_suffix,
        token_budget=prior.token_budget,
        truncation=prior.truncation,
        max_length=prior.max_length,
        prefix_cache=prior.prefix_cache_mode,
        candidate_trie=prior.candidate_trie,
        attention=prior.attention,
    )
    if prior.kv_cache is not None:
        options["kv_cache_bytes"] = prior.kv_cache.max_bytes
    return options


def _peft() -> Any:
    """The peft module, or an ImportError that says how to install it."""
    try:
        import peft
    except ImportError as exc:
        raise ImportError(
            "adapting a prior with LoRA needs peft: pip install 'prior-wrappers[lora]' (or pip install 'peft>=0.18')"
        ) from exc
    return peft


@contextmanager
def _quiet_peft() -> Iterator[None]:
    with warnings.catch_warnings():  # peft reads transformers' deprecated is_gradient_checkpointing
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
        yield


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
    get_peft_model = _peft().get_peft_model
    from tqdm.auto import tqdm

    settings = settings or LoraSettings()
    unknown = sorted(set(changes) - {f.name for f in dataclasses.fields(LoraSettings)})
    if unknown:
        raise TypeError(f"fit_lora got unexpected keyword arguments {unknown} (LoraSettings has no such fields)")
    settings = dataclasses.replace(settings, **changes)
    _check_plain(prior, "fit_lora")
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
    with torch.random.fork_rng(devices=[]), _quiet_peft():
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
            **_engine_options(prior),
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


# ---------------------------------------------------------------------------------------------------- saving
def save_adapter(prior: AdaptedPrior, path: str | Path) -> Path:
    """Write the adapters of ``prior`` to the directory ``path``: peft's files (``adapter_config.json``,
    ``adapter_model.safetensors``: the adapter weights only, never the base's) and ``prior_adapter.json`` (the base
    model's and tokenizer's fingerprints, which :func:`load_adapter` checks, how the adapters were trained, and
    the number of decision points). Returns the directory."""
    if not isinstance(prior, AdaptedPrior):
        raise TypeError(f"save_adapter needs a prior made by fit_lora or load_adapter, got {type(prior).__name__}")
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    with _quiet_peft():
        prior.peft_model.save_pretrained(str(path))
    info = {
        "format": ADAPTER_FORMAT,
        "base": prior.base_identity,
        "adapter": prior.adapter_digest,
        "engine": {"separator": prior.separator, "candidate_suffix": prior.candidate_suffix},
        "training": prior.adapter_info,
    }
    (path / ADAPTER_INFO_FILE).write_text(json.dumps(info, indent=2, sort_keys=True, default=str))
    return path


def read_adapter_info(path: str | Path) -> dict[str, Any]:
    """The ``prior_adapter.json`` of a saved adapter (see :func:`save_adapter`)."""
    file = Path(path) / ADAPTER_INFO_FILE
    if not file.is_file():
        raise FileNotFoundError(
            f"{str(file)!r} not found: {str(path)!r} is not an adapter saved by save_adapter (which records the base "
            "model the adapters were trained on)"
        )
    info = json.loads(file.read_text())
    if info.get("format") != ADAPTER_FORMAT:
        raise ValueError(f"{str(file)!r} has format {info.get('format')!r}; this version reads {ADAPTER_FORMAT}")
    return info


def load_adapter(prior: HFPrior, path: str | Path, *, copy_model: bool = True) -> AdaptedPrior:
    """A new prior over ``prior``'s model with the adapters saved at ``path`` (by :func:`save_adapter`).

    :param prior: a prior over the base model the adapters were trained on (same weights, in any dtype, and same
        tokenizer); its engine settings carry over (a warning says when its separator or candidate_suffix differ
        from the ones the adapters were trained with).
    :param path: the adapter directory.
    :param copy_model: ``True`` (default): peft injects the adapters into a copy of the model (``copy.deepcopy``:
        one more copy of the base weights), so ``prior`` keeps scoring the base. ``False``: into ``prior``'s own
        model, which saves the memory but changes ``prior`` (its scores would become the adapted ones, under the
        base's cached fingerprint): do not use ``prior`` afterwards (``HFPrior.from_pretrained(..., adapter=)``
        does this with the model it has just loaded).
    :raises ValueError: the adapters were trained for another base model or tokenizer (both are named), or the
        prior already carries adapters.
    """
    PeftModel = _peft().PeftModel

    _check_plain(prior, "load_adapter")
    info = read_adapter_info(path)
    identity = base_identity(prior)
    if not _same_base(info["base"], identity):
        raise ValueError(
            f"the adapter at {str(path)!r} was trained for base model {_describe(info['base'])}, but this prior's "
            f"model is {_describe(identity)}: load it over the model it was trained on"
        )
    engine = info.get("engine", {})
    for key in ("separator", "candidate_suffix"):
        if key in engine and engine[key] != getattr(prior, key):
            warnings.warn(
                f"the adapter at {str(path)!r} was trained with {key}={engine[key]!r} but this prior uses "
                f"{getattr(prior, key)!r}: its scores may be worse than it learnt",
                stacklevel=2,
            )
    base_fp = prior._model_fingerprint()
    model = copy.deepcopy(prior.model) if copy_model else prior.model
    with _quiet_peft():
        peft_model = PeftModel.from_pretrained(model, str(path), is_trainable=False)
    peft_model.eval().requires_grad_(False)
    adapted = AdaptedPrior(
        peft_model,
        prior.tokenizer,
        base_fingerprint=base_fp,
        base_identity=info["base"],
        info=info.get("training", {}),
        **_engine_options(prior),
    )
    if adapted.adapter_digest != info.get("adapter", adapted.adapter_digest):
        warnings.warn(
            f"the adapter at {str(path)!r} loaded with digest {adapted.adapter_digest}, not the {info['adapter']} it "
            "was saved with (a different dtype or peft version?): its fingerprint differs from the saving prior's",
            stacklevel=2,
        )
    return adapted
