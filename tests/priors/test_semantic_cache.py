"""SemanticCachedPrior: reuse across similar states, the candidate-set rules, bounds, counters, errors."""

from __future__ import annotations

import zlib

import numpy as np
import pytest

from prior_wrappers import CachedPrior, FunctionPrior, HashingEncoder, LLMPriorWrapper, SemanticCachedPrior
from prior_wrappers.priors.base import log_softmax
from prior_wrappers.priors.semantic import split_prompt

TASK = "You are playing a text game.\nExample:\nTask: win\nObservation: a hall\nAction: go east\n\nTask: cook a meal\n"
ROOM = "You are in a kitchen with a fridge, an oven, a table and a counter. The cookbook lies open on the table. "
NEAR_A = TASK + "Observation: " + ROOM + "You have 3 coins.\nAction:"
NEAR_B = TASK + "Observation: " + ROOM + "You have 4 coins.\nAction:"
FAR = TASK + "Observation: A dark cellar. Something drips from the ceiling onto the stone floor.\nAction:"
CANDS = ["open fridge", "take cookbook", "go north"]


def prompt_dependent(prompt: str, cands: list[str]) -> list[float]:
    """Scores that differ from prompt to prompt, so a reused score is told apart from a fresh one."""
    return [(zlib.crc32((prompt + "|" + c).encode()) % 1000) / 100.0 for c in cands]


class Recording(FunctionPrior):
    """A deterministic prior that records every request it gets."""

    def __init__(self) -> None:
        super().__init__(prompt_dependent, name="recording")
        self.requests: list[tuple[str, list[str]]] = []
        self.calls = 0

    def score(self, prompts, candidates, **kwargs):
        self.calls += 1
        self.requests += [(p, list(c)) for p, c in zip(prompts, candidates)]
        return super().score(prompts, candidates, **kwargs)


class CountingEncoder(HashingEncoder):
    def __init__(self, dim: int = 512) -> None:
        super().__init__(dim)
        self.texts: list[str] = []

    def encode(self, texts):
        self.texts += list(texts)
        return super().encode(texts)


def expected(prompt: str, cands: list[str]) -> np.ndarray:
    return log_softmax(np.array(prompt_dependent(prompt, cands)))


def make(threshold: float = 0.85, **kwargs) -> tuple[SemanticCachedPrior, Recording]:
    inner = Recording()
    return SemanticCachedPrior(inner, encoder=CountingEncoder(), threshold=threshold, **kwargs), inner


def cosine(a: str, b: str) -> float:
    va, vb = HashingEncoder(512).encode([split_prompt(a)[1], split_prompt(b)[1]])
    return float(va @ vb)


def test_fixture_similarities():
    assert 0.85 < cosine(NEAR_A, NEAR_B) < 0.99 and cosine(NEAR_A, FAR) < 0.3
    assert split_prompt(NEAR_A) == (TASK, "Observation: " + ROOM + "You have 3 coins.\nAction:")
    assert split_prompt("Observation: x\nAction:") == ("", "Observation: x\nAction:")


def test_near_duplicate_hits_and_reuses_the_cached_scores():
    prior, inner = make()
    first = prior.score([NEAR_A], [CANDS]).logprobs[0]
    again = prior.score([NEAR_B], [CANDS]).logprobs[0]
    np.testing.assert_allclose(first, expected(NEAR_A, CANDS))
    np.testing.assert_allclose(again, first)  # NEAR_A's scores, not NEAR_B's own
    assert not np.allclose(again, expected(NEAR_B, CANDS))
    assert inner.calls == 1 and (prior.hits, prior.semantic_hits, prior.misses) == (1, 1, 1)
    prior.score([NEAR_B], [CANDS])  # remembered as an alias: no second encoding
    assert prior.encoder.texts.count(split_prompt(NEAR_B)[1]) == 1 and inner.calls == 1


def test_dissimilar_state_misses():
    prior, inner = make()
    prior.score([NEAR_A], [CANDS])
    out = prior.score([FAR], [CANDS]).logprobs[0]
    np.testing.assert_allclose(out, expected(FAR, CANDS))
    assert inner.calls == 2 and prior.misses == 2 and prior.hits == 0 and len(prior) == 2


def test_another_context_never_shares_scores():
    prior, inner = make()
    prior.score([NEAR_A], [CANDS])
    other_task = NEAR_A.replace("Task: cook a meal", "Task: find the key")
    np.testing.assert_allclose(prior.score([other_task], [CANDS]).logprobs[0], expected(other_task, CANDS))
    prior.score([NEAR_A], [CANDS], normalization="sum")  # another normalisation: another group
    assert inner.calls == 3 and prior.hits == 0


@pytest.mark.parametrize("rule", ["same", "subset", "rescore"])
def test_reordered_candidates_get_reordered_scores(rule):
    prior, inner = make(candidates=rule)
    first = prior.score([NEAR_A], [CANDS]).logprobs[0]
    out = prior.score([NEAR_B], [CANDS[::-1]])
    np.testing.assert_allclose(out.logprobs[0], first[::-1], atol=1e-12)
    np.testing.assert_allclose(out.raw_logprobs[0], prompt_dependent(NEAR_A, CANDS)[::-1])
    assert inner.calls == 1


def test_same_rule_scores_another_set_in_full():
    prior, inner = make(candidates="same")
    prior.score([NEAR_A], [CANDS])
    sub = prior.score([NEAR_B], [CANDS[:2]]).logprobs[0]
    np.testing.assert_allclose(sub, expected(NEAR_B, CANDS[:2]))  # fresh, on NEAR_B's own prompt
    assert inner.requests[-1] == (NEAR_B, CANDS[:2]) and prior.misses == 2
    np.testing.assert_allclose(prior.score([NEAR_A], [CANDS[1::-1]]).logprobs[0], sub[::-1])  # now cached
    assert inner.calls == 2


def test_subset_is_renormalised_and_rescore_sends_only_the_new_commands():
    prior, inner = make(candidates="rescore")
    prior.score([NEAR_A], [CANDS])
    sub = prior.score([NEAR_B], [["go north", "open fridge"]]).logprobs[0]
    np.testing.assert_allclose(sub, expected(NEAR_A, ["go north", "open fridge"]), atol=1e-12)
    assert inner.calls == 1 and np.isclose(np.exp(sub).sum(), 1.0)
    bigger = CANDS + ["eat meal", "open fridge"]  # a new command and a duplicate
    out = prior.score([NEAR_B], [bigger]).logprobs[0]
    assert inner.requests[-1] == (NEAR_B, ["eat meal"])  # only the new command, on the query's prompt
    merged = prompt_dependent(NEAR_A, CANDS) + prompt_dependent(NEAR_B, ["eat meal"])
    merged += prompt_dependent(NEAR_A, ["open fridge"])
    np.testing.assert_allclose(out, log_softmax(np.array(merged)), atol=1e-12)
    assert (prior.hits, prior.partial, prior.misses, prior.queries, prior.scored_commands) == (1, 1, 1, 2, 4)
    strict, strict_inner = make(candidates="subset")
    strict.score([NEAR_A], [CANDS])
    strict.score([NEAR_B], [bigger])
    assert strict_inner.requests[-1] == (NEAR_B, ["eat meal"])  # "subset" too scores what it lacks, only that


def test_threshold_one_behaves_like_the_exact_cache():
    prior, inner = make(threshold=1.0, candidates="same")
    exact = CachedPrior(Recording())
    stream = [(NEAR_A, CANDS), (NEAR_B, CANDS), (NEAR_A, CANDS), (NEAR_A, CANDS[:2]), (FAR, CANDS), (NEAR_B, CANDS)]
    for p, c in stream:
        np.testing.assert_array_equal(prior.score([p], [c]).logprobs[0], exact.score([p], [c]).logprobs[0])
    assert (prior.hits, prior.misses) == (exact.hits, exact.misses) == (2, 4)
    assert prior.encoder.texts == []  # identical texts only: the encoder is never needed


def test_eviction_respects_entries_and_bytes():
    prior, inner = make(max_entries=2)
    prompts = [TASK + f"Observation: room number {w}\nAction:" for w in ("alpha", "bravo", "charlie")]
    for p in prompts:
        prior.score([p], [CANDS])
    prior.score([prompts[1]], [CANDS])
    prior.score([TASK + "Observation: delta delta delta\nAction:"], [CANDS])
    assert len(prior) == 2
    prior.score([prompts[1]], [CANDS])  # most recently used: kept
    assert inner.calls == 4
    prior.score([prompts[0]], [CANDS])  # least recently used: evicted
    assert inner.calls == 5
    small, _ = make(max_bytes=6000)
    for i in range(20):
        small.score([TASK + f"Observation: room {i} " + "x" * i * 7 + "\nAction:"], [CANDS])
        assert small.nbytes <= 6000
    assert 1 <= len(small) < 20 and small.cache_info()["size"] == len(small)


class FailingOnce(Recording):
    """Raises on the call after ``fail`` is set, like a prior server going down once."""

    fail = False

    def score(self, prompts, candidates, **kwargs):
        if self.fail:
            self.fail = False
            raise ConnectionError("prior server unreachable")
        return super().score(prompts, candidates, **kwargs)


def test_a_failed_call_keeps_its_states_and_the_next_call_stores_them_by_use():
    inner, encoder = FailingOnce(), CountingEncoder()
    prior = SemanticCachedPrior(inner, encoder, threshold=0.85, max_entries=2)
    garden = TASK + "Observation: A sunny garden with a gate and a well.\nAction:"
    prior.score([FAR], [CANDS])
    inner.fail = True
    with pytest.raises(ConnectionError):
        prior.score([NEAR_A], [CANDS])
    assert len(prior) == 2 and prior.nbytes > 0 and prior.misses == 2
    prior.score([garden], [CANDS])  # a third state: FAR, the least recently used, goes
    assert len(prior) == 2 and inner.calls == 2
    encoded = len(encoder.texts)
    prior.score([NEAR_A], [CANDS])  # kept (unscored): found by its text, scored now
    assert len(encoder.texts) == encoded and inner.calls == 3 and len(prior) == 2
    prior.score([FAR], [CANDS])
    assert inner.calls == 4 and prior.misses == 5


def test_the_cache_pickles_and_its_copy_evicts_on_its_own():
    import copy
    import pickle

    prior, _ = make(max_entries=1)
    prior.score([NEAR_A], [CANDS])
    for copied in (pickle.loads(pickle.dumps(prior)), copy.deepcopy(prior)):
        copied.score([FAR], [CANDS])
        assert len(copied) == 1 and copied.misses == 2
        copied.score([NEAR_B], [CANDS])  # NEAR_A was evicted from the copy...
        assert copied.misses == 3
    prior.score([NEAR_B], [CANDS])  # ... not from the original
    assert len(prior) == 1 and (prior.hits, prior.misses) == (1, 1)

def test_near_duplicates_within_one_call_are_scored_once():
    prior, inner = make()
    out = prior.score([NEAR_A, NEAR_B, NEAR_A, FAR], [CANDS, CANDS, CANDS[::-1], CANDS])
    assert inner.calls == 1 and inner.requests == [(NEAR_A, CANDS), (FAR, CANDS)]
    np.testing.assert_allclose(out.logprobs[1], out.logprobs[0])
    np.testing.assert_allclose(out.logprobs[2], out.logprobs[0][::-1])
    info = prior.cache_info()
    assert (info["hits"], info["semantic_hits"], info["misses"], info["queries"], info["inner_calls"]) == (2, 1, 2, 2, 1)


def test_bad_arguments_give_clear_errors():
    inner, enc = Recording(), HashingEncoder(16)
    for bad in (0.0, -0.5, 1.5, True, "0.9"):
        with pytest.raises(ValueError, match="threshold"):
            SemanticCachedPrior(inner, enc, threshold=bad)
    with pytest.raises(ValueError, match="candidates must be one of"):
        SemanticCachedPrior(inner, enc, candidates="partial")
    with pytest.raises(ValueError, match="max_entries"):
        SemanticCachedPrior(inner, enc, max_entries=0)
    with pytest.raises(TypeError, match="TextEncoder"):
        SemanticCachedPrior(inner, object())
    with pytest.raises(TypeError, match="ActionPrior"):
        SemanticCachedPrior(object(), enc)
    prior = SemanticCachedPrior(inner, enc)
    with pytest.raises(TypeError, match="single string"):
        prior.score([NEAR_A], ["open fridge"])
    with pytest.raises(ValueError, match="hidden states"):  # the inner prior's own error for features
        prior.score([NEAR_A], [CANDS], return_features=True)
    with pytest.raises(ValueError, match="candidates='same'"):  # FunctionPrior ignores normalization="word"
        prior.score([NEAR_A], [["open the fridge", "go north"]], normalization="word")
    same = SemanticCachedPrior(inner, enc, candidates="same")
    np.testing.assert_allclose(same.score([NEAR_A], [CANDS], normalization="word").logprobs[0], expected(NEAR_A, CANDS))


def test_fingerprint_and_composition_with_the_exact_cache_and_the_wrapper():
    prior, inner = make()
    fp = prior.fingerprint
    assert fp.startswith("SemanticCachedPrior[FunctionPrior:recording|hashing:512|threshold=0.85|candidates=rescore")
    assert SemanticCachedPrior(inner, HashingEncoder(512), threshold=0.9).fingerprint != fp
    outer = CachedPrior(prior)
    outer.score([NEAR_A], [CANDS])
    outer.score([NEAR_B], [CANDS])  # exact miss outside, semantic hit inside
    assert (outer.misses, prior.semantic_hits, inner.calls) == (2, 1, 1) and outer.fingerprint == fp

    from toy_text_env import CorridorTextEnv

    east = SemanticCachedPrior(FunctionPrior(lambda p, c: [3.0 if x == "go east" else 0.0 for x in c]), HashingEncoder(64))
    env = LLMPriorWrapper(CorridorTextEnv(), east, k=4, encoder=HashingEncoder(16))
    obs, info = env.reset(seed=0)
    for _ in range(3):
        obs, *_ = env.step(int(np.argmax(obs["prior_logprobs"])))
    env.reset(seed=0)
    assert east.hits >= 1 and east.cache_info()["queries"] == east.misses + east.partial


def test_hf_prior_rescore_is_exact_and_features_are_cached(tiny_llama, smollm_tokenizer):
    from prior_wrappers import HFPrior

    tiny_prior = HFPrior(tiny_llama, smollm_tokenizer)
    prior = SemanticCachedPrior(tiny_prior, HashingEncoder(64), threshold=1.0)
    prompt = "Task: cook\nObservation: You open the fridge.\nAction:"
    prior.score([prompt], [["take egg", "close fridge"]])
    cands = ["close fridge", "eat the egg now", "take egg"]
    out = prior.score([prompt], [cands], return_features=True)
    direct = tiny_prior.score([prompt], [cands], return_features=True)
    np.testing.assert_allclose(out.logprobs[0], direct.logprobs[0], atol=1e-5)
    np.testing.assert_allclose(out.features[0], direct.features[0], atol=1e-5)
    assert prior.partial == 0 and prior.misses == 2  # no features cached yet: every command scored again
    again = prior.score([prompt], [cands[1:]], return_features=True)
    assert prior.hits == 1 and again.features[0].shape == (2, direct.features[0].shape[1])


def test_real_minilm_counter_hits_and_another_action_misses():
    from prior_wrappers import SentenceEncoder

    prior = SemanticCachedPrior(Recording(), SentenceEncoder.default(), threshold=0.95)
    end = "*** The End *** You scored 3 out of a possible 3, in {} turns. Would you like to RESTART or QUIT?\nAction:"
    prior.score([TASK + "Observation: You eat the meal. Not bad. " + end.format(5)], [CANDS])
    prior.score([TASK + "Observation: You eat the meal. Not bad. " + end.format(12)], [CANDS])
    assert prior.semantic_hits == 1
    prior.score([TASK + "Observation: You open the oven.\nAction:"], [CANDS])
    prior.score([TASK + "Observation: You close the oven.\nAction:"], [CANDS])  # cosine 0.94: another state
    assert (prior.hits, prior.misses) == (1, 3)
