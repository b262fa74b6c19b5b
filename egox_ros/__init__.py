"""egox_ros: the ROS 2 side of EgoX (rclpy nodes, message conversion, bags).

Imports `egox_model`, never the other way round. The message-level modules
(`image_conversion`, `stamp_matching`, `clip_buffer`, `pipeline`, `params`) do not import
rclpy, so they are usable on bags without a ROS installation.
"""
from egox_ros.dds import use_localhost_profile

use_localhost_profile()      # before any rclpy.init(); see egox_ros/dds.py
