"""Fast stand-in priors for the CLI tests, importable as ``--prior cli_priors:<name>`` (tests/ is on sys.path)."""

from __future__ import annotations

from collections.abc import Sequence

RECIPE = {
    "serve bowl": 3.0,
    "chop tomato": 3.0,
    "in bowl": 3.0,
    "on cutting board": 2.0,
    "pick up tomato": 1.5,
    "take bowl": 1.0,
    "walk to": -1.0,
    "put down": -1.0,
    "chop nothing": -2.0,
}


def recipe(prompt: str, commands: Sequence[str]) -> list[float]:
    """The tomato salad's steps as keywords (the examples' --fast prior): ranks Overcooked's expert command first."""
    return [max([w for key, w in RECIPE.items() if key in c], default=0.0) for c in commands]
