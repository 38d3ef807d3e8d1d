"""The TextWorld evidence benchmark (every arm given the same walkthroughs): its milestones, ratios and CSV against
hand computation, and one quick run of every arm with a keyword scorer in place of the LLM."""

from __future__ import annotations

import pytest

pytest.importorskip("textworld", reason="needs the textworld extra")

from benchmarks.evidence_textworld import Run, append_run, main, plan, read_runs, report  # noqa: E402


def _run(arm: str, seed: int, win_at: int | None, n: int = 2, budget: int = 400) -> Run:
    """A run evaluated every 100 steps, half the points at 100, all from ``win_at`` (None: never)."""
    steps = list(range(0, budget + 1, 100))
    returns = [0.0 if s == 0 else 1.0 if win_at is not None and s >= win_at else 0.5 for s in steps]
    return Run("cooking-easy", 1, arm, 0 if arm in ("uniform", "zero") else n, seed, steps, returns,
               [float(s) for s in steps], budget)  # fmt: skip


def test_steps_to_a_milestone_is_the_first_evaluation_reaching_it_else_the_budget():
    assert _run("uniform", 0, 300).steps_to(1.0) == (300, True)
    assert _run("uniform", 0, 300).steps_to(0.5) == (100, True)
    assert _run("uniform", 0, None).steps_to(1.0) == (400, False)


def test_arms_without_walkthroughs_and_the_prompt_arm_run_once_the_others_once_per_count():
    assert plan(["uniform", "demos", "zero", "prompt", "lora"], [2, 16]) == [
        ("uniform", 0), ("demos", 2), ("demos", 16), ("zero", 0), ("prompt", 2), ("lora", 2), ("lora", 16)]  # fmt: skip


def test_report_compares_the_best_llm_arm_with_uniform_and_the_demonstrations_only_arm(capsys):
    runs = [_run("uniform", s, w) for s, w in enumerate([400, 400, None, 400])]  # IQM of 400s: 400, one never
    runs += [_run("demos", s, 200) for s in range(4)]
    runs += [_run("zero", s, 300) for s in range(4)]
    runs += [_run("prompt", s, 100) for s in range(4)]  # the best LLM arm
    runs += [_run("lora", s, 200) for s in range(4)]
    figures = report(runs)
    out = capsys.readouterr().out
    assert "best LLM arm by IQM steps to a win: prompt N=2" in out
    assert figures["tw_steps_ratio_cooking-easy"] == ">=4.00"  # uniform 400 (a seed never won) / prompt 100
    assert figures["llm_vs_demos_cooking-easy"] == "2.00"  # demos 200 / prompt 100
    assert "tw_buffer_ratio_cooking-easy" not in figures  # no buffer arm ran
    assert "intervals do not overlap" in out
    more = report([*runs, *(_run("demos", s, 100, n=16) for s in range(4))])  # no LLM arm had the 16
    assert not any(key.endswith("_n16") for key in more) and more["llm_vs_demos_cooking-easy"] == "2.00"


def test_csv_round_trip_keeps_every_run_once(tmp_path):
    path = tmp_path / "e.csv"
    runs = [_run("uniform", 0, 300), _run("lora", 1, None, n=16)]
    for run in runs:
        append_run(run, path)
    append_run(runs[0], tmp_path / "f.csv")  # the same run in another file: kept once
    back = read_runs([path, tmp_path / "f.csv"])
    assert len(back) == 2
    lora = next(r for r in back if r.arm == "lora")
    assert (lora.walkthroughs, lora.seed, lora.steps_to(1.0), lora.label) == (16, 1, (400, False), "lora N=16")
    assert lora.returns == runs[1].returns


def test_every_arm_runs_from_evidence_py_resumes_and_reports_from_its_csv(tmp_path, capsys):
    from benchmarks import evidence

    evidence.main(["--parts", "textworld", "--prior", "oracle", "--seeds", "1", "--tw-budget", "100",
                   "--walkthroughs", "2", "--out", str(tmp_path)])  # fmt: skip
    out = capsys.readouterr().out
    for label in ("uniform", "buffer N=2", "demos N=2", "zero", "prompt N=2", "lora N=2"):
        assert f"    {label} " in out, label
    figures = dict(pair.split("=") for pair in out.strip().splitlines()[-1].split())
    assert {"tw_steps_ratio_cooking-easy", "llm_vs_demos_cooking-easy", "tw_buffer_ratio_cooking-easy"} <= set(figures)
    assert (tmp_path / "evidence_textworld_cooking-easy_seed1.png").is_file()
    csv_file = tmp_path / "evidence_textworld.csv"
    rows = csv_file.read_text().splitlines()
    again = main(["--keyword-prior", "--seeds", "1", "--budget", "100", "--walkthroughs", "2", "--out", str(tmp_path)])
    assert csv_file.read_text().splitlines() == rows  # every run was in the CSV: nothing ran again
    assert " seed 0: " not in capsys.readouterr().out
    assert again == {k: v for k, v in figures.items() if "textworld" not in k}
    evidence.main(["--report-from", str(csv_file)])
    assert capsys.readouterr().out.strip().splitlines()[-1] == out.strip().splitlines()[-1]


def test_walkthrough_buffer_holds_the_walkthroughs_transitions(tmp_path):
    from benchmarks.evidence_textworld import Settings, Sources, vec_env, walkthrough_buffer
    from prior_wrappers import UniformPrior
    from prior_wrappers.sb3 import DQNPrior

    sources = Sources(Settings(keyword_prior=True))
    demos = sources.demonstrations(2)
    env = vec_env(sources, [sources.game], UniformPrior(), None, 0)
    model = DQNPrior("CandidatePolicy", env, buffer_size=1000, device="cpu")
    buffer = walkthrough_buffer(sources, model, 2)
    steps = sum(len(e.steps) for e in demos.episodes)
    assert buffer.pos == steps and not buffer.full  # online transitions go behind them
    assert buffer.dones[:steps].sum() == 2  # two episodes, each ending in a win
    assert buffer.rewards[:steps].sum() == pytest.approx(sum(e.episode_return for e in demos.episodes))
    env.close()
