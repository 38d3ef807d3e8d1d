"""Fixtures of the environment tests: small TextWorld games and a synthetic ALFWorld data folder."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest

# tests/ is on sys.path (the root conftest puts it there) and tests/envs/ has no __init__.py, so a bare
# `import envs` could resolve to this test folder as a namespace package; the repository root first avoids it.
_REPO_ROOT = str(Path(__file__).resolve().parents[2])
if _REPO_ROOT not in sys.path:
    sys.path.insert(0, _REPO_ROOT)

import envs  # noqa: E402  (after the path fix above)

assert envs.__file__ is not None and Path(envs.__file__).parent.parent == Path(_REPO_ROOT)


@pytest.fixture(scope="session")
def textworld_games(tmp_path_factory) -> dict:
    """Two tiny TextWorld games (2 rooms, quest length 1 and 2), generated once per test session."""
    pytest.importorskip("textworld", reason="needs the textworld extra")
    from envs.textworld_env import make_textworld_games

    # Laid out as the default cache under $XDG_CACHE_HOME, so that the docstring examples can reuse the games.
    xdg_cache_home = tmp_path_factory.mktemp("xdg-cache")
    cache = xdg_cache_home / "prior_wrappers" / "textworld"
    start = time.perf_counter()
    games = make_textworld_games(1, seed=1, world_size=2, nb_objects=3, quest_length=1, cache_dir=cache)
    games += make_textworld_games(1, seed=2, world_size=2, nb_objects=3, quest_length=2, cache_dir=cache)
    seconds = time.perf_counter() - start
    print(f"\nTextWorld generation: {seconds / len(games):.1f} s per game")
    return {"games": games, "cache": cache, "xdg_cache_home": xdg_cache_home, "seconds_per_game": seconds / len(games)}


@pytest.fixture(scope="session")
def alfworld_data(tmp_path_factory) -> Path:
    """An ALFWorld data folder with synthetic games: two pick & place in train (plus one game of another task
    type), one pick & place in valid_unseen."""
    pytest.importorskip("alfworld", reason="needs the alfworld extra")
    pytest.importorskip("fast_downward", reason="ALFWorld's text games need fast-downward-textworld")
    from alfworld_synthetic import write_synthetic_alfworld_game

    root = tmp_path_factory.mktemp("alfworld-data")
    write_synthetic_alfworld_game(root, "train", trial="trial_T0001")
    write_synthetic_alfworld_game(root, "train", trial="trial_T0002")
    write_synthetic_alfworld_game(root, "train", task_type="look_at_obj_in_light", trial="trial_T0003")
    write_synthetic_alfworld_game(root, "valid_unseen", trial="trial_T0004")
    return root
