"""A scripted stand-in for an OpenAI-compatible server on loopback: the faults a real server shows only rarely.

It speaks just enough of ``/v1/models`` and ``/v1/completions`` for :class:`OpenAIPrior`: echoed prompts get
log-prob -1.0 per token (so any sum is minus the token count), sampling requests get ``n`` copies of ``reply``.
``mode`` injects one fault:

- ``"ok"``: well-formed answers;
- ``"slow"``: a mode name for readability; any mode waits ``delay`` seconds before each completion answer;
- ``"flaky"``: the first ``failures`` completion requests get HTTP 503;
- ``"shifted"``: log-probs moved one position early, as llama-cpp-python's server does for some models;
- ``"no_logprobs"``: ``logprobs: null``, as servers that do not implement echo;
- ``"retokenized"``: the echo starts with an extra BOS token, as servers that tokenise token-id prompts again;
- ``"lost_choice"``: one echoed sequence missing from the answer;
- ``"bad_json"``: a 200 answer that is not JSON;
- ``"cached_prefix"``: echoed positions 1-4 have no log-prob, as a server that read them from its prefix cache;
- ``"ignores_token_ids"``: one-token generations answer only the sampled token's log-prob, as servers without
  vLLM's ``logprob_token_ids``.

One-token generation requests with ``logprob_token_ids`` get log-prob -1.0 for every id asked for.
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True  # a stub restarted on the same port, as a server coming back

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client that timed out and hung up is what the slow-server test wants, not a traceback


class StubServer:
    """``with StubServer("slow", delay=5) as stub: OpenAIPrior(stub.base_url, model=stub.model, ...)``"""

    def __init__(
        self, mode: str = "ok", *, model: str = "stub-model", delay: float = 0.0, failures: int = 0,
        reply: str = "go north", port: int = 0,
    ) -> None:  # fmt: skip
        self.mode, self.model, self.delay, self.failures, self.reply = mode, model, delay, failures, reply
        self.completion_requests: list[dict[str, Any]] = []
        self.in_flight = self.max_in_flight = 0  # concurrent completion requests, now and at most
        self._count_lock = threading.Lock()
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:  # keep test output clean
                pass

            in_flight = False  # this request counts in stub.in_flight until its answer is about to be written

            def _done(self) -> None:
                if self.in_flight:
                    with stub._count_lock:
                        stub.in_flight -= 1
                    self.in_flight = False

            def _send(self, status: int, payload: Any, raw: bytes | None = None) -> None:
                data = raw if raw is not None else json.dumps(payload).encode()
                # no longer in flight once answered: the client may send its next request as soon as it has read
                # this one, possibly before this handler's thread runs again
                self._done()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                if self.path == "/v1/models":
                    self._send(200, {"object": "list", "data": [{"id": stub.model, "max_model_len": 4096}]})
                else:
                    self._send(404, {"error": {"message": "not found"}})

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with stub._count_lock:
                    stub.completion_requests.append(body)
                    stub.in_flight += 1
                    stub.max_in_flight = max(stub.max_in_flight, stub.in_flight)
                self.in_flight = True
                try:
                    self._complete(body)
                finally:
                    self._done()

            def _complete(self, body: dict[str, Any]) -> None:
                if stub.delay:
                    time.sleep(stub.delay)
                if stub.mode == "flaky" and len(stub.completion_requests) <= stub.failures:
                    return self._send(503, {"error": {"message": "engine overloaded"}})
                if body.get("model") != stub.model:
                    return self._send(404, {"error": {"message": f"The model `{body.get('model')}` does not exist."}})
                if stub.mode == "bad_json":
                    return self._send(200, None, raw=b"<html>proxy error</html>")
                self._send(200, stub.answer(body))

        self._server = _QuietServer(("127.0.0.1", port), Handler)
        self.base_url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def answer(self, body: dict[str, Any]) -> dict[str, Any]:
        if body.get("logprob_token_ids") is not None:
            asked = [] if self.mode == "ignores_token_ids" else body["logprob_token_ids"]
            tops = {"token_id:0": -0.5, **{f"token_id:{t}": -1.0 for t in asked}}
            return {"choices": [{"index": i, "text": "", "logprobs": {"tokens": ["token_id:0"], "token_logprobs": [-0.5],
                                                                       "top_logprobs": [tops]}}
                                for i in range(len(body["prompt"]))]}
        if not body.get("echo"):
            return {"choices": [{"index": i, "text": self.reply} for i in range(body.get("n", 1))]}
        choices = []
        for index, ids in enumerate(body["prompt"]):
            ids = list(ids)
            if self.mode == "retokenized":
                ids = [1] + ids
            values: list[float | None] = [None] + [-1.0] * (len(ids) - 1)
            if self.mode == "shifted":
                values = values[1:] + [None]
            if self.mode == "cached_prefix":
                values[1:5] = [None] * 4
            logprobs = {"tokens": [f"token_id:{i}" for i in ids], "token_logprobs": values}
            choices.append({"index": index, "text": "", "logprobs": None if self.mode == "no_logprobs" else logprobs})
        return {"choices": choices[:-1] if self.mode == "lost_choice" else choices}

    def __enter__(self) -> StubServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
