"""egox_model: the ROS-free core of egox_ros (geometry, scene, generators, CLI)."""
import os

# torch's OpenMP threads spin while they wait. On a shared CPU (a robot, or a ROS graph
# running beside egox) a busy core then stalls every parallel op: the prior stage measured
# 10x slower with one core taken. Passive waiting keeps it near its single-thread time.
# Only effective if set before torch is first imported; a user's own setting wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

__version__ = "0.1.0"
