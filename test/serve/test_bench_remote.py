"""`egox bench remote` end to end on a tiny clip: its own loopback server, equality, bytes."""
import socket

import pytest

from egox_model.bench.remote import format_remote_bench, run_remote_bench


@pytest.mark.filterwarnings("ignore:Using extra keyword arguments on `Field`")
def test_bench_remote_runs_and_reports():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    result = run_remote_bench(frames=2, repeats=1, port=port)
    assert result["identical_to_local"] is True
    assert 0 < result["request_bytes"] < result["raw_request_bytes"]
    assert 0 < result["response_bytes"] < result["raw_response_bytes"]
    assert result["ratio"] == pytest.approx(result["remote_ms"] / result["local_ms"], rel=0.01)
    text = format_remote_bench(result)
    assert "remote == local on the decoded clip (pixels, coverage, stamps): True" in text
    assert f"{result['request_bytes'] / 1e6:.1f} MB" in text
