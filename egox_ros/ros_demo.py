"""The ROS 2 stage of `egox demo`: the synthetic scene goes through real nodes and DDS.

player (scene -> exo topics) -> `egox` node (clip -> generator -> ego topics) -> recorder
(`DIR/bag/`, MCAP); all three run in one process on one executor but talk over real DDS.
Then `export_demo_bag` writes the bag as a LeRobot v3 dataset (`DIR/lerobot/`).
Discovery stays on this machine (ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST unless set) and
ROS logs go to `DIR/ros_log` unless ROS_LOG_DIR is set.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from egox_model.generator import Generator, GeneratorConfig
from egox_ros.dds import local_ros_env

__all__ = ["RosDemoError", "demo_config", "read_back", "run_demo_with_ros", "run_ros_stage"]

EGO_TOPIC = "/egox/ego/image"
INPUT_TOPICS = ["/exo/image_raw", "/exo/camera_info", "/exo/depth", "/exo/mask", "/ego/pose",
                "/exo/pose"]
PLAYED_TOPICS = ["exo/image_raw", "exo/camera_info", "exo/depth", "exo/mask", "ego/pose",
                 "exo/pose"]             # each read by the node and the recorder
QUALITY_TOPIC = "/egox/clip_quality"
OUTPUT_TOPICS = [EGO_TOPIC, "/egox/ego/camera_info", "/egox/ego_prior/image",
                 "/egox/ego_prior/camera_info", QUALITY_TOPIC]


class RosDemoError(RuntimeError):
    """The ROS stage did not produce its output in time (names what was missing)."""


def demo_config(scene: Any, **overrides: Any):
    """EgoxConfig matching a scene: its ego camera, exo size, fps, one clip of all frames;
    `overrides` are EgoxConfig fields (`backend`, `prior`, `wan` included)."""
    from egox_ros.params import EgoxConfig

    K = scene.ego_K
    num_frames = len(scene.stamps_ns)
    values = dict(ego_width=K.width, ego_height=K.height, ego_fx=K.fx, ego_fy=K.fy,
                  ego_cx=K.cx, ego_cy=K.cy, exo_width=scene.exo_K.width,
                  exo_height=scene.exo_K.height, clip_length=num_frames, clip_stride=num_frames,
                  fps=float(scene.fps), exo_pose_source="topic", use_mask=True,
                  max_wait_s=2.0)
    values.update(overrides)
    return EgoxConfig(**values)


def read_back(bag: Path, reference: np.ndarray | None = None,
              reference_stamps: np.ndarray | None = None) -> dict[str, Any]:
    """Count /egox/ego/image messages and check every ego stamp is an exo stamp (rosbags).

    With `reference` (F, h, w, 3) frames at `reference_stamps`, also report the largest
    absolute pixel difference between the bag's ego frames and them.
    """
    from rosbags.highlevel import AnyReader
    from rosbags.typesys import Stores, get_typestore

    from egox_ros.image_conversion import image_to_rgb

    stamps: dict[str, list[int]] = {EGO_TOPIC: [], "/exo/image_raw": []}
    diff = 0
    index = ({int(s): i for i, s in enumerate(reference_stamps)}
             if reference is not None else {})
    with AnyReader([bag], default_typestore=get_typestore(Stores.ROS2_KILTED)) as reader:
        conns = [c for c in reader.connections if c.topic in stamps]
        for conn, log_time, raw in reader.messages(connections=conns):
            msg = reader.deserialize(raw, conn.msgtype)
            stamp = msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec
            stamps[conn.topic].append(stamp)
            if stamp != log_time:
                raise RosDemoError(f"{conn.topic}: log time {log_time} != header stamp {stamp}")
            if conn.topic == EGO_TOPIC and stamp in index:
                ref = reference[index[stamp]].astype(np.int16)
                diff = max(diff, int(np.abs(image_to_rgb(msg).astype(np.int16) - ref).max()))
    ego, exo = stamps[EGO_TOPIC], set(stamps["/exo/image_raw"])
    result = {"ego_messages": len(ego), "stamps_match": bool(ego) and all(s in exo for s in ego)}
    if reference is not None:
        result["ros_vs_file_max_abs_diff"] = diff
    return result


def run_demo_with_ros(out_dir: str | Path, *, seed: int = 0,
                      config: GeneratorConfig = GeneratorConfig(), ros: bool = True,
                      scene_config: Any = None, depth: str = "synthetic") -> dict[str, Any]:
    """`egox demo`: the file demo (egox_model.demo.run_demo), then the same scene, with the
    depth the file demo fused, through ROS 2; merges the ROS keys into report.json. One
    backend, built from `config` (behind its perception models), serves both; `depth`:
    the file demo's depth, 'synthetic' or 'estimate' (egox_model.demo.run_demo)."""
    from egox_model.demo import run_demo, write_report
    from egox_model.errors import ConfigError
    from egox_model.generator import make_generator
    from egox_model.perception.perceive import with_perception

    if depth == "estimate" and not config.perception.depth_model:
        raise ConfigError("--depth estimate needs a local metric depth model directory",
                          key="perception.depth_model", value="")
    backend = with_perception(make_generator(config), config)
    out_dir = Path(out_dir)
    result = run_demo(out_dir, seed=seed, generator=backend, scene_config=scene_config,
                      depth=depth)
    report = dict(result.report)
    if ros:
        # The ROS stage generates the same clip again: allow 3x what the file demo took (a
        # 50-step 14B clip takes minutes) on top of the fixed budget.
        generate_s = sum(result.output.ms_per_frame.values()) * result.clip.num_frames / 1e3
        additions = run_ros_stage(result.scene, out_dir, backend,
                                  depth_m=result.output.prior.exo_depth_m,
                                  reference=result.output.ego_rgb,
                                  timeout_s=300.0 + 3.0 * generate_s, backend=config.backend,
                                  prior=config.prior, wan=config.wan)
        report.update(additions)
        report["lerobot_frames"] = export_demo_bag(out_dir, fps=result.scene.fps)
        write_report(out_dir / "report.json", report)
    return report


def export_demo_bag(out_dir: Path, fps: float) -> int:
    """Export `out_dir/bag` to a fresh LeRobot v3 dataset `out_dir/lerobot` (cameras exo and
    ego, observation.state = the ego pose); returns its frame count."""
    import shutil

    from egox_ros.lerobot_export import ExportConfig, export_lerobot

    dataset = out_dir / "lerobot"
    if dataset.exists():
        shutil.rmtree(dataset)             # a rerun of the demo replaces, never appends
    config = ExportConfig(fps=int(round(fps)), cameras={"exo": INPUT_TOPICS[0],
                                                        "ego": EGO_TOPIC},
                          state=("/ego/pose",), task="egox demo: synthetic room")
    return export_lerobot(out_dir / "bag", dataset, config)["total_frames"]


def run_ros_stage(scene: Any, out_dir: str | Path, generator: Generator, *,
                  depth_m: np.ndarray | None = None, reference: np.ndarray | None = None,
                  rate: float = 1.0,
                  timeout_s: float = 300.0, **config_overrides: Any) -> dict[str, Any]:
    """Play `scene` through player -> egox node -> recorder; write `out_dir/bag/`.

    `depth_m` (F, H, W) replaces the scene's depth on exo/depth (e.g. the fused estimate the
    file demo used); with `reference` (the file demo's ego frames) the bag's ego frames are
    compared with them (`ros_vs_file_max_abs_diff`). Returns the report additions
    `ego_messages`, `stamps_match`, `latency_ms` (mean over clips: last exo message received
    -> first ego frame published) and a `ros` section with the node's counters.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    bag = out_dir / "bag"
    if bag.exists():
        import shutil
        shutil.rmtree(bag)
    local_ros_env(out_dir)

    from egox_ros.harness import RosHarness
    from egox_ros.node import EgoxNode
    from egox_ros.player import ScenePlayer
    from egox_ros.recorder import BagRecorder

    config = demo_config(scene, **config_overrides)
    if depth_m is not None:
        scene = _with_depth(scene, depth_m)
    num_frames = len(scene.stamps_ns)
    expected = (num_frames - config.clip_length) // config.clip_stride + 1 if \
        num_frames >= config.clip_length else 0
    expected_frames = expected * config.clip_length

    # One executor thread (egox_ros.harness: single-threaded because rclpy's
    # MultiThreadedExecutor fell behind 30 fps); the node's worker thread runs the backend.
    with RosHarness(thread_name="egox-demo-spin") as harness:
        context = harness.context
        node = harness.add(EgoxNode(config=config, generator=generator, context=context))
        recorder = harness.add(BagRecorder(bag, INPUT_TOPICS + OUTPUT_TOPICS, context=context))
        player = harness.add(ScenePlayer(scene, rate=rate, publish_mask=True, context=context))
        harness.wait_until(
            lambda: recorder.matched()
            and player.wait_for_subscribers(2, timeout=0.0, topics=PLAYED_TOPICS)
            and node.count_subscribers(EGO_TOPIC) >= 1, 20.0,
            what="discovery: the recorder/node did not see every topic", error=RosDemoError)
        player.play()
        harness.wait_until(
            lambda: recorder.counts.get(EGO_TOPIC, 0) >= expected_frames
            and recorder.counts.get("/egox/ego_prior/camera_info", 0) >= expected_frames
            and recorder.counts.get(QUALITY_TOPIC, 0) >= expected
            and all(recorder.counts.get(t, 0) >= num_frames for t in INPUT_TOPICS), timeout_s,
            what=lambda: f"the node did not publish {expected_frames} ego frames "
                         f"(stats: {node.stats()})", error=RosDemoError)
        stats = node.stats()
        latencies = list(node.latencies_ms)
        backend_ms = list(node.backend_ms)
    result = read_back(bag, reference, scene.stamps_ns if reference is not None else None)
    result["latency_ms"] = float(np.mean(latencies)) if latencies else None
    result["ros"] = {"bag": str(bag), "clips": len(latencies),
                     "backend_ms": float(np.mean(backend_ms)) if backend_ms else None,
                     "node": {k: v for k, v in stats.items() if v not in (None, "", 0)}}
    return result


def _with_depth(scene: Any, depth_m: np.ndarray) -> Any:
    from types import SimpleNamespace
    fields = {k: getattr(scene, k) for k in ("exo_rgb", "dynamic_mask", "exo_K", "exo_c2w",
                                             "ego_K", "ego_c2w", "stamps_ns", "fps")}
    return SimpleNamespace(exo_depth_m=np.asarray(depth_m, np.float32), **fields)
