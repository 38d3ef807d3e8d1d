"""One demonstration episode (:class:`Demonstration`), its steps as a prior sees them (:class:`DecisionPoint`),
and where episodes come from: the env's scripted expert (:func:`expert_episodes`) or an ``OfflineDataset``
recorded with text (:func:`dataset_episodes`).

The pool that shows some of them to the LLM, under a token budget, is
:class:`~prior_wrappers.demonstrations.Demonstrations` (``Demonstrations.from_expert`` and
``Demonstrations.from_dataset`` build one from these functions' episodes).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np

from prior_wrappers.prompts import PromptFn, PromptTemplate, TextState, one_line


def _shorten(text: str, max_chars: int) -> str:
    """``text`` on one line, cut at a word boundary to at most ``max_chars`` characters (marked by "...")."""
    text = one_line(text)
    if len(text) <= max_chars:
        return text
    cut = text[: max(max_chars - 3, 1)]
    if " " in cut:
        cut = cut.rsplit(" ", 1)[0]
    return cut + "..."


@dataclass(frozen=True)
class Demonstration:
    """One episode: its task and (observation, command) steps, and what came after the last command.

    :param task: the goal, as the env states it (``info["task"]``).
    :param steps: ``(observation, command)`` pairs in order.
    :param final_observation: the observation after the last command (e.g. "You won!").
    :param source: where the episode was played (a game file, or ``"<env id>:<seed>"``); used by
        :meth:`Demonstrations.check_no_leakage <prior_wrappers.demonstrations.Demonstrations.check_no_leakage>`.
    :param success: whether the episode was won.
    :param episode_return: its undiscounted return.
    :param admissible: the admissible commands of each step (``info["admissible_commands"]`` when the command
        was chosen), one tuple per step; empty when unknown (e.g. episodes recorded before 0.3). Priors learned
        from demonstrations (:class:`~prior_wrappers.priors.BCPrior`) use them as the alternatives the expert
        did not take.
    """

    task: str
    steps: tuple[tuple[str, str], ...]
    final_observation: str = ""
    source: str = ""
    success: bool = True
    episode_return: float = 0.0
    admissible: tuple[tuple[str, ...], ...] = ()

    def __post_init__(self) -> None:
        if self.admissible and len(self.admissible) != len(self.steps):
            raise ValueError(
                f"admissible has {len(self.admissible)} command lists for {len(self.steps)} steps: give one per "
                "step, or none"
            )

    def render(self, max_observation_chars: int = 400) -> str:
        """The episode in the prompt's own format (``Task:``, then ``Observation:`` / ``Action:`` lines, see
        :class:`~prior_wrappers.prompts.PromptTemplate`), each observation on one line and cut to
        ``max_observation_chars``."""
        task = one_line(self.task)
        lines = [f"Task: {task}"] if task else []
        for observation, command in self.steps:
            if task and one_line(observation).startswith(task):  # TextWorld repeats its objective first
                observation = one_line(observation)[len(task) :]
            lines += [f"Observation: {_shorten(observation, max_observation_chars)}", f"Action: {one_line(command)}"]
        if self.final_observation.strip():
            lines.append(f"Observation: {_shorten(self.final_observation, max_observation_chars)}")
        return "\n".join(lines)

    def cut(self, n_steps: int) -> Demonstration:
        """The first ``n_steps`` steps only (what the budget keeps of an episode too long to show whole)."""
        return Demonstration(
            self.task,
            self.steps[:n_steps],
            "",
            self.source,
            self.success,
            self.episode_return,
            self.admissible[:n_steps],
        )

    def decision_points(
        self, prompt: PromptFn | None = None, *, history: int = 2, example: str | None = None
    ) -> list[DecisionPoint]:
        """Each step as the wrappers would show it to a prior: the prompt (``prompt`` of a :class:`TextState`
        with the ``history`` previous steps and ``example``), the admissible commands and the expert's command.

        :param prompt: the prompt function; default :class:`~prior_wrappers.prompts.PromptTemplate`.
        :param history: previous (observation, command) pairs kept, as the wrappers' ``history=``.
        :param example: the state's example text (``None``: no in-context example).
        """
        prompt = prompt or PromptTemplate()
        points = []
        for i, (observation, command) in enumerate(self.steps):
            admissible = list(dict.fromkeys(self.admissible[i])) if self.admissible else []
            past = self.steps[max(0, i - history) : i] if history > 0 else ()
            state = TextState(observation, admissible, self.task, tuple(past), example)
            points.append(DecisionPoint(prompt(state), tuple(admissible), command, self.source))
        return points


@dataclass(frozen=True)
class DecisionPoint:
    """One step of a demonstration as a prior sees it.

    :param prompt: the prompt the wrappers would build for the step's state.
    :param admissible: the step's admissible commands (empty when the demonstration did not record them).
    :param command: the expert's command.
    :param source: the demonstration's source (game).
    """

    prompt: str
    admissible: tuple[str, ...]
    command: str
    source: str = ""


def expert_episodes(env: gym.Env, n_episodes: int, *, seed: int = 0, max_steps: int = 100) -> list[Demonstration]:
    """The episodes of :meth:`Demonstrations.from_expert <prior_wrappers.demonstrations.Demonstrations.from_expert>`,
    won or not: ``n_episodes`` played with ``env.unwrapped.expert_command()``, episode ``i`` reset with
    ``seed + i`` (game ``i`` of several ``game_files``, cycling). Each step records the env's admissible commands,
    with the expert's command appended where the list spells it otherwise (the env accepted it).

    :raises TypeError: when the env has no ``expert_command()``.
    :raises RuntimeError: when the expert wins no episode.
    """
    raw = env.unwrapped
    expert = getattr(raw, "expert_command", None)
    if expert is None:
        raise TypeError(f"{type(raw).__name__} has no expert_command(); build the pool from episodes instead")
    env_id = env.spec.id if env.spec is not None else type(raw).__name__
    games = getattr(raw, "game_files", None)
    episodes = []
    for i in range(n_episodes):
        options = {"game_index": i % len(games)} if games and len(games) > 1 else None
        observation, info = env.reset(seed=seed + i, options=options)
        task, total, done = str(info.get("task", "")), 0.0, False
        steps: list[tuple[str, str]] = []
        admissible: list[tuple[str, ...]] = []
        while not done and len(steps) < max_steps:
            command = expert()
            listed = tuple(info.get("admissible_commands") or ())
            # the game accepts the expert's command, so it is valid where the list spells it otherwise (TextWorld)
            admissible.append(listed if not listed or command in listed else (*listed, command))
            next_observation, reward, terminated, truncated, info = env.step(command)
            steps.append((observation, command))
            total += float(reward)
            done = terminated or truncated
            observation = next_observation
        source = info.get("game_file") or f"{env_id}:{seed + i}"
        success = bool(info.get("is_success", False))
        episodes.append(
            Demonstration(
                task,
                tuple(steps),
                observation,
                str(source),
                success,
                total,
                tuple(admissible) if all(admissible) else (),
            )
        )
    if not any(e.success for e in episodes):
        raise RuntimeError(f"the expert of {env_id} won none of {n_episodes} episodes (max_steps={max_steps})")
    return episodes


def dataset_episodes(dataset: Any) -> list[Demonstration]:
    """The successful episodes of an ``OfflineDataset`` recorded with text, as :meth:`Demonstrations.from_dataset
    <prior_wrappers.demonstrations.Demonstrations.from_dataset>` takes them.

    :raises ValueError: when the dataset carries no text.
    """
    observations = getattr(dataset, "text_observations", None)
    commands = getattr(dataset, "commands", None)
    if observations is None or commands is None:
        raise ValueError(
            "this dataset carries no text (text_observations/commands), so its episodes cannot be shown to "
            "the LLM; collect it with collect_dataset(..., record_text=True)"
        )
    tasks = getattr(dataset, "episode_task", None)
    sources = getattr(dataset, "episode_source", None)
    index = np.asarray(dataset.episode_index)
    final = getattr(dataset, "next_text_observations", None)
    episodes = []
    for e, success in enumerate(np.asarray(dataset.episode_success)):
        rows = np.flatnonzero(index == e)
        if not success or rows.size == 0:
            continue
        episodes.append(
            Demonstration(
                task=str(tasks[e]) if tasks is not None else "",
                steps=tuple((str(observations[r]), str(commands[r])) for r in rows),
                final_observation=str(final[rows[-1]]) if final is not None else "",
                source=str(sources[e]) if sources is not None and str(sources[e]) else f"dataset:{e}",
                success=True,
                episode_return=float(np.asarray(dataset.episode_return)[e]),
            )
        )
    return episodes
