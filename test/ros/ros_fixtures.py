"""Shared helpers of the ROS tests: isolated DDS, the in-process harness, a tiny scene.

Imported by the test modules (not a conftest, so basenames stay unique across test/).
Isolation: a per-run ROS_DOMAIN_ID, localhost-only discovery and a private ROS_LOG_DIR are
set before rclpy is first initialised (scripts/run_tests.sh sets them too, in a netns).
"""
from __future__ import annotations

import os
import random
import tempfile
from pathlib import Path
from types import SimpleNamespace

import numpy as np

os.environ.setdefault("ROS_DOMAIN_ID", str(random.randint(100, 199)))
os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
os.environ.setdefault("ROS_LOG_DIR", tempfile.mkdtemp(prefix="egox-ros-log-"))

from egox_model.geometry.camera import Intrinsics  # noqa: E402
from egox_model.geometry.pose import look_at  # noqa: E402
from egox_ros.harness import RosHarness, wait_until  # noqa: E402

__all__ = ["RosHarness", "ROOT", "ros_env", "tiny_scene", "unique_ns", "wait_until"]

ROOT = Path(__file__).resolve().parents[2]

_counter = iter(range(10**6))


def unique_ns() -> str:
    """A namespace no other test in this run uses."""
    return f"/t{os.getpid()}_{next(_counter)}"


def ros_env(**extra: str) -> dict[str, str]:
    """Environment for a ROS subprocess: this run's isolation (domain id, localhost-only
    discovery, log dir) and the repository on PYTHONPATH."""
    return dict(os.environ, PYTHONPATH=str(ROOT), **extra)


def tiny_scene(frames: int = 10, height: int = 48, width: int = 64, seed: int = 0,
               fps: float = 30.0) -> SimpleNamespace:
    """A scene the player can publish: a static textured plane 2 m in front of a static exo
    camera and an ego camera close to it, exact depth, stamps at `fps`."""
    rng = np.random.default_rng(seed)
    K = Intrinsics(40.0, 40.0, (width - 1) / 2, (height - 1) / 2, width, height)
    exo_c2w = look_at(np.array([0.0, -0.5, 1.0]), np.array([2.0, 0.0, 1.0]))
    ego = [look_at(np.array([0.2, 0.02 * i, 1.0]), np.array([2.0, 0.0, 1.0]))
           for i in range(frames)]
    return SimpleNamespace(
        exo_rgb=np.repeat(rng.integers(0, 256, (1, height, width, 3), dtype=np.uint8), frames, 0),
        exo_depth_m=np.full((frames, height, width), 2.0, np.float32),
        dynamic_mask=np.zeros((frames, height, width), bool),
        exo_K=K, exo_c2w=np.repeat(exo_c2w[None], frames, 0), ego_K=K,
        ego_c2w=np.stack(ego),
        stamps_ns=(1_700_000_000 * 10**9 + np.arange(frames) * round(1e9 / fps)).astype(np.int64),
        fps=fps)
