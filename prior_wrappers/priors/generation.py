"""Proposals from a causal LM: ``k`` sampled completions per prompt, mapped to admissible commands.

:class:`ProposalSampling` is the sampling half of :class:`~prior_wrappers.priors.hf.HFPrior` (as transformers'
``GenerationMixin`` is of its models): it reuses the engine's tokenization, its prefix-tree KV cache and its
counters, and adds ancestral sampling with one KV cache per prompt shared by that prompt's ``k`` samples.
"""

from __future__ import annotations

from typing import Any

import torch

from prior_wrappers.priors.hf_compat import cache_from_layers, cache_layers, forward_with_cache, output_cache
from prior_wrappers.priors.prefix_tree import PrefixKVCache
from prior_wrappers.priors.proposing import SampledProposals, Seed


class ProposalSampling(SampledProposals):
    """How :class:`~prior_wrappers.priors.hf.HFPrior` draws the samples of ``propose`` (:meth:`_sample`; the
    request and the tally are :class:`~prior_wrappers.priors.proposing.SampledProposals`'). ``HFPrior`` sets the
    attributes declared here."""

    tokenizer: Any
    device: torch.device
    kv_cache: PrefixKVCache | None
    computed_tokens: int
    hit_tokens: int
    _base: Any  # the model without its LM head
    _lm_head: Any
    _softcap: float | None
    _cache_kwarg: str | None

    def _prompt_caches(self, encoded: list[list[int]], k: int) -> tuple[Any, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Each prompt's keys/values, left-padded to a common length and repeated ``k`` times (rows: prompt 0 x k,
        prompt 1 x k, ...), with the hidden state at each prompt's last token, the attention mask and the
        positions of those last tokens. With the prefix cache a prompt's cached prefix (instruction,
        demonstrations, ...) is reused and its new tokens are stored, as scoring does; otherwise the prompts are
        computed in one left-padded forward."""
        dev, longest = self.device, max(len(e) for e in encoded)
        mask = torch.zeros((len(encoded), longest), dtype=torch.long, device=dev)
        for i, e in enumerate(encoded):
            mask[i, longest - len(e) :] = 1
        positions = (mask.cumsum(-1) - 1).clamp(min=0)  # left padding: every row's text starts at position 0
        last = positions[:, -1:].repeat_interleave(k, dim=0)
        if self.kv_cache is None:
            pad_id = (
                self.tokenizer.pad_token_id
                if self.tokenizer.pad_token_id is not None
                else (self.tokenizer.eos_token_id or 0)
            )
            padded = torch.full((len(encoded), longest), pad_id, dtype=torch.long)
            for i, e in enumerate(encoded):
                padded[i, longest - len(e) :] = torch.tensor(e, dtype=torch.long)
            out = forward_with_cache(
                self._base, None, input_ids=padded.to(dev), attention_mask=mask, position_ids=positions, use_cache=True
            )
            layers, hidden = cache_layers(output_cache(out)), out.last_hidden_state[:, -1]
        else:  # one prompt at a time, each from its longest cached prefix
            rows, hiddens = [], []
            for ids in encoded:
                held = self.kv_cache.match(ids, len(ids) - 1)
                start = held.length
                cached = cache_from_layers([(a[None], b[None]) for a, b in held.layers()]) if start else None
                out = forward_with_cache(
                    self._base,
                    cached,
                    kwarg=self._cache_kwarg,
                    use_cache=True,
                    input_ids=torch.tensor([ids[start:]], device=dev),
                    position_ids=torch.arange(start, len(ids), device=dev)[None],
                )
                full = cache_layers(output_cache(out))
                self.kv_cache.insert(ids, [(a[0, :, start:], b[0, :, start:]) for a, b in full], start=start)
                self.computed_tokens += len(ids) - start
                self.hit_tokens += start
                rows.append(full)
                hiddens.append(out.last_hidden_state[:, -1])
            layers = []
            for layer in range(len(rows[0])):
                shape = list(rows[0][layer][0].shape)
                shape[0], shape[2] = len(encoded), longest
                keys, values = rows[0][layer][0].new_zeros(shape), rows[0][layer][1].new_zeros(shape)
                for i, full in enumerate(rows):
                    n = full[layer][0].shape[2]
                    keys[i, :, longest - n :], values[i, :, longest - n :] = full[layer][0][0], full[layer][1][0]
                layers.append((keys, values))
            hidden = torch.cat(hiddens)
        past = cache_from_layers([(a.repeat_interleave(k, 0), b.repeat_interleave(k, 0)) for a, b in layers])
        return past, hidden.repeat_interleave(k, 0), mask.repeat_interleave(k, dim=0), last

    def _before_sampling(self, temperature: float, max_new_tokens: int) -> None:
        if not temperature > 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        if max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be >= 1, got {max_new_tokens}")

    @torch.inference_mode()
    def _sample(
        self, prompt_ids: list[list[int]], k: int, *, temperature: float, max_new_tokens: int, seed: Seed
    ) -> list[list[str]]:
        """Plain ancestral sampling from ``softmax(logits / temperature)`` over the whole vocabulary (no
        top-k/top-p, whatever the model's generation config says), with a KV cache, stopping at a newline. Each
        prompt is computed once and its cache shared by its ``k`` samples.

        With a seed, samples come from a local ``torch.Generator``: the same seed gives the same proposals and
        torch's global RNG (which SB3 seeds and draws from) is left untouched. One int seeds one generator for the
        whole call; one int per prompt gives each prompt its own generator (its samples are then those of the
        prompt alone, up to float rounding of batched logits). Without a seed, samples draw from torch's global
        RNG, as ``model.generate`` does.
        """
        generators: list[torch.Generator] | list[None] = [None]
        if seed is not None:
            seeds = seed if isinstance(seed, list) else [seed]  # not per prompt: one int for the whole call
            generators = [torch.Generator(device=self.device) for _ in seeds]
            for g, s in zip(generators, seeds):
                g.manual_seed(int(s))
        tok = self.tokenizer
        pad_id = tok.pad_token_id if tok.pad_token_id is not None else (tok.eos_token_id or 0)
        eos_id = tok.eos_token_id
        dev = self.device
        past, hidden, mask, step_positions = self._prompt_caches(prompt_ids, k)
        finished = torch.zeros(len(mask), dtype=torch.bool, device=dev)
        sampled: list[torch.Tensor] = []
        for step in range(max_new_tokens):
            logits = self._lm_head(hidden).float()
            if self._softcap:
                logits = torch.tanh(logits / self._softcap) * self._softcap
            probs = torch.softmax(logits / temperature, dim=-1)
            if len(generators) > 1:  # one generator per prompt draws that prompt's k rows
                nxt = torch.cat(
                    [torch.multinomial(probs[i * k : (i + 1) * k], 1, generator=g) for i, g in enumerate(generators)]
                ).squeeze(-1)
            else:
                nxt = torch.multinomial(probs, 1, generator=generators[0]).squeeze(-1)
            nxt = torch.where(finished, torch.full_like(nxt, pad_id), nxt)
            sampled.append(nxt)
            if eos_id is not None:
                finished |= nxt == eos_id
            # a completion ends at its first newline (only its first line is matched): stop once all have one
            newline = torch.tensor(["\n" in t for t in tok.batch_decode(nxt[:, None])], device=dev)
            finished |= newline
            if bool(finished.all()) or step == max_new_tokens - 1:
                break
            step_positions = step_positions + 1
            mask = torch.cat([mask, torch.ones_like(mask[:, :1])], dim=1)
            out = forward_with_cache(
                self._base,
                past,
                input_ids=nxt[:, None],
                attention_mask=mask,
                position_ids=step_positions,
                use_cache=True,
            )
            past = output_cache(out)
            hidden = out.last_hidden_state[:, -1]
        texts = tok.batch_decode(torch.stack(sampled, dim=1).cpu(), skip_special_tokens=True)
        return [texts[i * k : (i + 1) * k] for i in range(len(prompt_ids))]
