"""Writes a tiny ALFRED-style game in ALFWorld's data layout, for the ALFWorld adapter's tests.

ALFWorld's text games are folders ``json_2.1.1/<split>/<task>/<trial>/`` with

- ``traj_data.json``: the ALFRED trajectory record; ALFWorld reads ``task_type`` (for the task-type filter) and
  ``pddl_params`` (to word the goal);
- ``initial_state.pddl``: the PDDL problem of the scene (objects, initial facts, goal);
- ``game.tw-pddl``: JSON with ``pddl_domain`` (ALFWorld's ``alfred.pddl``), ``grammar`` (ALFWorld's
  ``alfred.twl2`` with the goal sentence in place of ``UNKNOWN GOAL``), ``pddl_problem`` (the problem text),
  ``solvable`` and ``walkthrough``; this is the file TextWorld's ``PddlEnv`` plays.

The scene here: a countertop with an apple (and a mug as distractor), a closed cabinet and a shelf; the goal of
``pick_and_place_simple``: put an apple on the shelf. Object names follow ALFRED's mangling
(``Apple_bar__plus_00_dot_10_...``) so that ALFWorld's demangler names them "apple 1", "shelf 1".
"""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path

WALKTHROUGH = ["go to countertop 1", "take apple 1 from countertop 1", "go to shelf 1", "move apple 1 to shelf 1"]

_APPLE = "Apple_bar__plus_00_dot_10_bar__plus_00_dot_95_bar__minus_01_dot_20"
_MUG = "Mug_bar__plus_00_dot_30_bar__plus_00_dot_95_bar__minus_01_dot_20"
_COUNTER = "CounterTop_bar__plus_00_dot_20_bar__plus_00_dot_90_bar__minus_01_dot_30"
_CABINET = "Cabinet_bar__minus_01_dot_00_bar__plus_00_dot_40_bar__minus_01_dot_30"
_SHELF = "Shelf_bar__plus_01_dot_50_bar__plus_01_dot_20_bar__minus_00_dot_40"
_LOCATIONS = {
    "start": "loc_bar_0_bar_0_bar_0_bar_30",
    _COUNTER: "loc_bar_1_bar__minus_4_bar_2_bar_45",
    _CABINET: "loc_bar__minus_3_bar__minus_4_bar_2_bar_60",
    _SHELF: "loc_bar_5_bar__minus_1_bar_1_bar_15",
}


def _problem(goal_object: str, goal_receptacle: str) -> str:
    objects = ["agent1 - agent", f"{_APPLE} - object", f"{_MUG} - object"]
    objects += ["AppleType - otype", "MugType - otype"]
    objects += ["CounterTopType - rtype", "CabinetType - rtype", "ShelfType - rtype"]
    objects += [f"{r} - receptacle" for r in (_COUNTER, _CABINET, _SHELF)]
    objects += [f"{loc} - location" for loc in _LOCATIONS.values()]
    facts = [
        f"(atLocation agent1 {_LOCATIONS['start']})",
        f"(receptacleType {_COUNTER} CounterTopType)",
        f"(receptacleType {_CABINET} CabinetType)",
        f"(receptacleType {_SHELF} ShelfType)",
        f"(objectType {_APPLE} AppleType)",
        f"(objectType {_MUG} MugType)",
        f"(openable {_CABINET})",
        f"(pickupable {_APPLE})",
        f"(pickupable {_MUG})",
        f"(inReceptacle {_APPLE} {_COUNTER})",
        f"(inReceptacle {_MUG} {_COUNTER})",
        f"(objectAtLocation {_APPLE} {_LOCATIONS[_COUNTER]})",
        f"(objectAtLocation {_MUG} {_LOCATIONS[_COUNTER]})",
    ]
    facts += [f"(receptacleAtLocation {r} {_LOCATIONS[r]})" for r in (_COUNTER, _CABINET, _SHELF)]
    facts += [f"(canContain {r}Type {o}Type)" for r in ("CounterTop", "Cabinet", "Shelf") for o in ("Apple", "Mug")]
    newline = "\n        "
    return f"""
(define (problem plan_trial_synthetic)
(:domain alfred)
(:objects
        {newline.join(objects)}
        )
(:init
        {newline.join(facts)}
        )
(:goal
    (and
        (exists (?r - receptacle)
            (exists (?o - object)
                (and
                    (inReceptacle ?o ?r)
                    (objectType ?o {goal_object}Type)
                    (receptacleType ?r {goal_receptacle}Type)
                )
            )
        )
    )
)
)
"""


def write_synthetic_alfworld_game(
    data_dir: Path, split: str = "train", task_type: str = "pick_and_place_simple", trial: str = "trial_T0001"
) -> Path:
    """Write one apple-on-shelf game under ``data_dir/json_2.1.1/<split>/`` and return its ``game.tw-pddl``.

    ``task_type`` only labels the game in ``traj_data.json`` (the filter reads it); the goal stays the same.
    """
    alfworld_data = resources.files("alfworld") / "data"
    domain = (alfworld_data / "alfred.pddl").read_text()
    grammar = (alfworld_data / "alfred.twl2").read_text()
    task_dir = Path(data_dir) / "json_2.1.1" / split / f"{task_type}-Apple-None-Shelf-1" / trial
    task_dir.mkdir(parents=True, exist_ok=True)
    traj_data = {
        "task_type": task_type,
        "pddl_params": {
            "object_target": "Apple",
            "parent_target": "Shelf",
            "toggle_target": "",
            "mrecep_target": "",
            "object_sliced": False,
        },
        "turk_annotations": {"anns": [{"task_desc": "Put an apple on the shelf."}]},
    }
    problem = _problem("Apple", "Shelf")
    (task_dir / "traj_data.json").write_text(json.dumps(traj_data))
    (task_dir / "initial_state.pddl").write_text(problem)
    game = {
        "pddl_domain": domain,
        # ALFWorld's generator words the goal from a template of the task type ("put some {obj} on {recep}").
        "grammar": grammar.replace("UNKNOWN GOAL", "put some apple on shelf"),
        "pddl_problem": problem,
        "solvable": True,
        "walkthrough": WALKTHROUGH,
    }
    game_file = task_dir / "game.tw-pddl"
    game_file.write_text(json.dumps(game))
    return game_file
