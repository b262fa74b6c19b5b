"""Starting and stopping `egox serve`: Ray on loopback, then the Serve application.

Network hygiene: a private Ray started here talks over loopback only (`egox_model.ray_local`
says what that takes with Ray 2.60). The HTTP proxy binds `serve.host` (127.0.0.1 by
default); a non-loopback host is refused without a token.
"""
from __future__ import annotations

import signal
import sys
import threading
from dataclasses import dataclass
from typing import Callable

from egox_model.config import to_flat
from egox_model.errors import ConfigError
from egox_model.ray_local import connect_ray, start_local_ray
from egox_model.serve.auth import read_token, token_digest
from egox_model.serve.config import ServeConfig, is_loopback

__all__ = ["APP_NAME", "RunningServer", "start_server", "wait_for_signal"]

APP_NAME = "egox"


@dataclass
class RunningServer:
    """A started server: its URL and whether requests need a token."""

    url: str
    token_required: bool
    stop_ray: Callable[[], None] | None

    def stop(self) -> None:
        """Delete the application, stop Serve and (if this process started it) Ray."""
        from ray import serve
        serve.shutdown()
        if self.stop_ray is not None:
            self.stop_ray()


def _start_ray(address: str) -> Callable[[], None] | None:
    """Connect to `address`, or start a private loopback-only Ray; its `stop` if started
    or connected here, None if this process had Ray running already."""
    ray = sys.modules.get("ray")
    if ray is not None and ray.is_initialized():
        return None
    if address:
        return connect_ray(address, namespace=APP_NAME)
    return start_local_ray(namespace=APP_NAME)


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

    stop_ray = _start_ray(opts.ray_address)
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
        if stop_ray is not None:
            stop_ray()
        raise
    host = f"[{opts.host}]" if ":" in opts.host else opts.host
    return RunningServer(url=f"http://{host}:{opts.port}", token_required=bool(token),
                         stop_ray=stop_ray)


def wait_for_signal() -> None:
    """Block until SIGINT or SIGTERM."""
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    while not stop.wait(1.0):
        pass
