"""Camera poses from TF: the tree (chains, interpolation, errors), and `egox convert` reading
/tf and /tf_static against the pose-topic path on the same bag."""
from __future__ import annotations


import numpy as np
import pytest
import transforms3d
from rosbags.rosbag2 import StoragePlugin, Writer
from rosbags.typesys import Stores, get_typestore

from egox_model.geometry.pose import c2w_to_pose, pose_to_c2w
from egox_ros.errors import BagError, TfExtrapolationError, TfLookupError
from egox_ros.tf_tree import TfBuffer

TS = get_typestore(Stores.ROS2_KILTED)
T0 = 1_700_000_000 * 10**9
MS = 1_000_000


def _rot_z(angle: float, t=(0.0, 0.0, 0.0)) -> np.ndarray:
    T = np.eye(4)
    T[:3, :3] = transforms3d.axangles.axangle2mat((0, 0, 1), angle)
    T[:3, 3] = t
    return T


def _quat(T: np.ndarray) -> np.ndarray:
    return c2w_to_pose(T)[1]


def _random_T(rng: np.random.Generator) -> np.ndarray:
    q = rng.normal(size=4)
    return pose_to_c2w(rng.normal(size=3), q / np.linalg.norm(q))


# ---- the tree ------------------------------------------------------------------------------
# world -> base -> exo_link -> exo_optical (static); world -> head moving on /tf (rotating
# about z, moving along x), head -> ego_optical (static).
W_BASE = pose_to_c2w(np.array([1.0, 2.0, 0.0]), _quat(_rot_z(0.3)))
BASE_EXO = pose_to_c2w(np.array([0.1, 0.0, 1.2]), np.array([0.1, 0.2, -0.1, 0.97]))
EXO_OPT = pose_to_c2w(np.zeros(3), np.array([-0.5, 0.5, -0.5, 0.5]))    # REP 103 optical
HEAD_EGO = pose_to_c2w(np.array([0.05, 0.0, 0.1]), np.array([-0.5, 0.5, -0.5, 0.5]))


def _head(t_s: float) -> np.ndarray:
    """world -> head at t_s seconds: rotating about z at 0.5 rad/s, moving at 0.4 m/s."""
    return _rot_z(0.5 * t_s, (0.4 * t_s, 0.0, 1.5))


def _set(buffer: TfBuffer, parent: str, child: str, stamp: int, T: np.ndarray, static: bool):
    p, q = c2w_to_pose(T)
    assert buffer.set_transform(parent, child, stamp, p, q, static=static)


def _tree(tolerance_ns: int = 0, head_stamps_s=np.arange(0.0, 2.01, 0.1)) -> TfBuffer:
    buffer = TfBuffer(tolerance_ns=tolerance_ns)
    _set(buffer, "world", "base", T0, W_BASE, True)
    _set(buffer, "base", "exo_link", T0, BASE_EXO, True)
    _set(buffer, "exo_link", "exo_optical", T0, EXO_OPT, True)
    _set(buffer, "head", "ego_optical", T0, HEAD_EGO, True)
    for t in head_stamps_s:
        _set(buffer, "world", "head", T0 + round(t * 1e9), _head(t), False)
    return buffer


def test_static_chain_and_inverse_and_across_branches():
    buffer = _tree()
    w_exo = W_BASE @ BASE_EXO @ EXO_OPT
    stamp = T0 + 500 * MS
    np.testing.assert_allclose(buffer.lookup("world", "exo_optical", stamp), w_exo, atol=1e-12)
    np.testing.assert_allclose(buffer.lookup("exo_optical", "world", stamp),
                               np.linalg.inv(w_exo), atol=1e-12)
    w_ego = _head(0.5) @ HEAD_EGO
    np.testing.assert_allclose(buffer.lookup("world", "ego_optical", stamp), w_ego, atol=1e-12)
    np.testing.assert_allclose(buffer.lookup("exo_optical", "ego_optical", stamp),
                               np.linalg.inv(w_exo) @ w_ego, atol=1e-12)
    np.testing.assert_allclose(buffer.lookup("base", "base", stamp), np.eye(4))
    assert buffer.parent("exo_optical") == "exo_link" and buffer.parent("world") is None
    assert buffer.path("base", "exo_optical") == (["exo_optical", "exo_link", "base"], ["base"])


@pytest.mark.parametrize("t_s", [0.05, 0.125, 1.333, 1.999])
def test_moving_link_interpolates_linearly_and_by_slerp(t_s):
    """Samples every 100 ms of a motion linear in time (angle and position): between them
    the interpolated transform is the motion itself."""
    buffer = _tree()
    got = buffer.lookup("world", "ego_optical", T0 + round(t_s * 1e9))
    np.testing.assert_allclose(got, _head(t_s) @ HEAD_EGO, atol=1e-9)


def test_interpolation_between_two_samples_matches_the_formula():
    buffer = TfBuffer()
    A, B = _random_T(np.random.default_rng(1)), _random_T(np.random.default_rng(2))
    _set(buffer, "world", "cam", T0, A, False)
    _set(buffer, "world", "cam", T0 + 40 * MS, B, False)
    got = buffer.lookup("world", "cam", T0 + 10 * MS)
    np.testing.assert_allclose(got[:3, 3], 0.75 * A[:3, 3] + 0.25 * B[:3, 3], atol=1e-12)
    axis, angle = transforms3d.axangles.mat2axangle(A[:3, :3].T @ B[:3, :3])
    np.testing.assert_allclose(got[:3, :3], A[:3, :3] @ transforms3d.axangles.axangle2mat(
        axis, 0.25 * angle), atol=1e-9)


def test_missing_link_is_named():
    buffer = TfBuffer()
    _set(buffer, "world", "base", T0, W_BASE, True)
    _set(buffer, "exo_link", "exo_optical", T0, EXO_OPT, True)       # exo_link hangs loose
    with pytest.raises(TfLookupError, match="no transform from 'world' to 'exo_optical': "
                                            "'exo_link' has no parent in /tf or /tf_static"):
        buffer.lookup("world", "exo_optical", T0)
    with pytest.raises(TfLookupError, match=r"from 'exo_optical' to 'base': 'world' has no "
                                            r"parent .* \(nor has 'exo_link', the root above "
                                            r"'exo_optical'\)"):
        buffer.lookup("exo_optical", "base", T0)
    with pytest.raises(TfLookupError, match="frame 'ego_optical' is in neither /tf nor "
                                            "/tf_static"):
        buffer.lookup("world", "ego_optical", T0)


def test_stamp_outside_the_tf_range_is_refused_not_extrapolated():
    buffer = _tree()                                   # head known from T0 to T0 + 2 s
    with pytest.raises(TfExtrapolationError, match=r"'world' -> 'head' is not known at stamp "
                                                   r".* 50\.000 ms after the last"):
        buffer.lookup("world", "ego_optical", T0 + 2050 * MS)
    with pytest.raises(TfExtrapolationError, match="1.000 ms before the first") as err:
        buffer.lookup("ego_optical", "exo_optical", T0 - 1 * MS)
    assert not err.value.may_resolve                   # the past does not come back
    # the static chain alone holds at every stamp
    np.testing.assert_allclose(buffer.lookup("world", "exo_optical", T0 + 10**12),
                               W_BASE @ BASE_EXO @ EXO_OPT, atol=1e-12)
    # within the tolerance the end sample is held
    held = _tree(tolerance_ns=20 * MS)
    np.testing.assert_allclose(held.lookup("world", "head", T0 + 2010 * MS), _head(2.0),
                               atol=1e-12)
    with pytest.raises(TfExtrapolationError):
        held.lookup("world", "head", T0 + 2030 * MS)


def test_bad_transforms_are_rejected_and_counted():
    buffer = TfBuffer()
    assert not buffer.set_transform("world", "cam", T0, (0, 0, 0), (0, 0, 0, 2.0), static=False)
    assert not buffer.set_transform("world", "cam", T0, (np.nan, 0, 0), (0, 0, 0, 1),
                                    static=False)
    assert not buffer.set_transform("cam", "/cam", T0, (0, 0, 0), (0, 0, 0, 1), static=True)
    assert dict(buffer.rejected) == {"quaternion_not_unit": 1, "bad_transform": 1,
                                     "self_parent": 1}
    assert buffer.frames() == set()


# ---- bags ----------------------------------------------------------------------------------
def _tf_message(transforms: list[tuple[str, str, int, np.ndarray]]):
    """A tf2_msgs/msg/TFMessage of (parent, child, stamp ns, T_parent_child)."""
    types = TS.types
    out = []
    for parent, child, stamp, T in transforms:
        p, q = c2w_to_pose(T)
        sec, nanosec = divmod(stamp, 10**9)
        header = types["std_msgs/msg/Header"](
            stamp=types["builtin_interfaces/msg/Time"](sec=sec, nanosec=nanosec), frame_id=parent)
        out.append(types["geometry_msgs/msg/TransformStamped"](
            header=header, child_frame_id=child, transform=types["geometry_msgs/msg/Transform"](
                translation=types["geometry_msgs/msg/Vector3"](*map(float, p)),
                rotation=types["geometry_msgs/msg/Quaternion"](*map(float, q)))))
    return types["tf2_msgs/msg/TFMessage"](transforms=out)


def _write_tf(writer: Writer, static: list, dynamic: list[tuple[int, list]]) -> None:
    """/tf_static (one message at the first log time) and /tf (log time = stamp) on `writer`."""
    conns = {t: writer.add_connection(t, "tf2_msgs/msg/TFMessage", typestore=TS)
             for t in ("/tf", "/tf_static")}
    first = min(stamp for stamp, _ in dynamic)
    writer.write(conns["/tf_static"], first, TS.serialize_cdr(_tf_message(static),
                                                              "tf2_msgs/msg/TFMessage"))
    for stamp, transforms in dynamic:
        writer.write(conns["/tf"], stamp, TS.serialize_cdr(_tf_message(transforms),
                                                           "tf2_msgs/msg/TFMessage"))


def test_tree_from_a_bag_equals_the_tree_built_directly(tmp_path):
    head_s = np.arange(0.0, 2.01, 0.1)
    with Writer(tmp_path / "tf", version=9, storage_plugin=StoragePlugin.MCAP) as writer:
        _write_tf(writer, [("world", "base", T0, W_BASE), ("base", "exo_link", T0, BASE_EXO),
                           ("exo_link", "exo_optical", T0, EXO_OPT),
                           ("head", "ego_optical", T0, HEAD_EGO)],
                  [(T0 + round(t * 1e9), [("world", "head", T0 + round(t * 1e9), _head(t))])
                   for t in head_s])
    from_bag, direct = TfBuffer.from_bag(tmp_path / "tf"), _tree(head_stamps_s=head_s)
    assert from_bag.frames() == direct.frames()
    for stamp in T0 + np.array([0, 33, 517, 1999]) * MS:
        for frame in ("exo_optical", "ego_optical"):
            np.testing.assert_allclose(from_bag.lookup("world", frame, stamp),
                                       direct.lookup("world", frame, stamp), atol=1e-12)
    with Writer(tmp_path / "no_tf", version=9, storage_plugin=StoragePlugin.MCAP) as writer:
        writer.add_connection("/other", "std_msgs/msg/String", typestore=TS)
    with pytest.raises(BagError, match="no /tf or /tf_static topic .* it has \\['/other'\\]"):
        TfBuffer.from_bag(tmp_path / "no_tf")
