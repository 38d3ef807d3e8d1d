"""The single-env wrapper: a text env in, an SB3-ready env with an LLM prior out (its core, one env's prior
state and step, is :class:`~prior_wrappers.core.PriorCore`)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, SupportsFloat

import gymnasium as gym
import numpy as np

from prior_wrappers.actions import InvalidAction
from prior_wrappers.core import EnvStep, Observed, PriorCore
from prior_wrappers.core_attributes import CoreAttributes, core_options
from prior_wrappers.demonstrations import Demonstrations
from prior_wrappers.priors.base import ActionPrior, Normalization
from prior_wrappers.prompts import PromptFn
from prior_wrappers.proposals import PriorMode, ProposalConfig
from prior_wrappers.slot_features import CandidateText, EncoderSpec
from prior_wrappers.slots import SlotBuilder, SlotOrder
from prior_wrappers.text_info import env_prompt_example
from prior_wrappers.token_ids import TokenIdSpec

__all__ = ["LLMPriorWrapper", "env_prompt_example"]


class LLMPriorWrapper(CoreAttributes, gym.Wrapper):
    """Attach an LLM action prior to a text environment.

    >>> env = LLMPriorWrapper(gym.make("prior_wrappers/OvercookedTomato-v0"), HFPrior.default(), k=8)
    >>> obs, info = env.reset(seed=0)
    >>> info["prior_candidates"][0], obs["prior_logprobs"][0]     # the prior's favourite command, its log-prob

    The wrapped env takes ``Discrete(k)`` actions (slot indices) and returns a ``Dict`` observation
    (see :mod:`prior_wrappers.spaces`): ``prior_logprobs`` (k,), ``action_mask`` (k,), and with an encoder
    ``candidate_features`` (k, D) and ``observation_features`` (D,). Valid slots come first, ordered by prior.
    Works with stock SB3 (``MultiInputPolicy``), sb3-contrib ``MaskablePPO`` (:meth:`action_masks`) and the
    prior algorithms in :mod:`prior_wrappers.sb3`.

    **Action contract.** In a state with ``n`` valid slots, action ``j < n`` runs the command in slot ``j``. An
    empty slot ``j >= n`` (a policy that ignores ``action_mask``, such as stock ``DQN`` or
    ``PPO("MultiInputPolicy")``, picks these) depends on ``invalid_action``:

    - ``"cycle"`` (default): runs valid slot ``j % n``. The meaning of action ``j`` in a state is fixed, so the
      transition ``(s, j)`` that SB3 stores in its buffer is what really happened and happens again.
    - ``"resample"``: runs a slot drawn from the prior over the valid slots. SB3 still stores ``j``, which is
      not what ran: stock algorithms learn from mislabelled transitions. Only for algorithms that never pick
      empty slots (``MaskablePPO`` and the algorithms of :mod:`prior_wrappers.sb3`).
    - ``"raise"``: ``ValueError``.

    ``info`` of every step has ``command`` (the command executed), ``executed_slot`` (the valid slot whose
    command ran; equal to the action for a valid action) and ``invalid_action`` (True when the action was an
    empty slot); offline datasets should record ``executed_slot`` as the action.

    ``info`` gains also: ``prior_candidates`` (the command in each valid slot), ``prior_prompt``,
    ``prior_dropped`` (admissible commands beyond k, dropped by lowest prior), ``text_observation``, and on an
    episode's last step ``prior_stats`` (calls, latency, cache hit rates; also the ``prior_stats`` property).

    **Failures.** If the prior (or the env) raises during :meth:`step`, the env has moved on but the slots
    could not be rebuilt: the wrapper keeps the last state it built (nothing is half-updated) and refuses
    :meth:`step` with a ``RuntimeError`` that names the failure until :meth:`reset`, so it never acts on a
    stale state. It does not retry the scoring itself: the env's reward and end-of-episode flags of that step
    are lost with the exception, so only a reset gives the caller a consistent episode again. A prior that returns
    NaN or +inf raises ``ValueError`` naming the prompt (see :class:`~prior_wrappers.slots.SlotBuilder`).

    **Episode ends.** With ``score_terminal=False`` (the default) the state a *terminated* episode ends in
    (``terminated=True``, whatever ``truncated`` says) is not shown to the prior: its observation has no valid
    slot (``action_mask`` all 0, ``prior_logprobs`` at ``LOGPROB_MIN``, zero features), as a state whose
    admissible list is empty, and costs no prior call and no encoding. No algorithm bootstraps from it (SB3 does
    only on time-outs), so its prior would be wasted LLM work. ``info`` still has ``text_observation``,
    ``prior_prompt``, the env's ``admissible_commands`` and ``command``; ``prior_candidates`` is ``[]``. The last
    state of a truncated episode is scored as usual (a time-out is bootstrapped from). ``score_terminal=True``
    scores every terminal state, for users who read the prior at the goal state. A loop that steps on after
    ``terminated`` without :meth:`reset` (undefined in Gymnasium, but some envs go on) gets that state scored then,
    before its action is resolved, so it acts on the same slots as with ``score_terminal=True``.

    **Rewards** are passed through unchanged, NaN and inf included (the wrapper never alters rewards); wrap the
    vector env in SB3's ``VecCheckNan(raise_exception=True)`` to catch them.

    **Demonstrations.** ``demonstrations=`` (a :class:`~prior_wrappers.demonstrations.Demonstrations` or a
    fixed text) replaces the env's ``prompt_example`` in every prompt (``info["prior_prompt"]`` shows it); the
    LLM stays frozen. With ``Demonstrations(learn_from_successes=True)`` (off by default) every episode this
    env wins is added to the pool, so the prompt, and with it the prior, changes during training: prior
    log-probs stored earlier (a replay buffer's observations, an offline dataset) were computed under an older
    prompt and no longer match what the wrapper gives for the same state.

    **Proposals.** ``prior_mode="propose"`` replaces scoring by sampling (the reference's DQN-Prior): the prior
    draws k completions per state (``proposals=``, a :class:`~prior_wrappers.proposals.ProposalConfig` or k),
    maps them to admissible commands, and ``prior_logprobs`` are the smoothed counts
    ``(c_a + beta/n) / (sum c + beta)``; ``info`` gains ``prior_invalid_rate`` (this state's share of samples that
    named no command), ``prior_generations`` and ``prior_proposal_counts`` (per kept slot). An env that takes free
    text says so with ``info["admissible_commands"] = None``: the distinct generations become the slots (by
    count, then first appearance; beyond k the least frequent are dropped, ``prior_dropped`` says how many) and
    the env receives the chosen text. Spaces and observation keys are those of score mode. See
    :mod:`prior_wrappers.proposals`.

    **Seeding.** ``invalid_action="resample"`` draws from the wrapper's own generator: seeded by ``seed`` and
    re-seeded by ``reset(seed=...)`` (what SB3's ``seed=`` does through its vector env); with neither it is
    seeded from OS entropy, as Gymnasium does for an unseeded env. The same seed fixes the proposals: each
    state's samples are seeded by the wrapper's seed and the state's prompt, so a revisited state gets the same
    proposals (and ``CachedPrior`` serves them).

    :param env: a text env (str observations, ``info["admissible_commands"]``), or any env together with
        ``actions`` and ``observation_to_text``.
    :param prior: an :class:`~prior_wrappers.priors.base.ActionPrior` (wrap it in ``CachedPrior`` to reuse scores).
    :param k: number of candidate slots.
    :param encoder: candidate features: ``"minilm"``, ``"prior"``, ``"hashing"``, a ``TextEncoder`` or ``None``.
    :param prompt: ``Callable[[TextState], str]``; default :class:`~prior_wrappers.prompts.PromptTemplate`.
    :param normalization: ``"token"``, ``"word"`` or ``"sum"``.
    :param order: ``"prior"`` (slots sorted by prior) or ``"env"`` (env's order).
    :param candidate_text: ``"joint"`` encodes "Observation: s Action: a" per candidate (the reference's);
        ``"action"`` encodes the command alone (far fewer texts to encode; the state is in ``observation_features``).
    :param actions: for envs with a fixed discrete action set: the name of each action; the env then receives
        the action's index. Used as the admissible commands when ``info`` has no ``admissible_commands``.
    :param observation_to_text: turns a non-text observation into text (with ``actions``).
    :param invalid_action: what choosing an empty slot does: ``"cycle"``, ``"resample"`` or ``"raise"`` (above).
    :param history: how many previous (observation, action) pairs the wrapper keeps for the prompt.
    :param seed: seed of the generator that ``invalid_action="resample"`` draws from.
    :param builder: a ready :class:`~prior_wrappers.slots.SlotBuilder` (then ``prior``, ``k`` and the
        layout options are ignored).
    :param demonstrations: in-context examples for the prompt, in place of the env's ``prompt_example``
        (which stays when the pool has nothing to show yet).
    :param token_ids: a :class:`~prior_wrappers.token_ids.TokenIdSpec`: the observation also holds the token ids
        of the prompt and of each slot's command (keys in :mod:`prior_wrappers.token_ids`), which an LLM policy
        (:mod:`prior_wrappers.sb3.gflan_prior`) scores; a prompt longer than its ``max_prompt_tokens`` keeps its last
        tokens (warned once; ``truncation="error"`` raises instead).
    :param prior_mode: ``"score"`` (default: exact log-probabilities of the admissible commands) or ``"propose"``
        (sampled proposals, above; needed for free-text envs).
    :param proposals: the sampling and smoothing of ``"propose"``: a ``ProposalConfig`` or the number of samples.
    :param score_terminal: also score the last state of a terminated episode (default ``False``: that state gets
        no valid slot and no prior call; see **Episode ends** above). Truncated episodes' last states are always
        scored.
    """

    def __init__(
        self,
        env: gym.Env,
        prior: ActionPrior,
        k: int = 16,
        *,
        encoder: EncoderSpec = "minilm",
        prompt: PromptFn | None = None,
        normalization: Normalization = "token",
        order: SlotOrder = "prior",
        candidate_text: CandidateText = "joint",
        actions: Sequence[str] | None = None,
        observation_to_text: Callable[[Any], str] | None = None,
        invalid_action: InvalidAction = "cycle",
        history: int = 2,
        seed: int | None = None,
        builder: SlotBuilder | None = None,
        demonstrations: Demonstrations | str | None = None,
        token_ids: TokenIdSpec | None = None,
        prior_mode: PriorMode = "score",
        proposals: ProposalConfig | int | None = None,
        score_terminal: bool = False,
    ) -> None:
        super().__init__(env)
        self._core = PriorCore(1, **core_options(locals()))  # holds builder, actions, ... (CoreAttributes)
        self.k = self.builder.k
        self.observation_space = self.builder.observation_space
        self.action_space = gym.spaces.Discrete(self.k)
        self._example = env_prompt_example(env)

    @property
    def prior_stats(self) -> dict[str, float]:
        """Calls, states scored, last latency (ms), cache hit rates so far."""
        return self.builder.stats.as_dict()

    @property
    def prior_signature(self) -> dict[str, Any]:
        """The observation layout (k, feature size, encoder, ...): see :meth:`SlotBuilder.signature`. A model
        or dataset made under one signature only makes sense under the same one."""
        return self.builder.signature()

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        self._core.seed(seed)
        self._core.forget()
        observation, info = self.env.reset(seed=seed, options=options)
        (first,) = self._core.reset([Observed(observation, info, self._example)])
        return first.slots.observation, first.prior_info()

    def step(self, action: Any) -> tuple[dict[str, np.ndarray], SupportsFloat, bool, bool, dict[str, Any]]:
        resolved = self._core.resolve([action])
        (env_action,) = self._core.env_actions(resolved)
        with self._core.failing("the last step() failed ({error}) after its action went to the env"):
            observation, reward, terminated, truncated, info = self.env.step(env_action)
            seen = Observed(observation, info, self._example)
            (out,) = self._core.step([EnvStep(resolved[0], reward, terminated or truncated, terminated, seen)])
        info = {**out.now.prior_info(), **out.executed, **out.ended}  # prior keys, command, prior_stats at the end
        return out.now.slots.observation, reward, terminated, truncated, info

    def action_masks(self) -> np.ndarray:
        """Boolean mask of the valid slots (sb3-contrib's ``MaskablePPO`` calls this). After a failed step it is
        still the mask of the last state the wrapper built (nothing was half-updated), but :meth:`step` refuses
        until :meth:`reset`."""
        return self._core.masks()[0]
