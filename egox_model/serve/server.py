"""Starting and stopping `egox serve`: Ray on loopback, then the Serve application.

Network hygiene: a private Ray started here binds its node to 127.0.0.1, has no dashboard,
sends no usage statistics (`RAY_USAGE_STATS_ENABLED=0`, set before Ray is imported), keeps
its files under `RAY_TMPDIR` (or Ray's default) and authenticates its own RPCs with a fresh
random token (`RAY_AUTH_TOKEN`) unless the environment configures Ray's auth already or
this process imported Ray before. The HTTP proxy binds `serve.host` (127.0.0.1 by
default); a non-loopback host is refused without a token.
"""
from __future__ import annotations

import os
import secrets
import signal
import sys
import threading
from dataclasses import dataclass
from typing import Any, Callable

from egox_model.config import to_flat
from egox_model.errors import ConfigError
from egox_model.serve.auth import read_token, token_digest
from egox_model.serve.config import ServeConfig, is_loopback

__all__ = ["APP_NAME", "RunningServer", "start_server", "wait_for_signal"]

APP_NAME = "egox"


@dataclass
class RunningServer:
    """A started server: its URL and whether requests need a token."""

    url: str
    token_required: bool
    owns_ray: bool

    def stop(self) -> None:
        """Delete the application, stop Serve and (if this process started it) Ray."""
        import ray
        from ray import serve
        serve.shutdown()
        if self.owns_ray:
            ray.shutdown()


def _start_ray(address: str) -> bool:
    """Connect to `address`, or start a private loopback-only Ray; True if started here."""
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    # Ray caches its auth token per process on first use: a fresh one only if Ray has not
    # been imported here yet; it then stays in the environment (a later ray.init in this
    # process must see the same token).
    fresh_token = "ray" not in sys.modules and not any(
        os.environ.get(k) for k in ("RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH", "RAY_AUTH_MODE"))
    import ray
    if ray.is_initialized():
        return False
    options: dict[str, Any] = dict(include_dashboard=False, configure_logging=False,
                                   log_to_driver=False, namespace=APP_NAME)
    if address:
        ray.init(address=address, **options)
        return False
    if fresh_token:
        # Ray's own token auth (on by default in Ray 2.60) with a fresh token for this
        # private cluster, inherited by its processes, instead of a generated ~/.ray/auth_token.
        os.environ["RAY_AUTH_TOKEN"] = secrets.token_hex(32)
    temp = os.environ.get("RAY_TMPDIR")
    ray.init(_node_ip_address="127.0.0.1", **({"_temp_dir": temp} if temp else {}),
             **options)
    return True


def start_server(config: ServeConfig, *, log: Callable[[str], None] = print) -> RunningServer:
    """Start the Serve application of `config` and return once it is ready.

    Raises ConfigError for a non-loopback host without a token, or an unreadable token."""
    opts = config.serve
    token = read_token(opts.token_file, opts.token_env)
    if not token and not is_loopback(opts.host):
        raise ConfigError(f"refusing to serve on non-loopback address {opts.host!r} without "
                          f"a token: put one in a file (--serve.token_file) or in "
                          f"${opts.token_env}", key="serve.host", value=opts.host)
    if not token:
        log("warning: no token: any local process may use this server (loopback only)")
    generator_settings = {k: v for k, v in to_flat(config).items()
                          if not k.startswith("serve.")}

    owns_ray = _start_ray(opts.ray_address)
    from ray import serve

    from egox_model.serve.app import EgoxServer
    try:
        serve.start(http_options={"host": opts.host, "port": opts.port})
        deployment = serve.deployment(
            serve.ingress()(EgoxServer), name="EgoxServer", num_replicas=opts.replicas,
            max_ongoing_requests=4, max_queued_requests=opts.max_queued_requests,
            ray_actor_options={"num_gpus": opts.gpus_per_replica,
                               "num_cpus": opts.cpus_per_replica})
        app = deployment.bind(generator_settings, token_digest(token) if token else "",
                              int(opts.max_request_mb * 1e6), opts.request_timeout_s)
        serve.run(app, name=APP_NAME, route_prefix="/", blocking=False)
    except BaseException:
        if owns_ray:
            import ray
            ray.shutdown()
        raise
    host = f"[{opts.host}]" if ":" in opts.host else opts.host
    return RunningServer(url=f"http://{host}:{opts.port}", token_required=bool(token),
                         owns_ray=owns_ray)


def wait_for_signal() -> None:
    """Block until SIGINT or SIGTERM."""
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    while not stop.wait(1.0):
        pass
