"""CPU cost of tokenising a vector step's candidates: the full path (``prompt + separator + candidate`` tokenised
whole, the prompt again for every candidate) vs the tail path (each prompt once, then only its last pre-tokens with
each candidate; :mod:`prior_wrappers.priors.tokenization`).

16 text-game transcripts x 30 admissible commands, with the embedded SmolLM2's tokenizer, for transcripts of about
300 and 3,000 tokens. Both paths give the same tokens (checked here on every candidate); the timings are of
``_tokenize_candidates`` as the engines call it, after one untimed call (the tail path's once-per-engine cross-check).

    python benchmarks/tokenization_cost.py [--envs 16] [--candidates 30] [--repeats 5]

Prints a table, then last: ``tokenization_speedup_3000=<full s / tail s at 3,000 tokens>``.
"""

from __future__ import annotations

import random
import statistics
import sys
from pathlib import Path
from typing import Any

from transformers import AutoTokenizer

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks.common, prior_wrappers from the checkout

from benchmarks.common import Stopwatch, argument_parser, print_conditions, summary_line  # noqa: E402
from prior_wrappers.priors.embedded import embedded_gguf_path, ensure_converted  # noqa: E402
from prior_wrappers.priors.tokenization import CandidateTokenization  # noqa: E402

ROOMS = ["kitchen", "pantry", "living room", "bedroom", "bathroom", "garden", "cellar", "study"]
OBJECTS = ["red apple", "rusty key", "wooden box", "silver knife", "glass bottle", "old map", "blue book", "candle"]
VERBS = ["take", "drop", "open", "close", "examine", "eat", "put", "unlock"]
DIRECTIONS = ["north", "south", "east", "west", "up", "down"]


class Engine(CandidateTokenization):
    """The engines' tokenisation alone (an ``HFPrior``'s separator and suffix, a window that never truncates)."""

    def __init__(self, tokenizer: Any, tail: bool) -> None:
        self.tokenizer, self.separator, self.candidate_suffix = tokenizer, " ", ""
        self.truncation, self.max_length = "left", 1 << 30
        self._tail_enabled()
        if not tail:
            self._tail_state = (id(tokenizer), False)


def transcript(rng: random.Random, tokenizer: Any, tokens: int) -> str:
    """A text-game transcript of about ``tokens`` tokens, ending where the next command goes."""
    lines = ["You are playing a text adventure. Choose the next command.\n"]
    while len(tokenizer("".join(lines))["input_ids"]) < tokens:
        room, obj = rng.choice(ROOMS), rng.choice(OBJECTS)
        lines.append(f"> {rng.choice(VERBS)} {obj}\nYou are in the {room}. You see a {obj} and "
                     f"{rng.randint(2, 40)} coins here. Exits: {', '.join(rng.sample(DIRECTIONS, 3))}.\n\n")
    return "".join(lines) + ">"


def commands(rng: random.Random, n: int) -> list[str]:
    pool = [f"{v} {o}" for v in VERBS for o in OBJECTS] + [f"go {d}" for d in DIRECTIONS] + ["look", "inventory"]
    return rng.sample(pool, n)


def timed(engine: Engine, prompts: list[str], candidates: list[list[str]], repeats: int) -> tuple[float, Any]:
    out = engine._tokenize_candidates(prompts, candidates)  # untimed: the tail path's cross-check runs here
    times = []
    for _ in range(repeats):
        clock = Stopwatch()
        engine._tokenize_candidates(prompts, candidates)
        times.append(clock.seconds)
    return statistics.median(times), out


def main() -> None:
    parser = argument_parser(__doc__)
    parser.add_argument("--envs", type=int, default=16)
    parser.add_argument("--candidates", type=int, default=30)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    tokenizer = AutoTokenizer.from_pretrained(str(ensure_converted(embedded_gguf_path())), local_files_only=True)
    rng = random.Random(0)
    print_conditions(seed=0)
    print(f"{args.envs} prompts x {args.candidates} candidates, SmolLM2 tokenizer, median of {args.repeats}")
    print(f"{'prompt tokens':>13} {'full s':>9} {'tail s':>9} {'speedup':>8}")
    speedup = 0.0
    for tokens in (300, 3000):
        prompts = [transcript(rng, tokenizer, tokens) for _ in range(args.envs)]
        candidates = [commands(rng, args.candidates) for _ in prompts]
        full_s, full = timed(Engine(tokenizer, tail=False), prompts, candidates, args.repeats)
        tail_engine = Engine(tokenizer, tail=True)
        tail_s, tail = timed(tail_engine, prompts, candidates, args.repeats)
        assert tail == full and tail_engine._tail_state == (id(tokenizer), True), "the tail path must be exact"
        speedup = full_s / tail_s
        print(f"{tokens:>13} {full_s:>9.4f} {tail_s:>9.4f} {speedup:>7.1f}x")
    summary_line({"tokenization_speedup_3000": f"{speedup:.1f}"})


if __name__ == "__main__":
    main()
