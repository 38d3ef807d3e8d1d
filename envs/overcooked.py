"""Overcooked salads as text: macro-actions in words over a 7x7 kitchen, with partial observability.

Our own implementation of the environment described in METHOD.md (single agent). The kitchen and its rules
are in :mod:`envs.overcooked_kitchen`; this module turns them into commands, rewards and sentences.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, cast

from envs.overcooked_kitchen import TOMATO_LAYOUT, TOMATO_LETTUCE_LAYOUT, Item, Kitchen, Pos, random_layout
from envs.protocol import TextEnv, match_command, normalize_command

RECIPES: dict[str, tuple[str, ...]] = {
    "tomato": ("tomato",),
    "tomato-lettuce": ("tomato", "lettuce"),
    "tomato-lettuce-onion": ("tomato", "lettuce", "onion"),
}
# The METHOD.md kitchens; the three-ingredient salad has none (its kitchen is always drawn from ``layout_seed``).
LAYOUTS: dict[str, tuple[str, ...]] = {"tomato": TOMATO_LAYOUT, "tomato-lettuce": TOMATO_LETTUCE_LAYOUT}
# What a drawn kitchen holds (layout characters): the recipe's ingredients, distractors, the bowl, boards, serving.
THINGS: dict[str, str] = {"tomato": "tbBS", "tomato-lettuce": "tlobBBS", "tomato-lettuce-onion": "tlopfbBBS"}
DRAWN_SHAPE: dict[str, tuple[int, int]] = {"tomato": (7, 7), "tomato-lettuce": (7, 7), "tomato-lettuce-onion": (7, 9)}

STEP_PENALTY = -0.001
SUBTASK_REWARD = 0.2
DELIVERY_REWARD = 1.0
WRONG_DELIVERY_REWARD = -0.1


def _a(noun: str) -> str:
    return ("an " if noun[0] in "aeiou" else "a ") + noun


def _where(d_row: int, d_col: int) -> str:
    parts = []
    if d_row:
        parts.append(f"{abs(d_row)} step{'s' * (abs(d_row) != 1)} {'down' if d_row > 0 else 'up'}")
    if d_col:
        parts.append(f"{abs(d_col)} step{'s' * (abs(d_col) != 1)} {'right' if d_col > 0 else 'left'}")
    return " and ".join(parts)


@dataclass(frozen=True)
class _Plan:
    """What one macro-action does in the current state: its wording, the counter it goes to and the effect
    of the interaction there (``walk``: go next to ``target`` and do nothing; ``wait``: spend one step)."""

    command: str
    effect: str
    target: Pos | None = None


class OvercookedSalad(TextEnv):
    """Single-agent Overcooked as text: make a tomato salad or a tomato-lettuce salad and serve it.

    >>> env = OvercookedSalad(recipe="tomato")
    >>> obs, info = env.reset(seed=0)
    >>> info["admissible_commands"]
    ['pick up tomato', 'take bowl', 'walk to cutting board', 'walk to serving counter', 'chop nothing']
    >>> obs, reward, terminated, truncated, info = env.step(env.expert_command())
    >>> obs.split(".")[0]
    'You pick up the tomato'

    **Kitchen.** 7x7, counters around the walls; the tomato salad has a tomato, a bowl, one cutting board and the
    serving counter; the tomato-lettuce salad adds a lettuce, an onion (a distractor: no recipe uses it) and a
    second cutting board. The agent starts on a random floor cell (seeded by ``reset``). The tomato-lettuce-onion
    salad (the hard kitchen: three ingredients, two distractors, a potato and a fish, two cutting boards) has a 7x9
    kitchen drawn from ``layout_seed``; ``layout_seed`` draws the other recipes' kitchens too.

    **Macro-actions** (5 for the tomato salad, 8 for the tomato-lettuce salad), one per item or station plus
    "chop", worded by context: the tomato macro reads ``pick up tomato`` with empty hands, ``put chopped
    tomato in bowl`` when holding the bowl, ``put down tomato`` when holding the tomato, ``walk to tomato``
    otherwise; the board macro reads ``put tomato on cutting board`` or ``walk to cutting board``; the bowl
    macro ``take bowl``, ``put chopped tomato in bowl`` or ``put down bowl``; the serving macro ``serve bowl
    with chopped tomato`` when holding the bowl, else ``walk to serving counter``; ``chop tomato`` when next to
    a cutting board with an unchopped ingredient, else ``chop nothing``. Each is executed as primitive moves
    along a shortest path (breadth-first search on the grid) plus one primitive step for the interaction; a
    macro that has nothing to walk or do waits one primitive step. Two macros that read the same in a state do
    the same thing and are listed once. Only chopped ingredients go into the bowl; only a bowl can be served.

    **Rewards** per primitive step: -0.001; +0.2 for each finished sub-task (chopping a recipe ingredient,
    putting it in the bowl; once each); +1 for serving the right salad, -0.1 for serving anything else. A
    macro-step's reward is the discounted sum ``sum_i gamma**i * r_i`` of its primitive rewards. An episode
    ends on serving (``terminated``) or after ``max_primitive_steps`` primitive steps (``truncated``; a macro
    cut by the cap stops where it is).

    **Observations**: the feedback of the last command, what the agent holds, the items and stations within
    ``view_radius`` cells (a square window, partial observability) with their offsets, and which are out of
    sight. An unknown command waits one primitive step (-0.001) and says ``Unknown command "..."``.

    ``info`` adds ``primitive_steps`` (of this macro), ``total_primitive_steps`` and ``subtasks_done``.
    :meth:`expert_command` returns a scripted expert's next command.

    :param recipe: ``"tomato"``, ``"tomato-lettuce"`` or ``"tomato-lettuce-onion"``.
    :param layout_seed: draw the kitchen's layout from this seed (:func:`~envs.overcooked_kitchen.random_layout`);
        ``None``: the METHOD.md kitchen (seed 0 for the tomato-lettuce-onion salad, which has none).
    :param max_primitive_steps: the episode's cap on primitive steps (METHOD.md: 200).
    :param gamma: discount of primitive rewards within a macro-step.
    :param view_radius: the agent sees cells at most this many rows and columns away (METHOD.md: 2).
    :param render_mode: ``None`` or ``"ansi"`` (the grid as text).
    """

    metadata = {"render_modes": ["ansi"]}

    _PROMPT_EXAMPLES = {
        "tomato": (
            "Observation: Your hands are empty. You see: a tomato on a counter 2 steps up; the cutting board "
            "2 steps up and 1 step right (empty); an empty bowl on a counter 1 step down and 2 steps left. "
            "Out of sight: the serving counter.\n"
            "Action: pick up tomato\n"
            "Observation: You pick up the tomato. You are holding a tomato. You see: the cutting board 1 step"
            " up and 1 step right (empty); an empty bowl on a counter 2 steps down and 2 steps left. Out of "
            "sight: the serving counter.\n"
            "Action: put tomato on cutting board\n"
            "Observation: You put the tomato on the cutting board. Your hands are empty. You see: the cutting"
            " board 1 step up (with a tomato on it). Out of sight: the bowl, the serving counter.\n"
            "Action: chop tomato\n"
            "Observation: You chop the tomato. Your hands are empty. You see: the cutting board 1 step up "
            "(with a chopped tomato on it). Out of sight: the bowl, the serving counter.\n"
            "Action: take bowl"
        ),
        "tomato-lettuce": (
            "Observation: Your hands are empty. You see: a tomato on a counter 2 steps up and 2 steps left; "
            "the first cutting board 2 steps up and 1 step left (empty); a lettuce on a counter 2 steps up; "
            "the second cutting board 2 steps up and 2 steps right (empty). Out of sight: the onion, the "
            "bowl, the serving counter.\n"
            "Action: pick up tomato\n"
            "Observation: You pick up the tomato. You are holding a tomato. You see: the first cutting board "
            "1 step up and 1 step right (empty); a lettuce on a counter 1 step up and 2 steps right; an empty"
            " bowl on a counter 2 steps down and 1 step left. Out of sight: the onion, the second cutting "
            "board, the serving counter.\n"
            "Action: put tomato on first cutting board\n"
            "Observation: You put the tomato on the first cutting board. Your hands are empty. You see: the "
            "first cutting board 1 step up (with a tomato on it); a lettuce on a counter 1 step up and 1 step"
            " right; an empty bowl on a counter 2 steps down and 2 steps left. Out of sight: the onion, the "
            "second cutting board, the serving counter.\n"
            "Action: chop tomato"
        ),
    }

    def __init__(
        self,
        recipe: str = "tomato",
        max_primitive_steps: int = 200,
        gamma: float = 0.99,
        view_radius: int = 2,
        render_mode: str | None = None,
        layout_seed: int | None = None,
    ) -> None:
        super().__init__()
        if recipe not in RECIPES:
            raise ValueError(f"recipe must be one of {sorted(RECIPES)}, got {recipe!r}")
        if render_mode not in (None, "ansi"):
            raise ValueError(f"render_mode must be None or 'ansi', got {render_mode!r}")
        if max_primitive_steps < 1:
            raise ValueError(f"max_primitive_steps must be >= 1, got {max_primitive_steps}")
        self.recipe = recipe
        self.ingredients = RECIPES[recipe]
        self.max_primitive_steps = max_primitive_steps
        self.gamma = gamma
        self.view_radius = view_radius
        self.render_mode = render_mode
        if layout_seed is None and recipe in LAYOUTS:
            layout = LAYOUTS[recipe]
        else:
            layout = random_layout(layout_seed or 0, THINGS[recipe], *DRAWN_SHAPE[recipe])
        self.layout_seed = layout_seed
        self.kitchen = Kitchen(layout)
        # An example episode for the prompt, written for the METHOD.md kitchens only (None elsewhere: zero-shot)
        self.prompt_example = self._PROMPT_EXAMPLES[recipe] if layout is LAYOUTS.get(recipe) else None
        kinds = [item.kind for item in self.kitchen.items_at.values()]
        # Fixed macro order: ingredients, bowl, boards, serving, chop (METHOD.md lists them in this spirit).
        self._macros: list[tuple[str, Any]] = [
            *[("item", k) for k in kinds if k != "bowl"],
            ("item", "bowl"),
            *[("board", i) for i in range(len(self.kitchen.boards))],
            ("serve", None),
            ("chop", None),
        ]
        n_boards = len(self.kitchen.boards)
        ordinals = ["first", "second", "third", "fourth"][:n_boards]  # a drawn kitchen has at most two
        self._board_names = ["cutting board"] if n_boards == 1 else [f"{o} cutting board" for o in ordinals]
        pronoun = "it" if len(self.ingredients) == 1 else "them"
        *rest, last = self.ingredients
        listed = f"{', '.join(rest)} and {last}" if rest else last
        self.task = (
            f"Make a {'-'.join(self.ingredients)} salad: chop the {listed} on a cutting "
            f"board, put {pronoun} in the bowl and serve the bowl at the serving counter."
        )
        self._subtasks_done: set[str] = set()
        self._steps = 0
        self._plans: list[_Plan] = []
        self._done = False
        self._won = False

    # ----- state in words -------------------------------------------------------------------------------
    def describe(self) -> str:
        """What the agent holds, sees within ``view_radius`` and does not see (no feedback sentence)."""
        k = self.kitchen
        held = f"You are holding {_a(k.held.describe())}." if k.held else "Your hands are empty."
        # (position, name, detail, name when out of sight): items on plain counters in macro order, then stations.
        things: list[tuple[Pos, str, str, str]] = []
        for pos, item in sorted(k.items_at.items(), key=lambda entry: self._item_rank(entry[1].kind)):
            if pos not in k.boards:
                things.append((pos, f"{_a(item.describe())} on a counter", "", f"the {item.kind}"))
        for index, pos in enumerate(k.boards):
            on_board = k.items_at.get(pos)
            name = f"the {self._board_names[index]}"
            things.append((pos, name, f"(with {_a(on_board.describe())} on it)" if on_board else "(empty)", name))
        things.append((k.serving, "the serving counter", "", "the serving counter"))
        seen, unseen = [], []
        for pos, name, detail, unseen_name in things:
            if k.visible(pos, self.view_radius):
                where = _where(pos[0] - k.agent[0], pos[1] - k.agent[1])
                seen.append((pos, " ".join(filter(None, [name, where, detail]))))
            else:
                unseen.append(unseen_name)
        sentences = [held]
        if seen:
            sentences.append("You see: " + "; ".join(text for _, text in sorted(seen)) + ".")
        else:
            sentences.append("You see nothing of use nearby.")
        if unseen:
            sentences.append("Out of sight: " + ", ".join(unseen) + ".")
        return " ".join(sentences)

    def _item_rank(self, kind: str) -> int:
        kinds = self.kitchen_kinds() + ["bowl"]
        return kinds.index(kind)

    # ----- macro-actions ----------------------------------------------------------------------------------
    def _plan(self, macro: tuple[str, Any]) -> _Plan:
        k = self.kitchen
        kind, arg = macro
        held = k.held
        if kind == "chop":
            for pos in k.boards:
                item = k.items_at.get(pos)
                if item is not None and not item.is_bowl and not item.chopped and k.adjacent(pos):
                    return _Plan(f"chop {item.kind}", "chop", pos)
            return _Plan("chop nothing", "wait")
        if kind == "serve":
            if held is not None and held.is_bowl:
                return _Plan(f"serve {held.describe()}", "serve", k.serving)
            return _Plan("walk to serving counter", "walk", k.serving)
        if kind == "board":
            pos, name = k.boards[arg], self._board_names[arg]
            if held is not None and not held.is_bowl and pos not in k.items_at:
                return _Plan(f"put {held.noun()} on {name}", "put_on_board", pos)
            return _Plan(f"walk to {name}", "walk", pos)
        # An item macro: the tomato, the lettuce, the onion or the bowl.
        where, at = k.find(arg)
        if where == "gone":  # served with the bowl: nothing left to go to
            return _Plan("wait", "wait")
        if where == "bowl":  # an ingredient in the bowl is reached through the bowl
            return self._plan(("item", "bowl"))
        if where == "held":
            assert held is not None
            free = k.nearest_free_counter()
            return _Plan(f"put down {held.noun()}", "put_down", free) if free else _Plan("wait", "wait")
        assert at is not None  # where == "counter"
        pos = at
        item = k.items_at[pos]
        if held is None:
            verb = "take" if item.is_bowl else "pick up"
            return _Plan(f"{verb} {item.noun()}", "pick", pos)
        if item.is_bowl and not held.is_bowl and held.chopped:
            return _Plan(f"put {held.describe()} in bowl", "put_in_bowl", pos)
        if held.is_bowl and not item.is_bowl and item.chopped:
            return _Plan(f"put {item.describe()} in bowl", "scoop", pos)
        return _Plan(f"walk to {'bowl' if item.is_bowl else item.describe()}", "walk", pos)

    def _current_plans(self) -> list[_Plan]:
        plans, seen = [], set()
        for macro in self._macros:
            plan = self._plan(macro)
            if plan.command not in seen:
                seen.add(plan.command)
                plans.append(plan)
        return plans

    def _interact(self, plan: _Plan) -> tuple[str, float]:
        """Apply the interaction of ``plan`` (the agent stands next to its target); feedback and bonus."""
        k = self.kitchen
        pos = plan.target
        assert pos is not None  # every effect but walk and wait has a target
        if plan.effect == "pick":
            k.held = k.items_at.pop(pos)
            return f"You {'take' if k.held.is_bowl else 'pick up'} the {k.held.describe()}.", 0.0
        if plan.effect in ("put_down", "put_on_board"):
            assert k.held is not None
            item, k.held = k.held, None
            k.items_at[pos] = item
            if plan.effect == "put_on_board":
                return f"You put the {item.describe()} on the {self._board_names[k.boards.index(pos)]}.", 0.0
            return f"You put the {item.describe()} down.", 0.0
        if plan.effect in ("put_in_bowl", "scoop"):
            assert k.held is not None
            if plan.effect == "put_in_bowl":
                bowl, ingredient = k.items_at[pos], k.held
                k.held = None
            else:
                bowl, ingredient = k.held, k.items_at.pop(pos)
            bowl.contents.append(ingredient)
            bonus = self._subtask(f"put {ingredient.kind} in bowl", ingredient.kind)
            return f"You put the {ingredient.describe()} in the bowl.", bonus
        if plan.effect == "chop":
            item = k.items_at[pos]
            item.chopped = True
            return f"You chop the {item.kind}.", self._subtask(f"chop {item.kind}", item.kind)
        if plan.effect == "serve":
            assert k.held is not None
            bowl, k.held = k.held, None
            self._done = True
            self._won = sorted(i.kind for i in bowl.contents) == sorted(self.ingredients)
            salad = "-".join(self.ingredients)
            if self._won:
                return f"You serve the {bowl.describe()}. That is the {salad} salad!", DELIVERY_REWARD
            return f"You serve the {bowl.describe()}. That is not the {salad} salad.", WRONG_DELIVERY_REWARD
        raise AssertionError(f"unknown effect {plan.effect}")

    def _subtask(self, name: str, ingredient: str) -> float:
        if ingredient not in self.ingredients or name in self._subtasks_done:
            return 0.0
        self._subtasks_done.add(name)
        return SUBTASK_REWARD

    # ----- Gymnasium API ------------------------------------------------------------------------------------
    def _info(self, primitive_steps: int) -> dict[str, Any]:
        return {
            "admissible_commands": [plan.command for plan in self._plans],
            "task": self.task,
            "is_success": self._won,
            "primitive_steps": primitive_steps,
            "total_primitive_steps": self._steps,
            "subtasks_done": sorted(self._subtasks_done),
        }

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[str, dict]:
        super().reset(seed=seed)
        self.kitchen.reset_items()
        self.kitchen.agent = self.kitchen.floor[int(self.np_random.integers(len(self.kitchen.floor)))]
        self._subtasks_done = set()
        self._steps = 0
        self._done = False
        self._won = False
        self._plans = self._current_plans()
        return self.describe(), self._info(0)

    def step(self, command: str) -> tuple[str, float, bool, bool, dict]:
        text = normalize_command(command)
        if self._done:  # stepping after the episode ended: nothing changes, nothing is paid
            return f"The episode is over. {self.describe()}", 0.0, True, False, self._info(0)
        matched = match_command(text, [plan.command for plan in self._plans])
        if matched is None:
            plan, feedback = _Plan("wait", "wait"), f'Unknown command "{text}"; you wait.'
        else:
            plan, feedback = next(p for p in self._plans if p.command == matched), ""
        k = self.kitchen
        rewards: list[float] = []
        if plan.effect != "chop" and plan.target is not None:
            for cell in k.path_to(plan.target):
                if self._steps >= self.max_primitive_steps:
                    break
                k.agent = cell
                self._steps += 1
                rewards.append(STEP_PENALTY)
        arrived = plan.target is None or plan.effect == "chop" or k.adjacent(plan.target)
        if self._steps < self.max_primitive_steps and arrived:
            if plan.effect in ("walk", "wait"):
                if not rewards:  # nothing to walk: time passes anyway, so that no macro-step is free
                    self._steps += 1
                    rewards.append(STEP_PENALTY)
                if not feedback and plan.effect == "walk":
                    feedback = f"You walk to the {plan.command.removeprefix('walk to ')}."
                elif not feedback:
                    feedback = "There is nothing to chop here." if plan.command == "chop nothing" else "You wait."
            else:
                self._steps += 1
                feedback, bonus = self._interact(plan)
                rewards.append(STEP_PENALTY + bonus)
        truncated = self._steps >= self.max_primitive_steps and not self._done
        if truncated and not arrived:
            feedback = "Time is up before you get there."
        reward = sum(r * self.gamma**i for i, r in enumerate(rewards))
        self._plans = self._current_plans()
        obs = f"{feedback} {self.describe()}"
        return obs, float(reward), self._done, truncated, self._info(len(rewards))

    # ----- expert ---------------------------------------------------------------------------------------------
    def expert_command(self) -> str:
        """The command a scripted expert takes now (one of ``info["admissible_commands"]``).

        Optimal from the start state (6 macro-steps for the tomato salad, 10 for the tomato-lettuce salad) and
        able to finish from most states a random prefix leaves (not once the onion is in the bowl).
        """
        k = self.kitchen
        plan_of = {macro: self._plan(macro) for macro in self._macros}
        needed = [x for x in self.ingredients if k.find(x)[0] not in ("bowl", "gone")]
        bowl_on_counter = k.find("bowl")[0] == "counter"
        free_boards = [i for i, pos in enumerate(k.boards) if pos not in k.items_at]
        held = k.held
        if held is not None and held.is_bowl:
            if not needed:
                return plan_of[("serve", None)].command
            ready = [x for x in needed if cast(Item, k.item(x)).chopped]  # needed: not served, so there
            return plan_of[("item", ready[0] if ready else "bowl")].command  # scoop it, or put the bowl down
        if held is not None:
            if held.kind in needed and held.chopped and bowl_on_counter:
                return plan_of[("item", "bowl")].command
            if held.kind in needed and not held.chopped and free_boards:
                return plan_of[("board", free_boards[0])].command
            return plan_of[("item", held.kind)].command  # put it down
        # Hands empty: chop what lies next to us, else fetch the next unchopped ingredient, else take the bowl.
        chop = plan_of[("chop", None)]
        if chop.effect == "chop" and k.items_at[cast(Pos, chop.target)].kind in needed:
            return chop.command
        fresh = [x for x in needed if not cast(Item, k.item(x)).chopped]
        for x in fresh:
            _, pos = k.find(x)
            if pos in k.boards:  # already on a board: go there, then chop
                return plan_of[("board", k.boards.index(pos))].command
        if fresh and free_boards:
            return plan_of[("item", fresh[0])].command
        if fresh:  # every board is taken by a chopped ingredient or a distractor: clear one
            blocker = next(k.items_at[pos] for pos in k.boards if k.items_at[pos].kind not in fresh)
            if blocker.kind in needed and bowl_on_counter:  # a chopped ingredient: scoop it into the bowl
                return plan_of[("item", "bowl")].command
            return plan_of[("item", blocker.kind)].command  # a distractor: pick it up (and put it down next)
        return plan_of[("item", "bowl")].command

    def kitchen_kinds(self) -> list[str]:
        """The ingredient kinds in this kitchen (recipe ingredients and distractors), in macro order."""
        return [arg for kind, arg in self._macros if kind == "item" and arg != "bowl"]

    def render(self) -> str | None:
        if self.render_mode != "ansi":
            return None
        k = self.kitchen
        rows = [list(row) for row in self.kitchen.layout]
        for r, row in enumerate(rows):
            for c, char in enumerate(row):
                if char in "tlopfb":
                    rows[r][c] = "-"
        for (r, c), item in k.items_at.items():
            rows[r][c] = item.kind[0].upper() if item.chopped or item.contents else item.kind[0]
        rows[k.agent[0]][k.agent[1]] = "A"
        holding = k.held.describe() if k.held else "nothing"
        return "\n".join("".join(row) for row in rows) + f"\nholding: {holding}\n"
