"""Which tokens are a candidate's: one definition shared by the local engine and the remote one, so their
log-probabilities agree to float precision.

The definition tokenises ``prompt + separator + candidate + suffix`` whole, the prompt again for every candidate
(16 prompts x 30 candidates x 3,000 tokens is 1.4M tokens a step). For byte-level BPE tokenizers (GPT-2, Llama 3,
Qwen2, SmolLM2) the same tokens come from the prompt's tokens up to a pre-token boundary a few pre-tokens before its
end, plus the tokens of the text from that boundary on: the regex pre-tokeniser restarted at a boundary splits the
rest identically and BPE never merges across pre-tokens. :meth:`CandidateTokenization._tokenize_candidates` takes
that path when the tokenizer's pipeline allows it (:func:`tail_tokenization_supported`), checks it per prompt
(the tail's own tokens must end the prompt's), and once per engine against the full tokenisation (on its first call,
every candidate); any difference and the engine keeps the full path.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

Truncation = Literal["left", "error"]

TAIL_PRE_TOKENS = 3
"""The tail starts at least this many pre-tokens before the prompt's end, so that a candidate merging into the
prompt's last tokens (an empty separator, a prompt ending mid-word or in whitespace) merges inside the tail."""

PRE_TOKENIZE_WINDOW = 256
"""Only the prompt's last characters are pre-tokenised to find the cut (boundaries near the window's start may be
off; those are never used, and a wrong cut fails the per-prompt check)."""

# normalisers that act on characters independently of their position (the cut also needs an ASCII character after it,
# which no canonical composition joins to the character before)
_POSITION_FREE_NORMALIZERS = {"NFC", "NFD", "NFKC", "NFKD", "Lowercase"}


@dataclass
class TokenizedPrompt:
    """A prompt's tokens and, per candidate, how many prompt tokens it continues from and its own tokens."""

    prompt_ids: list[int]
    contexts: list[int]
    candidate_ids: list[list[int]]


def drop_oldest(ids: list[int], overflow: int, bos: int | None) -> list[int]:
    """``ids`` without their ``overflow`` oldest tokens, as ``truncation="left"`` cuts a prompt: a leading ``bos``
    stays (the tokens after it go instead)."""
    if bos is not None and ids and ids[0] == bos:
        return [bos, *ids[overflow + 1 :]]
    return ids[overflow:]


def common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


def _component_types(state: dict[str, Any] | None, key: str) -> list[dict[str, Any]]:
    """The leaves of a serialised normaliser or pre-tokeniser (``Sequence`` flattened)."""
    if state is None:
        return []
    if state.get("type") == "Sequence":
        return [leaf for child in state.get(key, []) for leaf in _component_types(child, key)]
    return [state]


def _state(component: Any) -> dict[str, Any] | None:
    return None if component is None else json.loads(component.__getstate__())


def tail_tokenization_supported(tokenizer: Any) -> bool:
    """Whether ``tokenizer``'s pipeline lets a text be tokenised from a pre-token boundary on: a fast tokenizer, a
    byte-level pre-tokeniser without a prefix space (so not SentencePiece's Metaspace "▁"), only regex splits before
    it, a normaliser that does not depend on position (none, NFC...), and special tokens added in front of the text
    only (a BOS; not an EOS)."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if not getattr(tokenizer, "is_fast", False) or backend is None:
        return False
    normalizers = _component_types(_state(backend.normalizer), "normalizers")
    if any(n.get("type") not in _POSITION_FREE_NORMALIZERS for n in normalizers):
        return False
    pre = _component_types(_state(backend.pre_tokenizer), "pretokenizers")
    if not pre or any(p.get("type") not in ("Split", "ByteLevel", "Digits") for p in pre):
        return False
    if not any(p.get("type") == "ByteLevel" for p in pre) or any(p.get("add_prefix_space") for p in pre):
        return False
    prefixes = []
    for probe in ("a", "Hello world.\n"):
        with_special = tokenizer(probe, add_special_tokens=True)["input_ids"]
        plain = tokenizer(probe, add_special_tokens=False)["input_ids"]
        n = len(with_special) - len(plain)
        if n < 0 or with_special[n:] != plain:
            return False
        prefixes.append(with_special[:n])
    return prefixes[0] == prefixes[1]


def tail_cut(prompt: str, pre_tokenizer: Any, min_chars: int = 0) -> int:
    """Where the tail of ``prompt`` starts: a pre-token boundary at least :data:`TAIL_PRE_TOKENS` pre-tokens and
    ``min_chars`` characters before its end (``min_chars``: the longest added token, so that none can straddle the
    prompt's end from before the cut), after a non-whitespace character (a whitespace run is never split: the
    candidate may re-split it) and before an ASCII one; 0 when there is none."""
    start = max(0, len(prompt) - PRE_TOKENIZE_WINDOW)
    spans = [offsets for _, offsets in pre_tokenizer.pre_tokenize_str(prompt[start:])]
    for k in range(len(spans) - TAIL_PRE_TOKENS, 0, -1):  # the window's first pre-token may be cut short: never used
        cut = start + spans[k][0]
        if len(prompt) - cut >= min_chars and not prompt[cut - 1].isspace() and prompt[cut].isascii():
            return cut
    return 0


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
    # the tail path's state, for the tokenizer object whose id it holds: None until the first call decides it,
    # (id, None) supported but not yet cross-checked, (id, True) checked, (id, False) unsupported or disagreed
    _tail_state: tuple[int, bool | None] | None = None
    _tail_min_chars: int = 0

    def _encode(self, texts: list[str]) -> list[list[int]]:
        return self.tokenizer(texts, add_special_tokens=True)["input_ids"]

    def _tail_enabled(self) -> bool | None:
        """False when the tail path is off for this engine's tokenizer, None when it is still to be cross-checked."""
        if self._tail_state is None or self._tail_state[0] != id(self.tokenizer):
            supported = tail_tokenization_supported(self.tokenizer)
            self._tail_state = (id(self.tokenizer), None if supported else False)
            added = getattr(self.tokenizer, "added_tokens_decoder", {}) if supported else {}
            self._tail_min_chars = max((len(getattr(t, "content", str(t))) for t in added.values()), default=0)
        return self._tail_state[1]

    def _prompt_cuts(self, prompts: Sequence[str], prompt_ids: list[list[int]]) -> list[tuple[int, int] | None]:
        """Per prompt, ``(cut, t)``: its tokens from token ``t`` on are those of ``prompt[cut:]`` alone (checked);
        None where they are not (that prompt's candidates take the full path)."""
        pre_tokenizer = self.tokenizer.backend_tokenizer.pre_tokenizer
        cuts = [tail_cut(p, pre_tokenizer, self._tail_min_chars) for p in prompts]
        tails = self.tokenizer([p[cut:] for p, cut in zip(prompts, cuts)], add_special_tokens=False)["input_ids"]
        out: list[tuple[int, int] | None] = []
        for cut, p_ids, tail in zip(cuts, prompt_ids, tails):
            t = len(p_ids) - len(tail)
            out.append((cut, t) if t >= 0 and p_ids[t:] == tail else None)
        return out

    def _joined_ids(
        self, prompts: Sequence[str], prompt_ids: list[list[int]], candidates: Sequence[Sequence[str]]
    ) -> list[tuple[int, list[int]]]:
        """Per candidate (in order, all prompts'), ``(t, ids)``: the tokens of ``prompt + separator + candidate +
        suffix`` are ``prompt_ids[:t] + ids``. The full path gives ``t = 0``; the tail path tokenises only the text
        from the prompt's cut on (:func:`tail_cut`), and on the engine's first call is compared with the full path."""
        end = [[self.separator + c + self.candidate_suffix for c in cands] for cands in candidates]
        enabled = self._tail_enabled()
        cuts = self._prompt_cuts(prompts, prompt_ids) if enabled is not False else [None] * len(prompts)
        tail_texts = [p[cut[0] :] + e for p, es, cut in zip(prompts, end, cuts) if cut is not None for e in es]
        full_texts = [p + e for p, es, cut in zip(prompts, end, cuts) if cut is None for e in es]
        tails = iter(self.tokenizer(tail_texts, add_special_tokens=False)["input_ids"] if tail_texts else [])
        fulls = iter(self._encode(full_texts) if full_texts else [])
        joined = [
            (cut[1], next(tails)) if cut is not None else (0, next(fulls)) for es, cut in zip(end, cuts) for _ in es
        ]
        if enabled is None and tail_texts:  # the once-per-engine cross-check, on every candidate of this call
            reference = self._encode([p + e for p, es in zip(prompts, end) for e in es])
            owners = [i for i, es in enumerate(end) for _ in es]
            agree = all(prompt_ids[i][:t] + ids == ref for i, (t, ids), ref in zip(owners, joined, reference))
            self._tail_state = (id(self.tokenizer), agree)
            if not agree:
                warnings.warn(
                    "tokenising candidates from a cut near the prompt's end disagreed with tokenising "
                    "prompt + candidate whole; this engine tokenises them whole from now on (slower, same "
                    "scores)",
                    RuntimeWarning,
                    stacklevel=3,
                )
                return [(0, ref) for ref in reference]
        return joined

    def _tokenize_candidates(
        self, prompts: Sequence[str], candidates: Sequence[Sequence[str]]
    ) -> list[TokenizedPrompt]:
        prompt_ids = self._encode(list(prompts))
        joined = iter(self._joined_ids(prompts, prompt_ids, candidates))
        out = []
        for i, (p_ids, cands) in enumerate(zip(prompt_ids, candidates)):
            contexts, cand_ids = [], []
            for c in cands:
                t, ids = next(joined)  # the tokens of prompt + separator + c + suffix are p_ids[:t] + ids
                ctx = t + common_prefix(p_ids[t:], ids)
                if ctx == 0:
                    raise ValueError(
                        f"prompt {i} is empty after tokenisation: give the model some context to score from"
                    )
                if ctx == t + len(ids):
                    raise ValueError(f"candidate {c!r} adds no tokens to prompt {i}")
                contexts.append(ctx)
                cand_ids.append(ids[ctx - t :])
            out.append(self._fit_context(i, TokenizedPrompt(p_ids, contexts, cand_ids)))
        return out

    def _fit_generation(self, i: int, prompt_ids: list[int], new_tokens: int) -> list[int]:
        """Drop the oldest prompt tokens when the prompt and ``new_tokens`` sampled ones exceed the context window
        (``truncation="left"``, keeping a leading BOS, warned once; ``"error"`` raises)."""
        overflow = len(prompt_ids) + new_tokens - self.max_length
        if overflow <= 0:
            return prompt_ids
        if new_tokens >= self.max_length:
            raise ValueError(
                f"max_new_tokens={new_tokens} leaves no room for a prompt in the context window "
                f"({self.max_length} tokens)"
            )
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
        return drop_oldest(prompt_ids, overflow, bos)

    def _fit_context(self, i: int, tp: TokenizedPrompt) -> TokenizedPrompt:
        """Drop the oldest prompt tokens when prompt + longest candidate exceed the context window."""
        longest = max(c + len(t) for c, t in zip(tp.contexts, tp.candidate_ids))
        overflow = longest - self.max_length
        if overflow <= 0:
            return tp
        longest_candidate = max(len(t) for t in tp.candidate_ids)
        if longest_candidate >= self.max_length:
            raise ValueError(
                f"a candidate of prompt {i} has {longest_candidate} tokens, "
                f"more than the context window ({self.max_length})"
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
        prompt_ids = drop_oldest(tp.prompt_ids, overflow, bos)
        return TokenizedPrompt(prompt_ids, [max(c - overflow, 1) for c in tp.contexts], tp.candidate_ids)
