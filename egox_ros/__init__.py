"""egox_ros: the ROS 2 side of EgoX (rclpy nodes, message conversion, bags).

Imports `egox_model`, never the other way round. The message-level modules
(`image_conversion`, `stamp_matching`, `clip_buffer`, `pipeline`, `params`) do not import
rclpy, so they are usable on bags without a ROS installation.
"""
