"""The prior-quality benchmark's code paths with a keyword prior (no model) on Overcooked: expert states from
evaluation seeds, demonstrations from other seeds, metrics against the uniform baseline, CSV and the last line."""

from __future__ import annotations

import csv
import importlib.util
import re
import sys
from pathlib import Path

import numpy as np
import pytest

from prior_wrappers import FunctionPrior

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("prior_quality", ROOT / "benchmarks" / "prior_quality.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["prior_quality"] = module
    spec.loader.exec_module(module)
    return module


def test_expert_metrics_and_the_uniform_baseline(bench):
    logp = np.log([0.5, 0.3, 0.2])
    assert bench.expert_metrics(logp, 0) == (1.0, 1.0, 1.0, pytest.approx(0.5))
    assert bench.expert_metrics(logp, 2) == (0.0, 1.0, pytest.approx(1 / 3), pytest.approx(0.2))
    state = bench.ExpertState("o", ["a", "b", "c", "d"], "t", (), "a", "s")
    uniform = bench.uniform_metrics([state])
    assert (uniform.top1, uniform.top3, uniform.p_expert) == (0.25, 0.75, 0.25)
    assert uniform.mrr == pytest.approx((1 + 1 / 2 + 1 / 3 + 1 / 4) / 4)


def test_quick_run_on_overcooked_writes_the_csv_and_the_last_line(bench, tmp_path, capsys):
    summary = bench.main(["--fast", "--quick", "--families", "tomato", "--shots", "0", "2", "--out", str(tmp_path)])
    out = capsys.readouterr().out
    assert out.strip().splitlines()[-1] == summary
    assert re.fullmatch(r"prior_mrr_tomato=\d\.\d{3}", summary)
    rows = list(csv.DictReader(open(tmp_path / "prior_quality.csv")))
    assert {(r["shots"], r["normalization"]) for r in rows} == {(s, n) for s in ("0", "2") for n in ("token", "word", "sum")}
    assert all(r["states"] == "6" and float(r["uniform_mrr"]) < float(r["mrr"]) for r in rows)
    assert int(rows[-1]["demo_tokens"]) > 100 and rows[0]["demo_tokens"] == "0"
    assert "Scoring time per state" in out and "2 shots:" in out and "Best setting per family" in out
    best = max(float(r["mrr"]) for r in rows)
    assert summary == f"prior_mrr_tomato={best:.3f}"


def test_demonstrations_come_from_other_games_than_the_evaluation(bench, monkeypatch, tmp_path):
    seen: list[tuple[int, int]] = []
    spec = bench.FAMILIES["tomato"]
    monkeypatch.setitem(bench.FAMILIES, "tomato", bench.FamilySpec(
        "tomato", lambda first, n: (seen.append((first, n)), spec.make_env(first, n))[1], spec.max_steps,
        spec.distinct_games))
    prompts: list[str] = []
    prior = FunctionPrior(lambda p, c: (prompts.append(p), [0.0] * len(c))[1], name="recording")
    monkeypatch.setattr(bench, "keyword_prior", lambda: prior)
    bench.main(["--fast", "--quick", "--families", "tomato", "--shots", "1", "--game-seed", "3", "--out", str(tmp_path)])
    assert seen == [(100_003, 1), (3, 2)]  # evaluation seeds 100003.., demonstrations 3, 4
    assert all(p.startswith("You are playing a text game. Choose the next action.\nExample 1:\n") for p in prompts)


def test_prior_sources_side_by_side_each_trained_on_the_same_walkthroughs(bench, tmp_path, capsys):
    """Without a model (--fast): the zero-shot and in-prompt keyword prior, a BCPrior (hashing features) trained on
    the same 2 games, and their product; LoRA needs an HFPrior and says it is skipped."""
    summary = bench.main(["--fast", "--quick", "--families", "babyai-goto", "--shots", "0", "--out", str(tmp_path)])
    out = capsys.readouterr().out
    rows = list(csv.DictReader(open(tmp_path / "prior_quality.csv")))
    sources = {(r["source"], r["train_games"]) for r in rows}
    assert {("zero", "0"), ("prompt", "2"), ("bc", "2"), ("product(prompt,bc)", "2")} <= sources
    assert "lora: skipped" in out and "Prior sources side by side" in out
    bc = next(r for r in rows if r["source"] == "bc")
    assert float(bc["train_s"]) > 0 and float(bc["mrr"]) > float(bc["uniform_mrr"])
    assert summary == f"prior_mrr_babyai-goto={max(float(r['mrr']) for r in rows):.3f}"
    assert int(next(r for r in rows if r["source"] == "prompt")["demo_tokens"]) > 0


def test_overcooked_has_no_unseen_game_for_a_trained_source(bench, tmp_path, capsys):
    bench.main(["--fast", "--quick", "--families", "tomato", "--shots", "0", "--out", str(tmp_path)])
    assert "prior sources: skipped" in capsys.readouterr().out
    assert {r["source"] for r in csv.DictReader(open(tmp_path / "prior_quality.csv"))} == {"llm"}

