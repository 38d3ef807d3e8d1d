"""benchmarks/evidence.py: its milestones, its report and one tiny run end to end (keyword prior, no LLM)."""

from __future__ import annotations

import csv
import importlib.util
import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("evidence", ROOT / "benchmarks" / "evidence.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["evidence"] = module
    spec.loader.exec_module(module)
    return module


def test_milestones_are_the_first_evaluation_that_reaches_each_and_the_budget_otherwise(bench):
    run = bench.Run("DQN", 0, [0, 500, 1000, 1500], [0.0, 0.2, 0.8, 0.9], [-0.2, 0.5, 1.1, 1.9], wall_s=1.0)
    assert bench.milestones(run, 2000, half_return=1.0) == {
        "win": (500, True),
        "half return": (1000, True),
        "0.9 success": (1500, True),
    }
    never = bench.Run("DQN", 1, [0, 500], [0.0, 0.0], [-0.2, -0.1], wall_s=1.0)
    assert bench.milestones(never, 2000, half_return=1.0)["win"] == (2000, False)


def test_report_gives_the_ratio_of_iqms_and_marks_bounds(bench, capsys):
    def run(arm, seed, step_to_success):
        success = [0.0 if s < step_to_success else 1.0 for s in (0, 1000, 2000, 3000, 4000)]
        return bench.Run(arm, seed, [0, 1000, 2000, 3000, 4000], success, success, wall_s=1.0)

    runs = [run("DQN", s, 4000) for s in range(4)] + [run("DQN-Prior", s, 1000) for s in range(4)]
    figures = bench.report(runs, budget=4000, expert=2.0)
    assert figures["zero_shot_steps_ratio"] == "4.00"  # measured on both sides: no bound mark
    assert figures["zero_shot_p_improvement"] == "1.00"
    # the baseline never gets there: the ratio is a lower bound
    runs = [run("DQN", s, 10**9) for s in range(4)] + [run("DQN-Prior", s, 1000) for s in range(4)]
    assert bench.report(runs, budget=4000, expert=2.0)["zero_shot_steps_ratio"] == ">=4.00"
    assert ">=4000" in capsys.readouterr().out


def test_the_ratio_is_baseline_over_prior_whichever_arm_ran_first(bench):
    def run(arm, seed, step_to_success):
        success = [0.0 if s < step_to_success else 1.0 for s in (0, 1000, 2000, 3000, 4000)]
        return bench.Run(arm, seed, [0, 1000, 2000, 3000, 4000], success, success, wall_s=1.0)

    # the default --arms runs DQN-Prior first: the ratio must still be DQN's steps over DQN-Prior's
    runs = [run("DQN-Prior", s, 1000) for s in range(4)] + [run("DQN", s, 4000) for s in range(4)]
    figures = bench.report(runs, budget=4000, expert=2.0)
    assert figures["zero_shot_steps_ratio"] == "4.00" and figures["zero_shot_p_improvement"] == "1.00"


def test_each_baseline_is_compared_with_its_own_prior_arm(bench, capsys):
    def run(arm, seed, step_to_success):
        success = [0.0 if s < step_to_success else 1.0 for s in (0, 1000, 2000, 3000, 4000)]
        return bench.Run(arm, seed, [0, 1000, 2000, 3000, 4000], success, success, wall_s=1.0)

    runs = [run(arm, s, steps) for arm, steps in (("PPO-Prior", 2000), ("DQN", 4000), ("PPO", 3000),
                                                   ("DQN-Prior", 1000)) for s in range(4)]  # fmt: skip
    figures = bench.report(runs, budget=4000, expert=2.0)
    assert figures["zero_shot_steps_ratio"] == "4.00" and figures["zero_shot_steps_ratio_ppo"] == "1.50"
    assert "ratio DQN / DQN-Prior 4.00" in capsys.readouterr().out
    # a baseline without its prior arm is reported but compared with nothing
    figures = bench.report([r for r in runs if r.arm != "PPO-Prior"], budget=4000, expert=2.0)
    assert "zero_shot_steps_ratio_ppo" not in figures and figures["zero_shot_steps_ratio"] == "4.00"
    assert "PPO        3000" in capsys.readouterr().out


def test_a_tiny_run_writes_its_curves_and_ends_with_the_summary_line(bench, tmp_path, capsys):
    bench.main(["--parts", "online", "--prior", "oracle", "--seeds", "1", "--budget", "300", "--eval-freq", "150",
                "--no-cache", "--game-seed", "3", "--out", str(tmp_path), "--arms", "DQN-Prior", "DQN"])  # fmt: skip
    out = capsys.readouterr().out
    assert "game seed 3" in out and "torch threads 1" in out
    assert re.search(r"zero_shot_steps_ratio=\S+ zero_shot_steps_ratio_ci=\S+ zero_shot_p_improvement=\S+$", out)
    rows = list(csv.DictReader(open(tmp_path / "evidence_curves.csv")))
    # an evaluation before training and one each 150 steps (counted in vector steps of 4 envs: 152, 300)
    assert [(r["arm"], r["steps"]) for r in rows] == [(a, s) for a in ("DQN-Prior", "DQN") for s in ("0", "152", "300")]
    assert (tmp_path / "evidence_success.png").stat().st_size > 0 and (tmp_path / "evidence_wall_time.png").is_file()
    assert all(float(r["seconds"]) >= 0 for r in rows)


def test_a_tiny_ppo_run_compares_ppo_with_ppo_prior(bench, tmp_path, capsys):
    bench.main(["--parts", "online", "--prior", "oracle", "--seeds", "1", "--budget", "1024", "--eval-freq", "512",
                "--no-cache", "--out", str(tmp_path), "--arms", "PPO-Prior", "PPO", "--stop-after", "2"])  # fmt: skip
    out = capsys.readouterr().out
    assert "ratio PPO / PPO-Prior" in out and "DQN" not in out.split("steps to each milestone")[1]
    assert re.search(r"zero_shot_steps_ratio_ppo=\S+ zero_shot_steps_ratio_ppo_ci=\S+ zero_shot_p_improvement_ppo=\S+$", out)
    rows = list(csv.DictReader(open(tmp_path / "evidence_curves.csv")))
    # greedy play with the keyword prior alone already wins (PPO-Prior's policy starts at the prior, PPO's at
    # uniform): with --stop-after 2, PPO-Prior stops after its second evaluation at 0.9 success, PPO runs its budget
    assert [(r["arm"], r["steps"], r["success_rate"]) for r in rows if r["arm"] == "PPO-Prior"] == [
        ("PPO-Prior", "0", "1.000"), ("PPO-Prior", "512", "1.000")]  # fmt: skip
    assert [(r["steps"], float(r["success_rate"]) < 0.9) for r in rows if r["arm"] == "PPO"] == [
        ("0", True), ("512", True), ("1024", True)]  # fmt: skip


def test_resume_keeps_the_finished_runs_and_runs_only_the_rest(bench, tmp_path, capsys):
    def main(seeds: str, *more: str) -> list[dict]:
        bench.main(["--parts", "online", "--prior", "oracle", "--seeds", seeds, "--budget", "200", "--eval-freq", "100",
                    "--no-cache", "--out", str(tmp_path), "--arms", "DQN", *more])  # fmt: skip
        return list(csv.DictReader(open(tmp_path / "evidence_curves.csv")))

    first = main("1")
    rows = main("2", "--resume")
    assert [r["seed"] for r in rows] == ["0"] * 3 + ["1"] * 3
    assert rows[:3] == first  # seed 0 was read back, not trained again (its wall times are the first run's)
    assert "resuming: 1 finished runs" in capsys.readouterr().out
    with pytest.raises(ValueError, match="game seed 1, not 2"):
        main("2", "--resume", "--game-seed", "2")


def test_report_from_a_saved_csv_gives_the_same_summary(bench, tmp_path, capsys):
    bench.main(["--parts", "online", "--prior", "oracle", "--seeds", "1", "--budget", "200", "--eval-freq", "100",
                "--no-cache", "--out", str(tmp_path), "--arms", "DQN-Prior", "DQN"])  # fmt: skip
    first = capsys.readouterr().out.strip().splitlines()[-1]
    runs, game_seed = bench.read_curves(tmp_path / "evidence_curves.csv")
    assert game_seed == 1 and [(r.arm, r.seed, len(r.steps)) for r in runs] == [("DQN-Prior", 0, 3), ("DQN", 0, 3)]
    bench.main(["--report-from", str(tmp_path / "evidence_curves.csv"), "--budget", "200"])
    assert capsys.readouterr().out.strip().splitlines()[-1] == first
    # the arms run apart (one file each): the same report, and their curves and figures written together
    rows = open(tmp_path / "evidence_curves.csv").read().splitlines()
    for arm in ("DQN", "DQN-Prior"):
        lines = [rows[0]] + [row for row in rows[1:] if row.startswith(arm + ",")]
        (tmp_path / f"{arm}.csv").write_text("\n".join(lines) + "\n")
    merged = tmp_path / "merged"
    bench.main(["--report-from", str(tmp_path / "DQN.csv"), str(tmp_path / "DQN-Prior.csv"), "--budget", "200",
                "--out", str(merged)])  # fmt: skip
    assert capsys.readouterr().out.strip().splitlines()[-1] == first
    assert (merged / "evidence_success.png").is_file() and len(open(merged / "evidence_curves.csv").readlines()) == 7
    other = tmp_path / "other.csv"  # another game seed's runs
    other.write_text("\n".join([rows[0]] + [row.replace(",0,1,", ",0,2,", 1) for row in rows[1:]]) + "\n")
    with pytest.raises(SystemExit):
        bench.main(["--report-from", str(tmp_path / "DQN.csv"), str(other), "--budget", "200"])
    assert "different game seeds [1, 2]" in capsys.readouterr().err


# ------------------------------------------------------------------------------------------------------- offline
@pytest.fixture(scope="module")
def offline(bench):
    from benchmarks import evidence_offline

    return evidence_offline


def test_data_needed_is_the_smallest_size_that_reaches_the_threshold(offline):
    returns = [(100, 0.5), (200, 1.9), (400, 1.2), (800, 2.0)]
    runs = [offline.OfflineRun("CQL", 0, n, ret, 0.0, 1.0) for n, ret in returns]
    assert offline.data_needed(runs, 1.8, [100, 200, 400, 800]) == (200, True)  # the first size that reaches it
    assert offline.data_needed(runs, 2.5, [100, 200, 400, 800]) == (800, False)  # never: the largest, a bound


def test_offline_report_gives_baseline_data_over_prior_data(offline, capsys):
    def runs(arm, seed, first):  # reaches 0.9 x expert (2.0) from dataset size `first` on
        return [offline.OfflineRun(arm, seed, n, 2.0 if n >= first else 0.5, 1.0, 1.0) for n in (100, 200, 400, 800)]

    both = [r for s in range(4) for r in runs("CQL-Prior", s, 100)] + [r for s in range(4) for r in runs("CQL", s, 400)]
    figures = offline.report(both, expert=2.0, sizes=[100, 200, 400, 800])
    assert figures["zero_shot_data_ratio"] == "4.00" and figures["zero_shot_data_ratio_ci"] == "4.00-4.00"
    never = [r for s in range(4) for r in runs("CQL", s, 10**9)]
    never += [r for s in range(4) for r in runs("CQL-Prior", s, 200)]
    assert offline.report(never, expert=2.0, sizes=[100, 200, 400, 800])["zero_shot_data_ratio"] == ">=4.00"
    assert ">=800" in capsys.readouterr().out


def test_a_tiny_offline_run_trains_both_arms_on_nested_datasets(bench, tmp_path, capsys):
    bench.main(["--parts", "offline", "--prior", "oracle", "--seeds", "1", "--sizes", "40", "120",
                "--gradient-steps", "30", "--no-cache", "--game-seed", "3", "--out", str(tmp_path)])  # fmt: skip
    out = capsys.readouterr().out
    assert re.search(r"zero_shot_data_ratio=\S+ zero_shot_data_ratio_ci=\S+$", out)
    rows = list(csv.DictReader(open(tmp_path / "evidence_offline.csv")))
    assert [(r["arm"], r["transitions"]) for r in rows] == [(a, n) for n in ("40", "120") for a in ("CQL-Prior", "CQL")]
    assert all(r["game_seed"] == "3" for r in rows) and (tmp_path / "evidence_offline.png").stat().st_size > 0
    # its rows, read back, report the same figures
    bench.main(["--report-from", str(tmp_path / "evidence_offline.csv")])
    assert capsys.readouterr().out.strip().splitlines()[-1] == out.strip().splitlines()[-1]
    # a run stopped before CQL finished the larger size: only the size both arms finished is reported
    stopped = tmp_path / "stopped" / "evidence_offline.csv"
    stopped.parent.mkdir()
    stopped.write_text("".join(open(tmp_path / "evidence_offline.csv").readlines()[:-1]))
    bench.main(["--report-from", str(stopped), "--out", str(tmp_path / "report")])
    assert (tmp_path / "report" / "evidence_offline.png").stat().st_size > 0
    report = capsys.readouterr().out
    assert "2 offline runs of game seed 3, sizes [40]" in report and ">=120" not in report


def flat_scores(prompt, commands):
    return [0.0] * len(commands)


def test_runs_of_one_game_seed_in_parallel_share_their_cached_scores(bench, tmp_path):
    from prior_wrappers import CachedPrior, FunctionPrior

    def resources():  # what Resources holds for the LLM arm, with a function standing in for the LLM
        res = bench.Resources("none", None, None)
        res.llm = CachedPrior(FunctionPrior(flat_scores))
        res.cache = res.llm.file_for(tmp_path, "evidence_hard_kitchen_0")
        return res

    online, offline = resources(), resources()  # both started before either saved
    online.llm.score(["state seen online"], [["chop tomato", "wait"]])
    online.save()
    offline.llm.score(["state seen offline"], [["chop tomato", "wait"]])
    offline.save()  # must keep what the other process saved meanwhile
    assert resources().llm.load(online.cache) == 2


def test_the_command_lines_hard_kitchen_settings_are_the_benchmarks(bench):
    from prior_wrappers.cli.config import config_path, read_yaml

    config = read_yaml(config_path(bench.HARD_KITCHEN))
    for algo, arm in (("dqn", "DQN"), ("dqn-prior", "DQN-Prior"), ("ppo", "PPO"), ("ppo-prior", "PPO-Prior")):
        section = config[algo]
        assert {key: section[key] for key in bench.CHOSEN[arm]} == bench.CHOSEN[arm]
        assert section["wrapper"] == {"k": bench.K, "history": 0, "encoder": f"hashing:{bench.FEATURE_DIM}"}
        assert (section["n_envs"], section["n_timesteps"]) == (bench.N_ENVS, 20_000)
