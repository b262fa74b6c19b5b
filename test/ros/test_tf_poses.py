"""Camera poses from TF: the tree (chains, interpolation, errors), and `egox convert` reading
/tf and /tf_static against the pose-topic path on the same bag."""
from __future__ import annotations

from pathlib import Path


import numpy as np
import pytest
import transforms3d
from rosbags.rosbag2 import StoragePlugin, Writer
from rosbags.typesys import Stores, get_typestore

from egox_model.geometry.pose import c2w_to_pose, pose_to_c2w
from exo_bags import write_exo_bag  # noqa: I100
from ros_fixtures import tiny_scene

from egox_model.errors import ConfigError
from egox_ros.convert import BagClips
from egox_ros.errors import BagError, TfExtrapolationError, TfLookupError
from egox_ros.image_conversion import numpy_to_image
from egox_ros.messages import RosbagsFactory
from egox_ros.params import EgoxConfig, TfConfig
from egox_ros.tf_tree import TfBuffer

TS = get_typestore(Stores.ROS2_KILTED)
T0 = 1_700_000_000 * 10**9
MS = 1_000_000


def _rot_z(angle: float, t=(0.0, 0.0, 0.0)) -> np.ndarray:
    T = np.eye(4)
    T[:3, :3] = transforms3d.axangles.axangle2mat((0, 0, 1), angle)
    T[:3, 3] = t
    return T


def _quat(T: np.ndarray) -> np.ndarray:
    return c2w_to_pose(T)[1]


def _random_T(rng: np.random.Generator) -> np.ndarray:
    q = rng.normal(size=4)
    return pose_to_c2w(rng.normal(size=3), q / np.linalg.norm(q))


# ---- the tree ------------------------------------------------------------------------------
# world -> base -> exo_link -> exo_optical (static); world -> head moving on /tf (rotating
# about z, moving along x), head -> ego_optical (static).
W_BASE = pose_to_c2w(np.array([1.0, 2.0, 0.0]), _quat(_rot_z(0.3)))
BASE_EXO = pose_to_c2w(np.array([0.1, 0.0, 1.2]), np.array([0.1, 0.2, -0.1, 0.97]))
EXO_OPT = pose_to_c2w(np.zeros(3), np.array([-0.5, 0.5, -0.5, 0.5]))    # REP 103 optical
HEAD_EGO = pose_to_c2w(np.array([0.05, 0.0, 0.1]), np.array([-0.5, 0.5, -0.5, 0.5]))


def _head(t_s: float) -> np.ndarray:
    """world -> head at t_s seconds: rotating about z at 0.5 rad/s, moving at 0.4 m/s."""
    return _rot_z(0.5 * t_s, (0.4 * t_s, 0.0, 1.5))


def _set(buffer: TfBuffer, parent: str, child: str, stamp: int, T: np.ndarray, static: bool):
    p, q = c2w_to_pose(T)
    assert buffer.set_transform(parent, child, stamp, p, q, static=static)


def _tree(tolerance_ns: int = 0, head_stamps_s=np.arange(0.0, 2.01, 0.1)) -> TfBuffer:
    buffer = TfBuffer(tolerance_ns=tolerance_ns)
    _set(buffer, "world", "base", T0, W_BASE, True)
    _set(buffer, "base", "exo_link", T0, BASE_EXO, True)
    _set(buffer, "exo_link", "exo_optical", T0, EXO_OPT, True)
    _set(buffer, "head", "ego_optical", T0, HEAD_EGO, True)
    for t in head_stamps_s:
        _set(buffer, "world", "head", T0 + round(t * 1e9), _head(t), False)
    return buffer


def test_static_chain_and_inverse_and_across_branches():
    buffer = _tree()
    w_exo = W_BASE @ BASE_EXO @ EXO_OPT
    stamp = T0 + 500 * MS
    np.testing.assert_allclose(buffer.lookup("world", "exo_optical", stamp), w_exo, atol=1e-12)
    np.testing.assert_allclose(buffer.lookup("exo_optical", "world", stamp),
                               np.linalg.inv(w_exo), atol=1e-12)
    w_ego = _head(0.5) @ HEAD_EGO
    np.testing.assert_allclose(buffer.lookup("world", "ego_optical", stamp), w_ego, atol=1e-12)
    np.testing.assert_allclose(buffer.lookup("exo_optical", "ego_optical", stamp),
                               np.linalg.inv(w_exo) @ w_ego, atol=1e-12)
    np.testing.assert_allclose(buffer.lookup("base", "base", stamp), np.eye(4))
    assert buffer.parent("exo_optical") == "exo_link" and buffer.parent("world") is None
    assert buffer.path("base", "exo_optical") == (["exo_optical", "exo_link", "base"], ["base"])


@pytest.mark.parametrize("t_s", [0.05, 0.125, 1.333, 1.999])
def test_moving_link_interpolates_linearly_and_by_slerp(t_s):
    """Samples every 100 ms of a motion linear in time (angle and position): between them
    the interpolated transform is the motion itself."""
    buffer = _tree()
    got = buffer.lookup("world", "ego_optical", T0 + round(t_s * 1e9))
    np.testing.assert_allclose(got, _head(t_s) @ HEAD_EGO, atol=1e-9)


def test_interpolation_between_two_samples_matches_the_formula():
    buffer = TfBuffer()
    A, B = _random_T(np.random.default_rng(1)), _random_T(np.random.default_rng(2))
    _set(buffer, "world", "cam", T0, A, False)
    _set(buffer, "world", "cam", T0 + 40 * MS, B, False)
    got = buffer.lookup("world", "cam", T0 + 10 * MS)
    np.testing.assert_allclose(got[:3, 3], 0.75 * A[:3, 3] + 0.25 * B[:3, 3], atol=1e-12)
    axis, angle = transforms3d.axangles.mat2axangle(A[:3, :3].T @ B[:3, :3])
    np.testing.assert_allclose(got[:3, :3], A[:3, :3] @ transforms3d.axangles.axangle2mat(
        axis, 0.25 * angle), atol=1e-9)


def test_missing_link_is_named():
    buffer = TfBuffer()
    _set(buffer, "world", "base", T0, W_BASE, True)
    _set(buffer, "exo_link", "exo_optical", T0, EXO_OPT, True)       # exo_link hangs loose
    with pytest.raises(TfLookupError, match="no transform from 'world' to 'exo_optical': "
                                            "'exo_link' has no parent in /tf or /tf_static"):
        buffer.lookup("world", "exo_optical", T0)
    with pytest.raises(TfLookupError, match=r"from 'exo_optical' to 'base': 'world' has no "
                                            r"parent .* \(nor has 'exo_link', the root above "
                                            r"'exo_optical'\)"):
        buffer.lookup("exo_optical", "base", T0)
    with pytest.raises(TfLookupError, match="frame 'ego_optical' is in neither /tf nor "
                                            "/tf_static"):
        buffer.lookup("world", "ego_optical", T0)


def test_stamp_outside_the_tf_range_is_refused_not_extrapolated():
    buffer = _tree()                                   # head known from T0 to T0 + 2 s
    with pytest.raises(TfExtrapolationError, match=r"'world' -> 'head' is not known at stamp "
                                                   r".* 50\.000 ms after the last"):
        buffer.lookup("world", "ego_optical", T0 + 2050 * MS)
    with pytest.raises(TfExtrapolationError, match="1.000 ms before the first") as err:
        buffer.lookup("ego_optical", "exo_optical", T0 - 1 * MS)
    assert not err.value.may_resolve                   # the past does not come back
    # the static chain alone holds at every stamp
    np.testing.assert_allclose(buffer.lookup("world", "exo_optical", T0 + 10**12),
                               W_BASE @ BASE_EXO @ EXO_OPT, atol=1e-12)
    # within the tolerance the end sample is held
    held = _tree(tolerance_ns=20 * MS)
    np.testing.assert_allclose(held.lookup("world", "head", T0 + 2010 * MS), _head(2.0),
                               atol=1e-12)
    with pytest.raises(TfExtrapolationError):
        held.lookup("world", "head", T0 + 2030 * MS)


def test_bad_transforms_are_rejected_and_counted():
    buffer = TfBuffer()
    assert not buffer.set_transform("world", "cam", T0, (0, 0, 0), (0, 0, 0, 2.0), static=False)
    assert not buffer.set_transform("world", "cam", T0, (np.nan, 0, 0), (0, 0, 0, 1),
                                    static=False)
    assert not buffer.set_transform("cam", "/cam", T0, (0, 0, 0), (0, 0, 0, 1), static=True)
    assert dict(buffer.rejected) == {"quaternion_not_unit": 1, "bad_transform": 1,
                                     "self_parent": 1}
    assert buffer.frames() == set()


# ---- bags ----------------------------------------------------------------------------------
def _tf_message(transforms: list[tuple[str, str, int, np.ndarray]]):
    """A tf2_msgs/msg/TFMessage of (parent, child, stamp ns, T_parent_child)."""
    types = TS.types
    out = []
    for parent, child, stamp, T in transforms:
        p, q = c2w_to_pose(T)
        sec, nanosec = divmod(stamp, 10**9)
        header = types["std_msgs/msg/Header"](
            stamp=types["builtin_interfaces/msg/Time"](sec=sec, nanosec=nanosec), frame_id=parent)
        out.append(types["geometry_msgs/msg/TransformStamped"](
            header=header, child_frame_id=child, transform=types["geometry_msgs/msg/Transform"](
                translation=types["geometry_msgs/msg/Vector3"](*map(float, p)),
                rotation=types["geometry_msgs/msg/Quaternion"](*map(float, q)))))
    return types["tf2_msgs/msg/TFMessage"](transforms=out)


def _write_tf(writer: Writer, static: list, dynamic: list[tuple[int, list]],
              namespace: str = "") -> None:
    """/tf_static (one message at the first log time) and /tf (log time = stamp) on `writer`,
    under `namespace`."""
    conns = {t: writer.add_connection(namespace + t, "tf2_msgs/msg/TFMessage", typestore=TS)
             for t in ("/tf", "/tf_static")}
    first = min(stamp for stamp, _ in dynamic)
    writer.write(conns["/tf_static"], first, TS.serialize_cdr(_tf_message(static),
                                                              "tf2_msgs/msg/TFMessage"))
    for stamp, transforms in dynamic:
        writer.write(conns["/tf"], stamp, TS.serialize_cdr(_tf_message(transforms),
                                                           "tf2_msgs/msg/TFMessage"))


def test_tree_from_a_bag_equals_the_tree_built_directly(tmp_path):
    head_s = np.arange(0.0, 2.01, 0.1)
    with Writer(tmp_path / "tf", version=9, storage_plugin=StoragePlugin.MCAP) as writer:
        _write_tf(writer, [("world", "base", T0, W_BASE), ("base", "exo_link", T0, BASE_EXO),
                           ("exo_link", "exo_optical", T0, EXO_OPT),
                           ("head", "ego_optical", T0, HEAD_EGO)],
                  [(T0 + round(t * 1e9), [("world", "head", T0 + round(t * 1e9), _head(t))])
                   for t in head_s])
    from_bag, direct = TfBuffer.from_bag(tmp_path / "tf"), _tree(head_stamps_s=head_s)
    assert from_bag.frames() == direct.frames()
    for stamp in T0 + np.array([0, 33, 517, 1999]) * MS:
        for frame in ("exo_optical", "ego_optical"):
            np.testing.assert_allclose(from_bag.lookup("world", frame, stamp),
                                       direct.lookup("world", frame, stamp), atol=1e-12)
    with Writer(tmp_path / "no_tf", version=9, storage_plugin=StoragePlugin.MCAP) as writer:
        writer.add_connection("/other", "std_msgs/msg/String", typestore=TS)
    with pytest.raises(BagError, match="no /tf or /tf_static topic .* it has \\['/other'\\]"):
        TfBuffer.from_bag(tmp_path / "no_tf")


# ---- egox convert: TF path against the pose-topic path -------------------------------------
FRAMES = 10
OPTICAL = pose_to_c2w(np.zeros(3), np.array([-0.5, 0.5, -0.5, 0.5]))   # x fwd -> z fwd (REP 103)


def _walk(t_s: float) -> np.ndarray:
    """world -> head at t_s s after the first frame: turning 0.3 rad/s about z, walking
    0.6 m/s along y, looking along +x at the scene's plane."""
    return _rot_z(0.3 * t_s - 0.15, (0.2, 0.6 * t_s - 0.1, 1.0))


def _scene():
    scene = tiny_scene(frames=FRAMES)
    t_s = (scene.stamps_ns - scene.stamps_ns[0]) / 1e9
    scene.ego_c2w = np.stack([_walk(t) @ OPTICAL for t in t_s])
    return scene


def _write_exo_bag(path: Path, scene, *, pose_topic: bool = True, tf_period_ms: float = 7.0,
                   tf_until_s: float = 0.35, drop_link: str = "", tf_namespace: str = "") -> None:
    """An exo bag: image, camera_info, depth, /ego/pose at the frame stamps (pose_topic), and
    TF: world -> base -> exo_link -> exo_optical and head -> ego_optical on /tf_static, world
    -> head on /tf every `tf_period_ms` from 20 ms before the first frame to `tf_until_s`
    after it, never at a frame stamp. `drop_link`: a child frame whose link is left out;
    `tf_namespace`: TF on <namespace>/tf and <namespace>/tf_static."""
    base_exo = np.linalg.inv(W_BASE) @ scene.exo_c2w[0] @ np.linalg.inv(EXO_OPT)
    static = [(p, c, int(scene.stamps_ns[0]), T) for p, c, T in
              [("world", "base", W_BASE), ("base", "exo_link", base_exo),
               ("exo_link", "exo_optical", EXO_OPT), ("head", "ego_optical", OPTICAL)]
              if c != drop_link]
    first = int(scene.stamps_ns[0])
    tf_stamps = first + np.round(np.arange(-20.0, tf_until_s * 1e3, tf_period_ms) * MS + 1234)
    dynamic = [(int(s), [("world", "head", int(s), _walk((s - first) / 1e9))])
               for s in tf_stamps]
    write_exo_bag(path, scene, pose=pose_topic, frame_id="exo_optical",
                  before=lambda writer: _write_tf(writer, static, dynamic, tf_namespace))


def _config(scene, **overrides) -> EgoxConfig:
    K = scene.ego_K
    values = dict(clip_length=5, clip_stride=5, exo_width=0, exo_height=0, ego_width=K.width,
                  ego_height=K.height, ego_fx=K.fx, ego_fy=K.fy, ego_cx=K.cx, ego_cy=K.cy,
                  exo_pose=[float(v) for v in np.concatenate(c2w_to_pose(scene.exo_c2w[0]))])
    values.update(overrides)
    return EgoxConfig(**values)


def _tf(**frames: str) -> dict:
    """Settings reading both camera poses from the test tree's TF (`frames` override)."""
    return dict(ego_pose_source="tf", exo_pose_source="tf", tf=TfConfig(**{
        "world_frame": "world", "ego_frame": "ego_optical", "exo_frame": "exo_optical",
        **frames}))


def _clips(bag: Path, config: EgoxConfig):
    with BagClips(bag, config) as reader:
        return list(reader), reader.counters()


def test_tf_path_gives_the_clips_of_the_pose_topic_path(tmp_path):
    scene = _scene()
    _write_exo_bag(tmp_path / "bag", scene)
    by_topic, _ = _clips(tmp_path / "bag", _config(scene))
    by_tf, counters = _clips(tmp_path / "bag", _config(scene, **_tf()))
    assert len(by_tf) == len(by_topic) == FRAMES // 5
    assert counters["bad_inputs"] == {}
    for a, b in zip(by_tf, by_topic):
        np.testing.assert_array_equal(a.stamps_ns, b.stamps_ns)
        np.testing.assert_array_equal(a.exo_rgb, b.exo_rgb)
        np.testing.assert_allclose(a.ego_c2w, b.ego_c2w, atol=1e-9)
        np.testing.assert_allclose(a.exo_c2w, b.exo_c2w, atol=1e-9)
    np.testing.assert_allclose(np.concatenate([c.ego_c2w for c in by_tf]), scene.ego_c2w,
                               atol=1e-9)
    # the same through ego_camera_offset: TF gives the head, the offset the optical frame
    offset = [float(v) for v in np.concatenate(c2w_to_pose(OPTICAL))]
    by_head, _ = _clips(tmp_path / "bag", _config(scene, ego_camera_offset=offset,
                                                  **_tf(ego_frame="head")))
    np.testing.assert_allclose(np.concatenate([c.ego_c2w for c in by_head]), scene.ego_c2w,
                               atol=1e-9)


def test_a_bag_without_the_link_or_without_tf_is_refused_naming_it(tmp_path):
    scene = _scene()
    _write_exo_bag(tmp_path / "no_link", scene, drop_link="exo_link")
    with pytest.raises(BagError, match="no transform from 'world' to 'exo_optical': 'exo_link' "
                                       "has no parent in /tf or /tf_static"):
        _clips(tmp_path / "no_link", _config(scene, **_tf()))
    _write_exo_bag(tmp_path / "no_head", scene, drop_link="ego_optical")
    with pytest.raises(BagError, match="frame 'ego_optical' is in neither /tf nor /tf_static"):
        _clips(tmp_path / "no_head", _config(scene, **_tf()))
    _write_exo_bag(tmp_path / "no_pose", scene, pose_topic=False)
    with pytest.raises(BagError, match=r"lacks required topic\(s\) /ego/pose"):
        _clips(tmp_path / "no_pose", _config(scene))


def test_frames_outside_the_tf_range_are_dropped_and_reported_not_extrapolated(tmp_path):
    scene = _scene()                                    # frames every 33.3 ms from 0 to 300 ms
    _write_exo_bag(tmp_path / "short", scene, tf_until_s=0.15)   # head known until ~147 ms
    warned = []
    with BagClips(tmp_path / "short", _config(scene, **_tf()),
                  on_bad_input=lambda cause, msg, first: warned.append((cause, msg))) as reader:
        clips = list(reader)
    assert len(clips) == 1                               # frames 0-4 (0 to 133 ms)
    np.testing.assert_allclose(clips[0].ego_c2w, scene.ego_c2w[:5], atol=1e-9)
    assert reader.pipeline.bad_inputs["tf_extrapolation"] == FRAMES - 5
    cause, message = warned[0]
    assert cause == "tf_extrapolation"
    assert "'world' -> 'head' is not known at stamp" in message
    assert "not extrapolated beyond the tolerance (15 ms)" in message


def test_config_names_the_tf_frames_and_refuses_an_empty_one():
    config = _config(_scene(), **_tf())
    assert config.tf_frames == {"ego_pose": "ego_optical", "exo_pose": "exo_optical"}
    assert _config(_scene()).tf_frames == {}
    with pytest.raises(ConfigError, match="parameter tf.exo_frame='': must name a TF frame"):
        _config(_scene(), **_tf(exo_frame=""))
    with pytest.raises(ConfigError, match="parameter tf.world_frame='/': must name"):
        _config(_scene(), **_tf(world_frame="/"))
    assert _config(_scene(), ego_pose_source="tf", tf=TfConfig(exo_frame="")).tf_frames == {
        "ego_pose": "ego_camera_optical_frame"}                 # exo_frame unused: not checked


# ---- live: frames wait for TF that has not arrived yet (the node's case) -------------------
def test_live_frames_wait_for_late_tf_then_give_up_after_max_wait():
    from egox_ros.pipeline import ExoPipeline

    scene = _scene()
    f = RosbagsFactory(TS)
    image_t = TS.types["sensor_msgs/msg/Image"]
    now = [0]
    tf = TfBuffer(tolerance_ns=0)
    base_exo = np.linalg.inv(W_BASE) @ scene.exo_c2w[0] @ np.linalg.inv(EXO_OPT)
    first = int(scene.stamps_ns[0])
    for parent, child, T in [("world", "base", W_BASE), ("base", "exo_link", base_exo),
                             ("exo_link", "exo_optical", EXO_OPT),
                             ("head", "ego_optical", OPTICAL)]:
        _set(tf, parent, child, first, T, True)
    pipeline = ExoPipeline(_config(scene, max_wait_s=1.0, **_tf()), clock_ns=lambda: now[0],
                           tf=tf)

    def frame(i: int) -> list:
        h = f.header(int(scene.stamps_ns[i]), "exo_optical")
        clips = pipeline.on_camera_info(f.camera_info(scene.exo_K, h))
        clips += pipeline.on_depth(numpy_to_image(
            (scene.exo_depth_m[i] * 1000).astype(np.uint16), "16UC1", h, msg_type=image_t))
        return clips + pipeline.on_exo_image(numpy_to_image(scene.exo_rgb[i], "rgb8", h,
                                                            msg_type=image_t))

    def head_until(i: int) -> None:                    # /tf samples every 10 ms past frame i
        for s in range(first - 20 * MS, int(scene.stamps_ns[i]) + 10 * MS, 10 * MS):
            _set(tf, "world", "head", s, _walk((s - first) / 1e9), False)

    assert [frame(i) for i in range(6)] == [[]] * 6      # no /tf yet: every frame waits
    assert pipeline.bad_inputs == {}
    head_until(4)                                       # TF for frames 0-4 arrives late
    now[0] += 500 * MS
    clips = frame(6)                                    # the next message releases them
    assert len(clips) == 1 and pipeline.bad_inputs == {}
    np.testing.assert_allclose(clips[0].ego_c2w, scene.ego_c2w[:5], atol=1e-9)
    np.testing.assert_allclose(clips[0].exo_c2w, scene.exo_c2w[:5], atol=1e-9)
    now[0] += 1100 * MS                                 # frames 5, 6 waited past max_wait_s
    assert frame(7) == []
    assert pipeline.bad_inputs == {"tf_timeout": 2}


def test_node_refuses_tf_poses_without_tf2_ros_in_one_line():
    import os
    import subprocess
    import sys

    from egox_ros.tf2_lookup import tf2_ros_missing

    if not tf2_ros_missing():
        pytest.skip("tf2_ros is installed here: the node reads TF through it")
    root = Path(__file__).resolve().parents[2]
    proc = subprocess.run([sys.executable, "-m", "egox_ros.node", "--ros-args", "-p",
                           "exo_pose_source:=tf"], env=dict(os.environ, PYTHONPATH=str(root)),
                          capture_output=True, text=True, timeout=60)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 2, output
    lines = [line for line in output.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in output, output
    assert lines[0].startswith("[FATAL]") and lines[0].endswith(
        "[egox]: parameter exo_pose_source='tf': reading camera poses from TF needs tf2_ros (No "
        "module named 'tf2_ros'): source a ROS 2 workspace with it (apt install "
        "ros-<distro>-tf2-ros; no wheel exists), or use 'topic' (`egox convert` reads TF from "
        "bags without it)"), output


def _ego_images(bag: Path) -> list[tuple[int, np.ndarray]]:
    """(stamp, rgb) of every ego image of a converted bag."""
    from rosbags.highlevel import AnyReader

    from egox_ros.image_conversion import image_to_rgb

    with AnyReader([bag], default_typestore=TS) as reader:
        conns = [c for c in reader.connections if c.topic == "/egox/ego/image"]
        return [(stamp, image_to_rgb(reader.deserialize(raw, c.msgtype)).copy())
                for c, stamp, raw in reader.messages(connections=conns)]


def test_egox_convert_with_tf_flags_writes_the_pose_topic_conversion(tmp_path):
    from typer.testing import CliRunner

    from egox_ros.cli import app

    scene = _scene()
    _write_exo_bag(tmp_path / "bag", scene)
    K = scene.ego_K
    exo_pose = str([float(v) for v in np.concatenate(c2w_to_pose(scene.exo_c2w[0]))])
    common = ["--no-progress", "--clip_length", "5", "--clip_stride", "5", "--exo_width", "0",
              "--exo_height", "0", "--ego_width", str(K.width), "--ego_height", str(K.height),
              "--ego_fx", str(K.fx), "--ego_fy", str(K.fy), "--ego_cx", str(K.cx),
              "--ego_cy", str(K.cy)]
    runs = {"topic": ["--exo_pose", exo_pose],
            "tf": ["--ego_pose_source", "tf", "--exo_pose_source", "tf", "--tf.world_frame",
                   "world", "--tf.ego_frame", "ego_optical", "--tf.exo_frame", "exo_optical"]}
    for name, flags in runs.items():
        result = CliRunner().invoke(app, ["convert", str(tmp_path / "bag"),
                                          str(tmp_path / name), *common, *flags])
        assert result.exit_code == 0, result.output
    by_tf, by_topic = _ego_images(tmp_path / "tf"), _ego_images(tmp_path / "topic")
    assert [s for s, _ in by_tf] == [s for s, _ in by_topic] == [int(s) for s in scene.stamps_ns]
    for (_, a), (_, b) in zip(by_tf, by_topic):
        assert a.any()
        np.testing.assert_array_equal(a, b)
    result = CliRunner().invoke(app, ["convert", str(tmp_path / "bag"), str(tmp_path / "bad"),
                                      *common, *runs["tf"][:-1], "exo_link_typo"])
    assert isinstance(result.exception, BagError)
    assert "frame 'exo_link_typo' is in neither /tf nor /tf_static" in str(result.exception)


def test_tf_under_a_namespace_is_read_through_remap(tmp_path):
    scene = _scene()
    _write_exo_bag(tmp_path / "bag", scene, tf_namespace="/robot1")
    config = _config(scene, **_tf())
    with pytest.raises(BagError, match="no /tf or /tf_static topic"):
        _clips(tmp_path / "bag", config)
    remap = {"tf": "/robot1/tf", "tf_static": "/robot1/tf_static"}
    with BagClips(tmp_path / "bag", config, remap=remap) as reader:
        clips = list(reader)
    np.testing.assert_allclose(np.concatenate([c.ego_c2w for c in clips]), scene.ego_c2w,
                               atol=1e-9)
