"""The private Ray of `egox convert --ray auto` and `egox serve` talks over loopback only,
checked where it matters: a network namespace with a routable interface and a default route
(a tun device: nothing can leave), every connect and bind of every Ray process traced with
strace. Without `egox_model.ray_local`'s settings this sees the tun address (10.99.0.1),
0.0.0.0, 8.8.8.8 or 169.254.169.254."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytest.importorskip("ray")

ROOT = Path(__file__).resolve().parents[2]
ROUTABLE_NETNS = ("ip link set lo up && ip tuntap add dev t0 mode tun && "
                  "ip addr add 10.99.0.1/24 dev t0 && ip link set t0 up && "
                  "ip route add default via 10.99.0.2 dev t0 && exec \"$@\"")

#: What each probe runs; both end with a pause: the dashboard's cloud probe comes a moment
#: after start.
PROBES = {
    "convert": """
        import time
        import ray
        from egox_model.ray_local import start_local_ray
        stop = start_local_ray(num_cpus=1)
        assert ray.get(ray.remote(lambda: 1).remote()) == 1
        time.sleep(1.5)
        stop()
    """,
    "serve": """
        import time
        import urllib.request
        from egox_model.serve.config import ServeConfig, ServeOptions
        from egox_model.serve.server import start_server
        options = ServeOptions(port=PORT, cpus_per_replica=0)
        server = start_server(ServeConfig(backend="prior", serve=options), log=lambda _: None)
        with urllib.request.urlopen(server.url + "/healthz", timeout=30) as reply:
            assert reply.status == 200
        time.sleep(1.5)
        server.stop()
    """,
}


def _can_fake_a_routable_interface() -> bool:
    if os.geteuid() != 0 or not shutil.which("strace") or not shutil.which("unshare"):
        return False
    probe = subprocess.run(["unshare", "-n", "sh", "-c", ROUTABLE_NETNS, "sh", "true"],
                           capture_output=True)
    return probe.returncode == 0


def _traced_addresses(script: str, tmp_path: Path) -> dict[str, set[str]]:
    """Per syscall ('connect', 'bind'): the IP addresses `script` and its children used."""
    path = tmp_path / "probe.py"
    path.write_text(textwrap.dedent(script).replace("PORT", "18123"))
    log = tmp_path / "strace.txt"
    env = dict(os.environ, PYTHONPATH=str(ROOT))    # RAY_TMPDIR: short, from run_tests.sh
    env.pop("RAY_USAGE_STATS_ENABLED", None)          # ray_local sets what it needs
    # --seccomp-bpf: only connect and bind stop the tracees (every process is still
    # followed); without it every syscall of every Ray process stops (the serve probe took
    # twice as long).
    run = subprocess.run(["unshare", "-n", "sh", "-c", ROUTABLE_NETNS, "sh", "strace", "-f",
                          "--seccomp-bpf", "-qq", "-e", "trace=connect,bind", "-o", str(log),
                          sys.executable, str(path)],
                         env=env, capture_output=True, text=True, timeout=180)
    assert run.returncode == 0, run.stderr[-3000:]
    used: dict[str, set[str]] = {"connect": set(), "bind": set()}
    for line in log.read_text().splitlines():
        call = re.search(r"\b(connect|bind)\(", line)
        if call:
            used[call[1]].update(re.findall(r'sin_addr=inet_addr\("([^"]+)"\)', line))
            used[call[1]].update(re.findall(r'inet_pton\(AF_INET6, "([^"]+)"', line))
    return used


LOOPBACK = re.compile(r"^(127\.|::1$|::ffff:127\.)")


@pytest.mark.slow
@pytest.mark.parametrize("probe", sorted(PROBES))
def test_private_ray_binds_and_connects_on_loopback_only(probe, tmp_path):
    """Every connect is to loopback; every bind is on loopback except, for Serve, the
    replicas' inter-deployment gRPC port that Ray 2.60 hard-codes on `[::]` (docs/serve.md)."""
    if not _can_fake_a_routable_interface():
        pytest.skip("needs root, strace, unshare and tun devices")
    used = _traced_addresses(PROBES[probe], tmp_path)
    assert used["connect"], "strace saw no connect: the probe did not run"
    assert {a for a in used["connect"] if not LOOPBACK.match(a)} == set()
    wildcard = {"::"} if probe == "serve" else set()
    assert {a for a in used["bind"] if not LOOPBACK.match(a)} <= wildcard
