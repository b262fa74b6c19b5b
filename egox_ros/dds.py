"""DDS set-up shared by egox's processes; call before the first rclpy.init()."""
from __future__ import annotations

import os
from pathlib import Path

__all__ = ["LOCALHOST_PROFILE", "local_ros_env", "use_localhost_profile"]

LOCALHOST_PROFILE = Path(__file__).with_name("fastdds_localhost.xml")


def use_localhost_profile() -> None:
    """With Fast DDS and discovery kept on this host, use the large-message profile.

    Does nothing when another RMW is chosen, discovery reaches other hosts, or the user set
    a profile of their own.
    """
    if (os.environ.get("RMW_IMPLEMENTATION", "rmw_fastrtps_cpp") == "rmw_fastrtps_cpp"
            and os.environ.get("ROS_AUTOMATIC_DISCOVERY_RANGE") == "LOCALHOST"
            and "FASTDDS_DEFAULT_PROFILES_FILE" not in os.environ):
        os.environ["FASTDDS_DEFAULT_PROFILES_FILE"] = str(LOCALHOST_PROFILE)
        # The profile's history memory policy applies only with this (see the profile).
        os.environ.setdefault("RMW_FASTRTPS_USE_QOS_FROM_XML", "1")


def local_ros_env(run_dir: Path | None = None) -> None:
    """Keep DDS discovery on this machine unless the user chose otherwise (DESIGN.md), with
    the large-message profile, and ROS logs under `run_dir` when given."""
    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    use_localhost_profile()
    if run_dir is not None:
        os.environ.setdefault("ROS_LOG_DIR", str(run_dir / "ros_log"))
