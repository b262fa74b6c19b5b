"""Crash-safe recording: a recorder killed with SIGKILL loses at most its flush period, and
`egox bag repair` rebuilds a bag that rosbags, mcap's seeking reader and `egox convert` read.

The truth is independent of the code under test: the bytes a raw subscription in the test
process received, the scene's stamps and pixels, and, for truncated files, which chunk each
message was written into."""
import json
import signal
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from mcap.exceptions import EndOfFile
from mcap.reader import make_reader
from mcap.records import Channel, Message
from mcap.stream_reader import StreamReader
from rclpy.qos import QoSProfile, ReliabilityPolicy
from geometry_msgs.msg import PoseStamped
from rosbags.highlevel import AnyReader
from rosbags.interfaces import (Qos, QosDurability, QosHistory, QosLiveliness, QosReliability,
                                QosTime)
from rosbags.rosbag2 import StoragePlugin, Writer
from rosbags.typesys import Stores, get_typestore
from sensor_msgs.msg import CameraInfo, Image
from typer.testing import CliRunner

from ros_fixtures import ROOT, RosHarness, ros_env, tiny_scene, unique_ns  # noqa: I100

from egox_model.errors import ConfigError
from egox_model.generator import GeneratorConfig, make_generator
from egox_ros.bag_repair import repair_bag
from egox_ros.cli import app
from egox_ros.convert import convert_bag
from egox_ros.errors import BagError
from egox_ros.image_conversion import image_to_rgb
from egox_ros.player import ScenePlayer
from egox_ros.recorder import BagRecorder
from egox_ros.ros_demo import demo_config

TS = get_typestore(Stores.ROS2_KILTED)
FPS = 30.0
FLUSH_PERIOD_S = 1.0
KILL_AFTER_S = 3.0
MARGIN_S = 0.3                # DDS delivery + timer jitter in the recorder process
RECORDED = {"exo/image_raw": Image, "exo/camera_info": CameraInfo, "exo/depth": Image,
            "ego/pose": PoseStamped, "exo/pose": PoseStamped}


def _stamp(msg) -> int:
    return msg.header.stamp.sec * 10**9 + msg.header.stamp.nanosec


def _read_rosbags(bag: Path) -> dict[str, list[tuple[int, bytes]]]:
    """topic -> [(log time, raw bytes)] in file order, read with rosbags' AnyReader."""
    out: dict[str, list[tuple[int, bytes]]] = {}
    with AnyReader([bag], default_typestore=TS) as reader:
        for conn in reader.connections:
            out.setdefault(conn.topic, [])
        for conn, log_time, raw in reader.messages():
            out[conn.topic].append((log_time, bytes(raw)))
    return out


def _read_mcap_seeking(bag: Path) -> dict[str, list[tuple[int, bytes]]]:
    """The same with mcap's reader, which seeks to the summary and chunk indexes."""
    out: dict[str, list[tuple[int, bytes]]] = {}
    (path,) = bag.glob("*.mcap")
    with open(path, "rb") as stream:
        reader = make_reader(stream)
        assert reader.get_summary() is not None
        for _, channel, message in reader.iter_messages():
            out.setdefault(channel.topic, []).append((message.log_time, message.data))
    return out


def _stream_read(path: Path) -> dict[str, list[tuple[int, bytes]]]:
    """Messages of an MCAP file without a footer: mcap's StreamReader up to its error."""
    out: dict[str, list[tuple[int, bytes]]] = {}
    channels = {}
    with open(path, "rb") as stream:
        try:
            for record in StreamReader(stream).records:
                if isinstance(record, Channel):
                    channels[record.id] = record.topic
                    out.setdefault(record.topic, [])
                elif isinstance(record, Message):
                    out[channels[record.channel_id]].append((record.log_time, record.data))
        except EndOfFile:
            pass
    return out


def _same_cdr(recorded: bytes, sent: bytes) -> bool:
    """The same CDR message: equal bytes, except that the inter-process path may pad the
    payload to a multiple of 4 with zeros (seen for CameraInfo: 381 bytes in-process, 384
    in the recorder)."""
    extra = recorded[len(sent):]
    return recorded[:len(sent)] == sent and len(extra) < 4 and not any(extra)


@pytest.fixture(scope="module")
def killed_bag(tmp_path_factory):
    """A real egox_recorder process records the scene player's topics at 30 fps and is
    SIGKILLed after ~3 s; a raw subscriber in the test process keeps the bytes it got."""
    ns = unique_ns()
    bag = tmp_path_factory.mktemp("killed") / "bag"
    topics = [f"{ns}/{t}" for t in RECORDED]
    scene = tiny_scene(frames=int(FPS * (KILL_AFTER_S + 2)), fps=FPS)
    proc = subprocess.Popen([sys.executable, "-m", "egox_ros.recorder", "--ros-args",
                             "-p", f"bag_path:={bag}", "-p", f"topics:=[{', '.join(topics)}]",
                             "-p", f"flush_period_s:={FLUSH_PERIOD_S}"],
                            env=ros_env(), cwd=ROOT, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    received: dict[str, list[bytes]] = {t: [] for t in topics}
    try:
        with RosHarness() as harness:
            player = harness.add(ScenePlayer(scene, namespace=ns, context=harness.context))
            sink = harness.create_node("raw_sink")
            qos = QoSProfile(depth=500, reliability=ReliabilityPolicy.RELIABLE)
            for (rel, kind), topic in zip(RECORDED.items(), topics):
                sink.create_subscription(kind, topic, received[topic].append, qos, raw=True)
            harness.wait_until(lambda: player.wait_for_subscribers(2, 0.1, list(RECORDED)), 20,
                               what="egox_recorder and the sink subscribing")
            time.sleep(0.3)               # let the recorder's side of the match settle
            stop = threading.Event()
            thread = threading.Thread(target=player.play, args=(stop,), daemon=True)
            thread.start()
            time.sleep(KILL_AFTER_S)
            proc.send_signal(signal.SIGKILL)
            killed_at = time.monotonic()
            proc.wait(10)
            stop.set()
            thread.join(5)
            time.sleep(0.2)               # the sink gets the last frames
            publish_times = dict(player.publish_times)
    finally:
        if proc.poll() is None:
            proc.kill()
    return dict(ns=ns, bag=bag, scene=scene, received=received, killed_at=killed_at,
                publish_times=publish_times)


def test_sigkill_loses_at_most_the_flush_period_and_repair_restores_the_bag(killed_bag):
    bag, scene, received = killed_bag["bag"], killed_bag["scene"], killed_bag["received"]
    assert sorted(p.name for p in bag.iterdir()) == ["bag.mcap"]      # no metadata.yaml
    with pytest.raises(Exception):
        AnyReader([bag]).open()
    with open(bag / "bag.mcap", "rb") as stream, pytest.raises(Exception):
        list(make_reader(stream).iter_messages())

    result = CliRunner().invoke(app, ["bag", "repair", str(bag)])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output.splitlines()[-1])
    assert report["status"] == "repaired" and report["kept"].endswith("bag.mcap.broken")
    assert sorted(p.name for p in bag.iterdir()) == ["bag.mcap", "bag.mcap.broken",
                                                     "metadata.yaml"]

    # Published before the last flush the recorder surely made: must be on disk.
    must_have = killed_bag["killed_at"] - FLUSH_PERIOD_S - MARGIN_S
    stamps = [int(s) for s in scene.stamps_ns if int(s) in killed_bag["publish_times"]]
    due = [s for s in stamps if killed_bag["publish_times"][s] <= must_have]
    assert len(due) >= FPS * (KILL_AFTER_S - FLUSH_PERIOD_S - MARGIN_S) - 3
    by_rosbags, by_mcap = _read_rosbags(bag), _read_mcap_seeking(bag)
    assert by_mcap == by_rosbags
    assert by_rosbags == _stream_read(bag / "bag.mcap.broken")        # all that was on disk
    for topic, wire in received.items():
        got = by_rosbags[topic]
        assert report["messages"][topic] == len(got)
        assert len(got) >= len(due), (topic, len(got), len(due))          # at most ~1 s lost
        # A prefix of what was sent, byte for byte, with log time = header stamp.
        assert len(wire) >= len(got)
        for (_, raw), sent in zip(got, wire):
            assert _same_cdr(raw, sent), topic
        assert [t for t, _ in got] == stamps[:len(got)], topic
    with AnyReader([bag], default_typestore=TS) as reader:
        images = [c for c in reader.connections if c.topic.endswith("/exo/image_raw")]
        assert images[0].ext.offered_qos_profiles[0].reliability == QosReliability.RELIABLE
        for conn, log_time, raw in reader.messages(connections=images):
            msg = reader.deserialize(raw, conn.msgtype)
            i = stamps.index(_stamp(msg))
            np.testing.assert_array_equal(image_to_rgb(msg), scene.exo_rgb[i])
        assert reader.start_time == stamps[0]

    # Repairing again: valid, nothing changes.
    before = {p.name: p.read_bytes() for p in bag.iterdir()}
    again = CliRunner().invoke(app, ["bag", "repair", str(bag)])
    assert again.exit_code == 0 and "valid bag already" in again.output
    assert {p.name: p.read_bytes() for p in bag.iterdir()} == before


def test_repaired_bag_converts(killed_bag, tmp_path):
    bag, scene = killed_bag["bag"], killed_bag["scene"]
    if not (bag / "metadata.yaml").exists():
        repair_bag(bag)
    recovered = _read_rosbags(bag)
    config = demo_config(scene, clip_length=5, clip_stride=5, use_mask=False)
    summary = convert_bag(bag, tmp_path / "ego", config, make_generator(GeneratorConfig()),
                          namespace=killed_bag["ns"])
    assert summary["messages_read"] == sum(len(v) for v in recovered.values())
    assert summary["clips"] >= 10


# --- repair of truncated copies of a valid bag ------------------------------------------

MESSAGES_PER_CHUNK = 7
CHUNKS = 4
QOS = Qos(QosHistory.KEEP_LAST, 5, QosReliability.BEST_EFFORT, QosDurability.TRANSIENT_LOCAL,
          QosTime(0, 0), QosTime(0, 0), QosLiveliness.AUTOMATIC, QosTime(0, 0), False)


def _write_chunked_bag(bag: Path) -> list[tuple[str, int, bytes]]:
    """A valid bag of CHUNKS chunks of MESSAGES_PER_CHUNK messages on two topics (chunks
    closed as BagRecorder.flush closes them); returns (topic, log time, bytes) in order."""
    string_t, pose_t = TS.types["std_msgs/msg/String"], TS.types["geometry_msgs/msg/PoseStamped"]
    written = []
    with Writer(bag, version=9, storage_plugin=StoragePlugin.MCAP) as writer:
        text = writer.add_connection("/text", "std_msgs/msg/String", typestore=TS,
                                     offered_qos_profiles=[QOS])
        pose = writer.add_connection("/pose", "geometry_msgs/msg/PoseStamped", typestore=TS)
        for i in range(CHUNKS * MESSAGES_PER_CHUNK):
            t = 1_000_000_000 + i * 33_000_000
            if i % 2:
                conn, raw = text, TS.serialize_cdr(string_t(data="x" * (i * 37)),
                                                   "std_msgs/msg/String")
            else:
                msg = TS.types["geometry_msgs/msg/PoseStamped"](
                    header=TS.types["std_msgs/msg/Header"](
                        stamp=TS.types["builtin_interfaces/msg/Time"](sec=1, nanosec=i),
                        frame_id="w"),
                    pose=TS.types["geometry_msgs/msg/Pose"](
                        position=TS.types["geometry_msgs/msg/Point"](x=float(i), y=0.0, z=0.0),
                        orientation=TS.types["geometry_msgs/msg/Quaternion"](
                            x=0.0, y=0.0, z=0.0, w=1.0)))
                conn, raw = pose, TS.serialize_cdr(msg, pose_t.__msgtype__)
            writer.write(conn, t, raw)
            written.append((conn.topic, t, bytes(raw)))
            if (i + 1) % MESSAGES_PER_CHUNK == 0:
                writer.storage.close_chunk()
    return written


def _records(data: bytes) -> list[tuple[int, int, int]]:
    """(offset, opcode, end offset) of each top-level record (own parser, not mcap's)."""
    out, pos = [], 8
    while pos + 9 <= len(data):
        opcode, length = struct.unpack_from("<BQ", data, pos)
        out.append((pos, opcode, pos + 9 + length))
        pos += 9 + length
        if opcode == 0x02:                # footer
            break
    return out


@pytest.fixture()
def chunked(tmp_path):
    bag = tmp_path / "good"
    written = _write_chunked_bag(bag)
    data = (bag / "good.mcap").read_bytes()
    chunks = [(start, end) for start, opcode, end in _records(data) if opcode == 0x06]
    assert len(chunks) == CHUNKS
    return bag, written, data, chunks


def _cuts(data: bytes, chunks: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """(cut offset, complete chunks before it)."""
    (s0, e0), (s1, e1), (s2, e2), (s3, e3) = chunks
    data_end = next(start for start, opcode, _ in _records(data) if opcode == 0x0F)
    return [(e0, 1), (s1 + 4, 1), (s1 + 20, 1), ((s2 + e2) // 2, 2), (e2 + 5, 3),
            (e3 - 1, 3), (data_end, 4), (len(data) - 30, 4), (len(data) - 1, 4)]


def test_repair_truncated_copies(chunked, tmp_path):
    bag, written, data, chunks = chunked
    with AnyReader([bag]) as reader:
        original_qos = {c.topic: c.ext.offered_qos_profiles for c in reader.connections}
    assert original_qos["/text"] == [QOS]
    for cut, complete in _cuts(data, chunks):
        broken = tmp_path / f"cut{cut}"
        broken.mkdir()
        (broken / f"cut{cut}.mcap").write_bytes(data[:cut])
        report = repair_bag(broken)
        assert report.status == "repaired", cut
        expected = written[:complete * MESSAGES_PER_CHUNK]
        assert report.messages == {t: sum(1 for w in expected if w[0] == t)
                                   for t in ("/text", "/pose")}, cut
        assert report.stopped == ("footer" if cut == len(data) - 1 else
                                  "truncated: the file ends before its footer"), cut
        assert (broken / f"cut{cut}.mcap.broken").read_bytes() == data[:cut]
        by_rosbags = _read_rosbags(broken)
        assert by_rosbags == _read_mcap_seeking(broken)
        for topic in ("/text", "/pose"):
            assert by_rosbags[topic] == [(t, raw) for tp, t, raw in expected if tp == topic]
        with AnyReader([broken]) as reader:
            assert {c.topic: c.ext.offered_qos_profiles for c in reader.connections} == \
                original_qos
            assert reader.start_time == expected[0][1]
            assert reader.end_time == expected[-1][1] + 1          # rosbags: end is exclusive


def test_repair_leaves_a_valid_bag_unchanged(chunked):
    bag, written, data, _ = chunked
    before = {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in bag.iterdir()}
    report = repair_bag(bag)
    assert report.status == "valid"
    assert report.messages == {"/text": CHUNKS * MESSAGES_PER_CHUNK // 2,
                               "/pose": CHUNKS * MESSAGES_PER_CHUNK // 2}
    assert {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in bag.iterdir()} == before


def test_repair_rebuilds_missing_metadata_of_a_complete_file(chunked):
    bag, written, _, _ = chunked
    (bag / "metadata.yaml").unlink()
    report = repair_bag(bag)
    assert report.status == "repaired" and report.stopped == "footer"
    assert sum(report.messages.values()) == len(written)
    assert sorted(p.name for p in bag.iterdir()) == ["good.mcap", "good.mcap.broken",
                                                     "metadata.yaml"]


def test_repair_errors(chunked, tmp_path):
    _, _, data, chunks = chunked
    with pytest.raises(ConfigError, match="does not exist; give the bag directory"):
        repair_bag(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(BagError, match="has no .mcap file"):
        repair_bag(tmp_path / "empty")
    for name, content, match in [
            ("zero", b"", "is empty: not an MCAP file"),
            ("text", b"hello, world", "does not start with the MCAP magic"),
            ("header", data[:chunks[0][0]], "holds no recoverable topic"),
            ("halfchunk", data[:chunks[0][1] - 10], "holds no recoverable topic")]:
        (tmp_path / name).mkdir()
        (tmp_path / name / f"{name}.mcap").write_bytes(content)
        with pytest.raises(BagError, match=match):
            repair_bag(tmp_path / name)
        assert sorted(p.name for p in (tmp_path / name).iterdir()) == [f"{name}.mcap"]


def test_cli_errors_are_one_line_exit_2(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "egox_ros.cli", "bag", "repair",
                           str(tmp_path / "missing")], env=ros_env(), cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert proc.stderr.strip().splitlines() == [
        f"error: bag '{tmp_path / 'missing'}' does not exist; give the bag directory (the one "
        "holding the .mcap file)"]


def test_flush_period_is_validated(tmp_path):
    with RosHarness() as harness:
        for bad in (-1.0, float("nan"), float("inf")):
            with pytest.raises(ConfigError, match="parameter flush_period_s=.*seconds >= 0"):
                BagRecorder(tmp_path / "bag", ["/a"], flush_period_s=bad,
                            context=harness.context)
            assert not (tmp_path / "bag").exists()
