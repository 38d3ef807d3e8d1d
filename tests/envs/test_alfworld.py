"""ALFWorld: game discovery (splits, task types), the missing-data error, and a synthetic game played to a win.

The games are synthetic (tests/envs/alfworld_synthetic.py writes them) but run through ALFWorld's real stack:
TextWorld's PddlEnv with fast-downward, ALFWorld's AlfredDemangler and AlfredInfos wrappers.
"""

from __future__ import annotations

import json
import os
import shutil

import pytest

from envs.alfworld_env import ALFWorldEnv, alfworld_data_dir, find_alfworld_games


def test_missing_data_names_alfworld_download_and_the_variable(tmp_path, monkeypatch):
    with pytest.raises(FileNotFoundError, match="alfworld-download") as error:
        ALFWorldEnv(data_dir=tmp_path / "no-data")
    assert "ALFWORLD_DATA" in str(error.value) and "no-data" in str(error.value)
    monkeypatch.setenv("ALFWORLD_DATA", str(tmp_path / "empty"))
    with pytest.raises(FileNotFoundError, match="ALFWORLD_DATA"):
        find_alfworld_games()


def test_data_dir_comes_from_the_argument_then_the_variable(tmp_path, monkeypatch):
    monkeypatch.setenv("ALFWORLD_DATA", str(tmp_path / "from-env"))
    assert alfworld_data_dir() == tmp_path / "from-env"
    assert alfworld_data_dir(tmp_path / "arg") == tmp_path / "arg"
    monkeypatch.delenv("ALFWORLD_DATA")
    assert str(alfworld_data_dir()).endswith(os.path.join(".cache", "alfworld"))


def test_games_are_found_by_split_and_task_type(alfworld_data):
    train = find_alfworld_games(alfworld_data, "train", ["pick_and_place_simple"])
    assert [g.parent.name for g in train] == ["trial_T0001", "trial_T0002"]
    assert [g.parent.name for g in find_alfworld_games(alfworld_data, "train", [2])] == ["trial_T0003"]
    assert len(find_alfworld_games(alfworld_data, "train", None)) == 3
    assert len(find_alfworld_games(alfworld_data, "train", num_games=1)) == 1
    unseen = find_alfworld_games(alfworld_data, "eval_out_of_distribution")
    assert [g.parent.name for g in unseen] == ["trial_T0004"]
    assert find_alfworld_games(alfworld_data, "valid_unseen") == unseen
    with pytest.raises(FileNotFoundError, match="no solvable ALFWorld game"):
        find_alfworld_games(alfworld_data, "valid_unseen", ["pick_two_obj_and_place"])
    with pytest.raises(ValueError, match="unknown ALFWorld task type"):
        find_alfworld_games(alfworld_data, "train", ["make_coffee"])
    with pytest.raises(ValueError, match="unknown split"):
        find_alfworld_games(alfworld_data, "test")


def test_unsolvable_and_sliced_games_are_skipped(alfworld_data, tmp_path):
    root = tmp_path / "data"
    shutil.copytree(alfworld_data, root)
    first, second = find_alfworld_games(root, "train")
    game = json.loads(first.read_text())
    game["solvable"] = False
    first.write_text(json.dumps(game))
    sliced = second.parent.parent.with_name(second.parent.parent.name.replace("Apple", "AppleSliced"))
    second.parent.parent.rename(sliced)
    with pytest.raises(FileNotFoundError):
        find_alfworld_games(root, "train")


def test_synthetic_game_is_won_by_its_walkthrough(alfworld_data):
    from alfworld_synthetic import WALKTHROUGH

    env = ALFWorldEnv(data_dir=alfworld_data, split="valid_unseen")
    obs, info = env.reset(seed=0)
    assert obs.startswith("You are in the middle of a room.")
    assert "a cabinet 1, a countertop 1, and a shelf 1" in obs
    assert info["task"] == "put some apple on shelf."
    assert info["admissible_commands"] == [
        "go to cabinet 1", "go to countertop 1", "go to shelf 1", "help", "inventory", "look"
    ]
    rewards = []
    for command in WALKTHROUGH:
        assert command in info["admissible_commands"]
        obs, reward, terminated, truncated, info = env.step(command)
        rewards.append(reward)
    assert obs == "You move the apple 1 to the shelf 1."
    assert rewards == [0.0, 0.0, 0.0, 1.0]
    assert terminated and not truncated and info["is_success"]
    assert info["admissible_commands"]  # the final step too


def test_planner_expert_wins_and_bad_commands_do_nothing(alfworld_data):
    env = ALFWorldEnv(data_dir=alfworld_data, split="train", expert=True, max_episode_steps=10)
    obs, info = env.reset(seed=1)
    obs, reward, terminated, truncated, info = env.step("take apple 1 from countertop 1")  # not here yet
    assert obs == "Nothing happens." and reward == 0.0 and not terminated
    steps = 1
    while not terminated:
        obs, reward, terminated, truncated, info = env.step(env.expert_command())
        steps += 1
        assert not truncated
    assert info["is_success"] and steps == 5


def test_step_cap_truncates(alfworld_data):
    env = ALFWorldEnv(data_dir=alfworld_data, split="valid_unseen", max_episode_steps=2)
    env.reset(seed=0)
    assert env.step("look")[3] is False
    obs, reward, terminated, truncated, info = env.step("inventory")
    assert obs == "You are not carrying anything."
    assert truncated and not terminated and info["admissible_commands"]
