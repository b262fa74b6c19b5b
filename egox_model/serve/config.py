"""`ServeConfig`: what `egox serve` runs (the generator tree) and how it serves it (`serve.*`).

The server builds its backend from the very tree the node and `egox generate` use
(`--backend prior`, `--wan.model_dir DIR`, ...), plus the `serve` group below.
"""
from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from egox_model.config import check_settings, group, setting
from egox_model.errors import ConfigError
from egox_model.generator.config import GeneratorConfig

__all__ = ["ServeConfig", "ServeOptions", "is_loopback"]


def is_loopback(host: str) -> bool:
    """True for 'localhost' and loopback addresses (127.0.0.0/8, ::1)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class ServeOptions:
    """HTTP, security and scaling options of `egox serve`."""

    host: str = setting("127.0.0.1", "address the HTTP proxy binds (non-loopback needs a "
                        "token)")
    port: int = setting(8000, "HTTP port", low=1, high=65535)
    replicas: int = setting(1, "generator replicas (each holds its own backend)", low=1)
    gpus_per_replica: float = setting(0.0, "GPUs Ray reserves per replica (fractions "
                                      "share a GPU)", low=0.0)
    cpus_per_replica: float = setting(1.0, "CPUs Ray reserves per replica", low=0.0)
    max_request_mb: float = setting(256.0, "largest request body in MB (413 above); the "
                                    "default clip is ~15 MB", low=0.0, low_open=True)
    request_timeout_s: float = setting(900.0, "longest a request may wait for and run its "
                                       "generation (504 after)", low=0.0, low_open=True)
    max_queued_requests: int = setting(8, "requests waiting per replica before the proxy "
                                       "answers 503 (the client retries those)", low=1)
    token_env: str = setting("EGOX_SERVE_TOKEN", "environment variable holding the bearer "
                             "token (used when token_file is empty)")
    token_file: str = setting("", "file holding the bearer token (preferred over token_env)")
    ray_address: str = setting("", "'' = start a private local Ray bound to 127.0.0.1; else "
                               "the address of a running cluster ('auto', 'HOST:6379')")

    def __post_init__(self) -> None:
        check_settings(self)
        if not self.host:
            raise ConfigError("must be an address or host name", key="host", value="")


@dataclass(frozen=True)
class ServeConfig(GeneratorConfig):
    """The generator served and the server's own options."""

    serve: ServeOptions = group(ServeOptions, "`egox serve`: HTTP, security, scaling")

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.backend == "remote":
            raise ConfigError("a server runs a local backend ('prior' or 'wan'), not "
                              "'remote'", key="backend", value=self.backend)
