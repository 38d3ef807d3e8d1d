"""TextWorld challenge games: presets, generation into a cache (reused, atomic), splits by seed, registered ids."""

from __future__ import annotations

import argparse
import doctest
import json

import gymnasium as gym
import pytest
from gymnasium.utils.env_checker import check_env

textworld = pytest.importorskip("textworld", reason="needs the textworld extra")

import envs.textworld_challenges  # noqa: E402
from envs.textworld_challenges import (  # noqa: E402
    CHALLENGE_PRESETS,
    TextWorldChallengeEnv,
    challenge_splits,
    make_challenge_games,
)

# one small game per challenge family (TWCookingEasy-v0 is checked on the cooking game: same challenge)
FAMILY_PRESETS = ["simple", "cooking", "treasure", "coin"]
REGISTERED = {
    "prior_wrappers/TWSimple-v0": "simple",
    "prior_wrappers/TWCooking-v0": "cooking",
    "prior_wrappers/TWCookingEasy-v0": "cooking-easy",
    "prior_wrappers/TWTreasureHunter-v0": "treasure",
    "prior_wrappers/TWCoinCollector-v0": "coin",
}


class _SessionGames:
    """Game seed 0 of a preset, generated on first use (2-8 s per preset on one core) into a session cache laid
    out as the default cache under $XDG_CACHE_HOME (so that the docstring examples reuse the games)."""

    def __init__(self, xdg_cache_home):
        self.xdg_cache_home = xdg_cache_home
        self.cache = xdg_cache_home / "prior_wrappers" / "textworld"

    def __getitem__(self, preset: str):
        return make_challenge_games(preset, 1, seed=0, cache_dir=self.cache)[0]


@pytest.fixture(scope="session")
def challenge_games(tmp_path_factory) -> _SessionGames:
    return _SessionGames(tmp_path_factory.mktemp("xdg-cache"))


def _challenge_arguments(challenge: str) -> dict[str, object]:
    """dest -> default of every argument the challenge's tw-make parser defines."""
    from textworld.challenges import CHALLENGES

    parser = argparse.ArgumentParser()
    CHALLENGES[challenge][2](parser)
    return {a.dest: a.default for a in parser._actions if a.dest != "help"}


def test_presets_give_every_setting_of_their_challenge():
    for preset, (challenge, settings) in CHALLENGE_PRESETS.items():
        assert set(_challenge_arguments(challenge)) <= set(settings), preset
    assert CHALLENGE_PRESETS["simple"] == ("tw-simple", {"rewards": "sparse", "goal": "brief", "test": False})
    assert CHALLENGE_PRESETS["simple-dense"][1]["rewards"] == "dense"
    assert CHALLENGE_PRESETS["simple-dense"][1]["goal"] == "detailed"
    easy = CHALLENGE_PRESETS["cooking-easy"]
    assert easy[0] == "tw-cooking"
    assert {k: easy[1][k] for k in ("recipe", "take", "go", "open", "cook", "cut")} == {
        "recipe": 1, "take": 1, "go": 1, "open": True, "cook": False, "cut": False}
    cooking = CHALLENGE_PRESETS["cooking"][1]
    assert {k: cooking[k] for k in ("recipe", "take", "go", "open", "cook", "cut")} == {
        "recipe": 2, "take": 2, "go": 6, "open": True, "cook": True, "cut": True}
    assert CHALLENGE_PRESETS["treasure"] == ("tw-treasure_hunter", {"level": 15})
    assert CHALLENGE_PRESETS["coin"] == ("tw-coin_collector", {"level": 15})


def test_unknown_preset_names_the_presets(tmp_path):
    with pytest.raises(ValueError, match="unknown challenge preset 'cookin'.*cooking-easy.*coin"):
        make_challenge_games("cookin", 1, cache_dir=tmp_path)
    with pytest.raises(ValueError, match="known presets"):
        TextWorldChallengeEnv("tw-cooking", cache_dir=tmp_path)
    with pytest.raises(ValueError, match="n_games"):
        make_challenge_games("coin", -1, cache_dir=tmp_path)
    assert not any(tmp_path.iterdir())  # nothing generated


@pytest.mark.slow
@pytest.mark.parametrize("preset", FAMILY_PRESETS)
def test_one_game_per_family_is_generated_into_the_cache_and_reused(challenge_games, preset):
    cache = challenge_games.cache
    game = challenge_games[preset]
    assert game == cache / f"challenge-{preset}" / "game-0.z8"
    assert game.is_file() and game.with_suffix(".json").is_file()
    assert sorted(p.name for p in game.parent.iterdir()) == ["game-0.json", "game-0.z8"]  # no scratch left
    data = json.loads(game.with_suffix(".json").read_text())
    assert data["metadata"]["walkthrough"]
    mtime = game.stat().st_mtime_ns
    assert make_challenge_games(preset, 1, seed=0, cache_dir=cache) == [game]
    assert game.stat().st_mtime_ns == mtime  # reused, not regenerated


@pytest.mark.slow
def test_a_half_written_game_is_regenerated_identically(challenge_games, tmp_path):
    folder = tmp_path / "challenge-treasure"
    folder.mkdir()
    (folder / "game-0.z8").write_bytes(b"half")  # an interrupted run: no .json next to it
    [game] = make_challenge_games("treasure", 1, seed=0, cache_dir=tmp_path)
    assert game.stat().st_size > 1000 and game.with_suffix(".json").is_file()
    original = json.loads(challenge_games["treasure"].with_suffix(".json").read_text())
    again = json.loads(game.with_suffix(".json").read_text())
    assert again["metadata"]["walkthrough"] == original["metadata"]["walkthrough"]  # same seed, same game
    assert again["objective"] == original["objective"]


@pytest.mark.slow
def test_splits_are_disjoint_by_seed(challenge_games):
    cache = challenge_games.cache
    train, unseen = challenge_splits("treasure", 1, 1, game_seed=0, cache_dir=cache)
    assert train == [challenge_games["treasure"]]
    assert [g.name for g in unseen] == ["game-100000.z8"]
    assert not set(train) & set(unseen)
    first = json.loads(train[0].with_suffix(".json").read_text())
    second = json.loads(unseen[0].with_suffix(".json").read_text())
    assert first["metadata"]["walkthrough"] != second["metadata"]["walkthrough"]
    with pytest.raises(ValueError, match="at most"):
        challenge_splits("treasure", 100_001, 0, cache_dir=cache)


@pytest.mark.slow
@pytest.mark.parametrize("env_id", sorted(REGISTERED))
def test_registered_ids_pass_check_env_and_the_expert_wins(challenge_games, env_id):
    preset = REGISTERED[env_id]
    if preset in FAMILY_PRESETS:
        game = challenge_games[preset]
        env = gym.make(env_id, cache_dir=challenge_games.cache)
        assert env.unwrapped.game_files == [str(game)]  # found in the cache, not regenerated
    else:
        env = gym.make(env_id, game_files=[challenge_games["cooking"]])
    raw = env.unwrapped
    assert isinstance(raw, TextWorldChallengeEnv) and raw.preset == preset
    check_env(raw, skip_render_check=True)
    obs, info = env.reset(seed=0)
    assert info["task"] and info["admissible_commands"] and not info["is_success"]
    terminated = truncated = False
    while not (terminated or truncated):
        command = raw.expert_command()
        assert command in info["admissible_commands"]
        obs, reward, terminated, truncated, info = env.step(command)
        assert info["admissible_commands"]
    assert terminated and info["is_success"] and info["score"] == info["max_score"]
    env.close()


def test_game_files_override_generation(tmp_path, challenge_games):
    game = challenge_games["coin"]
    env = TextWorldChallengeEnv("coin", game_files=[game], cache_dir=tmp_path / "unused", max_episode_steps=3)
    assert env.game_files == [str(game)] and not (tmp_path / "unused").exists()
    env.reset(seed=0)
    for _ in range(3):
        _, _, terminated, truncated, _ = env.step("wait")
    assert truncated and not terminated  # max_episode_steps is the env's cap
    env.close()


@pytest.mark.slow
def test_docstring_examples_run(challenge_games, monkeypatch):
    challenge_games["cooking"], challenge_games["treasure"]  # what the examples play
    monkeypatch.setenv("XDG_CACHE_HOME", str(challenge_games.xdg_cache_home))
    result = doctest.testmod(envs.textworld_challenges, raise_on_error=False)
    assert result.failed == 0 and result.attempted >= 7


def test_walkthrough_coverage_counts_the_states_where_cql_priors_candidates_keep_the_experts_command(challenge_games):
    """The offline benchmark's diagnostic: a prior that favours the walkthrough keeps it in every state; one that puts
    its mass elsewhere cuts it from CQL-Prior's prior-mass candidates (while the rank it reports is the prior's)."""
    from benchmarks.challenge_runs import Config, Resources, walkthrough_coverage
    from envs.textworld_env import TextWorldEnv
    from prior_wrappers import FunctionPrior, HashingEncoder

    game = challenge_games["cooking-easy"]
    env = TextWorldEnv([game], observe_state=False)
    env.reset(seed=0)
    walkthrough, done = [], False
    while not done:
        walkthrough.append(env.expert_command())
        *_, terminated, truncated, _ = env.step(walkthrough[-1])
        done = terminated or truncated
    env.close()

    def coverage(fn):
        res = Resources(Config(offline_prior_mass=0.9), "cooking-easy", FunctionPrior(fn, name=fn.__name__),
                        HashingEncoder(), None, None)  # type: ignore[arg-type]
        return walkthrough_coverage(game, res)

    def favours(prompt, cands):
        return [5.0 if c in walkthrough else 0.0 for c in cands]

    def dislikes(prompt, cands):
        return [-20.0 if c in walkthrough else 0.0 for c in cands]

    good, bad = coverage(favours), coverage(dislikes)
    assert good["won"] and bad["won"] and good["states"] == bad["states"] == len(walkthrough)
    assert good["inside"] == good["states"] and set(good["expert_ranks"]) == {1}
    assert bad["inside"] == 0 and min(bad["expert_ranks"]) > 1


def test_generating_a_game_prints_no_other_librarys_warnings(tmp_path):
    """TextWorld's grammar fallbacks and jericho's note on the scratch game are generation noise (coin collector
    triggers both)."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        [game] = make_challenge_games("coin", 1, seed=0, cache_dir=tmp_path)
    assert game.is_file()
