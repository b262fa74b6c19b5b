"""`egox serve` as a real Ray Serve application (backend 'prior', loopback only), driven by
the `remote` backend and by raw HTTP: equality with the local backend, the token, bad
bodies, and a server killed and restarted under a running node.

One server process (its own private Ray) serves the whole module; the last test kills it
and starts another on the same port. Each start takes ~10 s.
"""
from __future__ import annotations

import dataclasses
import http.client
import json
import os
import secrets
import signal
import socket
import struct
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")

from egox_model.generator import GeneratorConfig, make_generator  # noqa: E402
from egox_model.generator.remote import RemoteConfig, RemoteGenerator  # noqa: E402
from egox_model.serve.errors import RemoteError  # noqa: E402
from egox_model.serve.wire import CONTENT_TYPE, encode_clip, roundtrip_clip  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
EGOX = [sys.executable, "-c", "from egox_ros.cli import main; main()"]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class ServerProcess:
    """`egox serve --backend prior` in its own session (its Ray processes with it)."""

    def __init__(self, tmp: Path, port: int, token_file: Path) -> None:
        self.port, self.url = port, f"http://127.0.0.1:{port}"
        self.log = tmp / f"serve-{time.monotonic_ns()}.log"
        env = dict(os.environ, PYTHONPATH=str(ROOT), RAY_USAGE_STATS_ENABLED="0")
        env.setdefault("RAY_TMPDIR", str(tmp / "ray"))
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(
                EGOX + ["serve", "--backend", "prior", "--serve.port", str(port),
                        "--serve.token_file", str(token_file), "--serve.max_request_mb", "4",
                        "--serve.cpus_per_replica", "0"],
                env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 90
        while not self.healthy():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.kill()
                pytest.fail(f"egox serve did not come up:\n{self.log.read_text()[-3000:]}")
            time.sleep(0.2)

    def healthy(self) -> bool:
        try:
            return request("GET", self.port, "/healthz")[0] == 200
        except OSError:
            return False

    def kill(self) -> None:
        """SIGKILL the whole session: the server and every Ray process it started."""
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait(10)

    def stop(self) -> None:
        """SIGTERM (the server shuts Serve and Ray down), then kill what is left."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                pass
        self.kill()


def request(method: str, port: int, path: str, body=None, headers=None):
    """(status, body) of one request on loopback."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("serve")
    token = secrets.token_urlsafe(32)
    token_file = tmp / "token"
    token_file.write_text(token + "\n")
    state = {"token": token, "token_file": token_file, "tmp": tmp, "port": _free_port()}
    state["proc"] = ServerProcess(tmp, state["port"], token_file)
    yield state
    state["proc"].stop()


def client(server, **kwargs) -> RemoteGenerator:
    config = RemoteConfig(url=server["proc"].url, token_file=str(server["token_file"]),
                          **kwargs)
    return RemoteGenerator(config)


def auth(server) -> dict:
    return {"Authorization": f"Bearer {server['token']}", "Content-Type": CONTENT_TYPE}


def test_healthz_needs_no_token(server):
    status, body = request("GET", server["port"], "/healthz")
    assert status == 200 and json.loads(body)["backend"] == "prior"


def test_a_clip_round_trips_and_equals_the_local_result(server, small_scene):
    clip = small_scene.to_clip()
    remote = client(server)
    out = remote.generate(clip)
    local = make_generator(GeneratorConfig()).generate(roundtrip_clip(clip))
    assert out.backend == "prior" and out.diagnostics["note"] == local.diagnostics["note"]
    np.testing.assert_array_equal(out.stamps_ns, clip.stamps_ns)
    np.testing.assert_array_equal(out.ego_rgb, local.ego_rgb)
    np.testing.assert_array_equal(out.prior.rgb, local.prior.rgb)
    np.testing.assert_array_equal(out.prior.mask, local.prior.mask)
    assert np.abs(out.prior.depth_m - local.prior.depth_m).max() <= 0.0005 + 1e-6
    status = remote.status()
    assert status["server"] == "up" and status["clips_ok"] == 1 and status["rtt_ms"] > 0
    assert out.diagnostics["remote"]["request_bytes"] == status["bytes_sent"]
    # A clip already on the wire's depth grid: remote == local on the very same clip.
    exact = roundtrip_clip(clip)
    np.testing.assert_array_equal(remote.generate(exact).ego_rgb,
                                  make_generator(GeneratorConfig()).generate(exact).ego_rgb)
    bare = client(server, return_prior=False).generate(clip)
    assert bare.prior.rgb.shape[1:3] == (0, 0)
    np.testing.assert_array_equal(bare.ego_rgb, out.ego_rgb)


def test_a_wrong_or_missing_token_is_401(server, small_scene, tmp_path):
    body = encode_clip(small_scene.to_clip())
    for headers in ({}, {"Authorization": "Bearer nope"},
                    {"Authorization": f"Basic {server['token']}"},
                    {"Authorization": f"Bearer {server['token']}x"}):
        status, text = request("POST", server["port"], "/v1/generate", body, headers)
        assert status == 401, (headers, text)
    wrong = tmp_path / "wrong"
    wrong.write_text("not-the-token")
    remote = RemoteGenerator(RemoteConfig(url=server["proc"].url, token_file=str(wrong)))
    with pytest.raises(RemoteError, match="answered 401.*remote.token_file"):
        remote.generate(small_scene.to_clip())
    assert remote.status()["requests"] == 1 and remote.status()["server"] == "error"


def test_oversized_and_malformed_bodies_are_4xx_and_server_keeps_serving(server, small_scene):
    port, headers = server["port"], auth(server)
    big = b"\0" * 5_000_000                                        # limit: 4 MB
    assert request("POST", port, "/v1/generate", big, headers)[0] == 413
    chunks = iter([b"\0" * 1_000_000] * 5)                         # no Content-Length
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        conn.request("POST", "/v1/generate", body=chunks, headers=headers,
                     encode_chunked=True)
        assert conn.getresponse().status == 413
    finally:
        conn.close()
    status, text = request("POST", port, "/v1/generate", b"EGOX\x01Cgarbage", headers)
    assert status == 400 and b"malformed" in text
    good = encode_clip(small_scene.to_clip())
    size = struct.unpack_from("<I", good, 6)[0]
    header = json.loads(good[10:10 + size])
    header["exo_K"]["fx"] = 0.0
    text = json.dumps(header).encode()
    bad_clip = good[:6] + struct.pack("<I", len(text)) + text + good[10 + size:]
    status, text = request("POST", port, "/v1/generate", bad_clip, headers)
    assert status == 422 and b"focal length" in text
    status, _ = request("POST", port, "/v1/generate", good, headers)
    assert status == 200 and server["proc"].healthy()


def test_server_killed_mid_run_node_keeps_bounded_clips_and_recovers(server, small_scene):
    from diagnostic_msgs.msg import DiagnosticStatus

    from egox_ros.harness import RosHarness, wait_until
    from egox_ros.node import EgoxNode
    from egox_ros.params import EgoxConfig

    clip = small_scene.to_clip()
    # 1. The client alone: the server dies, the clip is given up after its retries.
    server["proc"].kill()
    quick = client(server, retries=2, backoff_s=0.05)
    with pytest.raises(RemoteError, match="unreachable.*gave up after 3 attempts"):
        quick.generate(clip)
    assert quick.status()["server"] == "down" and quick.status()["clips_failed"] == 1

    # 2. A node with backend 'remote': clips arrive while the server is down.
    config = EgoxConfig(backend="remote", queue_size=2, diagnostics_period_s=60.0,
                        remote=RemoteConfig(url=server["proc"].url,
                                            token_file=str(server["token_file"]),
                                            retries=1000, backoff_s=0.1, backoff_max_s=0.3))
    harness = RosHarness()
    try:
        node = harness.add(EgoxNode(config=config, namespace=f"/serve{os.getpid()}",
                                    context=harness.context))
        node._enqueue(dataclasses.replace(clip, meta={}), time.monotonic())
        wait_until(lambda: node.stats()["backend_requests"] >= 1, 20,
                   what="the first clip in flight")
        for _ in range(4):
            node._enqueue(dataclasses.replace(clip, meta={}), time.monotonic())
        wait_until(lambda: node.stats()["backend_retries"] >= 1, 20,
                   what=lambda: f"server down in {node.stats()}")
        stats = node.stats()
        assert stats["queue_depth"] <= 2 and stats["queue_overflow"] == 2     # 1 in flight
        assert stats["backend_retries"] >= 1 and stats.get("clips_published", 0) == 0
        node.publish_diagnostics()
        diag = node.last_diagnostics
        values = {kv.key: kv.value for kv in diag.values}
        assert values["backend_server"] == "down" and "unreachable" in values[
            "backend_last_error"]
        assert diag.level == DiagnosticStatus.WARN and "queue_overflow 2" in diag.message

        # 3. The server returns on the same port: the held clips go through.
        server["proc"] = ServerProcess(server["tmp"], server["port"], server["token_file"])
        wait_until(lambda: node.stats().get("clips_published", 0) == 3, 60,
                   what=lambda: f"3 clips published after the restart: {node.stats()}")
        stats = node.stats()
        assert stats["backend_server"] == "up" and stats["backend_clips_ok"] == 3
        assert stats.get("generator_error", 0) == 0 and stats["queue_depth"] == 0
    finally:
        harness.close()
