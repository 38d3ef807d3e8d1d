"""ScienceWorld: tasks, variations by split, simplifications, score-change rewards, completion and failure, the
gold-path expert, the focused candidate set, bad input and a JVM that dies mid-episode. Small variations only
(lifespan-longest-lived 3: a 2-action gold path; find-living-thing 3: 6 actions)."""

from __future__ import annotations

import doctest

import gymnasium as gym
import pytest
from gymnasium.utils.env_checker import check_env

pytest.importorskip("scienceworld", reason="needs the scienceworld extra")

import envs.scienceworld_env  # noqa: E402
from envs.jvm import JVMDiedError, find_java  # noqa: E402
from envs.scienceworld_env import (  # noqa: E402
    REWARD_SCALE,
    CommandContext,
    ScienceWorldEnv,
    command_objects,
    focused_commands,
    gold_as_valid,
    resolve_task,
    scienceworld_jvm,
    simplification_string,
    task_names,
)

pytestmark = pytest.mark.skipif(find_java() is None, reason="ScienceWorld needs Java (openjdk-17-jre-headless)")


@pytest.fixture(scope="module")
def lifespan():
    """lifespan-longest-lived variation 3 (train): the parrot egg is in the starting room."""
    env = ScienceWorldEnv("lifespan-longest-lived", variations=[3])
    yield env
    env.close()


def test_tasks_ids_and_simplifications_are_checked():
    assert len(task_names()) == 30 and "boil" in task_names()
    assert resolve_task("1-1") == "boil" == resolve_task("Matter Changes of State (Boiling)")
    with pytest.raises(ValueError, match="unknown ScienceWorld task 'boiling'.*'boil'"):
        ScienceWorldEnv("boiling")
    with pytest.raises(ValueError, match="unknown ScienceWorld simplification 'openWindows'"):
        ScienceWorldEnv("boil", simplification="openDoors,openWindows")
    with pytest.raises(ValueError, match="needs electrical actions"):
        ScienceWorldEnv("power-component", simplification=["noElectricalAction"])
    with pytest.raises(ValueError, match="unknown split"):
        ScienceWorldEnv("boil", split="validation")
    with pytest.raises(ValueError, match="candidates must be"):
        ScienceWorldEnv("boil", candidates="some")
    assert simplification_string("boil", ["openDoors", "teleportAction"]) == "openDoors,teleportAction"
    assert simplification_string("boil", "easy") == "easy"


def test_gold_path_wins_with_scaled_score_change_rewards(lifespan):
    obs, info = lifespan.reset(seed=0)
    start = info["score"]
    assert info["variation"] == 3 and info["split"] == "train" and not info["is_success"]
    assert info["valid_count"] == len(info["admissible_commands"]) > 300  # ScienceWorld's whole list
    total, terminated = 0.0, False
    while not terminated:
        command = lifespan.expert_command()
        assert command in info["admissible_commands"]
        obs, reward, terminated, truncated, info = lifespan.step(command)
        total += reward
        assert not truncated
    assert info["is_success"] and not info["failure"] and info["score"] == 100
    assert REWARD_SCALE == 0.01 and total == pytest.approx((100 - start) / 100)  # rewards: score change / 100


def test_a_wrong_focus_fails_the_task(lifespan):
    obs, info = lifespan.reset(seed=0)
    start = info["score"]
    obs, reward, terminated, truncated, info = lifespan.step("focus on agent")
    assert terminated and info["failure"] and not info["is_success"] and info["score"] == -100
    assert reward == pytest.approx((-100 - start) / 100)
    obs, reward, terminated, truncated, info = lifespan.step("focus on egg parrot")
    assert (obs, reward, terminated) == ("The game is over.", 0.0, True)  # a step after the end changes nothing
    obs, info = lifespan.reset(seed=0)
    assert info["score"] == start and not info["failure"]  # reset starts the variation afresh


def test_check_env(lifespan):
    check_env(lifespan, skip_render_check=True)


def test_bad_commands_and_steps(lifespan):
    with pytest.raises(RuntimeError, match="reset"):
        ScienceWorldEnv("boil").step("look around")
    obs0, info0 = lifespan.reset(seed=0)
    with pytest.raises(TypeError, match="str commands"):
        lifespan.step(None)
    obs, reward, terminated, truncated, info = lifespan.step("xyzzy plugh")
    assert obs == "No known action matches that input." and reward == 0.0 and not terminated
    assert info["score"] == info0["score"]
    assert not info["on_gold_path"]
    with pytest.raises(RuntimeError, match="left ScienceWorld's gold path"):
        lifespan.expert_command()
    capped = ScienceWorldEnv("lifespan-longest-lived", variations=[3], max_episode_steps=1, expert=False)
    capped.reset()
    assert capped.step("look around")[3]
    with pytest.raises(RuntimeError, match="expert=True"):
        capped.expert_command()


def test_variations_come_from_their_split():
    env = ScienceWorldEnv("lifespan-shortest-lived", split="dev", expert=False)
    seen = [env.reset(seed=1)[1]["variation"], env.reset()[1]["variation"]]
    assert all(62 <= v < 93 for v in seen) and len(set(seen)) == 2  # the dev split, 31 variations
    assert [env.reset(seed=1)[1]["variation"], env.reset()[1]["variation"]] == seen
    assert env.reset(options={"variation": 70})[1]["variation"] == 70
    with pytest.raises(ValueError, match="variation 3 is not in this env's dev variations"):
        env.reset(options={"variation": 3})
    with pytest.raises(ValueError, match=r"variations \[3\] of lifespan-shortest-lived are not in its dev split"):
        ScienceWorldEnv("lifespan-shortest-lived", split="dev", variations=[62, 3], expert=False).reset()


def test_gold_actions_without_a_valid_twin_and_add_expert_command():
    """find-living-thing 3's last gold action ("move egg butterfly egg in inventory to orange box") is not in
    the valid list: the expert returns it anyway (the parser accepts it); add_expert_command puts it there."""
    for add in (False, True):
        env = ScienceWorldEnv("find-living-thing", variations=[3], add_expert_command=add)
        obs, info = env.reset()
        missing = 0
        while not info["is_success"]:
            command = env.expert_command()
            missing += not info["expert_admissible"]
            assert (command in info["admissible_commands"]) == (add or info["expert_admissible"])
            obs, reward, terminated, truncated, info = env.step(command)
        assert (missing > 0) != add and info["score"] == 100


def test_gold_spellings_map_to_valid_actions():
    valid = ["look at substance in metal pot", "open kitchen door", "put down aluminum foil", "pick up thermometer"]
    assert gold_as_valid("examine substance in metal pot", valid) == valid[0]
    assert gold_as_valid("open door to kitchen", valid) == valid[1]
    assert gold_as_valid("drop aluminum foil", valid) == valid[2]
    assert gold_as_valid("take thermometer in inventory", valid) == valid[3]
    assert gold_as_valid("open door to hallway", valid) == "open door to hallway"  # no twin: unchanged


def test_focused_commands_prune_to_what_is_at_hand():
    templates = ("look around", "focus on OBJ", "move OBJ to OBJ", "connect OBJ to OBJ", "go OBJ", "wait1")
    context = CommandContext(
        observation="You move the metal pot to the inventory.",
        look="This room is called the kitchen. In it, you see: a stove, a sink, a chair. A door to the hallway",
        inventory="In your inventory, you see: a metal pot (containing nothing)",
        task="Your task is to boil water.", task_name="boil", templates=templates,
    )
    commands = ["look around", "wait1", "focus on stove", "focus on banana", "move metal pot to stove",
                "move chair to stove", "connect metal pot to stove", "go to hallway", "move metal pot to banana"]
    assert focused_commands(commands, context) == [
        "look around", "wait1", "focus on stove", "move metal pot to stove", "go to hallway",
    ]
    electrical = CommandContext(**{**context.__dict__, "task_name": "power-component"})
    assert "connect metal pot to stove" in focused_commands(commands, electrical)
    assert command_objects("move metal pot to door to hallway", templates) == ["metal pot", "door to hallway"]


def test_focused_candidates_on_the_real_game_keep_the_gold_path():
    env = ScienceWorldEnv("lifespan-longest-lived", variations=[3], candidates="focused")
    obs, info = env.reset()
    assert 0 < len(info["admissible_commands"]) < info["valid_count"] / 2
    assert info["expert_admissible"] and env.expert_command() in info["admissible_commands"]
    custom = ScienceWorldEnv("lifespan-longest-lived", variations=[3], candidates=lambda c, ctx: [x for x in c if
                                                                                                   "egg" in x])
    commands = custom.reset()[1]["admissible_commands"]
    assert commands and all("egg" in c for c in commands)


def test_a_jvm_that_dies_mid_episode_raises_and_reset_recovers(lifespan):
    jvm = scienceworld_jvm()
    lifespan.reset(seed=0)
    jvm.process.kill()
    jvm.process.wait()
    with pytest.raises(JVMDiedError, match=r"ScienceWorld JVM \(pid \d+\) exited.*Call reset\(\)"):
        lifespan.step("look around")
    with pytest.raises(JVMDiedError):
        lifespan.step("look around")
    starts = jvm.starts
    obs, info = lifespan.reset(seed=0)
    assert jvm.starts == starts + 1 and info["variation"] == 3
    obs, reward, terminated, truncated, info = lifespan.step(lifespan.expert_command())
    assert terminated and info["is_success"]


def test_wrapper_scores_every_valid_action_in_one_call_and_wraps_in_one_line():
    from prior_wrappers import FunctionPrior, LLMPriorWrapper, VecLLMPrior, make_text_vec_env

    seen: list[int] = []

    def keyword_prior(prompt, candidates):
        seen.append(len(candidates))
        return [1.0 if "egg" in c else 0.0 for c in candidates]

    kwargs = {"task": "lifespan-longest-lived", "variations": [3]}
    env = LLMPriorWrapper(gym.make("prior_wrappers/ScienceWorld-v0", **kwargs), FunctionPrior(keyword_prior), k=8,
                          encoder="hashing")
    obs, info = env.reset(seed=0)
    assert seen == [info["valid_count"]] and env.prior_stats["calls"] == 1  # one call, all ~500 candidates
    assert "egg" in info["prior_candidates"][0] and info["prior_dropped"] == info["valid_count"] - 8
    venv = VecLLMPrior(make_text_vec_env("prior_wrappers/ScienceWorld-v0", n_envs=2, env_kwargs=kwargs),
                       FunctionPrior(keyword_prior), k=4, encoder="hashing")
    assert venv.reset()["action_mask"].shape == (2, 4)


def test_docstring_examples_run():
    result = doctest.testmod(envs.scienceworld_env, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0 and result.failed == 0


def test_prompt_example_is_a_short_episode():
    example = ScienceWorldEnv("boil").prompt_example  # no JVM needed
    lines = example.splitlines()
    assert len(example) < 2000 and lines[0].startswith("Observation: ")
    assert all(line.startswith(("Observation: ", "Action: ")) for line in lines) and "Action: " in example
