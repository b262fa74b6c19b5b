"""LeRobot dataset v3.0 output: the writer and its statistics (pyarrow + PyAV, no lerobot)."""
from egox_model.lerobot.writer import CODEBASE_VERSION, LeRobotWriter, video_key

__all__ = ["CODEBASE_VERSION", "LeRobotWriter", "video_key"]
