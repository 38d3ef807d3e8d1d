"""Overcooked salads as text: expert and random play, rewards, the step cap, wording, partial observability."""

from __future__ import annotations

import time

import numpy as np
import pytest

from envs import OvercookedSalad
from envs.overcooked import DELIVERY_REWARD, STEP_PENALTY, SUBTASK_REWARD, WRONG_DELIVERY_REWARD

RECIPES = ["tomato", "tomato-lettuce"]


def _play(env: OvercookedSalad, seed: int, choose) -> tuple[float, int, dict, bool]:
    """Play one episode; ``choose(info)`` picks the command. Returns (return, macro steps, last info, truncated)."""
    _, info = env.reset(seed=seed)
    total, steps, done, truncated = 0.0, 0, False, False
    while not done:
        obs, reward, terminated, truncated, info = env.step(choose(info))
        total += reward
        steps += 1
        done = terminated or truncated
    return total, steps, info, truncated


def _random_command(info: dict, rng: np.random.Generator) -> str:
    commands = info["admissible_commands"]
    return commands[rng.integers(len(commands))]


def _start_at(env: OvercookedSalad, cell: tuple[int, int]) -> None:
    env.reset(seed=0)
    env.kitchen.agent = cell
    env._plans = env._current_plans()  # the commands depend on where the agent stands


@pytest.mark.parametrize("recipe, macro_steps", [("tomato", 6), ("tomato-lettuce", 10)])
def test_expert_delivers_the_salad_in_a_few_macro_steps(recipe, macro_steps):
    env = OvercookedSalad(recipe=recipe)
    for seed in range(20):
        total, steps, info, truncated = _play(env, seed, lambda info: env.expert_command())
        assert info["is_success"] and not truncated
        assert steps == macro_steps
        # every sub-task once (+0.2 each) and the delivery (+1), minus a few primitive steps
        assert total >= 1.0 + 2 * len(env.ingredients) * SUBTASK_REWARD - 0.1
        assert info["subtasks_done"] == sorted(
            [f"chop {x}" for x in env.ingredients] + [f"put {x} in bowl" for x in env.ingredients]
        )


def test_random_play_rarely_succeeds_and_the_env_is_fast():
    """Uniform random commands over 300 seeded episodes; the measured numbers are printed (pytest -s)."""
    limits = {"tomato": 0.25, "tomato-lettuce": 0.05}
    for recipe in RECIPES:
        env = OvercookedSalad(recipe=recipe)
        rng = np.random.default_rng(0)
        start, steps, successes = time.perf_counter(), 0, 0
        for seed in range(300):
            _, n, info, _ = _play(env, seed, lambda info: _random_command(info, rng))
            successes += info["is_success"]
            steps += n
        rate, speed = successes / 300, steps / (time.perf_counter() - start)
        print(f"\n{recipe}: random success {rate:.3f} over 300 episodes, {speed:.0f} macro-steps/s")
        assert 0 < rate < limits[recipe]
        assert speed > 500  # thousands per second on an idle core; loose for a busy CI machine


def test_expert_finishes_after_a_random_prefix_unless_the_onion_spoiled_the_bowl():
    env = OvercookedSalad(recipe="tomato-lettuce")
    rng = np.random.default_rng(1)
    finished = spoiled = 0
    for seed in range(100):
        _, info = env.reset(seed=seed)
        done = False
        for _ in range(int(rng.integers(1, 12))):
            _, _, terminated, truncated, info = env.step(_random_command(info, rng))
            if terminated or truncated:
                done = True
                break
        if done:
            continue
        if env.kitchen.find("onion")[0] == "bowl":
            spoiled += 1
            continue
        while not done:
            _, _, terminated, truncated, info = env.step(env.expert_command())
            done = terminated or truncated
        finished += info["is_success"]
        assert info["is_success"], f"the expert failed after the random prefix of seed {seed}"
    assert finished > 30


def test_rewards_subtasks_and_discounting_are_exact():
    env = OvercookedSalad(recipe="tomato", gamma=0.9)
    _start_at(env, (2, 2))
    _, reward, _, _, info = env.step("pick up tomato")  # 1 move + picking up: two primitive steps
    assert info["primitive_steps"] == 2
    assert reward == pytest.approx(STEP_PENALTY * (1 + 0.9))
    _, reward, _, _, info = env.step("put tomato on cutting board")
    _, reward, _, _, info = env.step("chop tomato")  # one step: the sub-task bonus is not discounted
    assert info["primitive_steps"] == 1 and reward == pytest.approx(STEP_PENALTY + SUBTASK_REWARD)
    _, reward, _, _, info = env.step("chop nothing")  # nothing left to chop: waiting costs one step
    assert info["primitive_steps"] == 1 and reward == pytest.approx(STEP_PENALTY)
    env.step("take bowl")
    _, reward, _, _, info = env.step("put chopped tomato in bowl")
    n = info["primitive_steps"]
    assert reward == pytest.approx(sum(STEP_PENALTY * 0.9**i for i in range(n)) + SUBTASK_REWARD * 0.9 ** (n - 1))
    _, reward, terminated, _, info = env.step("serve bowl with chopped tomato")
    n = info["primitive_steps"]
    assert terminated and info["is_success"]
    assert reward == pytest.approx(sum(STEP_PENALTY * 0.9**i for i in range(n)) + DELIVERY_REWARD * 0.9 ** (n - 1))
    assert info["total_primitive_steps"] == env._steps


def test_serving_the_wrong_dish_ends_the_episode_with_a_penalty():
    env = OvercookedSalad(recipe="tomato")
    _start_at(env, (3, 1))
    env.step("take bowl")
    obs, reward, terminated, truncated, info = env.step("serve empty bowl")
    assert terminated and not truncated and not info["is_success"]
    assert "That is not the tomato salad." in obs
    assert reward == pytest.approx(
        sum(STEP_PENALTY * 0.99**i for i in range(info["primitive_steps"]))
        + WRONG_DELIVERY_REWARD * 0.99 ** (info["primitive_steps"] - 1)
    )


def test_onion_in_the_bowl_spoils_the_tomato_lettuce_salad():
    env = OvercookedSalad(recipe="tomato-lettuce")
    env.reset(seed=0)
    for command in [
        "pick up onion",
        "put onion on second cutting board",
        "chop onion",
        "pick up chopped onion",
        "put chopped onion in bowl",
    ]:
        _, reward, *_ = env.step(command)
        assert reward < 0  # the onion is no sub-task of this recipe: no bonus
    done = False
    while not done:
        _, reward, terminated, truncated, info = env.step(env.expert_command())
        done = terminated or truncated
    assert terminated and not info["is_success"]
    assert reward < 0


def test_episode_is_cut_at_200_primitive_steps_with_commands_left():
    env = OvercookedSalad(recipe="tomato")
    env.reset(seed=0)
    macro_steps, truncated = 0, False
    while not truncated:
        command = "walk to serving counter" if macro_steps % 2 else "walk to cutting board"
        _, _, terminated, truncated, info = env.step(command)
        assert not terminated
        macro_steps += 1
    assert info["total_primitive_steps"] == 200
    assert info["admissible_commands"]  # the final step lists commands for bootstrapping


def test_commands_are_worded_by_context():
    env = OvercookedSalad(recipe="tomato")
    _start_at(env, (2, 2))
    assert env.step("pick up tomato")[4]["admissible_commands"] == [
        "put down tomato",
        "walk to bowl",
        "put tomato on cutting board",
        "walk to serving counter",
        "chop nothing",
    ]
    env.step("put down tomato")
    *_, info = env.step("take bowl")
    assert info["admissible_commands"] == [
        "walk to tomato",
        "put down bowl",
        "walk to cutting board",
        "serve empty bowl",
        "chop nothing",
    ]


def test_observations_only_describe_what_is_within_two_cells():
    env = OvercookedSalad(recipe="tomato")
    _start_at(env, (5, 5))  # bottom right: the tomato, the board and the bowl are far away
    text = env.describe()
    assert (
        text == "Your hands are empty. You see nothing of use nearby. Out of sight: the tomato, the bowl, "
        "the cutting board, the serving counter."
    )
    _start_at(env, (1, 4))
    assert env.describe() == (
        "Your hands are empty. You see: a tomato on a counter 1 step up and 2 steps left; the cutting board 1 "
        "step up and 1 step left (empty); the serving counter 2 steps right. Out of sight: the bowl."
    )


def test_seeded_starts_are_reproducible_and_vary():
    env = OvercookedSalad(recipe="tomato")
    first = env.reset(seed=5)[0]
    assert env.reset(seed=5)[0] == first
    starts = set()
    for seed in range(20):
        env.reset(seed=seed)
        starts.add(env.kitchen.agent)
    assert len(starts) > 5


@pytest.mark.parametrize("recipe, start, actions", [("tomato", (2, 2), 3), ("tomato-lettuce", (2, 3), 2)])
def test_prompt_example_is_what_the_env_says(recipe, start, actions):
    env = OvercookedSalad(recipe=recipe)
    _start_at(env, start)
    lines = ["Observation: " + env.describe()]
    for _ in range(actions):
        command = env.expert_command()
        obs, *_ = env.step(command)
        lines += ["Action: " + command, "Observation: " + obs]
    lines.append("Action: " + env.expert_command())
    assert "\n".join(lines) == env.prompt_example


def test_stepping_after_the_end_changes_nothing():
    env = OvercookedSalad(recipe="tomato")
    _play(env, 0, lambda info: env.expert_command())
    obs, reward, terminated, truncated, info = env.step("walk to cutting board")
    assert obs.startswith("The episode is over.") and reward == 0.0 and terminated
    assert info["admissible_commands"]


def test_bad_constructor_arguments_are_rejected():
    with pytest.raises(ValueError, match="recipe"):
        OvercookedSalad(recipe="onion soup")
    with pytest.raises(ValueError, match="max_primitive_steps"):
        OvercookedSalad(max_primitive_steps=0)


def test_ansi_render_marks_the_agent_and_items():
    env = OvercookedSalad(recipe="tomato", render_mode="ansi")
    _start_at(env, (2, 2))
    picture = env.render()
    assert picture.splitlines()[2][2] == "A" and "holding: nothing" in picture


# ----- the hard kitchen: a three-ingredient salad, two distractors, a 7x9 kitchen drawn from a seed ---------------
def test_drawn_kitchens_are_reproducible_and_differ_by_seed():
    from envs.overcooked_kitchen import random_layout

    first = random_layout(3, "tlopfbBBS", 7, 9)
    assert first == random_layout(3, "tlopfbBBS", 7, 9)
    assert len({random_layout(s, "tlopfbBBS", 7, 9) for s in range(10)}) == 10
    assert all(len(row) == 9 for row in first) and len(first) == 7
    # every thing once, each on a wall counter but never in a corner (a corner has no floor next to it)
    assert sorted("".join(first).replace("-", "").replace(" ", "")) == sorted("tlopfbBBS")
    assert {first[0][0], first[0][-1], first[-1][0], first[-1][-1]} == {"-"}
    with pytest.raises(ValueError, match="do not fit"):
        random_layout(0, "tlopfbBBS", 3, 3)


@pytest.mark.parametrize("layout_seed", range(8))
def test_the_expert_serves_the_three_ingredient_salad_in_every_drawn_kitchen(layout_seed):
    env = OvercookedSalad(recipe="tomato-lettuce-onion", layout_seed=layout_seed)
    assert env.prompt_example is None  # no example episode in the prompt: the prior is zero-shot
    assert env.task.startswith("Make a tomato-lettuce-onion salad: chop the tomato, lettuce and onion")
    for seed in range(5):
        total, steps, info, truncated = _play(env, seed, lambda info: env.expert_command())
        assert info["is_success"] and not truncated and steps == 16
        assert total >= 1.0 + 6 * SUBTASK_REWARD - 0.25  # minus the steps, discounted within each macro-step
    assert {"pick up potato", "pick up fish"} <= set(env.reset(seed=0)[1]["admissible_commands"])


def test_random_play_almost_never_makes_the_three_ingredient_salad():
    """The hard kitchen is the one where uniform play succeeds in < 1% of episodes (0 of 2,000 measured)."""
    env = OvercookedSalad(recipe="tomato-lettuce-onion", layout_seed=0)
    rng = np.random.default_rng(0)
    successes = sum(_play(env, seed, lambda info: _random_command(info, rng))[2]["is_success"] for seed in range(300))
    assert successes / 300 < 0.01


def test_a_layout_seed_draws_the_other_recipes_kitchens_too_and_drops_their_example():
    fixed, drawn = OvercookedSalad(recipe="tomato-lettuce"), OvercookedSalad(recipe="tomato-lettuce", layout_seed=4)
    assert fixed.prompt_example and drawn.prompt_example is None
    assert fixed.kitchen.layout != drawn.kitchen.layout
    total, _, info, _ = _play(drawn, 0, lambda info: drawn.expert_command())
    assert info["is_success"]
