"""Pose and CameraInfo input checks: a non-unit quaternion or an unknown distortion model is
rejected and counted under its own cause (the counters /diagnostics shows), never used."""
import numpy as np
import pytest
import transforms3d
from geometry_msgs.msg import PoseStamped
from nav_msgs.msg import Odometry

from ros_fixtures import tiny_scene  # noqa: I100

from egox_ros.errors import MessageError
from egox_ros.messages import RclpyFactory, pose_msg_to_c2w
from egox_ros.params import EgoxConfig
from egox_ros.pipeline import ExoPipeline

F = RclpyFactory()
Q = np.array([0.1, -0.2, 0.3, 0.9]) / np.linalg.norm([0.1, -0.2, 0.3, 0.9])


def _pose(q_xyzw, odometry=False, stamp=1_000):
    msg = Odometry() if odometry else PoseStamped()
    msg.header = F.header(stamp, "world")
    pose = msg.pose.pose if odometry else msg.pose
    pose.position.x, pose.position.y, pose.position.z = 1.0, 2.0, 3.0
    o = pose.orientation
    o.x, o.y, o.z, o.w = (float(v) for v in q_xyzw)
    return msg


@pytest.mark.parametrize("odometry", [False, True])
@pytest.mark.parametrize("scale", [1.0, 1.0 + 9e-4, 1.0 - 9e-4])
def test_quaternion_within_tolerance_is_normalised_and_used(odometry, scale):
    c2w = pose_msg_to_c2w(_pose(scale * Q, odometry))
    x, y, z, w = Q                                    # transforms3d orders (w, x, y, z)
    np.testing.assert_allclose(c2w[:3, :3], transforms3d.quaternions.quat2mat([w, x, y, z]),
                               atol=1e-12)
    np.testing.assert_allclose(c2w[:3, 3], [1, 2, 3])


@pytest.mark.parametrize("odometry", [False, True])
@pytest.mark.parametrize("scale", [1.0 + 1.1e-3, 1.0 - 1.1e-3, 2.0, 0.1])
def test_non_unit_quaternion_is_rejected_with_its_own_cause(odometry, scale):
    with pytest.raises(MessageError, match=f"norm {scale:.6g}") as info:
        pose_msg_to_c2w(_pose(scale * Q, odometry))
    assert info.value.cause == "quaternion_not_unit"
    with pytest.raises(MessageError) as info:
        pose_msg_to_c2w(_pose([0.0, 0.0, 0.0, 0.0], odometry))
    assert info.value.cause == "bad_pose"


def _pipeline(**overrides):
    scene = tiny_scene(frames=2)
    K = scene.ego_K
    values = dict(clip_length=2, clip_stride=2, exo_width=0, exo_height=0, ego_width=K.width,
                  ego_height=K.height, ego_fx=K.fx, ego_fy=K.fy, ego_cx=K.cx, ego_cy=K.cy,
                  exo_pose_source="topic")
    values.update(overrides)
    reports = []
    pipeline = ExoPipeline(EgoxConfig(**values),
                           on_bad_input=lambda cause, msg, first: reports.append((cause, first)))
    return pipeline, scene, reports


def test_pipeline_counts_non_unit_quaternions_on_both_pose_topics():
    pipeline, _, reports = _pipeline()
    pipeline.on_ego_pose(_pose(1.01 * Q, stamp=1_000))
    pipeline.on_ego_pose(_pose(1.01 * Q, stamp=2_000))
    pipeline.on_exo_pose(_pose(0.99 * Q, stamp=1_000))
    pipeline.on_ego_pose(_pose(Q, stamp=3_000))                # a unit one is not counted
    assert pipeline.bad_inputs["quaternion_not_unit"] == 3
    assert reports == [("quaternion_not_unit", True), ("quaternion_not_unit", False),
                       ("quaternion_not_unit", False)]


@pytest.mark.parametrize("model,d", [("kannala_brandt", [0.0] * 4), ("fisheye", []),
                                     ("", [0.1, 0, 0, 0, 0])])
def test_pipeline_rejects_unknown_distortion_models_as_bad_camera_info(model, d):
    pipeline, scene, _ = _pipeline()
    info = F.camera_info(scene.exo_K, F.header(1_000, "exo"))
    info.distortion_model, info.d = model, d
    pipeline.on_camera_info(info)
    assert pipeline.bad_inputs["bad_camera_info"] == 1 and pipeline.camera is None
    info.distortion_model, info.d = "", []                     # pinhole: accepted
    pipeline.on_camera_info(info)
    assert pipeline.camera is not None and not pipeline.camera.is_distorted
    assert pipeline.bad_inputs["bad_camera_info"] == 1
