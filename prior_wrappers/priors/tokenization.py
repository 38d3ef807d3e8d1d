"""Which tokens are a candidate's: one definition shared by the local engine and the remote one, so their
log-probabilities agree to float precision."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

Truncation = Literal["left", "error"]


@dataclass
class TokenizedPrompt:
    """A prompt's tokens and, per candidate, how many prompt tokens it continues from and its own tokens."""

    prompt_ids: list[int]
    contexts: list[int]
    candidate_ids: list[list[int]]


def common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


class CandidateTokenization:
    """Mixin: the tokens of candidate ``c`` after prompt ``p`` are those that ``p + separator + c + suffix`` adds
    to the tokens of ``p`` alone (after their longest common prefix, so tokens that merge across the boundary are
    handled). Prompts too long for the context window lose their oldest tokens (or raise).

    The engine using it sets ``tokenizer``, ``separator``, ``candidate_suffix``, ``truncation``, ``max_length``.
    """

    tokenizer: Any
    separator: str
    candidate_suffix: str
    truncation: Truncation
    max_length: int
    _warned_truncation: bool = False

    def _encode(self, texts: list[str]) -> list[list[int]]:
        return self.tokenizer(texts, add_special_tokens=True)["input_ids"]

    def _tokenize_candidates(self, prompts: Sequence[str], candidates: Sequence[Sequence[str]]) -> list[TokenizedPrompt]:
        prompt_ids = self._encode(list(prompts))
        joined = [p + self.separator + c + self.candidate_suffix for p, cands in zip(prompts, candidates) for c in cands]
        joined_ids = self._encode(joined)
        out, pos = [], 0
        for i, (p_ids, cands) in enumerate(zip(prompt_ids, candidates)):
            contexts, cand_ids = [], []
            for j, ids in enumerate(joined_ids[pos : pos + len(cands)]):
                ctx = common_prefix(p_ids, ids)
                if ctx == 0:
                    raise ValueError(f"prompt {i} is empty after tokenisation: give the model some context to score from")
                if ctx == len(ids):
                    raise ValueError(f"candidate {cands[j]!r} adds no tokens to prompt {i}")
                contexts.append(ctx)
                cand_ids.append(ids[ctx:])
            pos += len(cands)
            out.append(self._fit_context(i, TokenizedPrompt(p_ids, contexts, cand_ids)))
        return out

    def _fit_generation(self, i: int, prompt_ids: list[int], new_tokens: int) -> list[int]:
        """Drop the oldest prompt tokens when the prompt and ``new_tokens`` sampled ones exceed the context window
        (``truncation="left"``, keeping a leading BOS, warned once; ``"error"`` raises)."""
        overflow = len(prompt_ids) + new_tokens - self.max_length
        if overflow <= 0:
            return prompt_ids
        if new_tokens >= self.max_length:
            raise ValueError(f"max_new_tokens={new_tokens} leaves no room for a prompt in the context window "
                             f"({self.max_length} tokens)")
        if self.truncation == "error":
            raise ValueError(
                f"prompt {i} has {len(prompt_ids)} tokens and up to {new_tokens} are sampled after it, but the "
                f"context window is {self.max_length}; shorten the prompt (fewer history steps) or use "
                "truncation='left'"
            )
        if not self._warned_truncation:
            warnings.warn(
                f"prompt {i} and its {new_tokens} sampled tokens exceed the context window "
                f"({len(prompt_ids) + new_tokens} > {self.max_length} tokens); its oldest tokens are dropped "
                "(truncation='left'). This warning is shown once.",
                stacklevel=4,
            )
            self._warned_truncation = True
        bos = self.tokenizer.bos_token_id
        keep_bos = bos is not None and bool(prompt_ids) and prompt_ids[0] == bos
        return ([bos] if keep_bos else []) + prompt_ids[overflow + int(keep_bos):]

    def _fit_context(self, i: int, tp: TokenizedPrompt) -> TokenizedPrompt:
        """Drop the oldest prompt tokens when prompt + longest candidate exceed the context window."""
        longest = max(c + len(t) for c, t in zip(tp.contexts, tp.candidate_ids))
        overflow = longest - self.max_length
        if overflow <= 0:
            return tp
        longest_candidate = max(len(t) for t in tp.candidate_ids)
        if longest_candidate >= self.max_length:
            raise ValueError(
                f"a candidate of prompt {i} has {longest_candidate} tokens, more than the context window ({self.max_length})"
            )
        if self.truncation == "error":
            raise ValueError(
                f"prompt {i} needs {longest} tokens with its longest candidate but the context window is "
                f"{self.max_length}; shorten the prompt (fewer history steps) or use truncation='left'"
            )
        if not self._warned_truncation:
            warnings.warn(
                f"prompt {i} exceeds the context window ({longest} > {self.max_length} tokens); its oldest tokens "
                "are dropped (truncation='left'). This warning is shown once.",
                stacklevel=4,
            )
            self._warned_truncation = True
        bos = self.tokenizer.bos_token_id
        keep_bos = bos is not None and bool(tp.prompt_ids) and tp.prompt_ids[0] == bos
        start = overflow + int(keep_bos)
        prompt_ids = ([bos] if keep_bos else []) + tp.prompt_ids[start:]
        return TokenizedPrompt(prompt_ids, [max(c - overflow, 1) for c in tp.contexts], tp.candidate_ids)
