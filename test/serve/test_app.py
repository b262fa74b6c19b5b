"""The ingress app of one replica, driven in-process through ASGI (no Ray, no sockets):
the per-request timeout and the one-clip-at-a-time rule."""
import asyncio
import json
import threading
import time

import pytest

from egox_model.serve.app import EgoxServer
from egox_model.serve.auth import token_digest
from egox_model.serve.wire import CONTENT_TYPE, decode_output, encode_clip


async def call(app, method: str, path: str, body: bytes = b"", headers=None):
    """(status, body) of one request through the ASGI app."""
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
             "method": method, "scheme": "http", "path": path, "raw_path": path.encode(),
             "query_string": b"", "root_path": "", "server": ("127.0.0.1", 80),
             "client": ("127.0.0.1", 1234),
             "headers": [(k.lower().encode(), v.encode()) for k, v in
                         {"content-length": str(len(body)), **(headers or {})}.items()]}
    sent = {"done": False}
    out = {"status": None, "body": b""}

    async def receive():
        if not sent["done"]:
            sent["done"] = True
            return {"type": "http.request", "body": body, "more_body": False}
        await asyncio.sleep(3600)

    async def send(message):
        if message["type"] == "http.response.start":
            out["status"] = message["status"]
        elif message["type"] == "http.response.body":
            out["body"] += message.get("body", b"")

    await app(scope, receive, send)
    return out["status"], out["body"]


class Slow:
    """The prior backend behind a gate: generate() blocks until released."""

    name = "prior"

    def __init__(self, inner):
        self.inner, self.gate, self.calls = inner, threading.Event(), 0

    def generate(self, clip, *, callback=None):
        self.calls += 1
        self.gate.wait(10)
        return self.inner.generate(clip)


@pytest.fixture
def replica():
    server = EgoxServer({"backend": "prior"}, token_digest("t0k"), 10_000_000, 0.5)
    server.generator = Slow(server.generator)
    slow = server.generator
    yield server, server.__serve_build_asgi_app__()
    slow.gate.set()


HEADERS = {"authorization": "Bearer t0k", "content-type": CONTENT_TYPE}


def test_a_request_past_the_timeout_is_504_and_the_next_one_waits(replica, small_scene):
    server, app = replica
    body = encode_clip(small_scene.to_clip())

    async def scenario():
        slow = asyncio.ensure_future(call(app, "POST", "/v1/generate", body, HEADERS))
        await asyncio.sleep(0.1)
        status, text = await call(app, "GET", "/healthz")
        assert status == 200 and json.loads(text)["busy"] is True
        start = time.monotonic()
        second = await call(app, "POST", "/v1/generate", body, HEADERS)
        assert second[0] == 504 and b"request_timeout_s" in second[1]
        assert time.monotonic() - start < 2.0
        result = await slow
        assert server.generator.calls == 1             # the second never reached the backend
        server.generator.gate.set()                    # the timed-out clip finishes
        return result

    status, text = asyncio.run(scenario())
    assert status == 504 and b"serve.request_timeout_s" in text
    status, text = asyncio.run(call(app, "POST", "/v1/generate", body, HEADERS))
    assert status == 200 and decode_output(text)[0].backend == "prior"
    assert asyncio.run(call(app, "POST", "/v1/generate", body, {}))[0] == 401


def test_a_failing_backend_is_500_with_its_message_and_a_logged_traceback(replica, small_scene,
                                                                          caplog):
    server, app = replica

    class Broken:
        name = "prior"

        def generate(self, clip, *, callback=None):
            raise RuntimeError("CUDA out of memory (simulated)")

    server.generator = Broken()
    with caplog.at_level("ERROR", logger="ray.serve"):
        status, text = asyncio.run(call(app, "POST", "/v1/generate",
                                        encode_clip(small_scene.to_clip()), HEADERS))
    assert status == 500 and b"RuntimeError: CUDA out of memory (simulated)" in text
    assert any(r.exc_info and "CUDA out of memory" in str(r.exc_info[1])
               for r in caplog.records)
