"""ALFWorld's text games (TextWorld + PDDL) as text envs, with task-type filters and ALFWorld's splits.

ALFWorld's data (``alfworld-download``) lays games out as ``json_2.1.1/<split>/<task>/<trial>/`` with a
``traj_data.json`` and a ``game.tw-pddl``. The env plays ``game.tw-pddl`` files with TextWorld's ``PddlEnv``
(which needs the ``fast-downward-textworld`` package, part of ``textworld[pddl]``) wrapped in ALFWorld's own
``AlfredDemangler`` and ``AlfredInfos``, exactly the stack of ALFWorld's ``AlfredTWEnv``; the game collection
applies ``AlfredTWEnv``'s rules (skip movable/sliced trials, unsolvable games and other task types).
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from envs.textworld_env import TextWorldEnv

# ALFWorld's task types, numbered as in its configs.
TASK_TYPES: dict[int, str] = {
    1: "pick_and_place_simple",
    2: "look_at_obj_in_light",
    3: "pick_clean_then_place_in_recep",
    4: "pick_heat_then_place_in_recep",
    5: "pick_cool_then_place_in_recep",
    6: "pick_two_obj_and_place",
}
# Split names: ALFWorld's folders, and the names its configs use for them.
SPLITS: dict[str, str] = {
    "train": "train",
    "valid_seen": "valid_seen",
    "valid_unseen": "valid_unseen",
    "eval_in_distribution": "valid_seen",
    "eval_out_of_distribution": "valid_unseen",
}
_TASK_PREFIX = "Your task is to: "


def alfworld_data_dir(data_dir: str | os.PathLike | None = None) -> Path:
    """``data_dir``, else ``$ALFWORLD_DATA``, else ALFWorld's default ``~/.cache/alfworld``."""
    if data_dir is not None:
        return Path(data_dir).expanduser()
    return Path(os.environ.get("ALFWORLD_DATA") or os.path.join(os.path.expanduser("~"), ".cache", "alfworld"))


def _task_type_names(task_types: Sequence[str | int] | str | int | None) -> set[str]:
    if task_types is None:
        return set(TASK_TYPES.values())
    if isinstance(task_types, (str, int)):
        task_types = [task_types]
    names = set()
    for t in task_types:
        name = TASK_TYPES.get(t) if isinstance(t, int) else t
        if name is None or name not in TASK_TYPES.values():
            raise ValueError(f"unknown ALFWorld task type {t!r}; known: {sorted(TASK_TYPES.values())} or 1..6")
        names.add(name)
    return names


def find_alfworld_games(
    data_dir: str | os.PathLike | None = None,
    split: str = "train",
    task_types: Sequence[str | int] | str | int | None = ("pick_and_place_simple",),
    num_games: int | None = None,
) -> list[Path]:
    """The solvable ``game.tw-pddl`` files of a split and task types, sorted by path.

    :param data_dir: the folder holding ``json_2.1.1/`` (see :func:`alfworld_data_dir`).
    :param split: ``train``, ``valid_seen`` or ``valid_unseen`` (or ALFWorld's ``eval_in_distribution`` /
        ``eval_out_of_distribution``); ``valid_unseen`` holds scenes never seen in training.
    :param task_types: names or numbers (1..6) of ALFWorld task types; ``None`` for all.
    :param num_games: keep the first ``num_games`` (e.g. the paper's 28 training and 26 unseen tasks).
    :raises FileNotFoundError: the data is missing, or holds no game of these task types.
    """
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; use one of {sorted(SPLITS)}")
    root = alfworld_data_dir(data_dir)
    split_dir = root / "json_2.1.1" / SPLITS[split]
    if not split_dir.is_dir():
        raise FileNotFoundError(
            f"ALFWorld data not found: {split_dir} does not exist. Download the data with `alfworld-download` "
            "(from the alfworld package; it writes to $ALFWORLD_DATA, default ~/.cache/alfworld), then set the "
            "ALFWORLD_DATA environment variable or pass data_dir= to the folder that holds json_2.1.1/."
        )
    wanted = _task_type_names(task_types)
    games = []
    for traj_path in sorted(split_dir.rglob("traj_data.json")):
        trial = traj_path.parent
        # ALFWorld's text engine does not support movable-receptacle or sliced-object trials.
        if "movable" in str(trial) or "Sliced" in str(trial):
            continue
        game_file = trial / "game.tw-pddl"
        if not game_file.is_file():
            continue
        if json.loads(traj_path.read_text()).get("task_type") not in wanted:
            continue
        if not json.loads(game_file.read_text()).get("solvable"):
            continue
        games.append(game_file)
    if not games:
        raise FileNotFoundError(
            f"no solvable ALFWorld game of task types {sorted(wanted)} under {split_dir}; "
            "is the data complete (`alfworld-download`, ALFWORLD_DATA)?"
        )
    return games[:num_games] if num_games is not None else games


class ALFWorldEnv(TextWorldEnv):
    """ALFWorld's household tasks in text (e.g. "put some apple on shelf"), sparse reward 1 on success.

    >>> env = ALFWorldEnv(split="valid_unseen", task_types=["pick_and_place_simple"])  # doctest: +SKIP
    >>> obs, info = env.reset(seed=0)  # doctest: +SKIP
    >>> info["task"]  # doctest: +SKIP
    'put some apple on shelf.'

    Games come from :func:`find_alfworld_games` (or ``game_files``); each ``reset`` starts the next game of a
    seeded shuffled cycle, or the one named by ``options={"game_file": ...}`` / ``{"game_index": i}``. Reward is 1
    on the step that solves the task; ``terminated`` then, ``truncated`` after ``max_episode_steps`` steps.
    ``info`` as in :class:`~envs.textworld_env.TextWorldEnv`; ``task`` is the sentence after "Your task is to:".
    An inadmissible command leaves the state as it is and the game answers "Nothing happens.".

    :param data_dir: folder holding ``json_2.1.1/`` (default ``$ALFWORLD_DATA``, then ``~/.cache/alfworld``).
    :param split: ``train``, ``valid_seen`` or ``valid_unseen``.
    :param task_types: ALFWorld task types (names or 1..6); default pick & place, as in METHOD.md.
    :param num_games: use the first ``num_games`` games of the split.
    :param game_files: play these ``game.tw-pddl`` files instead of searching ``data_dir``.
    :param max_episode_steps: the step cap (METHOD.md: about 60).
    :param expert: ask the PDDL planner for the optimal remaining plan at every step (``expert_command()``);
        off by default because planning on real scenes costs time at every step.
    """

    prompt_example = (
        "Observation: You are in the middle of a room. Looking quickly around you, you see a cabinet 1, a "
        "countertop 1, a fridge 1, and a shelf 1. Your task is to: put some mug on shelf.\n"
        "Action: go to countertop 1\n"
        "Observation: You arrive at countertop 1. On the countertop 1, you see a mug 1, and a spoon 1.\n"
        "Action: take mug 1 from countertop 1\n"
        "Observation: You pick up the mug 1 from the countertop 1.\n"
        "Action: go to shelf 1\n"
        "Observation: You arrive at shelf 1. On the shelf 1, you see nothing.\n"
        "Action: move mug 1 to shelf 1"
    )

    def __init__(
        self,
        data_dir: str | os.PathLike | None = None,
        split: str = "train",
        task_types: Sequence[str | int] | str | int | None = ("pick_and_place_simple",),
        num_games: int | None = None,
        game_files: Sequence[str | os.PathLike] | None = None,
        max_episode_steps: int = 60,
        expert: bool = False,
    ) -> None:
        if game_files is None:
            game_files = find_alfworld_games(data_dir, split, task_types, num_games)
        super().__init__(game_files, max_episode_steps=max_episode_steps, expert=expert)
        self.split = split

    def _textworld_wrappers(self) -> list:
        # Imported here: `import alfworld` creates ~/.cache/alfworld and sets ALFWORLD_DATA in os.environ.
        from alfworld.agents.environment.alfred_tw_env import AlfredDemangler, AlfredInfos

        return [AlfredDemangler(shuffle=False), AlfredInfos]

    def _clean(self, text: str) -> str:
        return text.replace("-= Welcome to TextWorld, ALFRED! =-", "").strip()

    def _task(self, first_observation: str, infos: dict[str, Any]) -> str:
        _, found, task = first_observation.partition(_TASK_PREFIX)
        return task.strip() if found else ""
