"""Every parameter of the `egox` node: `EgoxConfig`, declared once, validated in one place.

`EgoxConfig` extends the generator's tree (`backend`, `prior.*`, `wan.*`) with the node's
own settings. The same tree is filled from ROS parameters (`declare_config(node)`), from a
ROS 2 parameter file (`load_config`, used by `egox convert`), from CLI flags and from
Python. `config/egox.yaml` and the table in docs/ros.md are generated from it
(`egox params`); a test keeps them in sync.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from egox_model.config import Setting, check_settings, from_flat, group, read_params_file, \
    settings_of, setting, to_flat
from egox_model.errors import ConfigError, InputError
from egox_model.generator.config import GeneratorConfig
from egox_model.geometry.pose import QUATERNION_TOLERANCE
from egox_model.quality import QUALITY_KEYS
from egox_model.quality_filter import QualityFilter
from egox_ros.work_queue import OVERFLOW_POLICIES

__all__ = ["YAML_HEADER", "EgoxConfig", "TfConfig", "declare_config", "load_config"]

IDENTITY_POSE = [0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0]
#: The comment on top of config/egox.yaml.
YAML_HEADER = """Every parameter of the egox node, generated from egox_ros/params.py by
`egox params > config/egox.yaml` (a test keeps the two in sync). Load with:
ros2 launch egox_ros egox.launch.py config:=/path/to/this.yaml, or
egox_node --ros-args --params-file config/egox.yaml; `egox convert --config` reads it too.
Each entry: description [allowed values]. Nested keys are dotted parameter names."""


@dataclass(frozen=True)
class TfConfig:
    """Frames of the camera poses read from TF (/tf and /tf_static, tf2 conventions)."""

    world_frame: str = setting("map", "fixed frame the camera poses are expressed in (REP "
                               "105: 'map', or 'odom' for drift-prone but smooth poses)")
    ego_frame: str = setting("ego_camera_optical_frame", "frame of the ego pose "
                             "(ego_pose_source 'tf'); the ego camera = this frame * "
                             "ego_camera_offset (identity: it is the ego camera's optical "
                             "frame, REP 103 z forward, x right, y down)")
    exo_frame: str = setting("exo_camera_optical_frame", "the exo camera's optical frame "
                             "(exo_pose_source 'tf'; z forward, x right, y down)")
    tolerance_s: float = setting(0.015, "a stamp up to this far before the first or after "
                                 "the last /tf sample of a moving frame takes that sample; "
                                 "further out the frame is dropped (tf_extrapolation), never "
                                 "extrapolated", low=0.0)

    def __post_init__(self) -> None:
        check_settings(self)


@dataclass(frozen=True)
class EgoxConfig(GeneratorConfig):
    """Configuration of the egox pipeline (node, converter, demo). Units: metres, seconds."""

    # Inputs
    image_transport: str = setting("raw", "exo image input: 'raw' (sensor_msgs/Image on "
                                   "exo/image_raw) or 'compressed' (CompressedImage on "
                                   "exo/image_raw/compressed)", choices=("raw", "compressed"))
    depth_source: str = setting("topic", "'topic': exo/depth (16UC1 mm or 32FC1 m) from an "
                                "RGB-D camera; 'estimate': a plain RGB camera, depth from "
                                "perception.depth_model on the worker (docs/perception.md)",
                                choices=("topic", "estimate"))
    ego_pose_source: str = setting("topic", "'topic' (ego/pose, of ego_pose_type) or 'tf' "
                                   "(tf.ego_frame in tf.world_frame from /tf and /tf_static, "
                                   "at each exo stamp)", choices=("topic", "tf"))
    ego_pose_type: str = setting("pose", "ego/pose message type: 'pose' (PoseStamped) or "
                                 "'odometry'", choices=("pose", "odometry"))
    exo_pose_source: str = setting("parameter", "'parameter' (static exo_pose), 'topic' "
                                   "(exo/pose) or 'tf' (tf.exo_frame in tf.world_frame from "
                                   "/tf and /tf_static, at each exo stamp)",
                                   choices=("parameter", "topic", "tf"))
    exo_pose: list[float] = setting(IDENTITY_POSE, "static exo camera pose in the world "
                                    "frame, optical axes: [x, y, z, qx, qy, qz, qw]", length=7)
    ego_camera_offset: list[float] = setting(IDENTITY_POSE, "ego optical frame in the ego "
                                             "pose's frame: [x, y, z, qx, qy, qz, qw]",
                                             length=7)
    tf: TfConfig = group(TfConfig, "camera poses from TF (ego_pose_source / exo_pose_source "
                         "'tf')")
    use_mask: bool = setting(False, "subscribe exo/mask (mono8, non-zero = dynamic object)")
    prompt: str = setting("", "text prompt until one arrives on the prompt topic")
    # Output camera and frames
    ego_width: int = setting(448, "ego image width in pixels", low=1)
    ego_height: int = setting(448, "ego image height in pixels", low=1)
    ego_fx: float = setting(224.0, "ego focal length x in pixels", low=0.0, low_open=True)
    ego_fy: float = setting(224.0, "ego focal length y in pixels", low=0.0, low_open=True)
    ego_cx: float = setting(223.5, "ego principal point x in pixels", low=0.0)
    ego_cy: float = setting(223.5, "ego principal point y in pixels", low=0.0)
    ego_frame_id: str = setting("ego_camera_optical_frame", "frame_id of the published ego "
                                "images")
    exo_width: int = setting(784, "exo frames are resized to this width (0 = keep the "
                             "camera's)", low=0)
    exo_height: int = setting(448, "exo frames are resized to this height (0 = keep the "
                              "camera's)", low=0)
    # Clips and timing
    clip_length: int = setting(49, "frames per clip (backend 'wan': 4k+1)", low=1)
    clip_stride: int = setting(49, "frames between clip starts; overlap = clip_length - "
                               "clip_stride frames, output once, by the earlier clip, and "
                               "continued from by backend 'wan' (which needs an overlap of "
                               "4m+1: clip_stride a multiple of 4)", low=1)
    fps: float = setting(30.0, "generator frame rate; faster sources are decimated", low=0.0,
                         low_open=True)
    max_gap_s: float = setting(0.0, "largest stamp gap inside a clip (0 = 3 frame periods)",
                               low=0.0)
    stamp_tolerance_s: float = setting(0.015, "approximate-time tolerance when matching to "
                                       "exo stamps", low=0.0)
    max_wait_s: float = setting(3.0, "how long an exo frame may wait for its poses/depth "
                                "before it is given up (node: wall-clock seconds after it "
                                "arrived; egox convert: stamp time; reliable repairs between "
                                "processes can take seconds)",
                                low=0.0, low_open=True)
    max_stamp_jump_s: float = setting(10.0, "largest plausible step of a stream's stamps "
                                      "ahead of its last one (a stamp further ahead, and "
                                      "further from the node's clock when not on sim time, "
                                      "is held and dropped unless the stream follows it)",
                                      low=0.0, low_open=True)
    stamp_restart_frames: int = setting(3, "consecutive messages of a stream stamped "
                                        "consistently before (or too far ahead of) its last "
                                        "stamp that mean the input restarted (bag loop, "
                                        "sim-time reset): matching and the clip restart",
                                        low=1)
    queue_size: int = setting(2, "complete clips waiting for the worker", low=1)
    overflow_policy: str = setting("drop_oldest", "full queue: 'drop_oldest' or "
                                   "'drop_newest'", choices=tuple(OVERFLOW_POLICIES))
    # QoS and diagnostics
    subscription_qos: str = setting("sensor_data", "'sensor_data' (best effort, REP 2003: "
                                    "matches every publisher), 'reliable' (lossless from "
                                    "reliable publishers, none from best-effort ones) or "
                                    "'best_available' (decided once, from the publishers "
                                    "present at start-up)",
                                    choices=("sensor_data", "reliable", "best_available"))
    subscription_depth: int = setting(60, "KEEP_LAST depth of the input subscriptions (raise "
                                      "it for bursty inputs, e.g. bag playback faster than "
                                      "real time)", low=1)
    publisher_depth: int = setting(100, "KEEP_LAST depth of the reliable publishers "
                                   "(>= clip_length so a whole clip survives a slow "
                                   "subscriber)", low=1)
    publish_prior: bool = setting(True, "also publish ~/ego_prior/image and camera_info")
    clip_quality_warn: str = setting("", "~/clip_quality level WARN for clips whose scores "
                                     "fail this expression, e.g. 'prior_psnr_db>=20 and "
                                     "prior_coverage>=0.5' (docs/lerobot.md syntax); '': WARN "
                                     "only when the prior covers nothing")
    diagnostics_period_s: float = setting(1.0, "period of /diagnostics messages", low=0.0,
                                          low_open=True)
    diagnostics_window_s: float = setting(10.0, "/diagnostics level window: WARN while "
                                          "something was dropped in the last this many "
                                          "seconds, ERROR while a generation failed in it",
                                          low=0.0, low_open=True)

    def __post_init__(self) -> None:
        super().__post_init__()
        if (self.exo_width == 0) != (self.exo_height == 0):
            raise ConfigError(f"exo_width={self.exo_width} and exo_height={self.exo_height}: "
                              "set both to resize, or both to 0 to keep the camera's size")
        if self.clip_stride > self.clip_length:
            raise ConfigError(f"must be in [1, clip_length={self.clip_length}]",
                              key="clip_stride", value=self.clip_stride)
        try:
            self.check_clip_overlap(self.clip_length, self.clip_length - self.clip_stride)
        except InputError as err:
            raise ConfigError(f"backend {self.backend!r}: {err}", key="clip_stride",
                              value=self.clip_stride) from None
        if self.tf_frames:
            for key, frame in (("tf.world_frame", self.tf.world_frame),
                               *((f"tf.{s.split('_')[0]}_frame", f)
                                 for s, f in self.tf_frames.items())):
                if not frame.strip("/"):
                    raise ConfigError("must name a TF frame when poses are read from TF",
                                      key=key, value=frame)
        if self.clip_quality_warn:
            try:
                QualityFilter(self.clip_quality_warn, known_keys=QUALITY_KEYS)
            except ConfigError as err:
                raise ConfigError(str(err), key="clip_quality_warn",
                                  value=self.clip_quality_warn) from None
        for name in ("exo_pose", "ego_camera_offset"):
            quat = getattr(self, name)[3:]
            if abs(math.sqrt(sum(v * v for v in quat)) - 1.0) > QUATERNION_TOLERANCE:
                raise ConfigError(f"quaternion {list(quat)} is not a unit quaternion (|norm - "
                                  f"1| > {QUATERNION_TOLERANCE})", key=name,
                                  value=list(getattr(self, name)))
        exo_hw = (self.exo_height, self.exo_width) if self.exo_width else None
        try:
            self.check_clip_shapes(self.clip_length, exo_hw, (self.ego_height, self.ego_width))
        except InputError as err:
            raise ConfigError(f"backend {self.backend!r} cannot take the clips these "
                              f"parameters make (clip_length={self.clip_length}, "
                              f"ego {self.ego_width}x{self.ego_height}, exo "
                              f"{self.exo_width}x{self.exo_height}): {err}") from None

    @property
    def tf_frames(self) -> dict[str, str]:
        """Pose stream ("ego_pose", "exo_pose") -> TF frame, for the poses read from TF."""
        frames = {"ego_pose": (self.ego_pose_source, self.tf.ego_frame),
                  "exo_pose": (self.exo_pose_source, self.tf.exo_frame)}
        return {stream: frame for stream, (source, frame) in frames.items() if source == "tf"}

    @property
    def exo_topic(self) -> str:
        """Relative topic name of the exo image for the chosen transport."""
        return "exo/image_raw" if self.image_transport == "raw" else "exo/image_raw/compressed"


def load_config(path: str | Path | None = None, node_name: str = "egox",
                overrides: Mapping[str, Any] | None = None) -> EgoxConfig:
    """EgoxConfig from a ROS 2 parameter file (its `node_name` and `/**` sections) and
    dotted-name `overrides` applied on top (CLI flags)."""
    values = read_params_file(path, node_name) if path is not None else {}
    values.update(overrides or {})
    return from_flat(EgoxConfig, values)


def _descriptor(spec: Setting) -> Any:
    """ParameterDescriptor: description, allowed values, numeric range; read-only."""
    from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor

    descriptor = ParameterDescriptor(description=spec.description, read_only=True,
                                     dynamic_typing=True,
                                     additional_constraints=f"{spec.allowed()}")
    if spec.type in (int, float) and (spec.low is not None or spec.high is not None):
        if spec.type is int:
            descriptor.integer_range = [IntegerRange(
                from_value=int(spec.low if spec.low is not None else -2**63),
                to_value=int(spec.high if spec.high is not None else 2**63 - 1), step=0)]
        else:
            descriptor.floating_point_range = [FloatingPointRange(
                from_value=float(spec.low if spec.low is not None else -math.inf),
                to_value=float(spec.high if spec.high is not None else math.inf), step=0.0)]
    return descriptor


def declare_config(node: Any, base: EgoxConfig | None = None) -> EgoxConfig:
    """Declare every setting as a read-only ROS parameter and return the validated config.

    `base` (in-process users: tests, the demo) supplies the defaults; the launch file's and
    command line's overrides apply on top. Wrong types, values out of range, unknown
    parameter names and combinations the backend cannot take raise ConfigError.
    """
    from rclpy.exceptions import ParameterException

    defaults = to_flat(base or EgoxConfig())
    overrides = dict(getattr(node, "_parameter_overrides", {}))
    values: dict[str, Any] = {}
    for spec in settings_of(EgoxConfig):
        try:
            param = node.declare_parameter(spec.name, defaults[spec.name], _descriptor(spec))
        except ParameterException as err:
            given = overrides[spec.name].value if spec.name in overrides else None
            spec.check(given)               # raises the ConfigError naming name and value
            raise ConfigError(str(err), key=spec.name, value=given) from None
        # A parameter file's `[]` reaches rclpy untyped (NOT_SET, value None): an empty list.
        empty = param.value is None and spec.type in (list, tuple)
        values[spec.name] = [] if empty else param.value
    # Overrides of parameters nobody declared reach from_flat, which names them as unknown.
    undeclared = {name: p.value for name, p in sorted(overrides.items())
                  if name not in values and name != "use_sim_time"}
    return from_flat(EgoxConfig, {**values, **undeclared})
