"""The node's camera poses from TF through tf2_ros, where a ROS 2 workspace provides it.

tf2_ros comes with a ROS 2 installation (`apt install ros-<distro>-tf2-ros`); no wheel of it
exists, so outside a sourced workspace `tf2_ros_missing()` says why and the node refuses
configs that read poses from TF. `egox convert` needs none of this: it reads the bag's /tf
and /tf_static itself (`egox_ros.tf_tree`).
"""
from __future__ import annotations

from typing import Any

import numpy as np

from egox_model.geometry.pose import pose_to_c2w
from egox_ros.errors import TfError, TfExtrapolationError, TfLookupError

__all__ = ["Tf2Lookup", "tf2_ros_missing"]


def tf2_ros_missing() -> str:
    """'' when tf2_ros imports, else why it does not (the ImportError's text)."""
    try:
        import tf2_ros  # noqa: F401
    except ImportError as err:
        return str(err)
    return ""


class Tf2Lookup:
    """`TransformLookup` over a tf2_ros Buffer that a TransformListener on `node` fills from
    /tf and /tf_static. tf2's rules apply: interpolation between samples, no extrapolation."""

    def __init__(self, node: Any) -> None:
        import tf2_ros

        self._tf2 = tf2_ros
        self.buffer = tf2_ros.Buffer()
        self.listener = tf2_ros.TransformListener(self.buffer, node)

    def lookup(self, target: str, source: str, stamp_ns: int) -> np.ndarray:
        """T_target_source at `stamp_ns` (4x4 float64). Errors that more TF may resolve (a
        stamp newer than the transforms received, a frame not received yet) are marked so."""
        from rclpy.time import Time

        tf2 = self._tf2
        try:
            stamped = self.buffer.lookup_transform(target, source, Time(nanoseconds=stamp_ns))
        except tf2.ExtrapolationException as err:
            raise TfExtrapolationError(f"tf2: {err}",
                                       may_resolve="future" in str(err)) from err
        except (tf2.LookupException, tf2.ConnectivityException) as err:
            raise TfLookupError(f"tf2: {err}", may_resolve=True) from err
        except tf2.TransformException as err:
            raise TfError("tf_invalid", f"tf2: {err}") from err
        t, q = stamped.transform.translation, stamped.transform.rotation
        return pose_to_c2w(np.array([t.x, t.y, t.z]), np.array([q.x, q.y, q.z, q.w]))
