"""Ray for egox: a private loopback-only Ray on this machine, or a connection to a cluster.

Used by `egox serve` and `egox convert --ray`. What each setting of `start_local_ray` stops
(Ray 2.60, checked with strace in a network namespace with a routable interface; the test
is test/ros/test_convert_ray.py::test_local_ray_binds_and_connects_on_loopback_only):

- `_node_ip_address="127.0.0.1"` alone is not enough: Ray replaces a loopback node address
  with the machine's routable one (found by a UDP connect towards 8.8.8.8) and its gRPC
  servers then listen on every interface. `RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0` makes it
  keep 127.0.0.1 (every port then binds 127.0.0.1).
- `RAY_USAGE_STATS_ENABLED=0`: no usage reports.
- The dashboard process starts even with `include_dashboard=False` (its usage-stats module)
  and asks the Azure/AWS/GCP metadata services (169.254.169.254, metadata.google.internal)
  which cloud it is on, usage stats or not. Its HTTP goes to a closed loopback port instead
  (http(s)_proxy while Ray starts, loopback exempt); tasks and actors get the caller's proxy
  settings back through the job's runtime_env.
- Logs and sockets under `temp_dir` (or $RAY_TMPDIR).
- Ray's own token auth (on by default in 2.60) with a fresh random `RAY_AUTH_TOKEN` instead
  of a generated `~/.ray/auth_token`, unless Ray auth is configured already. Ray caches the
  token per process on first use: the fresh one is chosen only before this process first
  imports Ray and is never removed (removing it makes a later `ray.init` here fail).
"""
from __future__ import annotations

import os
import secrets
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator

from egox_model.errors import EgoxError

__all__ = ["connect_ray", "ray_session", "start_local_ray"]

#: A closed loopback port: Ray's own processes send plain HTTP through it.
_DEAD_PROXY = "http://127.0.0.1:9"
_PROXY_VARS = ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "all_proxy",
               "ALL_PROXY", "no_proxy", "NO_PROXY")
_AUTH_VARS = ("RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH", "RAY_AUTH_MODE")
_INIT_OPTIONS = dict(configure_logging=False, log_to_driver=False)


@contextmanager
def _env(values: dict[str, str]) -> Iterator[None]:
    old = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _set_fresh_token() -> None:
    """A fresh RAY_AUTH_TOKEN when nothing configures Ray's auth and Ray is not loaded yet."""
    if "ray" not in sys.modules and not any(os.environ.get(k) for k in _AUTH_VARS):
        os.environ["RAY_AUTH_TOKEN"] = secrets.token_hex(32)


def start_local_ray(num_cpus: int | None = None, temp_dir: str | None = None, *,
                    namespace: str | None = None) -> Callable[[], None]:
    """Start a private Ray on this machine that talks over loopback only; returns `stop`.

    Raises EgoxError (after stopping it) if Ray came up on any other address."""
    _set_fresh_token()
    import ray

    saved = {k: os.environ.get(k, "") for k in _PROXY_VARS}
    quiet = {"RAY_USAGE_STATS_ENABLED": "0", "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
             **{k: _DEAD_PROXY for k in _PROXY_VARS if "no_proxy" not in k.lower()},
             "no_proxy": "127.0.0.1,localhost,::1", "NO_PROXY": "127.0.0.1,localhost,::1"}
    temp_dir = temp_dir or os.environ.get("RAY_TMPDIR") or None
    options: dict[str, Any] = dict(_INIT_OPTIONS, namespace=namespace)
    if temp_dir:
        options["_temp_dir"] = str(Path(temp_dir).resolve())
    with _env(quiet):
        from ray._private import ray_constants
        ray_constants.ENABLE_RAY_CLUSTER = False    # in case ray was imported before
        ray.init(address="local", num_cpus=num_cpus, include_dashboard=False,
                 _node_ip_address="127.0.0.1", runtime_env={"env_vars": saved}, **options)
    addresses = {node["NodeManagerAddress"] for node in ray.nodes()}
    if addresses != {"127.0.0.1"}:
        ray.shutdown()
        raise EgoxError(f"the local Ray came up on {sorted(addresses)}, not on loopback only; "
                        "stopped it (a Ray version this code does not know?)")
    return ray.shutdown


def connect_ray(address: str, *, namespace: str | None = None) -> Callable[[], None]:
    """Connect to the running cluster at `address` (host:port or `ray://`); returns `stop`."""
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    import ray
    ray.init(address=address, namespace=namespace, **_INIT_OPTIONS)
    return ray.shutdown


@contextmanager
def ray_session(address: str, *, num_cpus: int | None = None) -> Iterator[None]:
    """`auto`: a private loopback-only Ray for the duration; otherwise connect to the
    cluster at `address` (and disconnect). A Ray this process has already started is used
    as it is and left running."""
    ray = sys.modules.get("ray")
    if ray is not None and ray.is_initialized():
        yield
        return
    stop = start_local_ray(num_cpus) if address == "auto" else connect_ray(address)
    try:
        yield
    finally:
        stop()
