"""What OpenAIPrior does when the server is down, dies, is slow, overloaded, or answers with misaligned echoes.

Most faults come from a scripted stub server (no vLLM needed); "killed mid-run" kills a proxy in front of the real
vLLM server, which to the client is the same as the server dying.
"""

from __future__ import annotations

import pickle
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from stub_server import StubServer
from toy_text_env import CorridorTextEnv
from vllm_server import SERVED_NAME, free_port

from prior_wrappers import LLMPriorWrapper, VecLLMPrior, make_text_vec_env
from prior_wrappers.priors import OpenAIPrior
from prior_wrappers.priors.remote import (
    EchoLogprobsError,
    ModelNotServedError,
    RemotePriorError,
    ServerUnavailableError,
)

PROMPTS = ["You are in room 1 of 4. The exit is to the east.\nAction:", "You hold a key.\nAction:"]
CANDIDATES = [["go east", "go west", "wait"], ["unlock door", "drop key"]]


def stub_prior(stub: StubServer, tokenizer, **kwargs) -> OpenAIPrior:
    return OpenAIPrior(stub.base_url, model=stub.model, tokenizer=tokenizer, **{"backoff": 0.05, **kwargs})


def test_scores_follow_the_echo(smollm_tokenizer):
    with StubServer("ok") as stub:
        scores = stub_prior(stub, smollm_tokenizer).score(PROMPTS, CANDIDATES, normalization="sum")
    for raw, ntok in zip(scores.raw_logprobs, scores.num_tokens):
        np.testing.assert_array_equal(raw, -ntok)  # the stub gives every token log-prob -1
    sent = stub.completion_requests[0]
    assert sent["echo"] is True and sent["max_tokens"] == 0 and sent["logprobs"] == 1
    assert all(isinstance(seq, list) and all(isinstance(t, int) for t in seq) for seq in sent["prompt"])


def test_server_not_started_fails_fast_with_a_clear_error(smollm_tokenizer):
    prior = OpenAIPrior(f"http://127.0.0.1:{free_port()}", model="m", tokenizer=smollm_tokenizer, max_retries=2, backoff=0.1)
    start = time.perf_counter()
    with pytest.raises(ServerUnavailableError, match=r"after 3 attempt\(s\).*Is the inference server running"):
        prior.score(PROMPTS, CANDIDATES)
    assert time.perf_counter() - start < 3.0  # refused connections are retried with short back-off, no hang


def test_slow_server_timeout_is_honoured(smollm_tokenizer):
    with StubServer("slow", delay=5.0) as stub:
        prior = stub_prior(stub, smollm_tokenizer, timeout=0.5, max_retries=1)
        start = time.perf_counter()
        with pytest.raises(ServerUnavailableError, match=r"within the timeout \(0.5 s\)"):
            prior.score(PROMPTS[:1], CANDIDATES[:1])
        elapsed = time.perf_counter() - start
    assert 1.0 <= elapsed < 2.5  # two attempts of 0.5 s and a short back-off, far below the 5 s the stub takes


def test_overloaded_server_is_retried_then_succeeds_or_gives_up(smollm_tokenizer):
    with StubServer("flaky", failures=2) as stub:
        prior = stub_prior(stub, smollm_tokenizer, max_retries=3)
        prior.score(PROMPTS[:1], CANDIDATES[:1])
        assert prior.retries == 2 and prior.requests == 1
    with StubServer("flaky", failures=10) as stub:
        with pytest.raises(ServerUnavailableError, match="HTTP 503: engine overloaded"):
            stub_prior(stub, smollm_tokenizer, max_retries=2).score(PROMPTS[:1], CANDIDATES[:1])
        assert len(stub.completion_requests) == 3


@pytest.mark.parametrize(
    "mode, error, match",
    [
        ("shifted", EchoLogprobsError, "shifted by one position"),
        ("no_logprobs", EchoLogprobsError, "no echoed log-probs"),
        ("retokenized", EchoLogprobsError, "echoed tokens differ from the ids sent"),
        ("lost_choice", EchoLogprobsError, "cannot tell which log-probs belong to which candidate"),
        ("bad_json", RemotePriorError, "non-JSON"),
    ],
)
def test_misaligned_or_missing_echo_is_refused(smollm_tokenizer, mode, error, match):
    with StubServer(mode) as stub:
        with pytest.raises(error, match=match):
            stub_prior(stub, smollm_tokenizer).score(PROMPTS, CANDIDATES)


def test_requests_of_one_call_run_concurrently_within_the_bound(smollm_tokenizer):
    prompts, candidates = PROMPTS * 3, CANDIDATES * 3
    with StubServer("ok", delay=0.3) as stub:
        prior = stub_prior(stub, smollm_tokenizer, max_concurrency=2)
        start = time.perf_counter()
        prior.score(prompts, candidates)
        elapsed = time.perf_counter() - start
    assert stub.max_in_flight == 2  # bounded, and really concurrent
    assert elapsed < 6 * 0.3  # three waves of two, not six requests in a row


def test_propose_maps_the_samples_and_a_wrong_model_is_named(smollm_tokenizer):
    with StubServer("ok", reply=" Go North!\nmore text") as stub:
        proposals = stub_prior(stub, smollm_tokenizer).propose(PROMPTS, [["go north", "go south"]] * 2, k=3, seed=1)
        assert [list(c) for c in proposals.counts] == [[3, 0], [3, 0]] and proposals.invalid_rate == 0.0
        # one request per prompt, sent concurrently (so in any order), each with its own seed and n = k
        assert sorted(r["seed"] for r in stub.completion_requests) == [1, 2]
        assert all(r["n"] == 3 for r in stub.completion_requests)
        with pytest.raises(ModelNotServedError, match="serves \\['stub-model'\\], not 'other'"):
            OpenAIPrior(stub.base_url, model="other", tokenizer=smollm_tokenizer).score(PROMPTS, CANDIDATES)


def test_pickled_copy_opens_its_own_connection(smollm_tokenizer):
    with StubServer("ok") as stub:
        prior = stub_prior(stub, smollm_tokenizer)
        prior.score(PROMPTS, CANDIDATES)
        copy = pickle.loads(pickle.dumps(prior))
        assert copy.requests == 0 and copy._client is None
        np.testing.assert_array_equal(copy.score(PROMPTS, CANDIDATES).logprobs[0], prior.score(PROMPTS, CANDIDATES).logprobs[0])


def test_features_are_refused_with_a_reason(smollm_tokenizer):
    prior = OpenAIPrior("http://127.0.0.1:9", model="m", tokenizer=smollm_tokenizer)
    with pytest.raises(ValueError, match="no hidden states"):
        prior.score(PROMPTS, CANDIDATES, return_features=True)


class Proxy:
    """``tcp_proxy.py`` as a child process that can be killed like a crashed server."""

    def __init__(self, port: int, target: int) -> None:
        script = Path(__file__).with_name("tcp_proxy.py")
        self.process = subprocess.Popen([sys.executable, str(script), str(port), str(target)], stdout=subprocess.PIPE, text=True)
        assert self.process.stdout.readline().strip() == "ready"

    def kill(self) -> None:
        self.process.kill()
        self.process.wait(timeout=10)


def test_server_killed_mid_run_gives_a_clear_error_and_leaves_the_wrapper_usable(vllm_server, smollm_tokenizer):
    port, target = free_port(), int(vllm_server.base_url.rsplit(":", 1)[1])
    proxy = Proxy(port, target)
    prior = OpenAIPrior(f"http://127.0.0.1:{port}", model=SERVED_NAME, tokenizer=smollm_tokenizer, max_retries=2, backoff=0.2)
    env = LLMPriorWrapper(CorridorTextEnv(length=4), prior, k=4, encoder="hashing")
    try:
        first, _ = env.reset(seed=0)
        killer = threading.Timer(0.2, proxy.kill)  # dies while a step's scoring request is on its way
        killer.start()
        start = time.perf_counter()
        with pytest.raises(ServerUnavailableError, match="after 3 attempt"):
            for _ in range(50):
                mask = env.action_masks().copy()
                env.step(0)
        assert time.perf_counter() - start < 20.0
        killer.join()
        assert prior.retries >= 2
        np.testing.assert_array_equal(env.action_masks(), mask)  # the last good slots are still in place

        proxy = Proxy(port, target)  # the server is back: the same wrapper and prior carry on, same numbers
        again, _ = env.reset(seed=0)
        np.testing.assert_allclose(again["prior_logprobs"], first["prior_logprobs"], atol=1e-5)
        env.step(0)
    finally:
        proxy.kill()


def test_vector_wrapper_survives_a_server_that_goes_away_and_comes_back(smollm_tokenizer):
    port = free_port()
    prior = OpenAIPrior(f"http://127.0.0.1:{port}", model="stub-model", tokenizer=smollm_tokenizer, max_retries=1, backoff=0.05)
    venv = VecLLMPrior(make_text_vec_env(lambda: CorridorTextEnv(length=4), 2), prior, k=4, encoder="hashing")
    with StubServer("ok", port=port):
        first = venv.reset()
        venv.step(np.zeros(2, dtype=np.int64))
    masks = venv.action_masks().copy()
    with pytest.raises(ServerUnavailableError):
        venv.step(np.zeros(2, dtype=np.int64))
    np.testing.assert_array_equal(venv.action_masks(), masks)
    with StubServer("ok", port=port):
        np.testing.assert_array_equal(venv.reset()["prior_logprobs"], first["prior_logprobs"])
        venv.step(np.zeros(2, dtype=np.int64))


def test_wait_until_ready_waits_for_a_starting_server_and_gives_up_on_none(smollm_tokenizer):
    port = free_port()
    prior = OpenAIPrior(f"http://127.0.0.1:{port}", model="stub-model", tokenizer=smollm_tokenizer)
    start = time.perf_counter()
    with pytest.raises(ServerUnavailableError, match="did not serve 'stub-model' within 1 s"):
        prior.wait_until_ready(timeout=1.0, interval=0.2)
    assert time.perf_counter() - start < 3.0
    stub = StubServer("ok", port=port)
    threading.Timer(0.5, stub.__enter__).start()  # the server comes up while we wait
    try:
        prior.wait_until_ready(timeout=10.0, interval=0.2)
        assert prior.served_models() == ["stub-model"]
    finally:
        stub.__exit__()


def test_propose_keeps_the_prompt_and_its_samples_within_the_context_window(smollm_tokenizer):
    long_prompt = "You walk down a long corridor. " * 40 + "\nAction:"
    with StubServer("ok", reply=" go north") as stub:
        prior = stub_prior(stub, smollm_tokenizer, max_length=64)
        with pytest.warns(UserWarning, match="oldest tokens are dropped"):
            prior.propose([long_prompt, PROMPTS[1]], [["go north"]] * 2, k=2, max_new_tokens=8, seed=0)
        sent = sorted(stub.completion_requests, key=lambda r: r["seed"])
        assert len(sent[0]["prompt"]) + sent[0]["max_tokens"] <= 64  # cut from the left...
        assert sent[0]["prompt"][-3:] == smollm_tokenizer(long_prompt)["input_ids"][-3:]  # ...keeping the end
        assert sent[1]["prompt"] == smollm_tokenizer(PROMPTS[1])["input_ids"]  # a short prompt is sent whole
        strict = stub_prior(stub, smollm_tokenizer, max_length=64, truncation="error")
        with pytest.raises(ValueError, match="context window is 64"):
            strict.propose([long_prompt], [["go north"]], k=2, max_new_tokens=8)
