"""What the benchmark scripts share, so that each script holds only its own question.

- :func:`conditions` / :func:`print_conditions`: the line a run prints first: the load average (2 shared cores make
  timings indicative only), the Python, torch and transformers versions, torch's threads and the script's own
  settings (seeds, model, device, ...), so that a figure can be read against the machine it came from;
- :func:`load_prior`: the embedded SmolLM2-135M-Instruct (or ``--model``) in float32 unless told otherwise: the
  README's figures then reproduce on every CPU (``dtype="auto"`` would load bf16 on CPUs with native bf16);
- :func:`argument_parser` and :func:`add_model_arguments`: the script's docstring as its ``--help``, and the model
  options;
- :class:`Stopwatch` and :func:`device_sync`: wall time, and timings that wait for the GPU;
- :func:`summary_line`: the last line, ``key=value`` pairs, which the README's figures and the tests read;
- :func:`save_figure`: a one-axes figure's title, grid and legend, written as a PNG;
- :func:`save_merged`: a score cache saved with what parallel runs saved to the same file;
- :func:`collect_mixture`: an offline dataset of expert and random episodes with at least a given number of
  transitions.

Scripts run as ``python benchmarks/<name>.py`` put the repository first on ``sys.path`` and import this module as
``benchmarks.common``; it imports torch and the library only when a function needs them.
"""

from __future__ import annotations

import argparse
import importlib
import os
import platform
import sys
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DTYPE = "float32"


def load_average() -> str:
    """The 1, 5 and 15 minute load averages (``"?"`` where the OS has none)."""
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "?"


def versions() -> dict[str, str]:
    """Python's version and those of torch and transformers where installed."""
    found = {"python": platform.python_version()}
    for module in ("torch", "transformers"):
        try:
            found[module] = importlib.import_module(module).__version__
        except ImportError:
            pass
    return found


def conditions(**settings: Any) -> str:
    """``load average 0.42 0.91 1.17; python 3.11.9 torch 2.5.1 transformers 4.57.1; torch threads 2; seeds [0, 1]``:
    the machine's state and the run's settings (``settings``' names with ``_`` read as spaces)."""
    parts = [f"load average {load_average()}", " ".join(f"{name} {v}" for name, v in versions().items())]
    if "torch" in sys.modules:
        parts.append(f"torch threads {sys.modules['torch'].get_num_threads()}")
    parts += [f"{name.replace('_', ' ')} {value}" for name, value in settings.items()]
    return "; ".join(parts)


def print_conditions(**settings: Any) -> None:
    """Print :func:`conditions` (flushed: a long run shows it at once)."""
    print(conditions(**settings), flush=True)


def load_prior(model: str | Path | None = None, *, dtype: Any = DEFAULT_DTYPE, device: Any = None, **options: Any):
    """``HFPrior.from_pretrained(model)``, or the embedded SmolLM2-135M-Instruct without ``model``, in ``dtype``
    (float32 by default, see the module docstring) on ``device`` (default: CUDA where available); ``options`` go to
    :class:`~prior_wrappers.priors.hf.HFPrior`."""
    from prior_wrappers import HFPrior

    load = {"dtype": dtype, "device": device, **options}
    return HFPrior.from_pretrained(model, **load) if model else HFPrior.default(**load)


def argument_parser(doc: str | None) -> argparse.ArgumentParser:
    """An argument parser whose ``--help`` is the script's docstring, as written."""
    return argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)


def add_model_arguments(parser: argparse.ArgumentParser, *, device: bool = True, dtype: bool = True) -> None:
    """``--model`` (default: the embedded SmolLM2), and ``--device`` and ``--dtype`` (default float32) for
    :func:`load_prior`."""
    parser.add_argument("--model", default=None, help="model dir / hub id / .gguf (default: embedded SmolLM2)")
    if device:
        parser.add_argument("--device", default=None, help="cpu / cuda (default: cuda where available)")
    if dtype:
        parser.add_argument("--dtype", default=DEFAULT_DTYPE, help="float32 (default) / bfloat16 / auto")


class Stopwatch:
    """Wall time since it was made."""

    def __init__(self) -> None:
        self.start = time.perf_counter()

    @property
    def seconds(self) -> float:
        return time.perf_counter() - self.start

    def wall_time(self) -> str:
        """``"wall time 83s"``."""
        return f"wall time {self.seconds:.0f}s"


def device_sync(device: Any) -> Callable[[], None]:
    """What a timing calls before reading the clock: ``torch.cuda.synchronize`` on a CUDA device, else nothing."""
    if getattr(device, "type", str(device)).startswith("cuda"):
        import torch

        return torch.cuda.synchronize
    return lambda: None


def summary_line(values: Mapping[str, Any] | Iterable[str]) -> str:
    """Print and return the run's last line: ``key=value`` pairs (from a mapping of values already formatted, or
    from ``"key=value"`` strings)."""
    pairs = [f"{key}={value}" for key, value in values.items()] if isinstance(values, Mapping) else list(values)
    line = " ".join(pairs)
    print(line, flush=True)
    return line


def save_figure(fig: Any, ax: Any, title: str, path: Path) -> None:
    """Title, light grid and legend on ``ax``, then ``fig`` written to ``path`` (PNG, 120 dpi) and closed."""
    import matplotlib.pyplot as plt

    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def save_merged(prior: Any, path: Path) -> None:
    """Save a :class:`~prior_wrappers.CachedPrior`'s scores to ``path`` together with those another process saved
    there since it was loaded (benchmark runs of one game seed in parallel then share their scores, not overwrite)."""
    if path.is_file():
        prior.load(path)
    prior.save(path)


def train_timed(
    model: Any, curve: Any, eval_env: Any, budget: int, eval_freq: int, episodes: int, watch: Stopwatch, **stop: Any
) -> list[float]:
    """Evaluate ``model`` greedily into ``curve`` before training and every ``eval_freq`` steps while it learns for
    ``budget`` steps (``stop``: :class:`~prior_wrappers.evaluation.LearningCurveCallback`'s ``stop_after`` and
    ``stop_success``; no training if the evaluation before it already meets them); returns ``watch.seconds`` at each
    evaluation: the learning curve against wall time, the LLM's scoring included."""
    from prior_wrappers.evaluation import LearningCurveCallback, evaluate_into

    class TimedCurve(LearningCurveCallback):
        def _on_step(self) -> bool:
            before = len(self.curve.steps)
            going = super()._on_step()
            if len(self.curve.steps) > before:
                seconds.append(watch.seconds)
            return going

    evaluate_into(curve, model, eval_env, 0, episodes)
    seconds = [watch.seconds]
    callback = TimedCurve(curve, eval_env, eval_freq, episodes, **stop)
    if not callback.reached():
        model.learn(budget, callback=callback)
    return seconds


def collect_mixture(env: Any, n_transitions: int, seed: int) -> Any:
    """Episodes of the env's scripted expert (``expert_command``) and of uniform random play, half of them successful
    (:func:`~prior_wrappers.sb3.collect_expert_mixture`), at least ``n_transitions`` of them: the episode count grows
    until they hold that many. The episodes are seeded, so a larger count only adds episodes after the same ones.

    :param env: a prior-wrapped single env whose unwrapped env has ``expert_command()``.
    """
    from prior_wrappers.sb3 import CommandPolicy, collect_expert_mixture

    expert = CommandPolicy(lambda: env.unwrapped.expert_command())
    n_episodes = 8
    while True:
        data = collect_expert_mixture(env, expert, n_episodes=n_episodes, success_ratio=0.5, seed=seed)
        if len(data) >= n_transitions:
            return data
        n_episodes = int(n_episodes * 1.2 * n_transitions / max(len(data), 1)) + 2
