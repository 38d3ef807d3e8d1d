"""Demonstrations as part of the prior: complete successful episodes shown to the (frozen) LLM as in-context
examples, before every prompt.

>>> demos = Demonstrations.from_expert(TextWorldChallengeEnv("cooking", game_files=train_games), 4, shots=2)
>>> demos.check_no_leakage(eval_games)                  # ValueError if an example comes from an evaluation game
>>> env = LLMPriorWrapper(TextWorldChallengeEnv("cooking", game_files=eval_games), prior, demonstrations=demos)

The examples come first in every prompt (after the instruction line) and are the same for every state, so
``HFPrior``'s shared-prefix cache computes them once and each state pays only for its own tokens. They replace
the env's hand-written ``prompt_example``.

One episode (:class:`Demonstration`, :class:`DecisionPoint`) and how episodes are played or read from a dataset
live in :mod:`prior_wrappers.demonstration_episodes`; this module is the pool, its k-shot text and the recording
of the agent's own successes. ``Demonstration`` and ``DecisionPoint`` stay importable from here.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

from prior_wrappers.demonstration_episodes import DecisionPoint, Demonstration, dataset_episodes, expert_episodes
from prior_wrappers.prompts import PromptFn, format_examples

# Observations are never shortened below this many characters to meet the token budget: fewer examples then.
MIN_OBSERVATION_CHARS = 100


def approximate_token_count(text: str) -> int:
    """About four characters per token (English text, BPE tokenizers): the default budget count. Pass
    :func:`token_counter` of the prior's tokenizer for an exact one."""
    return (len(text) + 3) // 4


def token_counter(tokenizer: Any) -> Callable[[str], int]:
    """The exact token count of a transformers tokenizer (e.g. ``HFPrior.tokenizer``), for ``count_tokens``."""
    return lambda text: len(tokenizer(text, add_special_tokens=False)["input_ids"])


def _same_source(source: str) -> str:
    """A source compared by its resolved path when it is a file (so relative and absolute paths agree)."""
    path = Path(source)
    return str(path.resolve()) if source and path.exists() else source


class Demonstrations:
    """A pool of successful episodes and the k-shot text that the prompt shows from it.

    :meth:`text` picks ``shots`` episodes with a generator seeded by ``seed`` (the same pool and seed give the
    same text), then fits them into ``max_tokens``: observations are shortened first (halved, down to
    100 characters), then examples dropped from the last, and a single example that still does not fit
    keeps only its first steps. The wrappers (``LLMPriorWrapper(demonstrations=...)``, ``VecLLMPrior``) put
    the text in place of the env's ``prompt_example``.

    **Learning from the agent's own successes** (``learn_from_successes=True``, off by default): the wrappers
    :meth:`add` every episode their env wins, so the pool and the text can change during training. The prior
    is then non-stationary: the same state scored before and after an addition gets a different prompt and
    different log-probs. Prior log-probs stored in a replay buffer (DQN-Prior, CQL-Prior) or a rollout
    (PPO-Prior's KL term) were computed under the prompt of their time; :attr:`version` counts the changes
    so that callers can tell. A ``CachedPrior`` stays exact (its key is the prompt), but each new text is a
    cold cache, and ``HFPrior``'s prefix cache computes the new examples once more (an engine that keeps a
    single prefix common to every prompt so far keeps only what the new text shares with the old one, and then
    computes the rest for every state). Keep it off when comparing against a fixed prior.

    :param episodes: the pool (only successful episodes are kept).
    :param shots: how many episodes the text shows (0: none, :meth:`text` returns ``None``).
    :param max_tokens: token budget of the text (``None``: no limit).
    :param count_tokens: counts a text's tokens (default :func:`approximate_token_count`; exact:
        ``token_counter(prior.tokenizer)``).
    :param seed: seed of the selection.
    :param learn_from_successes: allow :meth:`add` (the wrappers then add their env's won episodes).
    :param max_observation_chars: observations are cut to this many characters before any budget cut.
    """

    def __init__(
        self,
        episodes: Sequence[Demonstration] = (),
        *,
        shots: int = 2,
        max_tokens: int | None = 1024,
        count_tokens: Callable[[str], int] | None = None,
        seed: int = 0,
        learn_from_successes: bool = False,
        max_observation_chars: int = 400,
    ) -> None:
        if shots < 0:
            raise ValueError(f"shots must be >= 0, got {shots}")
        if max_tokens is not None and max_tokens < 1:
            raise ValueError(f"max_tokens must be >= 1 or None, got {max_tokens}")
        if max_observation_chars < 1:
            raise ValueError(f"max_observation_chars must be >= 1, got {max_observation_chars}")
        for e in episodes:
            if not isinstance(e, Demonstration):
                raise TypeError(f"episodes must be Demonstration objects, got {type(e).__name__}")
        self.episodes: list[Demonstration] = [e for e in episodes if e.success and e.steps]
        self.shots = shots
        self.max_tokens = max_tokens
        self.count_tokens = count_tokens or approximate_token_count
        self.seed = seed
        self.learn_from_successes = learn_from_successes
        self.max_observation_chars = max_observation_chars
        self.version = 0
        self._built: tuple[int, str | None, frozenset[str]] | None = None

    def __len__(self) -> int:
        return len(self.episodes)

    def __repr__(self) -> str:
        return (
            f"Demonstrations({len(self.episodes)} episodes, shots={self.shots}, max_tokens={self.max_tokens}, "
            f"seed={self.seed}, learn_from_successes={self.learn_from_successes}, version={self.version})"
        )

    # ----- the text -------------------------------------------------------------------------------------------
    def _chosen(self) -> list[Demonstration]:
        order = np.random.default_rng(self.seed).permutation(len(self.episodes))
        return [self.episodes[i] for i in order[: self.shots]]

    def _fits(self, text: str) -> bool:
        return self.max_tokens is None or self.count_tokens(text) <= self.max_tokens

    def _fit(self, chosen: list[Demonstration]) -> tuple[str | None, list[Demonstration]]:
        chars = [self.max_observation_chars]
        while chars[-1] > MIN_OBSERVATION_CHARS:
            chars.append(max(chars[-1] // 2, MIN_OBSERVATION_CHARS))
        for n in range(len(chosen), 0, -1):  # as many examples as fit, each with the longest observations that fit
            for c in chars:
                text = format_examples([e.render(c) for e in chosen[:n]])
                if self._fits(text):
                    return text, chosen[:n]
        first = chosen[0]
        for n_steps in range(len(first.steps) - 1, 0, -1):
            text = format_examples([first.cut(n_steps).render(chars[-1])])
            if self._fits(text):
                return text, [first]
        return None, []

    def _build(self) -> tuple[str | None, frozenset[str]]:
        if self._built is None or self._built[0] != self.version:
            chosen = self._chosen()
            text, used = self._fit(chosen) if chosen else (None, [])
            self._built = (self.version, text, frozenset(e.source for e in used))
        return self._built[1], self._built[2]

    def text(self) -> str | None:
        """The examples as the prompt shows them ("Example 1:\\n...\\n\\nExample 2:\\n..."), within
        ``max_tokens``; ``None`` when there is no episode to show (or none fits)."""
        return self._build()[0]

    @property
    def sources(self) -> set[str]:
        """The sources of the episodes that :meth:`text` shows."""
        return set(self._build()[1])

    def decision_points(
        self, prompt: PromptFn | None = None, *, history: int = 2, example: str | None = None
    ) -> list[DecisionPoint]:
        """Every step of every episode of the pool (not only the shown ones) as a prior sees it: see
        :meth:`Demonstration.decision_points`. What priors learned from demonstrations train on."""
        return [p for e in self.episodes for p in e.decision_points(prompt, history=history, example=example)]

    # ----- growing the pool -----------------------------------------------------------------------------------
    def add(self, demo: Demonstration) -> bool:
        """Add one successful episode to the pool (needs ``learn_from_successes=True``); :meth:`text` may change
        and :attr:`version` increments. Returns False (nothing changes) for an episode already in the pool.

        :raises RuntimeError: without ``learn_from_successes``.
        :raises ValueError: for an unsuccessful or empty episode.
        """
        if not self.learn_from_successes:
            raise RuntimeError(
                "this Demonstrations was made with learn_from_successes=False, so its text is fixed; pass "
                "learn_from_successes=True to let episodes be added (the prior then changes during training)"
            )
        if not isinstance(demo, Demonstration):
            raise TypeError(f"add() takes a Demonstration, got {type(demo).__name__}")
        if not (demo.success and demo.steps):
            raise ValueError("only successful, non-empty episodes can be demonstrations")
        if any(e.task == demo.task and e.steps == demo.steps for e in self.episodes):
            return False
        self.episodes.append(demo)
        self.version += 1
        return True

    def check_no_leakage(self, eval_sources: Iterable[str | Path]) -> None:
        """Refuse a pool that holds an episode of an evaluation game (any episode of the pool, shown or not,
        since the selection changes with the seed and with :meth:`add`).

        :param eval_sources: the evaluation games (paths) or other source names.
        :raises ValueError: naming the leaked sources.
        """
        wanted = {_same_source(str(s)) for s in eval_sources}
        leaked = sorted({e.source for e in self.episodes if e.source and _same_source(e.source) in wanted})
        if leaked:
            raise ValueError(
                f"{len(leaked)} demonstration source(s) are evaluation games: {leaked[:5]}; take the "
                "demonstrations from training games only (e.g. the train side of envs.challenge_splits)"
            )

    # ----- where episodes come from ---------------------------------------------------------------------------
    @classmethod
    def from_expert(
        cls, env: gym.Env, n_episodes: int, *, seed: int = 0, max_steps: int = 100, **kwargs: Any
    ) -> Demonstrations:
        """Play ``n_episodes`` episodes with the env's scripted expert (``env.unwrapped.expert_command()``:
        TextWorld's plan, the Overcooked expert, ALFWorld's planner with ``expert=True``) and keep the won ones.

        Episode ``i`` is reset with ``seed + i``; an env with several ``game_files`` plays game ``i`` (cycling),
        so the pool spreads over its games. ``source`` is ``info["game_file"]``, else ``"<env id>:<seed + i>"``.

        :param env: a raw text env (not prior-wrapped).
        :param n_episodes: episodes to play.
        :param seed: seed of the first reset, and of the selection.
        :param max_steps: give up an episode after this many steps.
        :param kwargs: passed to :class:`Demonstrations` (``shots``, ``max_tokens``, ...).
        :raises RuntimeError: when the expert wins no episode.
        """
        return cls(expert_episodes(env, n_episodes, seed=seed, max_steps=max_steps), seed=seed, **kwargs)

    @classmethod
    def training_pool(cls, demonstrations: Any, what: str) -> Demonstrations:
        """What priors learned from demonstrations (``BCPrior.fit``, ``fit_lora``) accept, as a pool: a
        ``Demonstrations`` as it is, a sequence of :class:`Demonstration`, or an ``OfflineDataset`` recorded with
        text (:meth:`from_dataset`); every episode is kept for training (``shots=0``: none is shown in a prompt).

        :param demonstrations: the input.
        :param what: the caller, for the error message (``"fit()"``).
        :raises TypeError: anything else, or a sequence holding other objects.
        """
        if isinstance(demonstrations, Demonstrations):
            return demonstrations
        if hasattr(demonstrations, "text_observations") and hasattr(demonstrations, "episode_index"):
            return cls.from_dataset(demonstrations, shots=0)
        if isinstance(demonstrations, Sequence) and not isinstance(demonstrations, (str, bytes)):
            items = list(demonstrations)
            if all(isinstance(d, Demonstration) for d in items):
                return cls(items, shots=0)
            kinds = sorted({type(d).__name__ for d in items})
            raise TypeError(f"{what} takes Demonstration objects in a sequence, got {kinds}")
        raise TypeError(
            f"{what} takes a Demonstrations, a sequence of Demonstration or an OfflineDataset recorded "
            f"with text, got {type(demonstrations).__name__}"
        )

    @classmethod
    def from_dataset(cls, dataset: Any, **kwargs: Any) -> Demonstrations:
        """The successful episodes of an :class:`~prior_wrappers.sb3.OfflineDataset` collected with text
        (``collect_dataset(..., record_text=True)``: its ``text_observations`` and ``commands`` rows, and
        ``episode_task`` / ``episode_source`` per episode).

        :param dataset: the dataset.
        :param kwargs: passed to :class:`Demonstrations`.
        :raises ValueError: when the dataset carries no text.
        """
        return cls(dataset_episodes(dataset), **kwargs)


def demonstration_text(demonstrations: Demonstrations | str | None, env_example: str | None) -> str | None:
    """The example text a wrapper puts in ``TextState.example``: the demonstrations' text, else (none given,
    or a pool with nothing to show yet) the env's own ``prompt_example``."""
    if demonstrations is None:
        return env_example
    if isinstance(demonstrations, str):
        return demonstrations
    return demonstrations.text() or env_example


class SuccessRecorder:
    """Follows one env's episode for a wrapper and adds it to ``demonstrations`` when it is won (only with
    ``learn_from_successes=True``; see :class:`Demonstrations` for what that does to the prior)."""

    def __init__(self, demonstrations: Demonstrations) -> None:
        self.demonstrations = demonstrations
        self._task = ""
        self._observation = ""
        self._steps: list[tuple[str, str]] = []
        self._return = 0.0

    def start(self, observation: str, info: dict[str, Any]) -> None:
        """A new episode starts with ``observation``."""
        self._task = str(info.get("task", ""))
        self._observation = observation
        self._steps = []
        self._return = 0.0

    def step(self, command: str, observation: str, reward: float, done: bool, info: dict[str, Any]) -> bool:
        """``command`` was run and led to ``observation``; returns True when this won the episode and the
        episode was added."""
        self._steps.append((self._observation, command))
        self._observation = observation
        self._return += float(reward)
        if not (done and info.get("is_success")):
            return False
        demo = Demonstration(
            self._task, tuple(self._steps), observation, str(info.get("game_file") or ""), True, self._return
        )
        return self.demonstrations.add(demo)


def success_recorder(demonstrations: Demonstrations | str | None) -> SuccessRecorder | None:
    """A recorder when ``demonstrations`` learns from successes, else ``None`` (nothing is recorded)."""
    if isinstance(demonstrations, Demonstrations) and demonstrations.learn_from_successes:
        return SuccessRecorder(demonstrations)
    return None
