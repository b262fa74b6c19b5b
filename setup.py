"""ament_python package: builds with `colcon build` in a ROS 2 workspace and with pip in a venv."""
from glob import glob

from setuptools import find_packages, setup

PACKAGE = "egox_ros"

setup(
    name=PACKAGE,
    version="0.1.0",
    packages=find_packages(include=["egox_model", "egox_model.*", "egox_ros", "egox_ros.*"]),
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE}"]),
        (f"share/{PACKAGE}", ["package.xml"]),
        (f"share/{PACKAGE}/launch", glob("launch/*.launch.py")),
        (f"share/{PACKAGE}/config", glob("config/*.yaml")),
    ],
    package_data={PACKAGE: ["fastdds_localhost.xml"]},
    install_requires=["setuptools"],
    zip_safe=True,
    maintainer="egox_ros developers",
    maintainer_email="egox@example.com",
    description="EgoX exo-to-ego video generation as a ROS 2 package",
    license="Apache-2.0",
    python_requires=">=3.10",
    entry_points={
        "console_scripts": [
            "egox = egox_ros.cli:main",
            "egox_node = egox_ros.node:main",
            "egox_recorder = egox_ros.recorder:main",
            "egox_player = egox_ros.player:main",
        ],
    },
)
