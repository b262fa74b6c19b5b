"""Pose conventions: the one quaternion conversion (ROS x, y, z, w order), optical frames."""
import numpy as np
import pytest
import transforms3d

from egox_model.errors import InputError
from egox_model.geometry.pose import (QUATERNION_TOLERANCE, c2w_to_pose, check_c2w,
                                      check_unit_quaternion, look_at, pose_to_c2w)


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
