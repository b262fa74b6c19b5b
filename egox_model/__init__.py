"""egox_model: the ROS-free core of egox_ros (geometry, scene, generators, CLI)."""

__version__ = "0.1.0"
