"""Backend `remote`: send each clip to an `egox serve` server, return its result.

The clip travels in the egox wire format (`egox_model/serve/wire.py`: PNG frames, 16-bit
depth, JSON poses); the output equals the server's backend run locally on the same decoded
clip (same stamps; same pixels for `prior`). While the server is unreachable or unavailable
(connection refused or reset, HTTP 404 while Serve deploys the application, 502/503),
a clip is retried with exponential backoff,
then given up (RemoteError, counted): the caller's bounded queue (the node's `queue_size`)
holds the clips that arrive meanwhile. `status()` reports the server state, round-trip
times and counters for diagnostics.
"""
from __future__ import annotations

import dataclasses
import http.client
import threading
import time
import urllib.parse
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from egox_model.clip import Clip
from egox_model.config import check_settings, setting
from egox_model.errors import ConfigError
from egox_model.generator.base import Generator, StepCallback
from egox_model.output import GeneratorOutput
from egox_model.serve.auth import read_token
from egox_model.serve.errors import RemoteError, WireError

if TYPE_CHECKING:
    from egox_model.generator.config import GeneratorConfig

__all__ = ["RemoteConfig", "RemoteGenerator"]

#: HTTP statuses that mean "the server is not available right now": 502/503 from a proxy
#: or an overloaded Serve, 404 from Serve's proxy while the application is (re)deploying.
RETRY_STATUSES = (404, 502, 503)


@dataclass(frozen=True)
class RemoteConfig:
    """Where the generator server is and how to talk to it (backend 'remote')."""

    url: str = setting("http://127.0.0.1:8000", "base URL of the `egox serve` server "
                       "(http:// or https://)")
    token_env: str = setting("EGOX_SERVE_TOKEN", "environment variable holding the bearer "
                             "token (used when token_file is empty)")
    token_file: str = setting("", "file holding the bearer token (preferred over "
                              "token_env; '' = use token_env)")
    timeout_s: float = setting(900.0, "seconds to wait for one clip's answer (connect, "
                               "send, generate, receive)", low=0.0, low_open=True)
    retries: int = setting(5, "attempts after the first while the server is unreachable "
                           "or answers 404/502/503 (starting, overloaded); then the clip is "
                           "given up", low=0)
    backoff_s: float = setting(0.5, "wait before the first retry, doubled per retry (s)",
                               low=0.0)
    backoff_max_s: float = setting(10.0, "longest wait between retries (s)", low=0.0)
    return_prior: bool = setting(True, "ask for the prior's frames, coverage and ego depth "
                                 "too (default clip: 11.3 instead of 5.1 MB back); a node "
                                 "with publish_prior true asks anyway")
    png_compression: int = setting(1, "PNG compression level of the frames sent (0 = "
                                   "fastest, 9 = smallest; lossless at every level)",
                                   low=0, high=9)
    depth_unit_mm: float = setting(1.0, "quantum of metric depth on the wire in mm (16-bit: "
                                   "range 65535 units, error <= half a unit)", low=0.0,
                                   high=1000.0, low_open=True)

    def __post_init__(self) -> None:
        check_settings(self)
        parsed = urllib.parse.urlsplit(self.url)
        if parsed.scheme not in ("http", "https") or not parsed.hostname:
            raise ConfigError("must be an http:// or https:// URL with a host", key="url",
                              value=self.url)


class RemoteGenerator(Generator):
    """Client of `egox serve`: one HTTP POST per clip, retried while the server is down."""

    name = "remote"

    def __init__(self, config: RemoteConfig = RemoteConfig(), *,
                 sleep=time.sleep) -> None:
        self.config = config
        self._token = read_token(config.token_file, config.token_env)
        parsed = urllib.parse.urlsplit(config.url)
        self._https = parsed.scheme == "https"
        self._host, self._port = parsed.hostname, parsed.port
        self._path = parsed.path.rstrip("/") + "/v1/generate"
        self._sleep = sleep
        self._lock = threading.Lock()
        self.counters = {"requests": 0, "retries": 0, "clips_ok": 0, "clips_failed": 0,
                         "bytes_sent": 0, "bytes_received": 0}
        self.server_state = "unknown"          # "up", "down" (unreachable) or "error"
        self.last_rtt_ms: float | None = None
        self.last_error = ""
        self.server_backend = ""
        self.last_wire: dict[str, float] = {}  # last clip: bytes and encode/decode ms

    @classmethod
    def from_config(cls, config: GeneratorConfig) -> RemoteGenerator:
        """The client of the tree's `remote` settings; a node that publishes the prior
        (`publish_prior`) always asks for it."""
        remote = config.remote
        if getattr(config, "publish_prior", False) and not remote.return_prior:
            remote = dataclasses.replace(remote, return_prior=True)
        return cls(remote)

    # ---- one request -----------------------------------------------------------------------
    def _connection(self) -> http.client.HTTPConnection:
        kind = http.client.HTTPSConnection if self._https else http.client.HTTPConnection
        return kind(self._host, self._port, timeout=self.config.timeout_s)

    def _post(self, body: bytes) -> bytes:
        """The response body of one POST; RemoteError (retryable or not) otherwise."""
        from egox_model.serve.wire import CONTENT_TYPE
        headers = {"Content-Type": CONTENT_TYPE, "Content-Length": str(len(body))}
        if self._token:
            headers["Authorization"] = f"Bearer {self._token}"
        connection = self._connection()
        try:
            connection.request("POST", self._path, body=body, headers=headers)
            response = connection.getresponse()
            data = response.read()
        except TimeoutError as err:
            raise RemoteError(f"no answer from {self.config.url} within "
                              f"{self.config.timeout_s:g} s (remote.timeout_s): {err}") from err
        except (OSError, http.client.HTTPException) as err:
            raise RemoteError(f"server {self.config.url} unreachable: "
                              f"{type(err).__name__}: {err}", retryable=True) from err
        finally:
            connection.close()
        if response.status != 200:
            reason = data[:300].decode("utf-8", "replace")
            hint = {401: " (check remote.token_file / remote.token_env)",
                    413: " (the server's max_request_mb is too small for this clip)"}
            raise RemoteError(f"server {self.config.url} answered {response.status}: "
                              f"{reason}{hint.get(response.status, '')}",
                              status=response.status,
                              retryable=response.status in RETRY_STATUSES)
        return data

    # ---- the backend -----------------------------------------------------------------------
    def generate(self, clip: Clip, *, callback: StepCallback | None = None) -> GeneratorOutput:
        """Send `clip`, wait for its result. While the server is unavailable, retries after
        backoff_s, 2 backoff_s, ... (at most backoff_max_s), calling `callback(0, 1)` about
        every 0.1 s while it waits (so a caller can abandon); RemoteError once the retries
        are spent or for a refusal (401, 413, 4xx, 5xx other than 404/502/503)."""
        from egox_model.serve.wire import decode_output, encode_clip
        cfg = self.config
        t0 = time.perf_counter()
        body = encode_clip(clip, png_level=cfg.png_compression,
                           depth_unit_m=cfg.depth_unit_mm / 1000.0,
                           options={"return_prior": cfg.return_prior})
        encode_ms = (time.perf_counter() - t0) * 1e3
        attempt = 0
        while True:
            with self._lock:
                self.counters["requests"] += 1
            start = time.perf_counter()
            try:
                data = self._post(body)
                break
            except RemoteError as err:
                with self._lock:
                    self.server_state = "down" if err.retryable else "error"
                    self.last_error = str(err)
                if not err.retryable or attempt >= cfg.retries:
                    with self._lock:
                        self.counters["clips_failed"] += 1
                    if err.retryable:
                        raise RemoteError(f"{err} (gave up after {attempt + 1} attempts)",
                                          status=err.status, retryable=True) from err
                    raise
            self._wait(min(cfg.backoff_s * 2 ** attempt, cfg.backoff_max_s), callback)
            attempt += 1
            with self._lock:
                self.counters["retries"] += 1
        rtt_ms = (time.perf_counter() - start) * 1e3
        t1 = time.perf_counter()
        try:
            output, extra = decode_output(data)
        except WireError as err:
            with self._lock:
                self.counters["clips_failed"] += 1
                self.server_state, self.last_error = "error", f"bad response: {err}"
            raise RemoteError(f"server {cfg.url} sent a malformed result: {err}") from err
        decode_ms = (time.perf_counter() - t1) * 1e3
        with self._lock:
            self.server_state, self.last_rtt_ms = "up", rtt_ms
            self.server_backend = output.backend
            self.counters["clips_ok"] += 1
            self.counters["bytes_sent"] += len(body)
            self.counters["bytes_received"] += len(data)
            self.last_wire = {"request_bytes": len(body), "response_bytes": len(data),
                              "encode_ms": encode_ms, "decode_ms": decode_ms,
                              "server_ms": float(extra.get("server_ms", 0.0)),
                              "server_decode_ms": float(extra.get("server_decode_ms", 0.0))}
        if callback is not None:
            callback(0, 1)
        output.diagnostics = {**output.diagnostics, "remote": {
            "url": cfg.url, "rtt_ms": rtt_ms, "attempts": attempt + 1, **self.last_wire}}
        return output

    def _wait(self, seconds: float, callback: StepCallback | None) -> None:
        left = seconds
        while True:
            if callback is not None:
                callback(0, 1)
            if left <= 1e-9:
                return
            step = min(0.1, left)
            self._sleep(step)
            left -= step

    def status(self) -> dict[str, Any]:
        """Server state ("unknown" before the first clip, "up", "down" = unreachable or
        unavailable, "error" = it refused the last request), the last round trip in ms, the
        counters and the last error: for the node's diagnostics."""
        with self._lock:
            return {"server": self.server_state, "server_url": self.config.url,
                    "server_backend": self.server_backend,
                    "rtt_ms": None if self.last_rtt_ms is None else round(self.last_rtt_ms, 1),
                    **self.counters, "last_error": self.last_error}
