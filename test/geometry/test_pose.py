"""Pose conventions: the one quaternion conversion (ROS x, y, z, w order), optical frames."""
import numpy as np
import pytest
import transforms3d

from egox_model.errors import InputError
from egox_model.geometry.pose import (QUATERNION_TOLERANCE, c2w_to_pose, check_c2w,
                                      check_unit_quaternion, look_at, pose_to_c2w, slerp)


def test_quaternion_is_ros_ordered_xyzw():
    s = np.sqrt(0.5)
    c2w = pose_to_c2w([1.0, 2.0, 3.0], [0.0, 0.0, s, s])   # 90 degrees about +z
    np.testing.assert_allclose(c2w[:3, :3] @ [1, 0, 0], [0, 1, 0], atol=1e-12)
    np.testing.assert_allclose(c2w[:3, 3], [1, 2, 3])
    # transforms3d's own order is (w, x, y, z): the same rotation spelled differently.
    np.testing.assert_allclose(c2w[:3, :3], transforms3d.quaternions.quat2mat([s, 0, 0, s]))


def test_pose_round_trip_and_normalisation():
    rng = np.random.default_rng(0)
    q = rng.normal(size=4)
    c2w = pose_to_c2w(rng.normal(size=3), 3.0 * q)          # unnormalised input
    position, quat = c2w_to_pose(c2w)
    np.testing.assert_allclose(pose_to_c2w(position, quat), c2w, atol=1e-12)
    assert quat[3] >= 0 and np.isclose(np.linalg.norm(quat), 1.0)


def test_look_at_gives_an_optical_frame():
    c2w = look_at([0.0, 0.0, 1.0], [2.0, 0.0, 1.0])        # looking along world +x, z up
    np.testing.assert_allclose(c2w[:3, 2], [1, 0, 0], atol=1e-12)   # optical z forward
    np.testing.assert_allclose(c2w[:3, 1], [0, 0, -1], atol=1e-12)  # y down
    np.testing.assert_allclose(c2w[:3, 0], [0, -1, 0], atol=1e-12)  # x right
    check_c2w("c2w", c2w)


@pytest.mark.parametrize("bad,match", [
    (np.full((4, 4), np.nan), "non-finite"),
    (np.diag([1.0, 1.0, -1.0, 1.0]), "rotation"),
    (np.eye(3), "4x4"),
])
def test_bad_poses_name_the_field(bad, match):
    with pytest.raises(InputError, match=f"ego_c2w.*{match}|{match}.*ego_c2w|ego_c2w"):
        check_c2w("ego_c2w", bad)


def test_zero_quaternion_is_rejected():
    with pytest.raises(InputError, match="zero norm"):
        pose_to_c2w([0, 0, 0], [0, 0, 0, 0])
    with pytest.raises(InputError, match="orientation"):
        pose_to_c2w([0, 0, 0], [np.nan, 0, 0, 1])


@pytest.mark.parametrize("scale", [1.0, 1.0 + 9e-4, 1.0 - 9e-4])
def test_unit_quaternion_within_tolerance_passes_with_its_norm(scale):
    q = np.array([0.1, -0.2, 0.3, 0.9])
    q = scale * q / np.linalg.norm(q)
    assert check_unit_quaternion("ego orientation", q) == pytest.approx(scale, abs=1e-12)


@pytest.mark.parametrize("scale", [1.0 + 1.1e-3, 1.0 - 1.1e-3, 2.0, 0.5])
def test_non_unit_quaternion_is_rejected_naming_its_norm(scale):
    q = scale * np.array([0.0, 0.0, 0.6, 0.8])
    with pytest.raises(InputError, match=f"ego orientation quaternion .* has norm {scale:.6g}"):
        check_unit_quaternion("ego orientation", q)
    assert QUATERNION_TOLERANCE == 1e-3
    # a looser tolerance is the caller's choice
    assert check_unit_quaternion("q", q, tol=abs(scale - 1.0) + 1e-9) == pytest.approx(scale)


def _rotation(R: np.ndarray) -> np.ndarray:
    """ROS-ordered quaternion of a rotation matrix."""
    T = np.eye(4)
    T[:3, :3] = R
    return c2w_to_pose(T)[1]


@pytest.mark.parametrize("fraction", [0.0, 0.25, 0.5, 0.8, 1.0])
def test_slerp_is_the_constant_rate_rotation_between_its_ends(fraction):
    rng = np.random.default_rng(3)
    for _ in range(20):
        q0, q1 = (q / np.linalg.norm(q) for q in rng.normal(size=(2, 4)))
        R0, R1 = pose_to_c2w(np.zeros(3), q0)[:3, :3], pose_to_c2w(np.zeros(3), q1)[:3, :3]
        axis, angle = transforms3d.axangles.mat2axangle(R0.T @ R1)   # angle in [0, pi]
        want = R0 @ transforms3d.axangles.axangle2mat(axis, fraction * angle)
        got = pose_to_c2w(np.zeros(3), slerp(q0, q1, fraction))[:3, :3]
        np.testing.assert_allclose(got, want, atol=1e-9)
        # -q1 is the same rotation: still the shorter arc, the same result
        got_neg = pose_to_c2w(np.zeros(3), slerp(q0, -q1, fraction))[:3, :3]
        np.testing.assert_allclose(got_neg, want, atol=1e-9)


def test_slerp_midpoint_about_one_axis_is_the_mean_angle():
    rot_z = transforms3d.axangles.axangle2mat
    q = slerp(_rotation(rot_z((0, 0, 1), 0.2)), _rotation(rot_z((0, 0, 1), 1.4)), 0.5)
    np.testing.assert_allclose(q, [0.0, 0.0, np.sin(0.4), np.cos(0.4)], atol=1e-12)
    same = _rotation(rot_z((1, 2, 3), 0.7))
    np.testing.assert_allclose(slerp(same, same, 0.3), same, atol=1e-12)
