"""TextWorldExpress: games and parameters as the jar knows them, folds, the gold-path expert, bad input, one
JVM per process, and a JVM that dies mid-episode."""

from __future__ import annotations

import doctest
import re

import gymnasium as gym
import pytest
from gymnasium.utils.env_checker import check_env

pytest.importorskip("textworld_express", reason="needs the textworld-express extra")

import envs.jvm  # noqa: E402
import envs.textworld_express_env  # noqa: E402
from envs.jvm import JavaNotFoundError, JVMDiedError, find_java  # noqa: E402
from envs.textworld_express_env import (  # noqa: E402
    GAME_PARAMETERS,
    GAMES,
    UNKNOWN_ACTION,
    TextWorldExpressEnv,
    game_params_string,
    textworld_express_jvm,
)

pytestmark = pytest.mark.skipif(find_java() is None, reason="TextWorldExpress needs Java (openjdk-17-jre-headless)")

SMALL_COOKING = {"numLocations": 1, "numIngredients": 2, "numDistractorItems": 2, "includeDoors": 0,
                 "limitInventorySize": 0}
SMALL_COIN = {"numLocations": 2, "includeDoors": 0}


@pytest.fixture(scope="module")
def coin():
    env = TextWorldExpressEnv("coin", SMALL_COIN)
    yield env
    env.close()


def _play_expert(env, **reset_kwargs):
    obs, info = env.reset(**reset_kwargs)
    total, steps, terminated, truncated = 0.0, 0, False, False
    while not (terminated or truncated):
        command = env.expert_command()
        assert command in info["admissible_commands"]
        obs, reward, terminated, truncated, info = env.step(command)
        total += reward
        steps += 1
    return obs, total, steps, info


def test_games_and_their_parameters_are_the_jars():
    server = textworld_express_jvm().gateway().jvm.textworldexpress.runtime.PythonInterface()
    assert list(server.getGameNames()) == list(GAMES)
    for game in GAMES:
        message = server.load(game, "noSuchParameter=1")
        known = message.split("Known properties:")[1].strip().rstrip(".").strip()
        names = set() if known == "None" else {n.strip() for n in re.sub(r"None$", "", known).split(",")}
        assert names == set(GAME_PARAMETERS[game]), game
        assert server.load(game, "") == ""
        server.generateNewGameJSON(0, "train", False)
        properties = dict(__import__("json").loads(server.getGenerationPropertiesJSON()))
        assert {k: properties[k] for k in GAME_PARAMETERS[game] if k in properties} == {
            k: v for k, v in GAME_PARAMETERS[game].items() if k in properties
        }, game


@pytest.mark.parametrize("game_seed", [6, 10])
def test_gold_path_wins_cookingworld_skipping_gold_actions_that_are_not_valid(game_seed):
    """Seeds 6 and 10 of CookingWorld (default parameters) have a gold action outside the valid list ("open
    kitchen cupboard" when it is open); the expert skips it and still wins, with rewards summing to the score."""
    env = TextWorldExpressEnv("cookingworld")
    obs, info = env.reset(options={"game_seed": game_seed})
    gold = list(info["policy_commands"])
    obs, total, steps, info = _play_expert(env, options={"game_seed": game_seed})
    assert info["is_success"] and not info["failure"]
    assert total == pytest.approx(info["score"]) == pytest.approx(1.0)
    assert steps < len(gold)  # something was skipped
    assert info["on_gold_path"] and info["policy_commands"] == []


def test_expert_wins_every_game_of_every_kind():
    for game in GAMES:
        env = TextWorldExpressEnv(game, SMALL_COOKING if game == "cookingworld" else None)
        obs, total, steps, info = _play_expert(env, seed=1)
        assert info["is_success"], game
        assert total == pytest.approx(1.0), game


def test_eating_an_ingredient_fails_the_game():
    """CookingWorld seed 1 (small): eating the salt the recipe needs sets TextWorldExpress' failure flag."""
    env = TextWorldExpressEnv("cookingworld", SMALL_COOKING)
    obs, info = env.reset(options={"game_seed": 1})
    for command in [c for c in info["admissible_commands"] if c.startswith("take ")]:
        obs, reward, terminated, truncated, info = env.step(command)
    obs, reward, terminated, truncated, info = env.step("eat salt")
    assert terminated and info["failure"] and not info["is_success"] and reward == 0.0


def test_protocol_check_env_and_rewards(coin):
    check_env(coin, skip_render_check=True)
    obs, info = coin.reset(seed=0)
    assert info["admissible_commands"] == sorted(info["admissible_commands"])
    assert info["task"].startswith("Your task is to search the environment and find the coin")
    assert info["split"] == "train" and info["game"] == "coin" and not info["is_success"]


def test_splits_are_the_folds_and_reset_is_seeded():
    env = TextWorldExpressEnv("coin", SMALL_COIN, split="dev")
    seeds = [env.reset(seed=3)[1]["game_seed"] for _ in range(1)] + [env.reset()[1]["game_seed"] for _ in range(4)]
    assert all(10_000 <= s < 11_000 for s in seeds) and len(set(seeds)) == 5
    again = [env.reset(seed=3)[1]["game_seed"]] + [env.reset()[1]["game_seed"] for _ in range(4)]
    assert again == seeds
    assert env.reset(options={"game_seed": 10_005})[1]["game_seed"] == 10_005
    with pytest.raises(ValueError, match="not in this env's dev seeds"):
        env.reset(options={"game_seed": 5})  # a train seed
    subset = TextWorldExpressEnv("coin", SMALL_COIN, split="test", game_seeds=[20_001, 20_002])
    assert {subset.reset()[1]["game_seed"] for _ in range(4)} == {20_001, 20_002}
    with pytest.raises(ValueError, match="not in TextWorldExpress' train fold"):
        TextWorldExpressEnv("coin", SMALL_COIN, split="train", game_seeds=[0, 20_000]).reset()


def test_bad_names_and_parameters_are_refused():
    with pytest.raises(ValueError, match="unknown TextWorldExpress game 'cooking'"):
        TextWorldExpressEnv("cooking")
    with pytest.raises(ValueError, match="unknown parameter 'numRooms'.*numLocations"):
        TextWorldExpressEnv("cookingworld", {"numRooms": 2})
    with pytest.raises(ValueError, match="unknown parameter 'numLocations'.*none"):
        TextWorldExpressEnv("arithmetic", {"numLocations": 2})
    with pytest.raises(ValueError, match="must be an integer"):
        TextWorldExpressEnv("coin", {"numLocations": "two"})
    with pytest.raises(ValueError, match="flag: 0 or 1"):
        TextWorldExpressEnv("coin", {"includeDoors": 2})
    with pytest.raises(ValueError, match=">= 1"):
        TextWorldExpressEnv("coin", {"numLocations": 0})
    with pytest.raises(ValueError, match="unknown split"):
        TextWorldExpressEnv("coin", split="valid")
    assert game_params_string("coin", "numLocations=2, includeDoors=0") == "numLocations=2,includeDoors=0"
    with pytest.raises(ValueError, match="no value"):
        game_params_string("coin", "numLocations")
    env = TextWorldExpressEnv("coin", {"numLocations": 300})  # only the simulator knows this limit
    with pytest.raises(ValueError, match="less than or equal to 11"):
        env.reset()


def test_bad_commands_and_steps_after_the_end(coin):
    with pytest.raises(RuntimeError, match="reset"):
        TextWorldExpressEnv("coin", SMALL_COIN).step("look around")
    obs0, info0 = coin.reset(seed=0)
    with pytest.raises(TypeError, match="str commands"):
        coin.step(3)
    obs, reward, terminated, truncated, info = coin.step("dance with the coin")
    assert obs == UNKNOWN_ACTION and reward == 0.0 and not terminated
    assert info["admissible_commands"] == info0["admissible_commands"]
    assert info["on_gold_path"]  # an unknown command changes nothing, so the plan still holds
    obs, *_ = coin.step("  LOOK\n around ")  # matched to the valid "look around"
    assert obs == obs0
    *_, info = _play_expert(coin, seed=0)
    obs, reward, terminated, truncated, info = coin.step("take coin")
    assert (obs, reward, terminated, truncated) == ("The game is over.", 0.0, True, False)
    assert info["is_success"]
    capped = TextWorldExpressEnv("coin", SMALL_COIN, max_episode_steps=2)
    capped.reset(seed=0)
    assert not capped.step("inventory")[3] and capped.step("inventory")[3]


def test_expert_refuses_once_off_the_gold_path(coin):
    obs, info = coin.reset(seed=0)
    detour = next(c for c in info["admissible_commands"] if c != coin.expert_command())
    assert not coin.step(detour)[4]["on_gold_path"]
    with pytest.raises(RuntimeError, match="left TextWorldExpress' gold path"):
        coin.expert_command()
    with pytest.raises(RuntimeError, match="expert=True"):
        TextWorldExpressEnv("coin", SMALL_COIN, expert=False).expert_command()


def test_one_jvm_serves_every_env_of_the_process_independently():
    jvm = textworld_express_jvm()
    a, b = TextWorldExpressEnv("coin", SMALL_COIN), TextWorldExpressEnv("cookingworld", SMALL_COOKING)
    a.reset(seed=0)
    b.reset(seed=0)
    starts = jvm.starts
    ref = TextWorldExpressEnv("coin", SMALL_COIN)
    ref.reset(seed=0)
    plan = []
    while True:  # interleave a's expert steps with b's: a's game is not disturbed
        command = a.expert_command()
        plan.append(command)
        obs_a, reward, terminated, *_ = a.step(command)
        b.step(b.expert_command())
        if terminated:
            break
    for command in plan:
        obs_ref, *_ = ref.step(command)
    assert obs_a == obs_ref and reward == 1.0
    assert a._sim.jvm is b._sim.jvm is ref._sim.jvm is jvm  # one JVM ...
    assert jvm.starts == starts and jvm.alive()  # ... started once
    assert len({id(e._sim.server) for e in (a, b, ref)}) == 3  # and one simulator object per env


def test_a_jvm_that_dies_mid_episode_raises_and_reset_recovers():
    jvm = textworld_express_jvm()
    env, other = TextWorldExpressEnv("coin", SMALL_COIN), TextWorldExpressEnv("coin", SMALL_COIN)
    env.reset(seed=0)
    other.reset(seed=0)
    env.step(env.expert_command())
    jvm.process.kill()
    jvm.process.wait()
    with pytest.raises(JVMDiedError, match=r"TextWorldExpress JVM \(pid \d+\) exited.*Call reset\(\)"):
        env.step("look around")
    with pytest.raises(JVMDiedError):  # and it keeps saying so, rather than playing a lost game
        env.step("look around")
    starts = jvm.starts
    obs, info = env.reset(seed=0)
    assert jvm.starts == starts + 1 and jvm.alive()
    *_, info = _play_expert(env, seed=0)
    assert info["is_success"]
    with pytest.raises(JVMDiedError, match="another env restarted the JVM"):
        other.step("look around")
    assert other.reset(seed=0)[1]["admissible_commands"] and jvm.starts == starts + 1


def test_missing_java_names_the_package(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.delenv("JAVA_HOME", raising=False)
    monkeypatch.setattr(envs.jvm, "_JVMS", {})  # a process without a running JVM
    env = TextWorldExpressEnv("coin", SMALL_COIN)
    with pytest.raises(JavaNotFoundError, match="openjdk-17-jre-headless"):
        env.reset()


def test_registered_ids_and_one_line_wrapping():
    from prior_wrappers import FunctionPrior, LLMPriorWrapper, VecLLMPrior, make_text_vec_env

    prior = FunctionPrior(lambda p, c: [float("cookbook" in x) for x in c])
    env = LLMPriorWrapper(gym.make("prior_wrappers/TWXCookingWorldSmall-v0"), prior, k=8, encoder="hashing")
    obs, info = env.reset(seed=0)
    assert info["prior_candidates"][0] in ("take cookbook", "read cookbook", "examine cookbook")
    assert obs["action_mask"].sum() == 8 and info["prior_dropped"] > 0
    obs, reward, terminated, truncated, info = env.step(0)
    assert "cookbook" in info["command"]
    venv = VecLLMPrior(
        make_text_vec_env("prior_wrappers/TextWorldExpress-v0", n_envs=2, env_kwargs={"game": "coin",
                                                                                         "game_params": SMALL_COIN}),
        prior, k=4, encoder="hashing",
    )
    assert venv.reset()["action_mask"].shape == (2, 4)
    venv.step([0, 1])
    assert gym.make("prior_wrappers/TextWorldExpress-v0").unwrapped.game == "cookingworld"


def test_docstring_examples_run():
    result = doctest.testmod(envs.textworld_express_env, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0


@pytest.mark.parametrize("game", GAMES)
def test_prompt_examples_are_short_episodes(game):
    example = TextWorldExpressEnv(game).prompt_example  # no JVM needed
    lines = example.splitlines()
    assert len(example) < 2000 and lines[0].startswith("Observation: ")
    assert all(line.startswith(("Observation: ", "Action: ")) for line in lines) and "Action: " in example
