"""The ``prior-wrappers`` command line: train writes a complete run folder, evaluate re-attaches the prior and plays
the same episodes as the library, prior-report ranks the expert's commands, and mistakes get errors that name the
valid choices. Fast: a keyword FunctionPrior (tests/cli_priors.py) or the uniform prior, the hashing encoder."""

from __future__ import annotations

import csv
import subprocess
import sys
import zipfile
from pathlib import Path

import cli_priors
import gymnasium as gym
import numpy as np
import pytest
import torch
import yaml

from prior_wrappers import FunctionPrior, LLMPriorWrapper
from prior_wrappers.cli import main
from prior_wrappers.cli.config import ALGORITHMS, check_hyperparams, config_dir, model_kwargs, read_yaml, text_env_ids
from prior_wrappers.expert_ranking import tie_aware_metrics
from prior_wrappers.sb3 import DQNPrior, PPOPrior

TOMATO = "OvercookedTomato-v0"
FAST = ["--threads", "1", "--no-progress-bar"]
# the hashing encoder (no model), few steps, little evaluation
QUICK = ["wrapper.encoder=hashing", "eval_freq=100", "eval_episodes=2", "learning_starts=50"]


@pytest.fixture(scope="module", autouse=True)
def restore_threads():
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> Path:
    """One DQN-Prior run with the keyword prior; greedy play by the posterior's mode follows the prior."""
    runs_dir = tmp_path_factory.mktemp("runs")
    argv = ["train", "--algo", "dqn-prior", "--env", TOMATO, "--prior", "cli_priors:recipe", "--timesteps", "200"]
    assert main([*argv, "--runs-dir", str(runs_dir), *FAST, "-p", *QUICK, "predict_with_prior=true"]) == 0
    return runs_dir


def test_train_writes_a_complete_run_folder(runs):
    run = runs / f"dqn-prior_{TOMATO}_0_1"
    assert sorted(p.name for p in run.iterdir()) == [
        "config.yml", "curves.csv", "curves.png", "model.zip", "prior_cache.npz", "returns.png", "tensorboard",
    ]  # fmt: skip
    config = yaml.safe_load((run / "config.yml").read_text())
    assert config["run"]["algo"] == "dqn-prior" and config["run"]["env"] == f"prior_wrappers/{TOMATO}"
    assert config["run"]["prior"] == "cli_priors:recipe" and config["run"]["seed"] == 0
    section = config["dqn-prior"]  # the env's file with the overrides applied
    assert section["n_timesteps"] == 200 and section["predict_with_prior"] is True and section["gamma"] == 0.9
    assert section["wrapper"] == {"k": 8, "history": 0, "encoder": "hashing"}
    assert [int(r["steps"]) for r in rows(run / "curves.csv")] == [0, 100, 200]
    assert list((run / "tensorboard").glob("*/events.out.tfevents.*"))
    # the zip holds the small policy only (no LLM, no encoder), and loads
    with zipfile.ZipFile(run / "model.zip") as archive:
        assert not [n for n in archive.namelist() if "prior" in n.lower() and n != "data"]
    assert (run / "model.zip").stat().st_size < 1_000_000
    assert DQNPrior.load(run / "model.zip").predict_with_prior is True


def test_evaluate_plays_the_same_episodes_as_the_library(runs, capsys):
    run = runs / f"dqn-prior_{TOMATO}_0_1"
    assert main(["evaluate", str(run), "--episodes", "3", "--threads", "1"]) == 0
    printed = capsys.readouterr().out
    got = rows(run / "eval.csv")
    assert [int(r["seed"]) for r in got] == [10_000, 10_001, 10_002]
    # the same model behind the same wrapper and prior, played by hand
    env = LLMPriorWrapper(gym.make(f"prior_wrappers/{TOMATO}"), FunctionPrior(cli_priors.recipe), k=8,
                          encoder="hashing", history=0)  # fmt: skip
    model = DQNPrior.load(run / "model.zip", env=env)
    for r in got:
        obs, info = env.reset(seed=int(r["seed"]))
        total, done = 0.0, False
        while not done:
            obs, reward, terminated, truncated, info = env.step(int(model.predict(obs, deterministic=True)[0]))
            total, done = total + float(reward), terminated or truncated
        assert float(r["return"]) == pytest.approx(total, abs=1e-4)
        assert int(r["success"]) == int(info["is_success"]) == 1  # the prior is back: greedy play follows it
    assert "success 1.00 (3/3)" in printed and "cli_priors:recipe" in printed
    # the prior ablated: its own file, and the prior-led greedy play is gone
    assert main(["evaluate", str(run), "--episodes", "2", "--prior", "uniform", "--threads", "1"]) == 0
    assert [r["success"] for r in rows(run / "eval_prior-uniform.csv")] == ["0", "0"]
    assert len(rows(run / "eval.csv")) == 3


def test_train_again_from_a_run_config(runs):
    first = runs / f"dqn-prior_{TOMATO}_0_1"
    argv = ["train", "--config", str(first / "config.yml"), "--runs-dir", str(runs), "-n", "60", *FAST]
    assert main(argv) == 0
    second = runs / f"dqn-prior_{TOMATO}_0_2"  # the next number, never over the first
    old, new = (yaml.safe_load((r / "config.yml").read_text()) for r in (first, second))
    assert new["run"]["prior"] == old["run"]["prior"] and new["run"]["algo"] == "dqn-prior"
    assert {**old["dqn-prior"], "n_timesteps": 60} == new["dqn-prior"]
    assert (second / "model.zip").is_file()


def test_plot_puts_runs_side_by_side(runs, tmp_path, capsys):
    out = tmp_path / "comparison.png"
    assert main(["plot", str(runs / f"dqn-prior_{TOMATO}_0_1"), "-o", str(out)]) == 0
    line = next(x for x in capsys.readouterr().out.splitlines() if x.startswith("dqn-prior (cli_priors:recipe)"))
    assert line.split()[-4:] == ["1", "1.00", "1.00", "0"]  # seeds, final success, AUC, first step at success 1
    assert out.stat().st_size > 1000


def test_evaluate_refuses_other_wrapper_settings(runs, capsys):
    zip_path = runs / f"dqn-prior_{TOMATO}_0_1" / "model.zip"
    argv = ["evaluate", str(zip_path), "--env", TOMATO, "--algo", "dqn-prior", "--prior", "cli_priors:recipe"]
    assert main([*argv, "-p", "wrapper.encoder=hashing", "wrapper.k=16", "--threads", "1"]) == 2
    err = capsys.readouterr().err
    assert "k: 8 vs 16" in err and "same wrapper settings" in err


def test_ppo_schedule_and_offline_cql(tmp_path):
    out = tmp_path / "ppo"
    argv = ["train", "-a", "ppo-prior", "-e", TOMATO, "--prior", "cli_priors:recipe", "-n", "64", "-o", str(out)]
    assert main([*argv, *FAST, "-p", "wrapper.encoder=hashing", "n_steps=32", "batch_size=32", "eval_episodes=1"]) == 0
    assert callable(PPOPrior.load(out / "model.zip").alpha)  # alpha: lin_0.1 in the env's file, a schedule
    assert [int(r["steps"]) for r in rows(out / "curves.csv")] == [0, 64]
    out = tmp_path / "cql"
    argv = ["train", "-a", "cql", "-e", TOMATO, "-n", "100", "-o", str(out), *FAST]
    assert main([*argv, "-p", *QUICK[:3], "dataset.episodes=2"]) == 0
    config = yaml.safe_load((out / "config.yml").read_text())
    assert config["run"]["prior"] == "uniform" and config["cql"]["dataset"] == {"episodes": 2, "success_ratio": 0.5}
    assert (out / "dataset.npz").is_file() and (out / "model.zip").is_file()
    assert [int(r["steps"]) for r in rows(out / "curves.csv")] == [0, 100]  # gradient steps


def test_prior_report_against_uniform(tmp_path, capsys):
    uniform, recipe = tmp_path / "uniform.csv", tmp_path / "recipe.csv"
    assert main(["prior-report", TOMATO, "--prior", "uniform", "--states", "12", "-o", str(uniform)]) == 0
    assert main(["prior-report", TOMATO, "--prior", "cli_priors:recipe", "--states", "12", "-o", str(recipe)]) == 0
    printed = capsys.readouterr().out
    a, b = rows(uniform), rows(recipe)
    assert len(a) == len(b) == 12
    assert [r["expert"] for r in a] == [r["expert"] for r in b]  # the same expert states (seeded episodes)
    for r in a:  # ties broken at random: the uniform prior scores exactly the uniform column
        assert float(r["top1"]) == pytest.approx(1 / int(r["n_commands"]), abs=1e-4) == float(r["uniform_top1"])
        assert float(r["reciprocal_rank"]) == pytest.approx(float(r["uniform_mrr"]), abs=1e-4)
    assert all(r["rank"] == "1" and r["top_command"] == r["expert"] for r in b)  # the keywords know the recipe
    assert "MRR 1.00 vs" in printed and "no better than uniform" in printed


def test_tie_aware_metrics():
    assert tie_aware_metrics([0.0, 0.0, -1.0], 0) == (0.5, 1.0, 0.75, 1)
    top1, top3, rr, rank = tie_aware_metrics(np.array([1.0, 0.0, 0.0, 0.0]), 1)
    assert (top1, rank) == (0.0, 2) and top3 == pytest.approx(2 / 3)
    assert rr == pytest.approx((1 / 2 + 1 / 3 + 1 / 4) / 3)


@pytest.mark.parametrize(
    "argv, expected",
    [
        (["train", "-a", "dqn", "-e", "FrozenLake"], ["unknown env id 'FrozenLake'", "'TextFrozenLake-v0'", TOMATO]),
        (["train", "-a", "dqn-prio", "-e", TOMATO], ["unknown algorithm 'dqn-prio'", "'dqn-prior'", "ppo-prior"]),
        (["train", "-a", "dqn", "-e", TOMATO, "-p", "gama=0.9"], ["unknown hyperparameter 'gama'", "'gamma'"]),
        (["train", "-a", "dqn", "-e", TOMATO, "-p", "wrapper.kk=3"], ["'wrapper.kk'", "'k'", "history"]),
        (["train", "-a", "dqn", "-e", TOMATO, "-p", "seed=3"], ["set by --seed"]),
        (["train", "-a", "dqn", "-e", TOMATO, "-p", "dataset.episodes=3"], ["offline algorithms"]),
        (["train", "-a", "dqn", "-e", TOMATO, "-p", "n_timesteps=-5"], ["positive integer"]),
        (["train", "-a", "dqn", "-e", TOMATO, "--prior", "embedded"], ["baseline", "--algo dqn-prior"]),
        (["train", "-a", "dqn-prior", "-e", TOMATO, "--prior", "no/such/model"], ["no such model directory"]),
        (["train", "-a", "cql-prior", "-e", "TextFrozenLake-v0"], ["no hyperparameters for 'cql-prior'", "dqn-prior"]),
        (["prior-report", "TextFrozenLake-v0", "--prior", "uniform"], ["no scripted expert"]),
        (["evaluate", "no/such/run"], ["no such run folder"]),
        (["plot", "."], ["no curves.csv"]),
    ],
)
def test_errors_name_the_valid_choices(argv, expected, tmp_path, capsys):
    assert main([*argv, *(["--runs-dir", str(tmp_path)] if argv[0] == "train" else [])]) == 2
    err = capsys.readouterr().err
    for text in expected:
        assert text in err
    assert not list(tmp_path.iterdir())  # refused before any run folder was made


def test_shipped_configs_are_valid():
    files = sorted(config_dir().glob("*.yml"))
    assert "default.yml" in [f.name for f in files] and len(files) > 5
    for path in files:
        for algo, section in read_yaml(path).items():
            check_hyperparams(ALGORITHMS[algo], section, path)
            model_kwargs(section)
    assert f"prior_wrappers/{TOMATO}" in text_env_ids()


def test_module_entry_point():
    out = subprocess.run([sys.executable, "-m", "prior_wrappers", "envs"], capture_output=True, text=True, check=True)
    assert f"prior_wrappers/{TOMATO}" in out.stdout and f"{TOMATO}.yml" in out.stdout


@pytest.mark.slow
def test_prior_report_with_the_embedded_llm(tmp_path, capsys):
    out = tmp_path / "report.csv"
    assert main(["prior-report", TOMATO, "--states", "6", "--dtype", "float32", "--threads", "1", "-o", str(out)]) == 0
    got = rows(out)
    assert len(got) == 6 and "llama" in capsys.readouterr().out
    assert np.mean([float(r["reciprocal_rank"]) for r in got]) > np.mean([float(r["uniform_mrr"]) for r in got])
