"""`egox convert --ray`: a directory of bags on a 2-CPU local Ray (loopback only) gives, bag by
bag, the bytes of the one-process `egox convert` (and, decoded independently with the mcap
reader, the same stamps and pixels); a corrupt bag and a bag lacking a topic are named in
the summary while the others finish; a run killed half-way and restarted (once with a task
failing, once clean) ends with the same bags, finished bags never redone."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
from mcap.reader import make_reader
from mcap_ros2.decoder import DecoderFactory
from typer.testing import CliRunner

from exo_bags import write_exo_bag  # noqa: I100
from ros_fixtures import ROOT, tiny_scene

from egox_model.geometry.pose import c2w_to_pose
from egox_ros.image_conversion import image_to_rgb

pytest.importorskip("ray")

GOOD = {"a": 12, "b": 9, "c": 15}          # bag name -> exo frames (clips of 5, stride 3)
BAG_OFFSET_NS = 100 * 10**9                # each bag's stamps start 100 s after the last


def _params(path: Path, scene) -> Path:
    K = scene.ego_K
    exo_pose = [float(v) for v in np.concatenate(c2w_to_pose(scene.exo_c2w[0]))]
    path.write_text(
        "/**/egox:\n  ros__parameters:\n"
        f"    clip_length: 5\n    clip_stride: 3\n    exo_width: 0\n    exo_height: 0\n"
        f"    ego_width: {K.width}\n    ego_height: {K.height}\n    ego_fx: {K.fx}\n"
        f"    ego_fy: {K.fy}\n    ego_cx: {K.cx}\n    ego_cy: {K.cy}\n    exo_pose: {exo_pose}\n")
    return path


def _decoded(bag: Path) -> list[tuple[str, int, int, np.ndarray | None]]:
    """(topic, log time, header stamp, rgb or None) of every message, read with the mcap
    reader (independent of rosbags, which wrote the bag)."""
    out = []
    with open(bag / f"{bag.name}.mcap", "rb") as stream:
        reader = make_reader(stream, decoder_factories=[DecoderFactory()])
        for _, channel, message, msg in reader.iter_decoded_messages():
            stamp = msg.header.stamp.sec * 10**9 + msg.header.stamp.nanosec
            rgb = image_to_rgb(msg).copy() if channel.topic.endswith("/image") else None
            out.append((channel.topic, message.log_time, stamp, rgb))
    return out


def _assert_same_bag(got: Path, want: Path) -> None:
    """Same bytes (mcap and metadata.yaml), and, decoded, the same messages, stamps and pixels."""
    assert sorted(p.name for p in got.iterdir()) == sorted(p.name for p in want.iterdir())
    a, b = _decoded(got), _decoded(want)
    assert [m[:3] for m in a] == [m[:3] for m in b]
    for x, y in zip(a, b):
        if x[3] is not None:
            np.testing.assert_array_equal(x[3], y[3])
    for name in (f"{want.name}.mcap", "metadata.yaml"):
        assert (got / name).read_bytes() == (want / name).read_bytes(), name


@pytest.fixture(scope="module")
def bags(tmp_path_factory):
    """IN_DIR with bags a, b, c; the parameter file; one-process reference outputs."""
    from egox_ros.cli import app

    root = tmp_path_factory.mktemp("convert_ray")
    in_dir, ref = root / "in", root / "ref"
    in_dir.mkdir()
    ref.mkdir()
    scenes = {name: tiny_scene(frames=n, seed=i) for i, (name, n) in enumerate(GOOD.items())}
    for i, (name, scene) in enumerate(scenes.items()):
        write_exo_bag(in_dir / name, scene, offset_ns=i * BAG_OFFSET_NS)
    params = _params(root / "egox.yaml", scenes["a"])
    for name in GOOD:
        result = CliRunner().invoke(app, ["convert", str(in_dir / name), str(ref / name),
                                          "--config", str(params), "--no-progress"])
        assert result.exit_code == 0, result.output
    return root, in_dir, ref, params, scenes


def _backend(builds: Path, fail: tuple[int, int] = (0, 0)):
    """A `make_backend` stand-in for the workers (a closure: pickled by value): the prior
    backend, one line appended to `builds` per generator built, and clips whose first stamp
    is in [fail[0], fail[1]) raise."""
    def backend(cfg):
        from egox_model.generator import make_generator
        with open(builds, "a") as f:
            f.write(f"{os.getpid()}\n")
        real = make_generator(cfg)

        class Injected:
            def generate(self, clip):
                if fail[0] <= int(clip.stamps_ns[0]) < fail[1]:
                    raise RuntimeError(f"injected failure at stamp {int(clip.stamps_ns[0])}")
                return real.generate(clip)
        return Injected()
    return backend


@pytest.fixture(scope="module")
def local_ray():
    """One private loopback-only Ray (2 CPUs) for the in-process runs of this module: `egox
    convert --ray auto` uses the Ray its process has started (the subprocesses start their
    own)."""
    from egox_model.ray_local import ray_session
    with ray_session("auto", num_cpus=2):
        yield


def test_ray_auto_equals_one_process_and_names_broken_bags(bags, local_ray, tmp_path,
                                                           monkeypatch):
    import egox_ros.node
    from egox_ros.cli import app

    root, in_dir, ref, params, scenes = bags
    mixed = tmp_path / "in"
    mixed.mkdir()
    for name in GOOD:
        os.symlink(in_dir / name, mixed / name)
    corrupt = mixed / "d_corrupt"                     # a bag whose MCAP file is cut short
    corrupt.mkdir()
    (corrupt / "metadata.yaml").write_bytes((in_dir / "a" / "metadata.yaml").read_bytes()
                                            .replace(b"a.mcap", b"d_corrupt.mcap"))
    (corrupt / "d_corrupt.mcap").write_bytes((in_dir / "a" / "a.mcap").read_bytes()[:3000])
    write_exo_bag(mixed / "e_no_depth", scenes["a"], depth=False)
    out = tmp_path / "out"
    builds = tmp_path / "builds.txt"
    monkeypatch.setattr(egox_ros.node, "make_backend", _backend(builds))
    result = CliRunner().invoke(
        app, ["convert", "--ray", "auto", "--num-cpus", "2", str(mixed), str(out),
              "--config", str(params)])
    assert result.exit_code == 1, (result.output, result.stderr, result.exception)
    report = json.loads(result.stdout.strip().splitlines()[-1])
    by_name = {r["name"]: r for r in report["results"]}
    assert (report["done"], report["skipped"], report["failed"]) == (3, 0, 2)
    assert {n: by_name[n]["clips"] for n in GOOD} == {"a": 3, "b": 2, "c": 4}
    assert by_name["d_corrupt"]["reason"].startswith(
        f"BagError: cannot open {corrupt} as a rosbag2 bag"), by_name["d_corrupt"]
    assert "lacks required topic(s) /exo/depth" in by_name["e_no_depth"]["reason"]
    assert "failed  d_corrupt" in result.stderr and "failed  e_no_depth" in result.stderr
    assert sorted(p.name for p in out.iterdir()) == sorted(GOOD)  # nothing partial left
    for name in GOOD:
        _assert_same_bag(out / name, ref / name)
    pids = builds.read_text().split()                 # one generator per worker, not per clip
    assert len(pids) == len(set(pids)) <= 2, pids


_DRIVER = textwrap.dedent("""
    import sys, time
    import egox_ros.node
    from egox_ros.cli import main

    DELAY = float(sys.argv[1])

    def backend(cfg):       # pickled by value (defined in __main__): runs on the workers
        import time
        from egox_model.generator import make_generator
        real = make_generator(cfg)

        class Slow:
            def generate(self, clip):
                time.sleep(DELAY)
                return real.generate(clip)
        return Slow()

    egox_ros.node.make_backend = backend
    sys.argv = ["egox", "convert", "--ray", "auto", "--num-cpus", "2", "--max-in-flight", "2",
                "--no-progress", *sys.argv[2:]]
    main()
""")


def _driver(tmp_path: Path, args: list[str], delay: float) -> subprocess.Popen:
    """`egox convert --ray auto ARGS` in a new process group, each clip `delay` s slower."""
    script = tmp_path / "driver.py"
    script.write_text(_DRIVER)
    return subprocess.Popen([sys.executable, str(script), str(delay), *args],
                            env=dict(os.environ, PYTHONPATH=str(ROOT)),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)


def test_killed_run_restarted_finishes_the_same_bags(bags, local_ray, tmp_path, monkeypatch):
    root, in_dir, ref, params, scenes = bags
    out = tmp_path / "out"
    args = [str(in_dir), str(out), "--config", str(params)]
    # 1. Killed (SIGKILL, the driver and the Ray it started) right after bag a is complete.
    proc = _driver(tmp_path, args, delay=0.8)  # b needs >= 0.8 s more than a
    try:
        deadline = time.monotonic() + 300   # a loaded machine: the first task imports torch
        while not (out / "a").exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        assert (out / "a").exists(), proc.communicate()
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
    assert sorted(p.name for p in out.iterdir()) == [".partial", "a"]
    _assert_same_bag(out / "a", ref / "a")
    finished_a = (out / "a" / "a.mcap").stat()
    # 2. Restarted with every clip of bag b failing: a skipped, b failed and named, c done.
    import egox_ros.node
    from egox_ros.cli import app
    first = int(scenes["b"].stamps_ns[0]) + BAG_OFFSET_NS
    with monkeypatch.context() as patch:
        patch.setattr(egox_ros.node, "make_backend",
                      _backend(tmp_path / "builds.txt", fail=(first, first + BAG_OFFSET_NS)))
        result = CliRunner().invoke(app, ["convert", "--ray", "auto", *args])
    assert result.exit_code == 1, (result.output, result.stderr, result.exception)
    report = {r["name"]: r for r in json.loads(result.stdout.strip().splitlines()[-1])["results"]}
    assert [report[n]["status"] for n in GOOD] == ["skipped", "failed", "done"]
    assert report["b"]["reason"] == f"RuntimeError: injected failure at stamp {first}", report
    assert sorted(p.name for p in out.iterdir()) == ["a", "c"]
    # 3. Restarted clean, from another process joining this one's Ray by its address (the
    #    cluster case): only b is converted.
    import ray
    address = ray.get_runtime_context().gcs_address
    proc = subprocess.run([sys.executable, "-m", "egox_ros.cli", "convert", "--ray", address,
                           "--no-progress", *args], env=dict(os.environ, PYTHONPATH=str(ROOT)),
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    report = {r["name"]: r for r in json.loads(proc.stdout.strip().splitlines()[-1])["results"]}
    assert [report[n]["status"] for n in GOOD] == ["skipped", "done", "skipped"]
    assert sorted(p.name for p in out.iterdir()) == sorted(GOOD)
    for name in GOOD:
        _assert_same_bag(out / name, ref / name)
    stat = (out / "a" / "a.mcap").stat()
    assert (stat.st_ino, stat.st_mtime_ns) == (finished_a.st_ino, finished_a.st_mtime_ns)


def test_gpu_tasks_on_a_cpu_cluster_are_refused(bags, local_ray):
    from egox_model.errors import ConfigError
    from egox_model.ray_local import ray_session
    from egox_ros.convert_ray import default_gpus_per_task, make_ray_runner
    from egox_ros.node import make_backend
    from egox_ros.params import EgoxConfig, load_config

    _, _, _, params, _ = bags
    cfg = load_config(params, "egox", {})
    assert default_gpus_per_task(cfg) == 0.0
    # the module's clips overlap by 2 frames; wan continues only from 4m+1 (stride 4: 1)
    wan = {"backend": "wan", "wan.model_dir": "/nonexistent", "clip_stride": 4}
    assert default_gpus_per_task(load_config(params, "egox", wan)) == 1.0
    assert default_gpus_per_task(load_config(params, "egox", {**wan, "wan.device": "cpu"})) == 0
    assert isinstance(cfg, EgoxConfig)
    with ray_session("auto", num_cpus=2):            # the module's Ray: kept running
        with pytest.raises(ConfigError, match=r"0 GPU\(s\) and 2 CPU\(s\).*--gpus-per-task"):
            make_ray_runner(cfg, make_backend, gpus_per_task=1.0, cpus_per_task=1.0,
                            max_in_flight=0)
        _, in_flight = make_ray_runner(cfg, make_backend, gpus_per_task=None,
                                       cpus_per_task=1.0, max_in_flight=0)
        assert in_flight == 4
    import ray
    assert ray.is_initialized()


def test_bad_directories_and_stray_flags_fail_before_ray_starts(bags, tmp_path):
    from egox_model.errors import ConfigError
    from egox_ros.cli import app

    _, in_dir, _, params, _ = bags
    cases = {("--ray", "auto", str(tmp_path / "none"), str(tmp_path / "o")):
             "is not a directory; with --ray the arguments are a directory of bags",
             ("--ray", "auto", str(tmp_path), str(tmp_path / "o")): "holds no bags",
             ("--ray", "auto", str(in_dir), str(in_dir / "out")): "is inside IN_DIR",
             ("--ray", "127.0.0.1:1", "--num-cpus", "2", str(in_dir), str(tmp_path / "o")):
             "--num-cpus sizes the local Ray of --ray auto",
             ("--num-cpus", "2", str(in_dir / "a"), str(tmp_path / "o")):
             "--num-cpus applies to --ray conversion only",
             (str(in_dir), str(tmp_path / "o")): "is a directory of bags, not a bag: convert "
                                                 "them all with `egox convert --ray auto"}
    for args, message in cases.items():
        result = CliRunner().invoke(app, ["convert", *args, "--config", str(params)])
        assert isinstance(result.exception, ConfigError), (args, result.output)
        assert message in str(result.exception), (args, str(result.exception))
    assert not (tmp_path / "o").exists()


def test_without_ray_and_one_run_per_out_dir(bags, tmp_path):
    """convert_dir's loop with clips run in this process (no Ray) gives the same bags; a
    second run on an OUT_DIR another run holds is refused before touching it."""
    import fcntl

    from egox_model.errors import ConfigError
    from egox_ros.convert_ray import LocalRunner, convert_dir
    from egox_ros.node import make_backend
    from egox_ros.params import load_config

    _, in_dir, ref, params, _ = bags
    cfg = load_config(params, "egox", {})
    out = tmp_path / "out"
    (out / ".partial").mkdir(parents=True)
    with open(out / ".partial" / ".lock", "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        with pytest.raises(ConfigError, match="another `egox convert --ray` is writing"):
            convert_dir(in_dir, out, cfg, LocalRunner(make_backend(cfg)))
    (out / ".partial" / "b").mkdir()                   # a killed run's leftovers
    seen = []
    results = convert_dir(in_dir, out, cfg, LocalRunner(make_backend(cfg)), max_in_flight=1,
                          progress=lambda done, total: seen.append((done, total)))
    assert [(r.name, r.status, r.clips) for r in results] == [("a", "done", 3),
                                                              ("b", "done", 2), ("c", "done", 4)]
    assert seen[0] == (0, 9) and seen[-1] == (9, 9)
    assert sorted(p.name for p in out.iterdir()) == sorted(GOOD)
    for name in GOOD:
        _assert_same_bag(out / name, ref / name)
