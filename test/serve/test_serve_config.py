"""`egox serve` options: refused before Ray starts when the address is not loopback and no
token is set; a server cannot run the remote backend."""
import sys

import pytest

from egox_model.config import from_flat
from egox_model.errors import ConfigError
from egox_model.serve.config import ServeConfig, is_loopback
from egox_model.serve.server import start_server


def test_loopback_addresses():
    for host in ("127.0.0.1", "127.8.0.1", "::1", "localhost"):
        assert is_loopback(host), host
    for host in ("0.0.0.0", "::", "10.0.0.2", "192.168.1.5", "gpu-host", ""):
        assert not is_loopback(host), host


def test_non_loopback_without_a_token_is_refused_before_ray_starts(monkeypatch):
    monkeypatch.delenv("EGOX_SERVE_TOKEN", raising=False)
    config = from_flat(ServeConfig, {"serve.host": "0.0.0.0"})
    with pytest.raises(ConfigError, match="refusing to serve on non-loopback address "
                                          "'0.0.0.0' without a token"):
        start_server(config, log=lambda text: None)
    assert "ray" not in sys.modules or not sys.modules["ray"].is_initialized()


def test_the_cli_says_so_in_one_line_and_exits_2(monkeypatch, capfd):
    """Through the console script's `main` in this process, no token in the environment (a
    real `egox serve` process: test_serve.py)."""
    from egox_ros.cli import main

    monkeypatch.delenv("EGOX_SERVE_TOKEN", raising=False)
    monkeypatch.setattr(sys, "argv", ["egox", "serve", "--serve.host", "10.1.2.3"])
    with pytest.raises(SystemExit) as exit_:
        main()
    stderr = capfd.readouterr().err
    assert exit_.value.code == 2
    assert stderr.strip().count("\n") == 0 and "without a token" in stderr
    assert "ray" not in sys.modules or not sys.modules["ray"].is_initialized()


def test_settings_are_checked():
    with pytest.raises(ConfigError, match="backend=.remote.*local backend"):
        from_flat(ServeConfig, {"backend": "remote"})
    with pytest.raises(ConfigError, match="serve.port=0"):
        from_flat(ServeConfig, {"serve.port": 0})
    with pytest.raises(ConfigError, match="serve.max_request_mb=0"):
        from_flat(ServeConfig, {"serve.max_request_mb": 0})
