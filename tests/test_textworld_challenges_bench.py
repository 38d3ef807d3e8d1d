"""The TextWorld-challenge benchmark's bookkeeping against hand computation: steps to a threshold with runs that
never get there counted as the budget (and shown as bounds), the ratios, and the offline data ratio."""

from __future__ import annotations

import pytest

pytest.importorskip("textworld", reason="needs the textworld extra")

from benchmarks.textworld_challenges import offline_report, ratio_text, steps_to, summarize  # noqa: E402
from prior_wrappers.evaluation import LearningCurve  # noqa: E402


def test_runs_that_never_reach_a_threshold_count_as_the_budget_and_make_bounds():
    assert summarize([100, 300], 1000)[:2] == (200.0, False)
    mean, bound, text = summarize([100, None], 1000)
    assert (mean, bound) == (550.0, True) and text == ">=550 [100, >=1000]"
    prior, base = summarize([50, 150], 1000), summarize([None, None], 1000)
    assert ratio_text(base, prior) == ">=10.0"  # the baseline never got there: a lower bound
    assert ratio_text(prior, base) == "<=0.1"
    assert ratio_text(base, base) == "n/a (neither)"
    assert ratio_text(summarize([400], 1000), summarize([100], 1000)) == "4.0"
    assert ratio_text(summarize([400], 1000), summarize([0], 1000)) == "inf (prior at step 0)"


def test_win_threshold_reads_success_and_point_thresholds_read_the_normalised_return():
    curve = LearningCurve("x", 0, steps=[0, 50, 100], success_rate=[0.0, 0.0, 1.0], mean_return=[0.0, 0.6, 1.0])
    assert steps_to(curve, 1.0) == 100 and steps_to(curve, 0.5) == 50 and steps_to(curve, 0.25) == 50


def test_offline_data_ratio_is_the_smallest_dataset_reaching_ninety_percent_of_the_expert():
    rows = [
        dict(episodes=n, transitions=10 * n, arm=arm, seed=0, success=float(r >= 0.9), ret=r)
        for n, prior_ret, base_ret in [(1, 0.95, 0.1), (2, 1.0, 0.5), (4, 1.0, 0.92)]
        for arm, r in (("CQL-Prior", prior_ret), ("CQL", base_ret))
    ]
    text, ratio = offline_report([{"offline": rows, "expert_return": 1.0}])
    assert ratio == "4.0" and "CQL-Prior 1, CQL 4" in text
    rows_never = [r | {"ret": 0.0} if r["arm"] == "CQL" else r for r in rows]
    assert offline_report([{"offline": rows_never, "expert_return": 1.0}])[1] == ">=4.0"


def test_run_store_resumes_only_under_the_same_settings(tmp_path):
    from benchmarks.challenge_runs import Config, RunStore

    path = tmp_path / "runs.jsonl"
    RunStore(path, Config(steps=600)).put("online/DQN/True/0", {"steps": [0, 600]})
    again = RunStore(path, Config(steps=600, seeds=[5], families=["coin"]))  # what to run may change
    assert again.get("online/DQN/True/0") == {"steps": [0, 600]}
    assert RunStore(path, Config(steps=700)).get("online/DQN/True/0") is None  # how to run may not


def _run(prior: bool, seed: int, steps: list[int], returns: list[float], budget: int | None = None) -> dict:
    row = dict(label="x", seed=seed, steps=steps, success_rate=[float(r >= 1.0) for r in returns], mean_return=returns,
               algo="DQN", prior=prior, game="g")
    return row | ({"budget": budget} if budget else {})


def test_a_longer_baseline_budget_turns_the_bound_into_a_measured_ratio_and_auc_stays_on_the_common_budget():
    from benchmarks.challenge_runs import Config
    from benchmarks.textworld_challenges import online_report

    cfg = Config(steps=600, algos=["DQN"])
    prior = [_run(True, s, [0, 200, 600], [0.0, 1.0, 1.0]) for s in (0, 1)]
    # the baseline wins at 3000 in one seed and never in 6000 steps in the other: mean >= 4500, ratio >= 22.5
    long = [_run(False, 0, [0, 600, 3000, 6000], [0.0, 0.5, 1.0, 1.0], 6000),
            _run(False, 1, [0, 600, 3000, 6000], [0.0, 0.5, 0.5, 0.5], 6000)]
    text, ratios = online_report([{"preset": "fam", "max_score": 1.0, "online": prior + long}], cfg)
    assert ratios["online_steps_ratio_fam"] == ">=22.5"
    assert "[3000, >=6000]" in text
    won = [long[0], long[0] | {"seed": 1}]
    assert online_report([{"preset": "fam", "max_score": 1.0, "online": prior + won}], cfg)[1][
        "online_steps_ratio_fam"] == "15.0"  # 3000 / 200, measured
    auc_row = next(line for line in text.splitlines() if "AUC" in line).split()
    # over the first 600 steps only: baseline 0 until 600 -> 0.00; prior 0 for 200 steps then 1 -> 400/600
    assert auc_row[3:5] == ["0.00", "0.67"]


def test_extended_evaluation_points_and_exploration_kept_in_absolute_steps():
    from benchmarks.challenge_runs import Config, extended_eval_at

    cfg = Config(steps=600)
    assert extended_eval_at(cfg, 6000) == [0, 50, 100, 200, 300, 450, 600, 900, 1200, 1800, 2400, 3600, 4800, 6000]
    assert extended_eval_at(cfg, 1000) == [0, 50, 100, 200, 300, 450, 600, 900, 1000]


def test_a_longer_baseline_budget_keeps_the_other_stored_runs(tmp_path):
    from benchmarks.challenge_runs import Config, RunStore

    path = tmp_path / "runs.jsonl"
    RunStore(path, Config(steps=600)).put("online/DQN/True/0", {"steps": [0, 600]})
    assert RunStore(path, Config(steps=600, baseline_steps=6000)).get("online/DQN/True/0") == {"steps": [0, 600]}
    assert RunStore(path, Config(steps=600, prior_steps=2400)).get("online/DQN/True/0") == {"steps": [0, 600]}


def test_a_field_added_later_keeps_the_stored_runs_while_it_has_its_default(tmp_path):
    from benchmarks.challenge_runs import Config, RunStore

    path = tmp_path / "runs.jsonl"
    RunStore(path, Config(), "offline").put("offline/x", 1)
    assert RunStore(path, Config(offline_conservative="logsumexp"), "offline").get("offline/x") == 1
    assert RunStore(path, Config(offline_conservative="prior_weighted"), "offline").get("offline/x") is None


def test_each_part_is_keyed_by_the_settings_it_depends_on_only(tmp_path):
    from benchmarks.challenge_runs import Config, RunStore

    online, offline = tmp_path / "on.jsonl", tmp_path / "off.jsonl"
    RunStore(online, Config(), "online").put("online/DQN/True/0", 1)
    RunStore(offline, Config(), "offline").put("offline/x", 2)
    # the offline family or its gradient steps do not change an online run, nor the online budget an offline one
    assert RunStore(online, Config(offline_family="cooking", offline_gradient_steps=5), "online").get("online/DQN/True/0") == 1
    assert RunStore(offline, Config(steps=60, eval_at=[0, 60]), "offline").get("offline/x") == 2
    # what they share does
    assert RunStore(online, Config(k=8), "online").get("online/DQN/True/0") is None
    assert RunStore(offline, Config(k=8), "offline").get("offline/x") is None
    assert RunStore(offline, Config(offline_family="cooking"), "offline").get("offline/x") is None
