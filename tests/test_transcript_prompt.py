"""TranscriptPrompt: the episode so far, appended to, dropped in blocks when over its budget."""

from __future__ import annotations

import pytest

from prior_wrappers.prompts import PromptTemplate, TextState, TranscriptPrompt


def state(m: int, **kwargs) -> TextState:
    """Step m of an episode: observations "o0", "o1", ..., actions "a0", "a1", ..."""
    return TextState(observation=f"o{m}", admissible=["a"], task="win", history=tuple((f"o{i}", f"a{i}") for i in range(m)),
                     **kwargs)


def test_the_transcript_extends_step_by_step_and_drops_a_block_when_full():
    # a turn "Observation: o1\nAction: a1\n" is 27 characters, the current "Observation: o5\nAction:" 23:
    # three turns and the current one (104) exceed 100, and a drop keeps what fits in 50 (one turn)
    prompt = TranscriptPrompt(max_chars=100, keep_fraction=0.5)
    starts = [prompt.start(state(m)) for m in range(9)]
    assert starts == [0, 0, 0, 2, 2, 4, 4, 6, 6]
    texts = [prompt(state(m)) for m in range(9)]
    for m in range(8):
        extends = texts[m + 1].startswith(texts[m])
        assert extends == (starts[m + 1] == starts[m]), m
        if extends:  # step m+1 adds the action taken and the new observation, nothing else
            assert texts[m + 1][len(texts[m]):] == f" a{m}\nObservation: o{m + 1}\nAction:"
    assert texts[4] == (
        "You are playing a text game. Choose the next action.\nTask: win\n(earlier steps omitted)\n"
        "Observation: o2\nAction: a2\nObservation: o3\nAction: a3\nObservation: o4\nAction:"
    )
    assert "omitted" not in texts[2]


def test_transcript_layout_matches_the_template_until_its_first_drop():
    example = "Observation: a hall\nAction: go north"
    s = state(3, example=example)
    assert TranscriptPrompt()(s) == PromptTemplate(history=3)(s)
    assert TranscriptPrompt(use_example=False)(s) == PromptTemplate(history=3, use_example=False)(s)
    assert "Example:\n" + example in TranscriptPrompt()(s)


def test_a_current_observation_larger_than_the_budget_drops_every_turn():
    big = TextState(observation="x" * 500, admissible=["a"], history=(("o0", "a0"), ("o1", "a1")))
    prompt = TranscriptPrompt(max_chars=100)
    assert prompt.start(big) == 2
    assert prompt(big).endswith("(earlier steps omitted)\nObservation: " + "x" * 500 + "\nAction:")


def test_bad_budgets_are_refused():
    with pytest.raises(ValueError, match="max_chars"):
        TranscriptPrompt(max_chars=0)
    with pytest.raises(ValueError, match="keep_fraction"):
        TranscriptPrompt(keep_fraction=1.0)
