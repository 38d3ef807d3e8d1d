"""How well a prior ranks an expert's commands, before any training: top-1, top-3, MRR and p(expert) against uniform.

The expert (``env.unwrapped.expert_command()`` by default) plays episodes of a prior-wrapped env; in each state the
wrapper's own prompt and scores rank the admissible commands, so the report measures exactly the prior a learner
behind the same wrapper settings would get. Ties (a uniform prior, equal scores) are broken at random in
expectation: a uniform prior scores exactly the uniform baseline (top-1 1/n, MRR H_n/n over n commands).

>>> env = LLMPriorWrapper(gym.make("prior_wrappers/OvercookedTomato-v0"), HFPrior.default(), k=64, encoder=None)
>>> summary = summarize(rank_expert_commands(env, n_states=20))
>>> summary.mrr, summary.uniform_mrr
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, fields
from typing import Any

import gymnasium as gym
import numpy as np

from prior_wrappers.spaces import PRIOR_LOGPROBS

__all__ = ["RankedState", "RankSummary", "rank_expert_commands", "tie_aware_metrics", "summarize", "uniform_metrics"]


def tie_aware_metrics(logprobs: Sequence[float] | np.ndarray, expert: int) -> tuple[float, float, float, int]:
    """``(top-1, top-3, reciprocal rank, rank)`` of ``logprobs[expert]``, ties broken uniformly at random (in
    expectation): with ``g`` commands scored higher and ``t - 1`` others tied with it, the expert's rank is uniform
    over ``g + 1 .. g + t``. ``rank`` is the best of those (the optimistic rank, ties in the expert's favour).

    :param logprobs: one score per command.
    :param expert: the expert command's index.
    """
    values = np.asarray(logprobs, dtype=np.float64)
    greater = int(np.sum(values > values[expert]))
    tied = int(np.sum(values == values[expert]))  # the expert included
    ranks = np.arange(greater + 1, greater + tied + 1, dtype=np.float64)
    return float(np.mean(ranks == 1)), float(np.mean(ranks <= 3)), float(np.mean(1.0 / ranks)), greater + 1


def uniform_metrics(n: int) -> tuple[float, float, float, float]:
    """``(top-1, top-3, MRR, p(expert))`` of the uniform prior over ``n`` commands: 1/n, min(3, n)/n, H_n/n, 1/n."""
    return 1 / n, min(3, n) / n, sum(1 / r for r in range(1, n + 1)) / n, 1 / n


@dataclass(frozen=True)
class RankedState:
    """One expert state: the expert's command, where the prior put it, and what the uniform prior would score."""

    episode: int
    step: int
    n_commands: int
    expert: str
    rank: int  # 1 + commands scored strictly higher
    top1: float
    top3: float
    reciprocal_rank: float
    p_expert: float
    top_command: str
    uniform_top1: float
    uniform_top3: float
    uniform_mrr: float
    uniform_p_expert: float
    seconds: float  # the wrapper's step into this state (env step, prompt, prior call)

    @classmethod
    def columns(cls) -> list[str]:
        return [f.name for f in fields(cls)]

    def row(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class RankSummary:
    """Means over the states of :func:`rank_expert_commands`, next to the uniform prior's."""

    states: int
    episodes: int
    mean_commands: float
    top1: float
    top3: float
    mrr: float
    p_expert: float
    uniform_top1: float
    uniform_top3: float
    uniform_mrr: float
    uniform_p_expert: float
    seconds_per_state: float  # median


def summarize(states: Sequence[RankedState]) -> RankSummary:
    """The mean of each metric over ``states`` (raises ``ValueError`` on none)."""
    if not states:
        raise ValueError("no expert state to summarize")

    def mean(name: str) -> float:
        return float(np.mean([getattr(s, name) for s in states]))

    return RankSummary(
        states=len(states),
        episodes=len({s.episode for s in states}),
        mean_commands=mean("n_commands"),
        top1=mean("top1"),
        top3=mean("top3"),
        mrr=mean("reciprocal_rank"),
        p_expert=mean("p_expert"),
        uniform_top1=mean("uniform_top1"),
        uniform_top3=mean("uniform_top3"),
        uniform_mrr=mean("uniform_mrr"),
        uniform_p_expert=mean("uniform_p_expert"),
        seconds_per_state=float(np.median([s.seconds for s in states])),
    )


def _expert_of(env: gym.Env) -> Callable[[], str]:
    expert = getattr(env.unwrapped, "expert_command", None)
    if expert is None:
        raise ValueError(
            f"{type(env.unwrapped).__name__} has no expert_command(): ranking an expert's commands needs an env with a "
            "scripted expert (Overcooked, the TextWorld challenges, TextWorldExpress, ScienceWorld, BabyAI), or "
            "pass expert=..."
        )
    return expert


def rank_expert_commands(
    env: gym.Env,
    n_states: int,
    *,
    seed: int = 0,
    max_steps: int = 100,
    max_episodes: int | None = None,
    expert: Callable[[], str] | None = None,
    distinct: bool = True,
    patience: int = 5,
) -> list[RankedState]:
    """Play the expert in ``env`` (an :class:`~prior_wrappers.LLMPriorWrapper`) until ``n_states`` states are ranked.

    Episode ``i`` is reset with ``seed + i``. A state where the expert's command is not among the wrapper's
    candidates (not admissible, or dropped beyond the wrapper's ``k``: give it a ``k`` above the env's largest
    command list) ends that episode without being counted, since the wrapper cannot play it.

    :param env: a prior-wrapped env (its ``info`` has ``prior_candidates``, its observation ``prior_logprobs``).
    :param n_states: states to rank.
    :param seed: reset seed of the first episode.
    :param max_steps: steps per episode at most.
    :param max_episodes: give up after this many episodes (default ``4 * n_states``: an expert that rarely acts
        within the admissible commands ends early rather than looping).
    :param expert: the next expert command of the current state (default ``env.unwrapped.expert_command``).
    :param distinct: count each state once (by its prompt and commands): an env with one game replays the same
        states in every episode, and counting them again would only repeat the same rows.
    :param patience: with ``distinct``, stop after this many episodes in a row that showed no new state (the env
        has no more to show within ``max_steps``).
    :raises ValueError: the env has no expert.
    """
    next_command = expert or _expert_of(env)
    ranked: list[RankedState] = []
    seen: set[tuple[str, tuple[str, ...]]] = set()
    episode, stale = 0, 0
    limit = max_episodes if max_episodes is not None else 4 * max(n_states, 1)
    while len(ranked) < n_states and episode < limit and stale < (patience if distinct else limit):
        before = len(ranked)
        start = time.perf_counter()
        obs, info = env.reset(seed=seed + episode)
        seconds = time.perf_counter() - start
        for step in range(max_steps):
            candidates = list(info.get("prior_candidates", []))
            try:
                command = next_command()
            except Exception:  # the expert gave up (BabyAI's bot, ScienceWorld off its gold path): next episode
                break
            if command not in candidates:
                break
            index = candidates.index(command)
            key = (str(info.get("prior_prompt", "")), tuple(candidates))
            if not (distinct and key in seen):
                seen.add(key)
                logprobs = np.asarray(obs[PRIOR_LOGPROBS][: len(candidates)], dtype=np.float64)
                top1, top3, rr, rank = tie_aware_metrics(logprobs, index)
                u1, u3, umrr, up = uniform_metrics(len(candidates))
                ranked.append(
                    RankedState(
                        episode, step, len(candidates), command, rank, top1, top3, rr, float(np.exp(logprobs[index])),
                        candidates[int(np.argmax(logprobs))], u1, u3, umrr, up, seconds,
                    )
                )  # fmt: skip
                if len(ranked) >= n_states:
                    break
            start = time.perf_counter()
            obs, _, terminated, truncated, info = env.step(index)
            seconds = time.perf_counter() - start
            if terminated or truncated:
                break
        episode += 1
        stale = 0 if len(ranked) > before else stale + 1
    return ranked
