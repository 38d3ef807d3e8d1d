"""Figures of the third-party text suites (README's environment table): speed of the raw simulator and of our
env, admissible commands per state, uniform-random success within 100 steps, gold-path length; and, for
ScienceWorld, what scoring every valid action costs the embedded prior and how the focused candidate set changes
the prior's ranking of the gold action.

    python benchmarks/text_suites.py                      # everything (about 15-25 min on 2 shared cores)
    python benchmarks/text_suites.py --parts twx babyai   # the fast ones
    python benchmarks/text_suites.py --parts scoring --scoring-states 6

Writes ``results/text_suites.json`` and prints the tables.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from benchmarks.common import argument_parser, conditions, load_average, load_prior  # noqa: E402

SMALL_COOKING = {"numLocations": 1, "numIngredients": 2, "numDistractorItems": 2, "includeDoors": 0,
                 "limitInventorySize": 0}


def uniform_success(make_env: Any, episodes: int, steps: int = 100, seed: int = 0) -> dict[str, Any]:
    """Uniform play over the admissible commands: success rate within ``steps`` steps, commands per state."""
    rng = random.Random(seed)
    env = make_env()
    wins, counts, lengths = 0, [], []
    for episode in range(episodes):
        obs, info = env.reset(seed=seed + episode)
        terminated = truncated = False
        n = 0
        while not (terminated or truncated) and n < steps:
            counts.append(len(info["admissible_commands"]))
            obs, reward, terminated, truncated, info = env.step(rng.choice(info["admissible_commands"]))
            n += 1
        wins += bool(info["is_success"])
        lengths.append(n)
    return {"episodes": episodes, "success": wins / episodes, "admissible_mean": statistics.fmean(counts),
            "admissible_max": max(counts), "episode_steps_mean": statistics.fmean(lengths)}


def expert_paths(make_env: Any, episodes: int, seed: int = 0) -> dict[str, Any]:
    env = make_env()
    wins, lengths = 0, []
    for episode in range(episodes):
        obs, info = env.reset(seed=seed + episode)
        terminated = truncated = False
        n = 0
        while not (terminated or truncated):
            obs, reward, terminated, truncated, info = env.step(env.expert_command())
            n += 1
        wins += bool(info["is_success"])
        lengths.append(n)
    return {"episodes": episodes, "expert_success": wins / episodes, "gold_mean": statistics.fmean(lengths),
            "gold_max": max(lengths)}


def steps_per_second(step: Any, reset: Any, seconds: float) -> float:
    """Steps per second of ``step()`` (resets excluded from the clock)."""
    reset()
    n, spent = 0, 0.0
    while spent < seconds:
        start = time.perf_counter()
        done = step()
        spent += time.perf_counter() - start
        n += 1
        if done:
            reset()
    return n / spent


# ----- TextWorldExpress ---------------------------------------------------------------------------------------
def bench_twx(args: argparse.Namespace) -> dict[str, Any]:
    """Speed on the same random trajectories (uniform over the sorted valid actions, the same seeds) three ways:
    the simulator's bare ``stepJSON`` + JSON parsing (in our shared JVM), TextWorldExpress' own Python class (its
    own JVM; it also asks for the task description at every step), and our env. Median of 3 alternating rounds."""
    from textworld_express import TextWorldExpressEnv as LibraryTWX

    from envs.textworld_express_env import GAMES, TextWorldExpressEnv, _json_loads

    results = {}
    library = LibraryTWX(envStepLimit=10**9)
    for game in GAMES:
        params = None
        env = TextWorldExpressEnv(game, params, expert=False, max_episode_steps=10**9)
        env.reset(seed=0)
        server = env._sim.jvm.gateway().jvm.textworldexpress.runtime.PythonInterface()
        server.load(game, "")

        def simulator(n: int) -> float:
            rng = random.Random(0)
            r = _json_loads(server.generateNewGameJSON(rng.randrange(1000), "train", False))
            start = time.perf_counter()
            for _ in range(n):
                r = _json_loads(server.stepJSON(rng.choice(sorted(r["validActions"]))))
                if r["tasksuccess"] or r["taskfailure"]:
                    r = _json_loads(server.generateNewGameJSON(rng.randrange(1000), "train", False))
            return n / (time.perf_counter() - start)

        def lib(n: int) -> float:
            rng = random.Random(0)
            obs, infos = library.reset(seed=rng.randrange(1000), gameFold="train", gameName=game, gameParams="",
                                       generateGoldPath=False)
            start = time.perf_counter()
            for _ in range(n):
                obs, reward, done, infos = library.step(rng.choice(sorted(infos["validActions"])))
                if infos["tasksuccess"] or infos["taskfailure"]:
                    obs, infos = library.reset(seed=rng.randrange(1000))
            return n / (time.perf_counter() - start)

        def ours(n: int) -> float:
            rng = random.Random(0)
            info = env.reset(options={"game_seed": rng.randrange(1000)})[1]
            start = time.perf_counter()
            for _ in range(n):
                obs, reward, terminated, truncated, info = env.step(rng.choice(info["admissible_commands"]))
                if terminated:
                    info = env.reset(options={"game_seed": rng.randrange(1000)})[1]
            return n / (time.perf_counter() - start)

        rounds = {"simulator": [], "library": [], "env": []}
        for _ in range(3):
            for name, fn in (("simulator", simulator), ("library", lib), ("env", ours)):
                rounds[name].append(fn(args.twx_steps))
        row: dict[str, Any] = {f"{k}_steps_per_s": statistics.median(v) for k, v in rounds.items()}
        row["params"] = "defaults"
        row.update(uniform_success(lambda: TextWorldExpressEnv(game, params, expert=False), args.episodes))
        row.update(expert_paths(lambda: TextWorldExpressEnv(game, params, max_episode_steps=500), args.episodes))
        results[game] = row
        print(f"  twx {game}: {row}", flush=True)
    library.close()
    return results


# ----- ScienceWorld -------------------------------------------------------------------------------------------
def bench_sw(args: argparse.Namespace) -> dict[str, Any]:
    from scienceworld import ScienceWorldEnv as RawSW

    from envs.scienceworld_env import ScienceWorldEnv

    results = {}
    library = RawSW("", envStepLimit=10**9)
    for task in args.sw_tasks:
        # the same random trajectories (uniform over the sorted valid actions) through ScienceWorld's own class
        # and through our env; resets off the clock
        def lib(n: int) -> float:
            rng, spent = random.Random(0), 0.0
            library.load(task, 0, "", generateGoldPath=False)
            valid = library.reset()[1]["valid"]
            for _ in range(n):
                start = time.perf_counter()
                obs, reward, done, info = library.step(rng.choice(sorted(valid)))
                spent += time.perf_counter() - start
                valid = info["valid"]
                if done:
                    library.load(task, 0, "", generateGoldPath=False)
                    valid = library.reset()[1]["valid"]
            return n / spent

        def ours(n: int, candidates: str) -> float:
            rng, spent = random.Random(0), 0.0
            env = ScienceWorldEnv(task, variations=[0], expert=False, candidates=candidates, max_episode_steps=10**9)
            info = env.reset()[1]
            for _ in range(n):
                start = time.perf_counter()
                obs, reward, terminated, truncated, info = env.step(rng.choice(sorted(env._state["valid"])))
                spent += time.perf_counter() - start
                if terminated:
                    info = env.reset()[1]
            return n / spent

        rounds: dict[str, list[float]] = {"library": [], "env": [], "env_focused": []}
        for _ in range(2):
            rounds["library"].append(lib(args.sw_steps))
            rounds["env"].append(ours(args.sw_steps, "all"))
            rounds["env_focused"].append(ours(args.sw_steps, "focused"))
        row: dict[str, Any] = {f"{k}_steps_per_s": statistics.median(v) for k, v in rounds.items()}
        row.update(uniform_success(lambda: ScienceWorldEnv(task, expert=False), args.sw_episodes))
        focused = uniform_success(lambda: ScienceWorldEnv(task, expert=False, candidates="focused"), args.sw_episodes)
        row.update({f"focused_{k}": v for k, v in focused.items() if k != "episodes"})
        row.update(expert_paths(lambda: ScienceWorldEnv(task), args.sw_episodes))
        results[task] = row
        print(f"  sw {task}: {row}", flush=True)
    library.close()
    return results


# ----- BabyAI -------------------------------------------------------------------------------------------------
def bench_babyai(args: argparse.Namespace) -> dict[str, Any]:
    import gymnasium as gym
    import minigrid  # noqa: F401  (registers the BabyAI ids)

    from envs.babyai_text import COMMANDS, BabyAITextEnv

    results = {}
    for level in args.babyai_levels:
        rng = random.Random(0)
        raw = gym.make(f"BabyAI-{level}-v0")

        def raw_reset():
            raw.reset(seed=rng.randrange(10**6))

        def raw_step():
            obs, reward, terminated, truncated, info = raw.step(rng.randrange(6))
            return terminated or truncated

        row = {"raw_steps_per_s": steps_per_second(raw_step, raw_reset, args.seconds)}
        for expert in (False, True):
            env = BabyAITextEnv(level, expert=expert)

            def our_reset():
                env.reset(seed=rng.randrange(10**6))

            def our_step():
                obs, reward, terminated, truncated, info = env.step(rng.choice(COMMANDS))
                return terminated or truncated

            row[f"env_steps_per_s{'_with_bot' if expert else ''}"] = steps_per_second(our_step, our_reset, args.seconds)
        row["max_steps"] = int(raw.unwrapped.max_steps)
        row.update(uniform_success(lambda: BabyAITextEnv(level, expert=False), args.episodes))
        row.update(expert_paths(lambda: BabyAITextEnv(level), args.episodes))
        results[level] = row
        print(f"  babyai {level}: {row}", flush=True)
    return results


# ----- ScienceWorld x the embedded prior ----------------------------------------------------------------------
class RecordingPrior:
    """Passes calls to a prior and keeps the last scores (to read the gold action's rank)."""

    def __init__(self, prior: Any) -> None:
        self.prior = prior
        self.last: Any = None

    def __getattr__(self, name: str) -> Any:
        return getattr(self.prior, name)

    def score(self, prompts, candidates, **kwargs):
        self.last = (list(candidates[0]), self.prior.score(prompts, candidates, **kwargs))
        return self.last[1]


def bench_scoring(args: argparse.Namespace) -> dict[str, Any]:
    import torch

    from envs.scienceworld_env import ScienceWorldEnv, focused_commands
    from prior_wrappers.actions import make_text_state
    from prior_wrappers.slots import SlotBuilder

    torch.set_num_threads(1)
    prior = RecordingPrior(load_prior())
    builder = SlotBuilder(prior, 16, encoder=None)  # what LLMPriorWrapper / VecLLMPrior run for each state
    rows = []
    for task, variation in args.scoring_episodes:
        # one episode along the gold path; each state is scored twice: all valid actions, and the focused set
        # (each plus the gold action when it lacks it, so that the gold action has a rank)
        env = ScienceWorldEnv(task, variations=[variation], candidates="all")
        obs, info = env.reset(seed=0)
        for step in range(args.scoring_states):
            gold = env.expert_command()
            valid = list(env._state["valid"])
            focused = focused_commands(valid, env._context())
            modes = [("all", valid), ("focused", focused)]
            for mode, commands in modes if step % 2 == 0 else modes[::-1]:  # either may reuse the other's prompt
                kept = gold in commands
                info_mode = {**info, "admissible_commands": sorted(commands) + ([] if kept else [gold])}
                state = make_text_state(obs, info_mode, example=env.prompt_example)
                start = time.perf_counter()
                builder.build([state])
                seconds = time.perf_counter() - start
                cands, scores = prior.last
                logp = np.asarray(scores.logprobs[0])
                rank = int((logp > logp[cands.index(gold)]).sum()) + 1
                rows.append({
                    "task": task, "variation": variation, "candidates": mode, "step": step,
                    "n_candidates": len(cands), "valid": len(valid), "seconds": seconds, "gold": gold,
                    "gold_in_valid": gold in valid, "gold_kept": kept, "gold_rank": rank,
                })
                print(f"  scoring {task}/{variation} {mode} step {step}: {rows[-1]}", flush=True)
            obs, reward, terminated, truncated, info = env.step(gold)
            if terminated or truncated:
                break
    summary = {}
    for mode in ("all", "focused"):
        sel = [r for r in rows if r["candidates"] == mode]
        summary[mode] = {
            "states": len(sel), "candidates_mean": statistics.fmean(r["n_candidates"] for r in sel),
            "seconds_mean": statistics.fmean(r["seconds"] for r in sel),
            "gold_rank_median": statistics.median(r["gold_rank"] for r in sel),
            "gold_top1": sum(r["gold_rank"] == 1 for r in sel) / len(sel),
            "gold_top16": sum(r["gold_rank"] <= 16 for r in sel) / len(sel),
            "gold_kept": sum(r["gold_kept"] for r in sel) / len(sel),
        }
    print(f"  scoring summary: {summary}")
    return {"rows": rows, "summary": summary}


def main() -> None:
    parser = argument_parser(__doc__)
    parser.add_argument("--parts", nargs="+", default=["twx", "babyai", "sw", "scoring"],
                        choices=["twx", "babyai", "sw", "scoring"])
    parser.add_argument("--episodes", type=int, default=20, help="uniform / expert episodes (TWX, BabyAI)")
    parser.add_argument("--sw-episodes", type=int, default=10)
    parser.add_argument("--seconds", type=float, default=3.0, help="clock time per speed measurement")
    parser.add_argument("--twx-steps", type=int, default=2000, help="steps per TextWorldExpress speed round")
    parser.add_argument("--sw-steps", type=int, default=60, help="steps per ScienceWorld speed round")
    parser.add_argument("--sw-tasks", nargs="+", default=["find-living-thing", "boil", "lifespan-longest-lived"])
    parser.add_argument("--babyai-levels", nargs="+",
                        default=["GoToLocal", "PickupLoc", "PutNextLocal", "OpenDoor", "GoTo", "Pickup", "Open"])
    parser.add_argument("--scoring-states", type=int, default=6, help="gold-path states per scored episode")
    parser.add_argument("--scoring-episodes", nargs="+", default=["lifespan-longest-lived:3", "find-living-thing:3"])
    parser.add_argument("--out", default="results/text_suites.json")
    args = parser.parse_args()
    args.scoring_episodes = [(t.split(":")[0], int(t.split(":")[1])) for t in args.scoring_episodes]
    out = Path(args.out)
    results: dict[str, Any] = json.loads(out.read_text()) if out.is_file() else {}
    for part in args.parts:
        print(f"{part}: {conditions()}", flush=True)
        results[part] = {"load_average": load_average(), **{"twx": bench_twx, "sw": bench_sw, "babyai": bench_babyai,
                                                         "scoring": bench_scoring}[part](args)}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=1))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
