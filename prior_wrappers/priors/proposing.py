"""``propose`` of a prior that samples completions from a causal LM, defined once for the local engine
(:class:`~prior_wrappers.priors.generation.ProposalSampling`) and the remote one
(:class:`~prior_wrappers.priors.remote.OpenAIPrior`): the checks on the request, the prompt's tokens fitted to the
context window with room for the sampled ones, and the tally of the samples into proposals. An engine supplies
how ``k`` completions per prompt are drawn (:meth:`SampledProposals._sample`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import cast

from prior_wrappers.priors.base import Proposals, prompt_seeds, validate_request
from prior_wrappers.priors.matching import Fallback, tally_proposals

Seed = int | list[int] | None  # one int for the whole call, one per prompt, or none


class SampledProposals:
    """``propose`` for an engine that sets the attributes declared here and implements :meth:`_sample`."""

    separator: str
    _encode: Callable[[list[str]], list[list[int]]]  # the engine's tokenization (CandidateTokenization)
    _fit_generation: Callable[[int, list[int], int], list[int]]  # CandidateTokenization: the context window

    def propose(
        self,
        prompts: Sequence[str],
        admissible: Sequence[Sequence[str] | None],
        k: int = 5,
        *,
        temperature: float = 1.0,
        max_new_tokens: int = 10,
        fallback: Fallback = "drop",
        seed: int | Sequence[int] | None = None,
    ) -> Proposals:
        """Sample ``k`` completions per prompt and map the first line of each to an admissible command
        (see :class:`~prior_wrappers.priors.matching.CommandMatcher`). ``fallback`` says what an invalid
        generation counts as; the invalid rate is reported either way. Where ``admissible[i]`` is ``None`` (an
        env without an admissible list) the distinct generations become prompt ``i``'s commands
        (:func:`~prior_wrappers.priors.matching.count_free_text`). A prompt too long for the context window
        with ``max_new_tokens`` more loses its oldest tokens (``truncation="left"``) or raises.

        How the samples are drawn is the engine's: :class:`~prior_wrappers.priors.hf.HFPrior` samples locally
        (plain ancestral sampling at ``temperature``, see :class:`~prior_wrappers.priors.generation.ProposalSampling`),
        :class:`~prior_wrappers.priors.remote.OpenAIPrior` sends one request per prompt with ``n=k``.

        :param prompts: one prompt per state.
        :param admissible: each prompt's admissible commands, or ``None``.
        :param k: samples per prompt.
        :param temperature: softmax temperature.
        :param max_new_tokens: tokens sampled at most per completion.
        :param fallback: what a generation that matches no command counts as (``"drop"``, ``"uniform"``, ...).
        :param seed: the same seed gives the same proposals (on a server, where it honours per-request seeds, as
            vLLM does). One int seeds the whole call; one int per prompt gives each prompt its own seed, so that
            its samples are those of ``propose([prompt], ..., seed=its_seed)`` whatever else shares the call:
            what caching proposals per state needs. Without a seed, samples are not repeatable.
        """
        validate_request(prompts, admissible, free_text=True)
        if k < 1:
            raise ValueError("k must be >= 1")
        per_prompt = prompt_seeds(seed, len(prompts))
        self._before_sampling(temperature, max_new_tokens)
        # the prompt and its sampled tokens within the context window
        encoded = self._encode([p + self.separator.rstrip(" ") for p in prompts])
        encoded = [self._fit_generation(i, ids, max_new_tokens) for i, ids in enumerate(encoded)]
        seeds = per_prompt if per_prompt is not None else cast("int | None", seed)
        samples = self._sample(encoded, k, temperature=temperature, max_new_tokens=max_new_tokens, seed=seeds)
        return tally_proposals(samples, admissible, fallback)

    def _before_sampling(self, temperature: float, max_new_tokens: int) -> None:
        """Check the sampling options, or get ready (e.g. learn the context window), before the prompts are fitted."""

    def _sample(
        self, prompt_ids: list[list[int]], k: int, *, temperature: float, max_new_tokens: int, seed: Seed
    ) -> list[list[str]]:
        """Per prompt (its token ids), ``k`` sampled completions as text. ``seed``: ``None``, one int for the
        whole call, or a list with one seed per prompt."""
        raise NotImplementedError
