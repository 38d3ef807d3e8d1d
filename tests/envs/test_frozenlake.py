"""Text FrozenLake: sentences that match the map, rewards and ends as in gymnasium, the registered horizon."""

from __future__ import annotations

import gymnasium as gym

from envs import TextFrozenLake


def test_observation_describes_position_goal_neighbours_and_holes():
    env = TextFrozenLake(map_name="4x4")
    obs, info = env.reset(seed=0)
    assert "You stand at row 1, column 1 of a frozen lake with 4 rows and 4 columns." in obs
    assert "The goal is at row 4, column 4, 3 steps down and 3 steps right of you." in obs
    assert "Left: the edge of the lake. Down: frozen ice. Right: frozen ice. Up: the edge of the lake." in obs
    assert "Holes: row 2, column 2; row 2, column 4; row 3, column 4; row 4, column 1." in obs
    assert info["admissible_commands"] == ["move left", "move down", "move right", "move up"]
    assert "goal at row 4, column 4" in info["task"]


def test_walking_into_the_edge_keeps_the_agent_in_place():
    env = TextFrozenLake()
    env.reset(seed=0)
    obs, reward, terminated, truncated, info = env.step("move up")
    assert obs.startswith("You try to move up, but you stay where you are. You stand at row 1, column 1")
    assert (reward, terminated, truncated, info["is_success"]) == (0.0, False, False, False)


def test_falling_into_a_hole_ends_the_episode_without_success():
    env = TextFrozenLake()
    env.reset(seed=0)
    env.step("move right")
    obs, reward, terminated, truncated, info = env.step("move down")
    assert obs == "You move down. You fell into a hole at row 2, column 2. The episode is over."
    assert (reward, terminated, info["is_success"]) == (0.0, True, False)
    assert info["admissible_commands"]  # even in the terminal state


def test_goal_pays_one_and_is_a_success():
    env = TextFrozenLake()
    env.reset(seed=0)
    for command in ["move down", "move down", "move right", "move down", "move right"]:
        *_, info = env.step(command)
        assert not info["is_success"]
    obs, reward, terminated, truncated, info = env.step("move right")
    assert obs == "You move right. You reached the goal at row 4, column 4!"
    assert (reward, terminated, truncated, info["is_success"]) == (1.0, True, False, True)


def test_unknown_command_is_a_no_op_that_lists_the_commands():
    env = TextFrozenLake()
    start, _ = env.reset(seed=0)
    obs, reward, terminated, truncated, _ = env.step("jump over the hole")
    assert obs == (
        'Unknown command "jump over the hole"; you stay where you are. '
        "Commands: move left, move down, move right, move up. " + start
    )
    assert (reward, terminated, truncated) == (0.0, False, False)
    assert env.position == (0, 0)


def test_registered_4x4_truncates_after_20_steps_with_commands_on_the_last_step():
    env = gym.make("prior_wrappers/TextFrozenLake-v0")
    env.reset(seed=0)
    for step in range(1, 21):
        _, _, terminated, truncated, info = env.step("move up")
        assert not terminated
        assert truncated == (step == 20)
    assert info["admissible_commands"]


def test_slippery_ice_is_said_and_moves_are_random_but_seeded():
    env = TextFrozenLake(is_slippery=True)
    obs, _ = env.reset(seed=3)
    assert "The ice is slippery" in obs

    def positions(seed):
        env.reset(seed=seed)
        out = []
        for _ in range(8):
            obs, *_ = env.step("move right")
            out.append(env.position)
        return out

    assert positions(3) == positions(3)
    assert len({tuple(positions(seed)) for seed in range(6)}) > 1
    env.reset(seed=0)
    seen = {env.step("move right")[0].split(".")[0] for _ in range(30)}
    assert any("you slip" in sentence for sentence in seen)


def test_custom_map_and_prompt_example_match_the_real_wording():
    """The hand-written example is exactly what the env says on a 3x3 map."""
    env = TextFrozenLake(desc=["FFF", "FSF", "FHG"])
    obs, _ = env.reset(seed=0)
    lines = ["Observation: " + obs]
    for command in ["move right", "move down"]:
        obs, *_ = env.step(command)
        lines += ["Action: " + command, "Observation: " + obs]
    assert "\n".join(lines) == TextFrozenLake.prompt_example


def test_ansi_render_shows_the_grid():
    env = TextFrozenLake(render_mode="ansi")
    env.reset(seed=0)
    assert "FHFH" in env.render()
