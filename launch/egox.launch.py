"""Launch the egox node (and optionally the bag recorder) in a sourced ROS 2 workspace.

    ros2 launch egox_ros egox.launch.py [config:=FILE] [namespace:=NS] [backend:=prior]
        [use_sim_time:=false] [record:=false] [bag_path:=egox_bag]

Arguments: config (ROS parameter file, default: the package's config/egox.yaml), namespace
(for the node's inputs and outputs), backend (overrides the file's `backend`; '' keeps it),
use_sim_time, record (also start egox_recorder on the ego and exo topics) and bag_path.
"""
import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.conditions import IfCondition
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

RECORDED = ["exo/image_raw", "exo/camera_info", "exo/depth", "ego/pose", "exo/pose",
            "egox/ego/image", "egox/ego/camera_info", "egox/ego_prior/image",
            "egox/ego_prior/camera_info", "/diagnostics"]


def _nodes(context):
    namespace = LaunchConfiguration("namespace").perform(context).strip("/")
    backend = LaunchConfiguration("backend").perform(context)
    use_sim_time = LaunchConfiguration("use_sim_time").perform(context).lower() == "true"
    overrides = {"use_sim_time": use_sim_time}
    if backend:
        overrides["backend"] = backend
    prefix = f"/{namespace}/" if namespace else "/"
    topics = [t if t.startswith("/") else prefix + t for t in RECORDED]
    return [
        Node(package="egox_ros", executable="egox_node", name="egox", namespace=namespace,
             parameters=[LaunchConfiguration("config"), overrides], output="screen",
             emulate_tty=True),
        Node(package="egox_ros", executable="egox_recorder", name="egox_recorder",
             namespace=namespace, output="screen",
             parameters=[{"bag_path": LaunchConfiguration("bag_path"), "topics": topics,
                          "use_sim_time": use_sim_time}],
             condition=IfCondition(LaunchConfiguration("record"))),
    ]


def generate_launch_description():
    default_config = os.path.join(get_package_share_directory("egox_ros"), "config",
                                  "egox.yaml")
    return LaunchDescription([
        DeclareLaunchArgument("config", default_value=default_config,
                              description="ROS parameter file for the egox node"),
        DeclareLaunchArgument("namespace", default_value="",
                              description="namespace of the node's topics"),
        DeclareLaunchArgument("backend", default_value="",
                              description="generator backend ('' = the config file's)"),
        DeclareLaunchArgument("use_sim_time", default_value="false",
                              description="use /clock (e.g. when playing a bag)"),
        DeclareLaunchArgument("record", default_value="false",
                              description="also record inputs and outputs to a bag"),
        DeclareLaunchArgument("bag_path", default_value="egox_bag",
                              description="new directory for the recorded bag"),
        OpaqueFunction(function=_nodes),
    ])
