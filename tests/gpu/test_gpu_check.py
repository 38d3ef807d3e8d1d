"""benchmarks/gpu_check.py on the CPU: its ``--smoke`` run (tiny model, the CUDA tests skipped) goes through every
step and ends with its key=value summary; a missing wheel stops it at once, naming it; its parsing of pytest's
JUnit XML and of the targets."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from gpu_support import ROOT

sys.path.insert(0, str(ROOT / "benchmarks"))

import gpu_check  # noqa: E402

SCRIPT = str(ROOT / "benchmarks" / "gpu_check.py")


def summary(stdout: str) -> dict[str, str]:
    return gpu_check.key_values(stdout.strip().splitlines()[-1])


def test_smoke_run_ends_with_its_summary(tmp_path: Path):
    done = subprocess.run([sys.executable, SCRIPT, "--smoke", "--out", str(tmp_path)], cwd=ROOT, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert done.stdout.startswith("machine: python=")
    got = summary(done.stdout)
    assert got["gpu_check"] == "smoke" and got["bench_tiny"] == "ok" and got["targets_met"] == "n/a"
    assert got["gpu_tests"] == ("passed" if got["gpu"] != "none" else "skipped")
    assert int(got["tests_skipped"]) + int(got["tests_passed"]) >= 7 and got["tests_failed"] == "0"
    assert float(got["engine_tiny_candidates_per_s"]) > 0 and float(got["tokens_per_s_tiny"]) > 0
    assert float(got["speedup_tiny_vs_naive"]) > 1 and got["naive_timed_tiny"] == "24/480"
    assert float(got["max_abs_diff_bf16_vs_fp32_per_token_tiny"]) <= gpu_check_tolerance()
    assert (tmp_path / "summary.txt").read_text().strip() == done.stdout.strip().splitlines()[-1]
    assert {"gpu_tests.xml", "pytest.log", "throughput_tiny.log", "machine.txt"} <= {p.name for p in tmp_path.iterdir()}


def gpu_check_tolerance() -> float:
    from offline_model import TOLERANCE_PER_TOKEN

    return TOLERANCE_PER_TOKEN["bfloat16"]


def test_a_missing_wheel_stops_the_check_at_once_naming_it(tmp_path: Path):
    code = ("import runpy, sys; sys.modules['gymnasium'] = None; "  # as on the GPU image without the wheels
            f"sys.argv = ['gpu_check.py', '--smoke', '--out', {str(tmp_path)!r}]; "
            f"runpy.run_path({SCRIPT!r}, run_name='__main__')")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert "gymnasium" in done.stderr and "benchmarks/GPU.md" in done.stderr and "--no-index" in done.stderr
    # SB3 and sb3-contrib import gymnasium: all three are named
    assert summary(done.stdout) == {"gpu_check": "smoke", "gpu_tests": "not_run",
                                    "missing": "gymnasium,stable-baselines3,sb3-contrib"}
    assert not list(tmp_path.iterdir())  # nothing ran


def test_pytest_outcomes_from_junit_xml(tmp_path: Path):
    xml = tmp_path / "tests.xml"

    def outcome(tests: int, failures: int, errors: int, skipped: int, code: int | None) -> dict[str, str]:
        xml.write_text(f'<testsuites><testsuite name="pytest" tests="{tests}" failures="{failures}" '
                       f'errors="{errors}" skipped="{skipped}"/></testsuites>')
        return gpu_check.pytest_outcome(xml, code)

    assert outcome(7, 0, 0, 0, 0) == {"gpu_tests": "passed", "tests_passed": "7", "tests_failed": "0",
                                      "tests_skipped": "0"}
    assert outcome(7, 1, 1, 0, 1)["gpu_tests"] == "failed" and outcome(7, 1, 1, 0, 1)["tests_passed"] == "5"
    assert outcome(7, 0, 0, 7, 0)["gpu_tests"] == "skipped"
    assert outcome(7, 0, 0, 0, None)["gpu_tests"] == "timeout"
    xml.unlink()
    assert gpu_check.pytest_outcome(xml, 4)["gpu_tests"] == "error"  # pytest could not even collect


def test_targets_are_the_issues_for_the_7b_geometry():
    met = {"engine_7b_candidates_per_s": "2400.0", "speedup_7b_vs_naive": "35.2",
           "max_abs_diff_bf16_vs_fp32_per_token_7b": "2.1e-02"}
    assert gpu_check.targets(met) == ("yes", [])
    assert gpu_check.targets({**met, "engine_7b_candidates_per_s": "1500"}) == ("no", ["candidates_per_s_7b"])
    assert gpu_check.targets({**met, "speedup_7b_vs_naive": "12"}) == ("no", ["speedup_7b"])
    assert gpu_check.targets({**met, "max_abs_diff_bf16_vs_fp32_per_token_7b": "0.5"}) == ("no", ["bf16_vs_fp32_7b"])
    assert gpu_check.targets({}) == ("no", ["candidates_per_s_7b", "speedup_7b", "bf16_vs_fp32_7b"])
