"""Load the embedded LLM prior and print how it ranks the admissible commands of a text-game state.

    python examples/rank_commands.py
"""

from __future__ import annotations

import time

import numpy as np
from rich.console import Console
from rich.table import Table

from prior_wrappers import HFPrior, PromptTemplate, TextState

STATE = TextState(
    task="make a tomato salad and serve it",
    observation=(
        "You are in a small kitchen. You are holding a chopped tomato. A clean bowl is on the counter to your left. "
        "The serving window is to the north."
    ),
    admissible=["put chopped tomato in bowl", "drop chopped tomato", "walk to serving window", "eat chopped tomato", "wait"],
    example=(
        "Observation: You are holding nothing. A tomato is on the counter.\nAction: pick up tomato\n"
        "Observation: You are holding a tomato. A cutting board is next to you.\nAction: put tomato on cutting board"
    ),
)


def main() -> None:
    console = Console()
    start = time.perf_counter()
    prior = HFPrior.default()
    console.print(f"loaded the embedded SmolLM2-135M-Instruct prior in {time.perf_counter() - start:.1f}s")
    prompt = PromptTemplate()(STATE)
    console.print(f"[dim]{prompt}[/dim]")
    scores = prior.score([prompt], [STATE.admissible])
    table = Table(title="p_LLM(a | s)")
    table.add_column("rank")
    table.add_column("command")
    table.add_column("tokens", justify="right")
    table.add_column("prob", justify="right")
    for rank, j in enumerate(np.argsort(-scores.logprobs[0]), 1):
        table.add_row(str(rank), STATE.admissible[j], str(scores.num_tokens[0][j]), f"{np.exp(scores.logprobs[0][j]):.3f}")
    console.print(table)


if __name__ == "__main__":
    main()
