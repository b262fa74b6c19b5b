"""`egox export-lerobot`: bags with known content -> a LeRobot v3 dataset, checked against
the published layout (huggingface/lerobot `lerobot/datasets` v3.0: utils.py paths and
DEFAULT_FEATURES, lerobot_dataset.py's episode metadata) with pyarrow and PyAV, since
`lerobot` / `lerobot-dataset` cannot be installed beside this project's pins."""
import json
import math
from pathlib import Path

import av
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from rosbags.rosbag2 import StoragePlugin, Writer
from rosbags.typesys import Stores, get_typestore
from typer.testing import CliRunner

from egox_model.geometry.pose import slerp
from egox_model.lerobot.writer import LeRobotWriter
from egox_model.quality import ClipQuality
from egox_ros.errors import BagError
from egox_ros.image_conversion import numpy_to_compressed, numpy_to_image
from egox_ros.lerobot_export import ExportConfig, export_lerobot
from egox_ros.messages import RosbagsFactory

TS = get_typestore(Stores.ROS2_KILTED)
T0 = 1_700_000_000 * 10**9
N = 20                                   # exo/ego frames at 30 fps
CAMERAS = {"exo": "/exo/image_raw", "ego": "/egox/ego/image"}


def _stamp(i: float, hz: float = 30.0) -> int:
    return T0 + round(i * 1e9 / hz)


def _quality(first: int, last: int, psnr: float) -> ClipQuality:
    return ClipQuality(backend="prior", frames=10, first_stamp_ns=first, last_stamp_ns=last,
                       prior_psnr_db=psnr, prior_coverage=0.8, flicker=0.5,
                       fusion_residual_rms_mean=math.nan, fusion_residual_rms_max=math.nan,
                       fusion_failed_frames=0)


def _yaw_quat(yaw: float) -> np.ndarray:
    return np.array([0.0, 0.0, math.sin(yaw / 2), math.cos(yaw / 2)])


def _tf_message(stamp: int, parent: str, child: str, xyz, q):
    types, f = TS.types, RosbagsFactory(TS)
    vec, quat = types["geometry_msgs/msg/Vector3"], types["geometry_msgs/msg/Quaternion"]
    transform = types["geometry_msgs/msg/TransformStamped"](
        header=f.header(stamp, parent), child_frame_id=child,
        transform=types["geometry_msgs/msg/Transform"](translation=vec(*map(float, xyz)),
                                                       rotation=quat(*map(float, q))))
    return types["tf2_msgs/msg/TFMessage"](transforms=[transform])


def write_bag(path: Path, skip: range = range(0), topics: set[str] | None = None,
              tf_skip: range = range(0)) -> None:
    """Exo 48x32 and ego 32x32 frames (exo frame i is grey 10*i, ego 5*i) at 30 fps,
    JointState [a, b] = [t, 2t] (t: seconds since T0) at 100 Hz, PoseStamped yawing 0.2 rad
    per frame at 30 Hz, Twist (no header) at 50 Hz, two clip_quality messages: frames 0-9
    (PSNR 30 dB) and 10-19 (12 dB); /tf map -> base_link = the pose, /tf_static base_link ->
    ego_camera identity. Exo frames in `skip`, /tf samples in `tf_skip` are left out; with
    `topics`, only the messages of those topics are written."""
    f = RosbagsFactory(TS)
    types = TS.types
    image_t = types["sensor_msgs/msg/Image"]
    with Writer(path, version=9, storage_plugin=StoragePlugin.MCAP) as writer:
        conns = {t: writer.add_connection(t, m, typestore=TS) for t, m in [
            ("/exo/image_raw", "sensor_msgs/msg/Image"),
            ("/egox/ego/image", "sensor_msgs/msg/Image"),
            ("/joint_states", "sensor_msgs/msg/JointState"),
            ("/ego/pose", "geometry_msgs/msg/PoseStamped"),
            ("/cmd_vel", "geometry_msgs/msg/Twist"),
            ("/egox/clip_quality", "diagnostic_msgs/msg/DiagnosticArray"),
            ("/tf", "tf2_msgs/msg/TFMessage"), ("/tf_static", "tf2_msgs/msg/TFMessage"),
            ("/top/compressed", "sensor_msgs/msg/CompressedImage"),
            ("/episode_start", "std_msgs/msg/String")]}
        msgs = []
        for i in range(N):
            h = f.header(_stamp(i), "cam")
            if i not in skip:
                msgs.append(("/exo/image_raw", _stamp(i), numpy_to_image(
                    np.full((32, 48, 3), 10 * i, np.uint8), "rgb8", h, msg_type=image_t)))
            msgs.append(("/egox/ego/image", _stamp(i), numpy_to_image(
                np.full((32, 32, 3), 5 * i, np.uint8), "rgb8", h, msg_type=image_t)))
            msgs.append(("/top/compressed", _stamp(i), numpy_to_compressed(
                np.full((16, 24, 3), 12 * i, np.uint8), h, fmt="png",
                msg_type=types["sensor_msgs/msg/CompressedImage"])))
            q = _yaw_quat(0.2 * i)
            msgs.append(("/ego/pose", _stamp(i), types["geometry_msgs/msg/PoseStamped"](
                header=h, pose=types["geometry_msgs/msg/Pose"](
                    position=types["geometry_msgs/msg/Point"](x=float(i), y=0.0, z=1.0),
                    orientation=types["geometry_msgs/msg/Quaternion"](*map(float, q))))))
            if i not in tf_skip:                  # the same pose as map -> base_link on /tf
                msgs.append(("/tf", _stamp(i), _tf_message(_stamp(i), "map", "base_link",
                                                           (float(i), 0.0, 1.0), q)))
        msgs.append(("/episode_start", _stamp(11.5), types["std_msgs/msg/String"](data="2")))
        msgs.append(("/tf_static", T0, _tf_message(T0, "base_link", "ego_camera", (0, 0, 0),
                                                   (0.0, 0.0, 0.0, 1.0))))
        for j in range(-2, 70):
            t = _stamp(j, 100.0)
            msgs.append(("/joint_states", t, types["sensor_msgs/msg/JointState"](
                header=f.header(t, ""), name=["a", "b"],
                position=np.array([(t - T0) / 1e9, 2 * (t - T0) / 1e9]),
                velocity=np.zeros(0), effort=np.zeros(0))))
        for j in range(-1, 35):
            vec = types["geometry_msgs/msg/Vector3"]
            msgs.append(("/cmd_vel", _stamp(j, 50.0), types["geometry_msgs/msg/Twist"](
                linear=vec(x=0.5 * j, y=0.0, z=0.0), angular=vec(x=0.0, y=0.0, z=0.1))))
        for first, psnr in ((0, 30.0), (10, 12.0)):
            quality = f.clip_quality(_quality(_stamp(first), _stamp(first + 9), psnr),
                                     f.header(_stamp(first), "cam"), "egox: clip quality")
            msgs.append(("/egox/clip_quality", _stamp(first), quality))
        for topic, t, msg in sorted(msgs, key=lambda m: m[1]):
            if topics is None or topic in topics:
                writer.write(conns[topic], t, TS.serialize_cdr(msg, msg.__msgtype__))


def _config(**overrides) -> ExportConfig:
    values = dict(fps=15, cameras=CAMERAS, state=("/joint_states", "/ego/pose"),
                  action=("/cmd_vel",), task="pick the cube")
    values.update(overrides)
    return ExportConfig(**values)


def _decode(path: Path) -> tuple[np.ndarray, list[float]]:
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        frames = [(float(fr.pts * stream.time_base), fr.to_ndarray(format="rgb24"))
                  for fr in container.decode(stream)]
    return np.stack([f for _, f in frames]), [t for t, _ in frames]


def check_layout(root: Path, files_size_in_mb: tuple[float, float] = (100, 200)) -> dict:
    """Every file of the v3 layout, its schema and its cross references; returns info."""
    info = json.loads((root / "meta/info.json").read_text())
    assert info["codebase_version"] == "v3.0"
    assert info["data_path"] == "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
    assert info["video_path"] == \
        "videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4"
    assert (info["chunks_size"], info["data_files_size_in_mb"],
            info["video_files_size_in_mb"]) == (1000, *files_size_in_mb)
    features = info["features"]
    assert list(features)[-5:] == ["timestamp", "frame_index", "episode_index", "index",
                                   "task_index"]
    for key in ("timestamp", "frame_index", "episode_index", "index", "task_index"):
        assert features[key] == {"dtype": "float32" if key == "timestamp" else "int64",
                                 "shape": [1], "names": None}
    videos = [k for k, v in features.items() if v["dtype"] == "video"]
    for key in videos:
        assert key.startswith("observation.images.")
        assert features[key]["names"] == ["height", "width", "channels"]
        h, w, c = features[key]["shape"]
        assert features[key]["info"]["video.height"] == h and \
            features[key]["info"]["video.width"] == w and c == 3
        assert features[key]["info"]["video.fps"] == info["fps"]
        assert features[key]["info"]["has_audio"] is False
    # Data: one row per frame, global index continuous, timestamp = frame_index / fps.
    data = pa.concat_tables(pq.read_table(p) for p in sorted(root.glob("data/*/*.parquet")))
    assert data.column_names == [k for k in features if k not in videos]
    for key, feature in features.items():
        if feature["dtype"] == "float32" and key != "timestamp":
            assert data.schema.field(key).type == pa.list_(pa.float32(), feature["shape"][0])
    assert data.num_rows == info["total_frames"]
    np.testing.assert_array_equal(data["index"].to_numpy(), np.arange(data.num_rows))
    np.testing.assert_allclose(data["timestamp"].to_numpy(),
                               data["frame_index"].to_numpy() / info["fps"], atol=1e-6)
    # Episodes: indices into data, video spans, chunk/file of each.
    episodes = pa.concat_tables(pq.read_table(p) for p in
                                sorted(root.glob("meta/episodes/*/*.parquet"))).to_pylist()
    assert [e["episode_index"] for e in episodes] == list(range(info["total_episodes"]))
    assert info["splits"] == {"train": f"0:{info['total_episodes']}"}
    position = 0
    for ep in episodes:
        assert ep["dataset_from_index"] == position
        position = ep["dataset_to_index"]
        assert ep["length"] == ep["dataset_to_index"] - ep["dataset_from_index"]
        rows = data.slice(ep["dataset_from_index"], ep["length"])
        assert set(rows["episode_index"].to_pylist()) == {ep["episode_index"]}
        np.testing.assert_array_equal(rows["frame_index"].to_numpy(), np.arange(ep["length"]))
        assert (root / info["data_path"].format(chunk_index=ep["data/chunk_index"],
                                                file_index=ep["data/file_index"])).exists()
        for key in videos:
            path = root / info["video_path"].format(
                video_key=key, chunk_index=ep[f"videos/{key}/chunk_index"],
                file_index=ep[f"videos/{key}/file_index"])
            _, times = _decode(path)
            start = ep[f"videos/{key}/from_timestamp"]
            assert ep[f"videos/{key}/to_timestamp"] - start == \
                pytest.approx(ep["length"] / info["fps"])
            inside = [t for t in times if start - 1e-4 <= t < ep[f"videos/{key}/to_timestamp"]
                      - 1e-4]
            assert len(inside) == ep["length"], key
        for key in features:
            assert f"stats/{key}/mean" in ep and f"stats/{key}/q99" in ep
    assert position == info["total_frames"]
    tasks = pq.read_table(root / "meta/tasks.parquet")
    assert tasks.column_names == ["task_index", "__index_level_0__"]
    assert b"pandas" in tasks.schema.metadata
    assert tasks.num_rows == info["total_tasks"]
    stats = json.loads((root / "meta/stats.json").read_text())
    assert set(stats) == set(features)
    for key, s in stats.items():
        assert set(s) == {"min", "max", "mean", "std", "count", "q01", "q10", "q50", "q90",
                          "q99"}
        assert s["count"] == [info["total_frames"]]
    return info


def test_known_bag_gives_frames_timestamps_videos_and_state(tmp_path):
    write_bag(tmp_path / "bag")
    report = export_lerobot(tmp_path / "bag", tmp_path / "ds", _config())
    info = check_layout(tmp_path / "ds")
    # Grid at 15 fps over 19/30 s: 10 frames; exo frame 2k at grid time k.
    assert info["total_frames"] == 10 and info["total_episodes"] == 1 == len(report["episodes"])
    assert info["features"]["observation.state"]["names"] == [
        "joint_states.a", "joint_states.b", "ego_pose.x", "ego_pose.y", "ego_pose.z",
        "ego_pose.qx", "ego_pose.qy", "ego_pose.qz", "ego_pose.qw"]
    assert info["features"]["action"]["names"] == [f"cmd_vel.{c}" for c in
                                                   ("vx", "vy", "vz", "wx", "wy", "wz")]
    assert info["features"]["observation.images.exo"]["shape"] == [32, 48, 3]
    assert info["features"]["observation.images.ego"]["info"]["video.codec"] == "h264"
    data = pq.read_table(tmp_path / "ds/data/chunk-000/file-000.parquet")
    k = np.arange(10)
    np.testing.assert_allclose(data["timestamp"].to_numpy(), k / 15, atol=1e-6)
    state = np.stack(data["observation.state"].to_numpy(zero_copy_only=False))
    t = k / 15
    np.testing.assert_allclose(state[:, 0], t, atol=1e-6)           # a = t, linear
    np.testing.assert_allclose(state[:, 1], 2 * t, atol=1e-6)
    np.testing.assert_allclose(state[:, 2], 2 * k, atol=1e-5)        # pose sample 2k exactly
    np.testing.assert_allclose(state[:, 5:9], [_yaw_quat(0.4 * i) for i in k], atol=1e-6)
    action = np.stack(data["action"].to_numpy(zero_copy_only=False))
    np.testing.assert_allclose(action[:, 0], 0.5 * 50 * t, atol=1e-5)  # vx = 0.5 j at 50 Hz
    frames, times = _decode(tmp_path / "ds/videos/observation.images.exo/chunk-000/"
                                       "file-000.mp4")
    assert len(frames) == 10 and np.allclose(times, k / 15)
    np.testing.assert_allclose(frames.reshape(10, -1).mean(1), 20 * k, atol=3)
    ego, _ = _decode(tmp_path / "ds/videos/observation.images.ego/chunk-000/file-000.mp4")
    np.testing.assert_allclose(ego.reshape(10, -1).mean(1), 10 * k, atol=3)
    tasks = pq.read_table(tmp_path / "ds/meta/tasks.parquet").to_pylist()
    assert tasks == [{"task_index": 0, "__index_level_0__": "pick the cube"}]
    log = json.loads((tmp_path / "ds/meta/egox_export.json").read_text())
    assert "slerp" in log["runs"][0]["resampling"]
    assert [c["first_stamp_ns"] for c in log["runs"][0]["episodes"][0]["clips"]] == \
        [str(_stamp(0)), str(_stamp(10))]


def test_recorded_and_converted_bags_read_together(tmp_path):
    """`--with`: the ego topics in a second bag (as egox convert writes them), paired by
    name for a directory of bags."""
    ego = {"/egox/ego/image", "/egox/clip_quality"}
    everything = {"/exo/image_raw", "/joint_states", "/ego/pose", "/cmd_vel"} | ego
    for name in ("run_a", "run_b"):
        write_bag(tmp_path / "rec" / name, topics=everything - ego)
        write_bag(tmp_path / "ego" / name, topics=ego)
    with pytest.raises(BagError, match="no messages on /egox/ego/image"):
        export_lerobot(tmp_path / "rec" / "run_a", tmp_path / "ds", _config())
    from egox_ros.cli import app
    result = CliRunner().invoke(app, [
        "export-lerobot", str(tmp_path / "rec"), str(tmp_path / "ds"), "--fps", "15",
        "--with", str(tmp_path / "ego"), "--state", "/joint_states", "--min-quality",
        "prior_psnr_db>=20"])
    assert result.exit_code == 0, result.output
    info = check_layout(tmp_path / "ds")
    assert (info["total_episodes"], info["total_frames"]) == (2, 10)     # 5 kept per bag
    runs = json.loads((tmp_path / "ds/meta/egox_export.json").read_text())["runs"]
    assert runs[0]["sources"] == [[str(tmp_path / d / n) for d in ("rec", "ego")]
                                  for n in ("run_a", "run_b")]
    assert len(runs[0]["excluded_clips"]) == 2


def test_poses_from_tf_equal_the_pose_topic_path(tmp_path):
    write_bag(tmp_path / "bag")
    export_lerobot(tmp_path / "bag", tmp_path / "ds",
                   _config(fps=20, state=("/ego/pose", "tf:map:ego_camera"), action=()))
    info = check_layout(tmp_path / "ds")
    assert info["features"]["observation.state"]["names"][7:] == [
        f"ego_camera.{c}" for c in ("x", "y", "z", "qx", "qy", "qz", "qw")]
    data = pq.read_table(tmp_path / "ds/data/chunk-000/file-000.parquet")
    state = np.stack(data["observation.state"].to_numpy(zero_copy_only=False))
    np.testing.assert_allclose(state[:, 7:10], state[:, :3], atol=1e-5)
    same_sign = np.sign(np.sum(state[:, 10:] * state[:, 3:7], axis=1, keepdims=True))
    np.testing.assert_allclose(state[:, 10:] * same_sign, state[:, 3:7], atol=1e-6)
    with pytest.raises(Exception, match="'gripper'"):                    # names the frame
        export_lerobot(tmp_path / "bag", tmp_path / "ds2",
                       _config(state=("tf:map:gripper",), action=()))


def test_a_tf_gap_splits_the_episode(tmp_path):
    write_bag(tmp_path / "bag", tf_skip=range(6, 10))
    report = export_lerobot(tmp_path / "bag", tmp_path / "ds",
                            _config(state=("tf:map:ego_camera",), action=()))
    gaps = [(g["topic"], g["from_ns"], g["to_ns"]) for g in report["gaps"]]
    # Grid k is sample 2k: k = 3, 4 fall between samples 5 and 10; k = 5 is sample 10.
    assert gaps == [("/tf:base_link", _stamp(6), _stamp(8))]
    assert [e["frames"] for e in report["episodes"]] == [3, 5]


def test_markers_split_episodes_and_compressed_cameras(tmp_path):
    """A marker message between grid times 5 and 6 (exo frames 10, 12) starts episode 2;
    a CompressedImage (png) camera decodes to its frames."""
    write_bag(tmp_path / "bag")
    report = export_lerobot(tmp_path / "bag", tmp_path / "ds", _config(
        cameras={"top": "/top/compressed", "ego": "/egox/ego/image"},
        marker_topic="/episode_start"))
    info = check_layout(tmp_path / "ds")
    assert [e["frames"] for e in report["episodes"]] == [6, 4] and info["total_episodes"] == 2
    assert info["features"]["observation.images.top"]["shape"] == [16, 24, 3]
    frames, _ = _decode(tmp_path / "ds/videos/observation.images.top/chunk-000/file-000.mp4")
    np.testing.assert_allclose(frames.reshape(10, -1).mean(1), 24 * np.arange(10), atol=3)


def test_slerp_between_pose_samples(tmp_path):
    write_bag(tmp_path / "bag")
    export_lerobot(tmp_path / "bag", tmp_path / "ds", _config(fps=20))
    data = pq.read_table(tmp_path / "ds/data/chunk-000/file-000.parquet")
    state = np.stack(data["observation.state"].to_numpy(zero_copy_only=False))
    # Grid k/20 s = pose sample 1.5 k: half-way between two samples for odd k.
    for k in (1, 3, 5):
        lo = int(1.5 * k)
        expected = slerp(_yaw_quat(0.2 * lo), _yaw_quat(0.2 * (lo + 1)), 0.5)
        np.testing.assert_allclose(state[k, 5:9], expected, atol=1e-6)
        np.testing.assert_allclose(state[k, 2], lo + 0.5, atol=1e-5)


def test_a_missing_topic_is_named(tmp_path):
    write_bag(tmp_path / "bag")
    with pytest.raises(BagError, match=r"lacks topic\(s\) /robot/joints \(vector\)"):
        export_lerobot(tmp_path / "bag", tmp_path / "ds", _config(state=("/robot/joints",)))
    from egox_ros.cli import app
    result = CliRunner().invoke(app, ["export-lerobot", str(tmp_path / "bag"),
                                      str(tmp_path / "ds"), "--fps", "15", "--camera",
                                      "top=/top/image_raw"])
    assert isinstance(result.exception, BagError)      # `egox` prints it, exit status 2
    assert "/top/image_raw (camera)" in str(result.exception)
    assert not (tmp_path / "ds").exists()


def test_a_clip_below_min_quality_is_left_out_and_listed(tmp_path):
    write_bag(tmp_path / "bag")
    from egox_ros.cli import app
    result = CliRunner().invoke(app, [
        "export-lerobot", str(tmp_path / "bag"), str(tmp_path / "ds"), "--fps", "15",
        "--state", "/joint_states", "--min-quality", "prior_psnr_db>=20 and prior_coverage>=0.5"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["excluded_clips"] == [[_stamp(10), _stamp(19)]]
    info = check_layout(tmp_path / "ds")
    # Kept: grid times up to the first clip's last stamp (9/30 s): k/15 <= 0.3 -> 5 frames.
    assert info["total_frames"] == 5
    data = pq.read_table(tmp_path / "ds/data/chunk-000/file-000.parquet")
    state = np.stack(data["observation.state"].to_numpy(zero_copy_only=False))
    assert state[:, 0].max() <= 9 / 30 + 1e-6
    with pytest.raises(Exception, match="unknown key 'psnr'"):
        _config(min_quality="psnr>=20")
    for bad in (dict(fps=29.97), dict(state=("tf:map",)), dict(vcodec="mjpeg"),
                dict(cameras={"a.b": "/x"})):
        with pytest.raises(Exception, match="fps|tf:TARGET_FRAME|vcodec|plain word"):
            _config(**bad)


def test_a_gap_splits_the_episode_and_is_reported(tmp_path):
    write_bag(tmp_path / "bag", skip=range(8, 12))     # exo frames 8-11 missing
    report = export_lerobot(tmp_path / "bag", tmp_path / "ds", _config())
    info = check_layout(tmp_path / "ds")
    gaps = [g for g in report["gaps"] if g["topic"] == "/exo/image_raw"]
    # Grid k covers exo frame 2k: k = 4 and 5 (frames 8, 10) lie in the 7..12 gap.
    spans = [(g["from_ns"], g["to_ns"], g["frames"]) for g in gaps]
    assert spans == [(_stamp(8), _stamp(10), 2)]
    assert [e["frames"] for e in report["episodes"]] == [4, 4]
    assert info["total_episodes"] == 2 and info["total_frames"] == 8


def test_appending_a_second_episode(tmp_path):
    write_bag(tmp_path / "bag")
    export_lerobot(tmp_path / "bag", tmp_path / "ds", _config())
    report = export_lerobot(tmp_path / "bag", tmp_path / "ds", _config(task="place it"))
    info = check_layout(tmp_path / "ds")
    assert (info["total_episodes"], info["total_frames"], info["total_tasks"]) == (2, 20, 2)
    assert report["episodes"][0]["episode_index"] == 1
    # The second run's episodes go to the next files, as lerobot does when resuming.
    for rel in ("data/chunk-000/file-001.parquet", "meta/episodes/chunk-000/file-001.parquet",
                "videos/observation.images.exo/chunk-000/file-001.mp4"):
        assert (tmp_path / "ds" / rel).exists(), rel
    second = pq.read_table(tmp_path / "ds/data/chunk-000/file-001.parquet")
    np.testing.assert_array_equal(second["index"].to_numpy(), np.arange(10, 20))
    assert set(second["task_index"].to_pylist()) == {1}
    runs = json.loads((tmp_path / "ds/meta/egox_export.json").read_text())["runs"]
    assert len(runs) == 2
    with pytest.raises(Exception, match="30 fps|15 fps"):
        export_lerobot(tmp_path / "bag", tmp_path / "ds", _config(fps=30))


def test_full_files_roll_over_to_new_ones(tmp_path):
    """Small file limits: episodes start new data and video files as lerobot's do, no episode
    spans two files, and each episode's frames read back from its file at its timestamps;
    an appending writer continues after the last file."""
    sizes = (2500 / 2**20, 3000 / 2**20)          # ~55 frames of rows, a few KB of video
    ramp = np.linspace(0, 160, 48, dtype=np.float32)[None, :, None]

    def episode(value: int, length: int) -> np.ndarray:
        frames = ramp + np.arange(length, dtype=np.float32)[:, None, None, None] * 8 + value
        return np.broadcast_to(frames, (length, 32, 48, 3)).astype(np.uint8)

    lengths = (30, 45, 25, 35, 40)                 # x264 holds back ~40 frames
    videos = [episode(10 * i, n) for i, n in enumerate(lengths)]
    for first, count in ((0, 3), (3, 2)):                      # a second run appends
        with LeRobotWriter(tmp_path / "ds", fps=10, vectors={"observation.state": ["a", "b"]},
                           cameras={"cam": (32, 48)}, data_files_size_in_mb=sizes[0],
                           video_files_size_in_mb=sizes[1]) as writer:
            for i in range(first, first + count):
                writer.add_episode(task="t", length=lengths[i], videos={"cam": iter(videos[i])},
                                   vectors={"observation.state": np.full((lengths[i], 2), i)})
    info = check_layout(tmp_path / "ds", sizes)
    assert info["total_episodes"] == 5
    rows = pq.read_table(tmp_path / "ds/meta/episodes/chunk-000/file-000.parquet").to_pylist()
    rows += pq.read_table(tmp_path / "ds/meta/episodes/chunk-000/file-001.parquet").to_pylist()
    data_files = [r["data/file_index"] for r in rows]
    video_files = [r["videos/observation.images.cam/file_index"] for r in rows]
    assert data_files == sorted(data_files) and len(set(data_files)) >= 3, data_files
    assert len(set(data_files[:3])) >= 2                     # rolled over within one run
    assert video_files == sorted(video_files) and len(set(video_files[:3])) >= 2, video_files
    for i, row in enumerate(rows):
        path = tmp_path / "ds" / info["video_path"].format(
            video_key="observation.images.cam", chunk_index=0, file_index=video_files[i])
        frames, times = _decode(path)
        start = row["videos/observation.images.cam/from_timestamp"]
        mine = [f for f, t in zip(frames, times) if abs(t - start) < 1e-4 or
                start < t < row["videos/observation.images.cam/to_timestamp"] - 1e-4]
        assert len(mine) == lengths[i]
        assert np.abs(np.stack(mine).astype(int) - videos[i]).mean() < 4.0
        data = pq.read_table(tmp_path / "ds" / info["data_path"].format(
            chunk_index=0, file_index=data_files[i]))
        state = data.filter(pa.compute.equal(data["episode_index"], i))["observation.state"]
        assert len(state) == lengths[i] and state.to_pylist()[0] == [i, i]


def test_the_demo_ends_with_a_lerobot_export(tmp_path):
    from egox_model.scene import SceneConfig
    from egox_ros.ros_demo import export_demo_bag, run_demo_with_ros

    scene = SceneConfig(seed=3, num_frames=9, exo_size=(96, 160), ego_size=(64, 64))
    report = run_demo_with_ros(tmp_path, seed=3, scene_config=scene)
    assert report["lerobot_frames"] == 9
    assert json.loads((tmp_path / "report.json").read_text())["lerobot_frames"] == 9
    info = check_layout(tmp_path / "lerobot")
    assert info["fps"] == 30 and info["total_episodes"] == 1
    assert info["features"]["observation.images.exo"]["shape"] == [96, 160, 3]
    assert info["features"]["observation.images.ego"]["shape"] == [64, 64, 3]
    assert info["features"]["observation.state"]["names"][:3] == ["ego_pose.x", "ego_pose.y",
                                                                  "ego_pose.z"]
    ego, _ = _decode(tmp_path / "lerobot/videos/observation.images.ego/chunk-000/file-000.mp4")
    demo_ego, _ = _decode(tmp_path / "ego.mp4")
    assert ego.shape == demo_ego.shape == (9, 64, 64, 3)
    assert np.abs(ego.astype(int) - demo_ego).mean() < 6       # two lossy encodings apart
    episodes = pq.read_table(tmp_path / "lerobot/meta/episodes/chunk-000/file-000.parquet")
    assert len(episodes.to_pylist()[0]["tasks"]) == 1
    assert export_demo_bag(tmp_path, fps=30.0) == 9           # a rerun replaces the dataset
