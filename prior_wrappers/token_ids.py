"""The token ids of the prompt and of each slot's command, as observation arrays, for policies that run the LLM.

SB3's buffers keep arrays only, so an LLM policy (:mod:`prior_wrappers.sb3.gflan_prior`) cannot re-tokenise text
when a PPO epoch recomputes its log-probabilities: the wrappers' ``token_ids=TokenIdSpec(...)`` option puts the
tokens into the observation, padded to fixed shapes. The candidate tokens are the engine's
(:class:`~prior_wrappers.priors.tokenization.CandidateTokenization`: what ``prompt + separator + command + suffix``
adds to the prompt's tokens), so a policy scoring them reproduces the prior's log-probabilities exactly.

==========================  ==============  ===========================================================
key                         shape           content
==========================  ==============  ===========================================================
``prompt_ids``              (P,)            the prompt's tokens, then padding
``prompt_len``              (1,)            how many of them are the prompt's
``candidate_ids``           (K, C)          slot k's command tokens, then padding (empty slots: padding)
``candidate_lens``          (K,)            how many of them are the command's (0 in empty slots)
``candidate_contexts``      (K,)            how many prompt tokens the command continues from (usually all)
``candidate_norms``         (K,)            what its summed log-probability is divided by (the wrapper's
                                            ``normalization``: its token or word count, or 1)
==========================  ==============  ===========================================================

P is ``max_prompt_tokens`` and C ``max_candidate_tokens``. A longer command raises ``ValueError``. A longer prompt
loses its oldest tokens, as the prior's ``truncation="left"`` does (a leading BOS is kept, positions start at 0 again;
warned once): the policy then scores the commands after the prompt's last P tokens while the prior may have scored
more of it, so raise P to keep prompts whole; ``truncation="error"`` raises instead.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
from gymnasium import spaces

from prior_wrappers.priors.base import Normalization, digest, normalization_divisors, tokenizer_fingerprint
from prior_wrappers.priors.tokenization import CandidateTokenization, TokenizedPrompt, Truncation, drop_oldest

PROMPT_IDS = "prompt_ids"
PROMPT_LEN = "prompt_len"
CANDIDATE_IDS = "candidate_ids"
CANDIDATE_LENS = "candidate_lens"
CANDIDATE_CONTEXTS = "candidate_contexts"
CANDIDATE_NORMS = "candidate_norms"
TOKEN_ID_KEYS = (PROMPT_IDS, PROMPT_LEN, CANDIDATE_IDS, CANDIDATE_LENS, CANDIDATE_CONTEXTS, CANDIDATE_NORMS)

# SB3's rollout buffers store observations as float32, exact for integers below 2**24
_MAX_VOCAB = 1 << 24


class TokenIdSpec(CandidateTokenization):
    """How the wrappers lay out token ids (``LLMPriorWrapper(..., token_ids=spec)``, likewise ``VecLLMPrior``).

    >>> spec = TokenIdSpec.for_prior(prior, max_prompt_tokens=256, max_candidate_tokens=12)
    >>> env = LLMPriorWrapper(text_env, prior, k=8, encoder=None, token_ids=spec)
    >>> obs, info = env.reset(seed=0)
    >>> obs["prompt_ids"][: obs["prompt_len"][0]]        # the tokens the commands are scored after (at most P)

    :param tokenizer: the LLM's tokenizer (the prior's).
    :param max_prompt_tokens: P, the prompt's padded length; a longer prompt keeps its last P tokens (see
        ``truncation``).
    :param max_candidate_tokens: C, a command's padded length; a longer command raises ``ValueError``.
    :param separator: text between prompt and command (the prior's ``separator``).
    :param candidate_suffix: text scored after each command (the prior's ``candidate_suffix``).
    :param truncation: for a prompt over P tokens, ``"left"`` drops its oldest tokens (keeping a leading BOS; warned
        once), ``"error"`` raises ``ValueError``. Not part of :meth:`signature`: it changes no observation that
        fits, so a model trained with either loads behind the other.
    """

    def __init__(
        self,
        tokenizer: Any,
        max_prompt_tokens: int,
        max_candidate_tokens: int,
        *,
        separator: str = " ",
        candidate_suffix: str = "",
        truncation: Truncation = "left",
    ) -> None:
        if truncation not in ("left", "error"):
            raise ValueError(f"truncation must be 'left' or 'error', got {truncation!r}")
        if max_prompt_tokens < 1 or max_candidate_tokens < 1:
            raise ValueError(
                "max_prompt_tokens and max_candidate_tokens must be >= 1, "
                f"got {max_prompt_tokens}, {max_candidate_tokens}"
            )
        if len(tokenizer) > _MAX_VOCAB:
            raise ValueError(
                f"a vocabulary of {len(tokenizer)} tokens does not fit SB3's float32 buffers exactly (2**24)"
            )
        self.tokenizer = tokenizer
        self.max_prompt_tokens = int(max_prompt_tokens)
        self.max_candidate_tokens = int(max_candidate_tokens)
        self.separator = separator
        self.candidate_suffix = candidate_suffix
        # the length checks of encode are this option's; the mixin's context-window check must never cut first
        self.truncation = truncation
        self.max_length = 1 << 62
        self.pad_id = int(tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0)
        self.vocab_size = len(tokenizer)
        self._tokenizer_digest = digest(tokenizer_fingerprint(tokenizer))

    @classmethod
    def for_prior(
        cls, prior: Any, max_prompt_tokens: int, max_candidate_tokens: int, *, truncation: Truncation = "left"
    ) -> TokenIdSpec:
        """The spec for an :class:`~prior_wrappers.priors.hf.HFPrior`: its tokenizer, separator and suffix.

        :param prior: the engine whose scores the token ids must reproduce.
        :param max_prompt_tokens: P.
        :param max_candidate_tokens: C.
        :param truncation: ``"left"`` or ``"error"``, for a prompt over P tokens (see the class).
        :raises ValueError: when P + C exceeds the prior's context window (it would truncate prompts that the
            token ids keep whole).
        """
        if max_prompt_tokens + max_candidate_tokens > prior.max_length:
            raise ValueError(
                f"max_prompt_tokens + max_candidate_tokens = {max_prompt_tokens + max_candidate_tokens} exceeds the "
                f"prior's context window ({prior.max_length})"
            )
        return cls(
            prior.tokenizer,
            max_prompt_tokens,
            max_candidate_tokens,
            separator=prior.separator,
            candidate_suffix=prior.candidate_suffix,
            truncation=truncation,
        )

    def signature(self) -> dict[str, Any]:
        """What the ids depend on, for the wrappers' ``prior_signature``: the tokenizer (a digest), separator,
        suffix and the two lengths (not ``truncation``, which changes no observation that fits)."""
        return {
            "tokenizer": self._tokenizer_digest,
            "separator": self.separator,
            "candidate_suffix": self.candidate_suffix,
            "max_prompt_tokens": self.max_prompt_tokens,
            "max_candidate_tokens": self.max_candidate_tokens,
        }

    def spaces(self, k: int) -> dict[str, spaces.Box]:
        """The observation entries for ``k`` slots (added to the wrapper's ``Dict`` space)."""
        p, c, top = self.max_prompt_tokens, self.max_candidate_tokens, self.vocab_size - 1
        return {
            PROMPT_IDS: spaces.Box(0, top, shape=(p,), dtype=np.int64),
            PROMPT_LEN: spaces.Box(1, p, shape=(1,), dtype=np.int64),
            CANDIDATE_IDS: spaces.Box(0, top, shape=(k, c), dtype=np.int64),
            CANDIDATE_LENS: spaces.Box(0, c, shape=(k,), dtype=np.int64),
            CANDIDATE_CONTEXTS: spaces.Box(0, p, shape=(k,), dtype=np.int64),
            CANDIDATE_NORMS: spaces.Box(1.0, np.inf, shape=(k,), dtype=np.float32),
        }

    def _truncate_prompt(self, tokenized: TokenizedPrompt, prompt: str) -> TokenizedPrompt:
        """``tokenized`` with its prompt cut to its last ``max_prompt_tokens`` tokens (a leading BOS kept), the
        commands' contexts shifted with it, as the prior's ``truncation="left"`` cuts; raises with ``"error"``."""
        p, n = self.max_prompt_tokens, len(tokenized.prompt_ids)
        message = f"the prompt has {n} tokens, more than max_prompt_tokens={p} of the wrapper's token_ids option"
        if self.truncation == "error":
            raise ValueError(
                f"{message}; raise max_prompt_tokens, shorten the prompt (history, demonstrations) or use "
                f"truncation='left'. Prompt ends: {prompt[-200:]!r}"
            )
        if not self._warned_truncation:
            warnings.warn(
                f"{message}; its oldest tokens are dropped (truncation='left'), so the policy scores the commands "
                "after its last tokens while the prior may have scored more of it. Raise max_prompt_tokens to keep "
                "prompts whole, or use truncation='error' to raise. This warning is shown once.",
                stacklevel=3,
            )
            self._warned_truncation = True
        overflow = n - p
        prompt_ids = drop_oldest(tokenized.prompt_ids, overflow, self.tokenizer.bos_token_id if p > 1 else None)
        contexts = [max(ctx - overflow, 1) for ctx in tokenized.contexts]
        return TokenizedPrompt(prompt_ids, contexts, tokenized.candidate_ids)

    def encode(
        self, prompt: str, candidates: Sequence[str], k: int, normalization: Normalization
    ) -> dict[str, np.ndarray]:
        """The observation entries of one state: ``prompt`` and the commands of its valid slots, in slot order.

        :param prompt: the prompt the prior scored.
        :param candidates: the commands in slots ``0 .. len(candidates) - 1``.
        :param k: the number of slots.
        :param normalization: the wrapper's normalisation (decides ``candidate_norms``).
        :raises ValueError: when a command has more than ``max_candidate_tokens`` tokens, or the prompt more than
            ``max_prompt_tokens`` with ``truncation="error"``.
        """
        p, c = self.max_prompt_tokens, self.max_candidate_tokens
        (tokenized,) = self._tokenize_candidates([prompt], [list(candidates)])
        if len(tokenized.prompt_ids) > p:
            tokenized = self._truncate_prompt(tokenized, prompt)
        out: dict[str, np.ndarray] = {
            PROMPT_IDS: np.full(p, self.pad_id, dtype=np.int64),
            PROMPT_LEN: np.array([len(tokenized.prompt_ids)], dtype=np.int64),
            CANDIDATE_IDS: np.full((k, c), self.pad_id, dtype=np.int64),
            CANDIDATE_LENS: np.zeros(k, dtype=np.int64),
            CANDIDATE_CONTEXTS: np.zeros(k, dtype=np.int64),
            CANDIDATE_NORMS: np.ones(k, dtype=np.float32),
        }
        out[PROMPT_IDS][: len(tokenized.prompt_ids)] = tokenized.prompt_ids
        for j, (command, ctx, ids) in enumerate(zip(candidates, tokenized.contexts, tokenized.candidate_ids)):
            if len(ids) > c:
                raise ValueError(
                    f"the command {command!r} has {len(ids)} tokens, more than max_candidate_tokens={c} of the "
                    "wrapper's token_ids option; raise max_candidate_tokens"
                )
            out[CANDIDATE_IDS][j, : len(ids)] = ids
            out[CANDIDATE_LENS][j] = len(ids)
            out[CANDIDATE_CONTEXTS][j] = ctx
        n = len(candidates)
        out[CANDIDATE_NORMS][:n] = normalization_divisors(out[CANDIDATE_LENS][:n], candidates, normalization)
        return out
