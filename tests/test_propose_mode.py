"""prior_mode="propose": k sampled generations per state as the prior, with and without an admissible list."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from toy_text_env import CorridorTextEnv

from prior_wrappers import CachedPrior, FunctionPrior, HFPrior, LLMPriorWrapper, UniformPrior, VecLLMPrior, make_text_vec_env
from prior_wrappers.priors.matching import normalize_command, tally_proposals
from prior_wrappers.prompts import TextState
from prior_wrappers.proposals import ProposalConfig, smoothed_logprobs
from prior_wrappers.slots import SlotBuilder
from prior_wrappers.spaces import ACTION_MASK, LOGPROB_MIN, PRIOR_LOGPROBS


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)


class ScriptedProposer:
    """Proposes what ``fn(prompt, rng, k)`` generates, ``rng`` seeded per prompt; counts its calls."""

    def __init__(self, fn) -> None:
        self.fn = fn
        self.calls: list[int] = []  # prompts per call
        self.seeds: list[list[int] | None] = []

    def propose(self, prompts, admissible, k=5, *, seed=None, fallback="drop"):
        self.calls.append(len(prompts))
        seeds = list(seed) if seed is not None else [None] * len(prompts)
        self.seeds.append(seeds)
        gens = [list(self.fn(p, np.random.default_rng(s), k)) for p, s in zip(prompts, seeds)]
        return tally_proposals(gens, admissible, fallback)


def fixed(*generations):
    return ScriptedProposer(lambda prompt, rng, k: list(generations)[:k])


def random_walker():
    """k draws from a few commands, so that different seeds give different proposals."""
    return ScriptedProposer(lambda prompt, rng, k: list(rng.choice(["go east", "go west", "wait", "sing"], size=k)))


class FreeTextCorridor(CorridorTextEnv):
    """The corridor as a parser game: no admissible list, any text is taken; "go east" in any case moves."""

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.received: list[str] = []

    def _info(self) -> dict:
        return {**super()._info(), "admissible_commands": None}

    def step(self, action):
        self.received.append(action)
        return super().step(normalize_command(action))


def test_smoothed_counts_match_hand_computation_and_invalid_rate_is_in_info():
    np.testing.assert_allclose(np.exp(smoothed_logprobs(np.array([3.0, 1.0, 0.0, 0.0]), 1.0)), [0.65, 0.25, 0.05, 0.05])
    np.testing.assert_allclose(np.exp(smoothed_logprobs(np.zeros(4), 0.0)), [0.25] * 4)  # nothing valid: uniform
    prior = fixed("go east", "Go East!", "go east", "wait", "dance")  # 3 east, 1 wait, 1 invalid
    env = LLMPriorWrapper(CorridorTextEnv(), prior, k=4, encoder=None, prior_mode="propose", proposals=5)
    obs, info = env.reset(seed=0)  # room 0: go east, go west, wait (n = 3, beta = 1)
    assert info["prior_candidates"] == ["go east", "wait", "go west"]
    expected = np.array([3 + 1 / 3, 1 + 1 / 3, 1 / 3]) / (4 + 1)
    np.testing.assert_allclose(np.exp(obs[PRIOR_LOGPROBS][:3]), expected, rtol=1e-6)
    assert obs[PRIOR_LOGPROBS][3] == LOGPROB_MIN and list(obs[ACTION_MASK]) == [1, 1, 1, 0]
    assert info["prior_invalid_rate"] == pytest.approx(0.2)
    assert info["prior_proposal_counts"] == [3.0, 1.0, 0.0]
    assert info["prior_generations"][1] == "Go East!"
    assert env.observation_space.contains(obs)

    drop = LLMPriorWrapper(CorridorTextEnv(), prior, k=4, encoder=None, prior_mode="propose",
                           proposals=ProposalConfig(samples=5, unproposed="drop"))
    obs, info = drop.reset(seed=0)
    assert info["prior_candidates"] == ["go east", "wait"] and info["prior_dropped"] == 1
    np.testing.assert_allclose(np.exp(obs[PRIOR_LOGPROBS][:2]), expected[:2] / expected[:2].sum(), rtol=1e-6)
    obs, *_ = drop.step(0)
    assert env.prior_stats["invalid_rate"] == pytest.approx(0.2)

    # one call, two states: each state's own invalid rate (not the call's)
    picky = ScriptedProposer(lambda p, rng, k: ["go east"] * k if "calm" in p else ["dance"] * k)
    builder = SlotBuilder(picky, 3, encoder=None, prior_mode="propose", proposals=4)
    calm, wild = (TextState(f"A {w} room.", ["go east", "wait"]) for w in ("calm", "wild"))
    a, b = builder.build([calm, wild])
    assert picky.calls == [2] and a.info["prior_invalid_rate"] == 0.0 and b.info["prior_invalid_rate"] == 1.0
    np.testing.assert_allclose(np.exp(b.logprobs), [0.5, 0.5])  # nothing valid: uniform
    assert builder.stats.extra["invalid_rate"] == pytest.approx(0.5)


def test_free_text_slots_are_distinct_generations_by_count_then_first_appearance_and_the_env_gets_the_text():
    generations = ["go west", "Go East.", "go east", "wait", "GO EAST", "", "jump", "look"]
    tally = tally_proposals([generations], [None])
    assert tally.commands == [["Go East.", "go west", "wait", "jump", "look"]] and tally.invalid == [1]
    np.testing.assert_array_equal(tally.counts[0], [3, 1, 1, 1, 1])
    prior = fixed(*generations)
    env = LLMPriorWrapper(FreeTextCorridor(), prior, k=3, encoder="hashing", prior_mode="propose", proposals=8)
    obs, info = env.reset(seed=0)
    # groups: go east x3 (first written "Go East."), go west, wait, jump, look x1; the empty one is invalid
    assert info["prior_candidates"] == ["Go East.", "go west", "wait"]
    assert info["prior_dropped"] == 2 and info["prior_invalid_rate"] == pytest.approx(1 / 8)
    smoothed = (np.array([3, 1, 1]) + 1 / 5) / (7 + 1)  # beta/n over the 5 distinct generations, then top-3
    np.testing.assert_allclose(np.exp(obs[PRIOR_LOGPROBS]), smoothed / smoothed.sum(), rtol=1e-6)
    assert env.observation_space.contains(obs)
    obs, reward, terminated, truncated, info = env.step(0)
    assert env.unwrapped.received == ["Go East."] and info["command"] == "Go East."
    assert env.unwrapped.pos == 1  # the parser understood it
    # all generations empty: the one fallback command
    empty = LLMPriorWrapper(FreeTextCorridor(), fixed("", " "), k=3, encoder=None, prior_mode="propose",
                            proposals=ProposalConfig(samples=2, free_text_fallback="look"))
    assert empty.reset(seed=0)[1]["prior_candidates"] == ["look"]


def test_proposals_are_seeded_by_the_wrapper_seed_and_the_state():
    def episode(seed):
        env = LLMPriorWrapper(CorridorTextEnv(max_steps=8), random_walker(), k=4, encoder=None, prior_mode="propose",
                              proposals=6, history=0)
        obs, info = env.reset(seed=seed)
        out, by_room = [info["prior_generations"]], {}
        for t in range(7):
            obs, _, term, trunc, info = env.step(t % 3)
            out.append(info["prior_generations"])
            by_room.setdefault(env.unwrapped.pos, []).append(info["prior_generations"])
            if term or trunc:
                break
        return out, by_room

    (a, rooms), (b, _), (c, _) = episode(3), episode(3), episode(4)
    assert a == b and a != c
    # with history=0 a room is one state: revisiting it gives the same proposals
    assert any(len(v) > 1 for v in rooms.values()) and all(v == [v[0]] * len(v) for v in rooms.values())


def test_hf_per_prompt_seeds_do_not_depend_on_the_other_prompts(tiny_llama, smollm_tokenizer):
    prior = HFPrior(tiny_llama, smollm_tokenizer)
    prompts = ["Observation: a door.\nAction:", "Observation: a long corridor with a lamp.\nAction:"]
    both = prior.propose(prompts, [["open door"], None], k=3, max_new_tokens=4, seed=[11, 12])
    for i in range(2):
        alone = prior.propose(prompts[i : i + 1], [[["open door"], None][i]], k=3, max_new_tokens=4, seed=[11, 12][i])
        assert alone.generations[0] == both.generations[i]
    assert both.commands[0] == ["open door"] and both.invalid is not None
    assert sum(both.counts[1]) + both.invalid[1] == 3  # free text: every sample is a command or invalid
    # the prefix tree serves a shared prompt prefix: same samples as computing every prompt from scratch
    plain = HFPrior(tiny_llama, smollm_tokenizer, prefix_cache=False)
    shared = ["A long shared instruction with demonstrations. " * 8 + p for p in prompts]
    fresh = HFPrior(tiny_llama, smollm_tokenizer)
    first = fresh.propose(shared[:1], [None], k=3, max_new_tokens=4, seed=[5])
    before = fresh.computed_tokens
    tree = fresh.propose(shared, [None, None], k=3, max_new_tokens=4, seed=[5, 6])
    assert tree.generations == plain.propose(shared, [None, None], k=3, max_new_tokens=4, seed=[5, 6]).generations
    assert tree.generations[0] == first.generations[0]
    assert fresh.computed_tokens - before < len(smollm_tokenizer(shared[1])["input_ids"])  # prefix reused


def test_cached_proposals_hit_on_repeated_states_and_are_keyed_by_seed_and_k():
    inner = random_walker()
    cached = CachedPrior(inner)
    first = cached.propose(["p"], [["go east", "wait"]], 4, seed=[1])
    again = cached.propose(["p"], [["go east", "wait"]], 4, seed=[1])
    assert again.generations == first.generations and cached.proposal_hits == 1 and len(inner.calls) == 1
    cached.propose(["p"], [["go east", "wait"]], 4, seed=[2])
    cached.propose(["p"], [["go east", "wait"]], 5, seed=[1])
    cached.propose(["p"], [None], 4, seed=[1])
    assert cached.proposal_misses == 4 and len(inner.calls) == 4
    cached.propose(["p"], [["go east", "wait"]], 4)  # unseeded: stochastic, passed through
    assert cached.proposal_misses == 4 and len(inner.calls) == 5
    # a batch: only the misses go to the prior, in one call
    batch = cached.propose(["p", "q", "p"], [["go east", "wait"], ["wait"], ["go east", "wait"]], 4, seed=[1, 7, 1])
    assert inner.calls[-1] == 1 and batch.generations[0] == first.generations[0] == batch.generations[2]
    assert cached.cache_info()["proposal_size"] == 5

    # through the wrapper: a second episode with the same seed is served from the cache
    cached = CachedPrior(random_walker())
    env = LLMPriorWrapper(CorridorTextEnv(max_steps=4), cached, k=4, encoder=None, prior_mode="propose", proposals=4)
    for _ in range(2):
        env.reset(seed=5)
        for _ in range(4):
            *_, info = env.step(0)
    assert cached.proposal_hits >= 5 and info["prior_stats"]["cache_hit_rate"] == cached.proposal_hit_rate


class ScoringWalker(ScriptedProposer):
    """``random_walker`` that also scores (every command alike), so that a cache holds both kinds of entry."""

    def __init__(self) -> None:
        super().__init__(random_walker().fn)

    def score(self, prompts, candidates, **kwargs):
        return FunctionPrior(lambda prompt, commands: [0.0] * len(commands)).score(prompts, candidates, **kwargs)


def test_saved_cache_restores_seeded_proposals_and_refuses_malformed_ones(tmp_path):
    cached = CachedPrior(ScoringWalker())
    cached.score(["p"], [["go east", "wait"]])
    first = cached.propose(["p", "q"], [["go east", "wait"], None], 4, seed=[1, 2])
    cached.save(tmp_path / "cache.npz")

    inner = ScoringWalker()
    restored = CachedPrior(inner)
    assert restored.load(tmp_path / "cache.npz") == 3  # one score entry, two proposal entries
    again = restored.propose(["p", "q"], [["go east", "wait"], None], 4, seed=[1, 2])
    assert inner.calls == [] and restored.proposal_hits == 2  # served from the file, the prior never asked
    assert again.commands == first.commands and again.generations == first.generations
    assert all(np.array_equal(a, b) for a, b in zip(again.counts, first.counts))
    assert again.invalid == first.invalid and restored.cache_info()["proposal_size"] == 2
    assert restored.nbytes == cached.nbytes

    # a file whose proposal lost a count is refused with the cache's clear error, not half loaded
    import json

    with np.load(tmp_path / "cache.npz") as data:
        arrays = {name: data[name] for name in data.files}
    meta = json.loads(arrays["meta"].tobytes())
    meta["proposals"][0][6] = meta["proposals"][0][6][:-1]
    arrays["meta"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    np.savez(tmp_path / "bad.npz", **arrays)
    with pytest.raises(ValueError, match="proposal 0 has 2 commands but 1 counts"):
        CachedPrior(ScoringWalker()).load(tmp_path / "bad.npz")


def test_vector_wrapper_makes_one_propose_call_per_vector_step():
    prior = random_walker()
    venv = VecLLMPrior(make_text_vec_env(lambda: FreeTextCorridor(max_steps=3), 3), prior, k=4, encoder=None,
                       prior_mode="propose", proposals=6, seed=0)
    venv.reset()
    for _ in range(5):  # episodes end at step 3: terminal states are proposed in the same call
        obs, rewards, dones, infos = venv.step(np.zeros(3, dtype=int))
    assert prior.calls == [3, 3, 3, 6, 3, 3]
    assert all(isinstance(i["prior_invalid_rate"], float) for i in infos)
    assert venv.observation_space.contains({k: v[0] for k, v in obs.items()})


def test_gymnasium_vector_wrapper_makes_one_propose_call_per_vector_step_and_seeds_like_the_single_env():
    import gymnasium as gym

    from prior_wrappers import GymVectorLLMPrior, TextInInfo

    def fns(n):
        return [lambda: TextInInfo(FreeTextCorridor(max_steps=3)) for _ in range(n)]

    prior = random_walker()
    envs = GymVectorLLMPrior(gym.vector.SyncVectorEnv(fns(3)), prior, k=4, encoder=None, prior_mode="propose",
                             proposals=6)
    obs, infos = envs.reset(seed=0)
    first = [list(c) for c in infos["prior_candidates"]]
    for _ in range(5):  # NEXT_STEP: episodes end at step 3, the sub-envs reset at step 4 (in the same call)
        obs, rewards, terminations, truncations, infos = envs.step(np.zeros(3, dtype=int))
    assert prior.calls == [3] * 6
    assert envs.observation_space.contains(obs)
    assert all(isinstance(r, float) for r in infos["prior_invalid_rate"])
    single = LLMPriorWrapper(FreeTextCorridor(max_steps=3), random_walker(), k=4, encoder=None, prior_mode="propose",
                             proposals=6)
    _, info = single.reset(seed=0)
    assert list(info["prior_candidates"]) == first[0]  # same seed, same state: the same proposals


def test_bad_input_gets_errors_that_say_what_to_do(tiny_llama, smollm_tokenizer):
    with pytest.raises(ValueError, match="prior_mode must be one of"):
        LLMPriorWrapper(CorridorTextEnv(), UniformPrior(), encoder=None, prior_mode="sample")

    class ScoreOnly:
        def score(self, prompts, candidates, **kwargs):
            return UniformPrior().score(prompts, candidates)

    with pytest.raises(TypeError, match="propose"):
        LLMPriorWrapper(CorridorTextEnv(), ScoreOnly(), encoder=None, prior_mode="propose")
    with pytest.raises(ValueError, match="prior_mode='propose'"):
        LLMPriorWrapper(FreeTextCorridor(), UniformPrior(), encoder=None).reset(seed=0)
    with pytest.raises(TypeError, match="generates text"):  # no admissible list, and a prior that cannot write
        LLMPriorWrapper(FreeTextCorridor(), UniformPrior(), encoder=None, prior_mode="propose").reset(seed=0)
    with pytest.raises(ValueError, match="smoothing"):
        ProposalConfig(smoothing=-1)
    with pytest.raises(ValueError, match="encoder='prior'"):
        LLMPriorWrapper(CorridorTextEnv(), HFPrior(tiny_llama, smollm_tokenizer), encoder="prior", prior_mode="propose")


def test_dqn_prior_trains_in_propose_mode(tiny_llama, smollm_tokenizer):
    from prior_wrappers.sb3 import DQNPrior

    east = FunctionPrior(lambda p, c: [2.0 if x == "go east" else 0.0 for x in c])  # expected counts
    free = ScriptedProposer(lambda p, rng, k: list(rng.choice(["go east", "go west", "Go East", "wait"], size=k)))
    tiny = CachedPrior(HFPrior(tiny_llama, smollm_tokenizer))
    for env, prior, samples in ((CorridorTextEnv(), east, 4), (FreeTextCorridor(), free, 6), (CorridorTextEnv(), tiny, 3)):
        wrapped = LLMPriorWrapper(env, prior, k=4, encoder="hashing", prior_mode="propose",
                                  proposals=ProposalConfig(samples=samples, max_new_tokens=3), seed=0)
        model = DQNPrior("CandidatePolicy", wrapped, learning_starts=50, buffer_size=500, seed=0, device="cpu")
        model.learn(200)
        action, _ = model.predict(wrapped.reset(seed=1)[0], deterministic=True)
        assert 0 <= int(action) < 4
    assert tiny.proposal_hits > 0  # the corridor's states repeat


def test_textworld_without_admissible_commands_is_a_parser_game():
    pytest.importorskip("textworld")
    from envs.textworld_env import TextWorldEnv, make_textworld_games

    games = make_textworld_games(1, seed=3)
    env = TextWorldEnv(games, admissible_commands=False)
    obs, info = env.reset(seed=0)
    assert info["admissible_commands"] is None
    expert = env.expert_command()
    obs, *_ = env.step("xyzzy the frobnicator")
    assert obs and not obs.startswith("The game is over")  # the parser answers unknown text itself
    prior = fixed(expert, expert.upper(), "xyzzy")
    wrapped = LLMPriorWrapper(TextWorldEnv(games, admissible_commands=False), prior, k=4, encoder=None,
                              prior_mode="propose", proposals=3)
    obs, info = wrapped.reset(seed=0)
    assert info["prior_candidates"] == [expert, "xyzzy"]
    _, reward, *_ = wrapped.step(0)
    assert reward >= 0 and wrapped.unwrapped._steps == 1


def test_prior_quality_benchmark_ranks_by_proposal_counts(tmp_path):
    import csv
    import importlib.util
    import sys
    from pathlib import Path

    bench_dir = Path(__file__).resolve().parents[1] / "benchmarks"
    spec = importlib.util.spec_from_file_location("propose_setting", bench_dir / "propose_setting.py")
    setting = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(setting)
    # ties are broken at random: expert tied with one other at the top -> ranks 1 or 2
    assert setting.tied_rank_metrics(np.log([0.4, 0.4, 0.2]), 0)[:3] == (0.5, 1.0, 0.75)
    assert setting.tied_rank_metrics(np.log([0.5, 0.3, 0.2]), 1)[:3] == (0.0, 1.0, 0.5)

    spec = importlib.util.spec_from_file_location("prior_quality_propose", bench_dir / "prior_quality.py")
    bench = importlib.util.module_from_spec(spec)
    sys.modules["prior_quality_propose"] = bench
    spec.loader.exec_module(bench)
    bench.main(["--fast", "--quick", "--families", "tomato", "--shots", "0", "--normalization", "token",
                "--propose", "4", "--out", str(tmp_path)])
    rows = list(csv.DictReader(open(tmp_path / "prior_quality.csv")))
    assert [r["normalization"] for r in rows] == ["token", "prop4"]
    assert 0 < float(rows[1]["mrr"]) <= 1 and float(rows[1]["invalid_rate"]) == 0.0


@pytest.mark.parametrize("prefix_cache", [False, True], ids=["one-forward", "prefix-tree"])
def test_proposals_keep_the_prompt_and_its_samples_within_the_context_window(tiny_llama, smollm_tokenizer,
                                                                              prefix_cache):
    positions: list[int] = []  # the largest position each forward of the model's trunk computes

    def record(module, args, kwargs):
        if kwargs.get("position_ids") is not None:
            positions.append(int(kwargs["position_ids"].max()))

    hook = tiny_llama.model.register_forward_pre_hook(record, with_kwargs=True)
    try:
        prompt = "You are in a long corridor. " * 40 + "Action:"
        prior = HFPrior(tiny_llama, smollm_tokenizer, max_length=64, prefix_cache="tree" if prefix_cache else False)
        assert len(smollm_tokenizer(prompt)["input_ids"]) > 200
        with pytest.warns(UserWarning, match="exceed the context window.*oldest tokens are dropped"):
            prior.propose([prompt], [["go east", "go west"]], k=2, max_new_tokens=8, seed=0)
        assert positions and max(positions) < 64  # the prompt and every sampled token stay within 64 positions
        strict = HFPrior(tiny_llama, smollm_tokenizer, max_length=64, truncation="error")
        with pytest.raises(ValueError, match=r"up to 8 are sampled after it.*truncation='left'"):
            strict.propose([prompt], [["go east"]], k=1, max_new_tokens=8, seed=0)
    finally:
        hook.remove()
