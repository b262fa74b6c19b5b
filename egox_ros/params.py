"""Every parameter of the `egox` node, in one dataclass, validated in one place.

The same `EgoxConfig` is filled from ROS parameters (`declare_config(node)`), from a ROS
parameter YAML file (`load_yaml`, used by `egox convert`) or from keyword arguments (tests,
the demo). `config/egox.yaml` documents every field; a test keeps it in sync with this file.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from egox_model.errors import ConfigError
from egox_ros.work_queue import OVERFLOW_POLICIES

__all__ = ["EgoxConfig", "config_from_dict", "declare_config", "load_yaml"]

IDENTITY_POSE = [0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0]


def _p(default: Any, description: str) -> Any:
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata={"description": description})
    return field(default=default, metadata={"description": description})


@dataclass
class EgoxConfig:
    """Configuration of the egox pipeline (node, converter, demo). Units: metres, seconds."""

    # Generator backend
    backend: str = _p("prior", "generator backend name for egox_model.generator.make_generator")
    model_dir: str = _p("", "local model directory for diffusion backends ('' = none)")
    lora_path: str = _p("", "local LoRA weights file ('' = none)")
    # Inputs
    image_transport: str = _p("raw", "exo image input: 'raw' (sensor_msgs/Image on "
                                     "exo/image_raw) or 'compressed' (CompressedImage on "
                                     "exo/image_raw/compressed)")
    depth_source: str = _p("topic", "'topic': exo/depth (16UC1 mm or 32FC1 m) from an RGB-D "
                                    "camera")
    ego_pose_type: str = _p("pose", "ego/pose message type: 'pose' (PoseStamped) or 'odometry'")
    exo_pose_source: str = _p("parameter", "'parameter' (static exo_pose) or 'topic' (exo/pose)")
    exo_pose: list = _p(IDENTITY_POSE, "static exo camera pose in the world frame, optical "
                                       "axes: [x, y, z, qx, qy, qz, qw]")
    ego_camera_offset: list = _p(IDENTITY_POSE, "ego optical frame in the ego pose's frame: "
                                                "[x, y, z, qx, qy, qz, qw]")
    use_mask: bool = _p(False, "subscribe exo/mask (mono8, non-zero = dynamic object)")
    prompt: str = _p("", "text prompt until one arrives on the prompt topic")
    # Output camera and frames
    ego_width: int = _p(448, "ego image width in pixels")
    ego_height: int = _p(448, "ego image height in pixels")
    ego_fx: float = _p(224.0, "ego focal length x in pixels")
    ego_fy: float = _p(224.0, "ego focal length y in pixels")
    ego_cx: float = _p(223.5, "ego principal point x in pixels")
    ego_cy: float = _p(223.5, "ego principal point y in pixels")
    ego_frame_id: str = _p("ego_camera_optical_frame", "frame_id of the published ego images")
    exo_width: int = _p(784, "exo frames are resized to this width (0 = keep the camera's)")
    exo_height: int = _p(448, "exo frames are resized to this height (0 = keep the camera's)")
    # Clips and timing
    clip_length: int = _p(49, "frames per clip (Wan needs 4k+1)")
    clip_stride: int = _p(49, "frames between clip starts (overlap = length - stride)")
    fps: float = _p(30.0, "generator frame rate; faster sources are decimated")
    max_gap_s: float = _p(0.0, "largest stamp gap inside a clip (0 = 3 frame periods)")
    stamp_tolerance_s: float = _p(0.015, "approximate-time tolerance when matching to exo stamps")
    max_wait_s: float = _p(3.0, "how long an exo frame waits for its poses/depth (stamp time; "
                                "reliable repairs between processes can take seconds)")
    queue_size: int = _p(2, "complete clips waiting for the worker")
    overflow_policy: str = _p("drop_oldest", "full queue: 'drop_oldest' or 'drop_newest'")
    # QoS and diagnostics
    subscription_qos: str = _p("sensor_data", "'sensor_data' (best effort, REP 2003: matches "
                                              "every publisher), 'reliable' (lossless from "
                                              "reliable publishers, none from best-effort ones) "
                                              "or 'best_available' (decided once, from the "
                                              "publishers present at start-up)")
    subscription_depth: int = _p(60, "KEEP_LAST depth of the input subscriptions (raise it "
                                 "for bursty inputs, e.g. bag playback faster than real time)")
    publisher_depth: int = _p(100, "KEEP_LAST depth of the reliable publishers (>= clip_length "
                                   "so a whole clip survives a slow subscriber)")
    publish_prior: bool = _p(True, "also publish ~/ego_prior/image and camera_info")
    diagnostics_period_s: float = _p(1.0, "period of /diagnostics messages")

    def __post_init__(self) -> None:
        choices = {"image_transport": ("raw", "compressed"), "depth_source": ("topic",),
                   "ego_pose_type": ("pose", "odometry"),
                   "exo_pose_source": ("parameter", "topic"),
                   "overflow_policy": OVERFLOW_POLICIES,
                   "subscription_qos": ("sensor_data", "reliable", "best_available")}
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise ConfigError(f"parameter {name}={getattr(self, name)!r} is invalid; use one "
                                  f"of {list(allowed)}")
        for name in ("ego_width", "ego_height", "clip_length", "queue_size", "subscription_depth",
                     "publisher_depth"):
            if int(getattr(self, name)) < 1:
                raise ConfigError(f"parameter {name}={getattr(self, name)} must be >= 1")
        for name in ("exo_width", "exo_height"):
            if int(getattr(self, name)) < 0:
                raise ConfigError(f"parameter {name}={getattr(self, name)} must be >= 0 "
                                  "(0 keeps the camera's size)")
        if (self.exo_width == 0) != (self.exo_height == 0):
            raise ConfigError(f"exo_width={self.exo_width} and exo_height={self.exo_height}: "
                              "set both to resize, or both to 0 to keep the camera's size")
        if not 1 <= self.clip_stride <= self.clip_length:
            raise ConfigError(f"parameter clip_stride={self.clip_stride} must be in "
                              f"[1, clip_length={self.clip_length}]")
        for name in ("ego_fx", "ego_fy", "fps", "max_wait_s", "diagnostics_period_s"):
            value = float(getattr(self, name))
            if not (math.isfinite(value) and value > 0):
                raise ConfigError(f"parameter {name}={value} must be a positive number")
        for name in ("ego_cx", "ego_cy", "max_gap_s", "stamp_tolerance_s"):
            value = float(getattr(self, name))
            if not (math.isfinite(value) and value >= 0):
                raise ConfigError(f"parameter {name}={value} must be a finite number >= 0")
        for name in ("exo_pose", "ego_camera_offset"):
            pose = [float(v) for v in getattr(self, name)]
            if len(pose) != 7 or not all(math.isfinite(v) for v in pose):
                raise ConfigError(f"parameter {name}={pose} must be 7 finite numbers "
                                  "[x, y, z, qx, qy, qz, qw]")
            if math.sqrt(sum(v * v for v in pose[3:])) < 1e-6:
                raise ConfigError(f"parameter {name}: quaternion {pose[3:]} has zero norm")
            setattr(self, name, pose)
        if self.backend == "":
            raise ConfigError("parameter backend is empty; use 'prior' or another backend name")

    @classmethod
    def descriptions(cls) -> dict[str, str]:
        """Parameter name -> description."""
        return {f.name: f.metadata["description"] for f in dataclasses.fields(cls)}

    @property
    def exo_topic(self) -> str:
        """Relative topic name of the exo image for the chosen transport."""
        return "exo/image_raw" if self.image_transport == "raw" else "exo/image_raw/compressed"


def config_from_dict(values: dict[str, Any]) -> EgoxConfig:
    """EgoxConfig from a name -> value mapping; unknown names raise ConfigError."""
    known = {f.name: f for f in dataclasses.fields(EgoxConfig)}
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise ConfigError(f"unknown parameter(s) {unknown}; known: {sorted(known)}")
    typed: dict[str, Any] = {}
    for name, value in values.items():
        default = known[name].default
        if default is dataclasses.MISSING:
            default = known[name].default_factory()
        try:
            if isinstance(default, bool):
                if not isinstance(value, bool):
                    raise TypeError
                typed[name] = value
            elif isinstance(default, (int, float)):
                if isinstance(value, bool) or (isinstance(default, int) and value != int(value)):
                    raise TypeError
                typed[name] = type(default)(value)
            elif isinstance(default, list):
                typed[name] = [float(v) for v in value]
            else:
                typed[name] = str(value)
        except (TypeError, ValueError) as err:
            raise ConfigError(f"parameter {name}={value!r} must be of type "
                              f"{type(default).__name__}") from err
    return EgoxConfig(**typed)


def load_yaml(path: str | Path, node_name: str = "egox") -> EgoxConfig:
    """Read a ROS 2 parameter file (`egox: ros__parameters: ...`, also `/**` or namespaced)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist")
    data = yaml.safe_load(path.read_text()) or {}
    values: dict[str, Any] = {}
    for key, section in data.items():
        name = str(key).rstrip("/").split("/")[-1]
        if name in (node_name, "**") and isinstance(section, dict):
            values.update(section.get("ros__parameters", {}) or {})
    return config_from_dict(values)


def declare_config(node: Any, overrides: EgoxConfig | None = None) -> EgoxConfig:
    """Declare every EgoxConfig field as a read-only ROS parameter and return the config.

    `overrides` (used in-process by tests and the demo) supplies defaults before the
    parameter overrides of the launch file / command line are applied.
    """
    from rcl_interfaces.msg import ParameterDescriptor

    base = overrides or EgoxConfig()
    values: dict[str, Any] = {}
    for name, description in EgoxConfig.descriptions().items():
        default = getattr(base, name)
        param = node.declare_parameter(
            name, default, ParameterDescriptor(description=description, read_only=True))
        values[name] = param.value
    return config_from_dict(values)
