"""The message pipeline without DDS: clip overlap, resampling, undistortion and resizing of
the exo frames (K follows), static vs topic exo pose, odometry ego pose with camera offset."""
import numpy as np
from geometry_msgs.msg import PoseStamped
from nav_msgs.msg import Odometry

from ros_fixtures import tiny_scene  # noqa: I100

from egox_model.geometry.camera import CameraModel
from egox_model.geometry.pose import c2w_to_pose, pose_to_c2w
from egox_ros.image_conversion import numpy_to_image
from egox_ros.messages import RclpyFactory
from egox_ros.pipeline import ExoPipeline
from egox_ros.ros_demo import demo_config

F = RclpyFactory()


def _pose(c2w, header, odometry=False):
    msg = Odometry(header=header) if odometry else PoseStamped(header=header)
    pose = msg.pose.pose if odometry else msg.pose
    p, q = c2w_to_pose(c2w)
    pose.position.x, pose.position.y, pose.position.z = map(float, p)
    pose.orientation.x, pose.orientation.y, pose.orientation.z, pose.orientation.w = map(float, q)
    return msg


def _feed(pipeline, scene, info=None, odometry=False, stamps=None):
    clips = []
    stamps = scene.stamps_ns if stamps is None else stamps
    for i, stamp in enumerate(int(s) for s in stamps):
        h = F.header(stamp, "exo")
        clips += pipeline.on_camera_info(info or F.camera_info(scene.exo_K, h))
        clips += pipeline.on_exo_image(numpy_to_image(scene.exo_rgb[i], "rgb8", h))
        clips += pipeline.on_depth(numpy_to_image(scene.exo_depth_m[i], "32FC1", h))
        clips += pipeline.on_ego_pose(_pose(scene.ego_c2w[i], h, odometry))
        if pipeline.config.exo_pose_source == "topic":
            clips += pipeline.on_exo_pose(_pose(scene.exo_c2w[i], h))
    return clips


def _random_scene(frames):
    scene = tiny_scene(frames=frames)
    scene.exo_rgb = np.random.default_rng(0).integers(0, 256, scene.exo_rgb.shape, np.uint8)
    return scene


def test_overlapping_clips_hold_the_right_frames():
    scene = _random_scene(12)
    pipeline = ExoPipeline(demo_config(scene, clip_length=5, clip_stride=3, use_mask=False))
    clips = _feed(pipeline, scene)
    assert [list(c.stamps_ns) for c in clips] == \
        [list(scene.stamps_ns[i:i + 5]) for i in (0, 3, 6)]
    for clip, start in zip(clips, (0, 3, 6)):
        np.testing.assert_array_equal(clip.exo_rgb, scene.exo_rgb[start:start + 5])
        np.testing.assert_allclose(clip.ego_c2w, scene.ego_c2w[start:start + 5], atol=1e-12)
        np.testing.assert_allclose(clip.exo_c2w, scene.exo_c2w[start:start + 5], atol=1e-12)
        assert clip.exo_depth_m.shape == (5, 48, 64)
    assert not pipeline.bad_inputs


def test_a_60_hz_source_is_resampled_to_30_fps():
    scene = _random_scene(12)
    stamps = scene.stamps_ns[0] + np.arange(12) * round(1e9 / 60)
    pipeline = ExoPipeline(demo_config(scene, clip_length=5, clip_stride=5, use_mask=False))
    clips = _feed(pipeline, scene, stamps=stamps)
    assert len(clips) == 1
    np.testing.assert_array_equal(clips[0].stamps_ns, stamps[0:10:2])
    np.testing.assert_array_equal(clips[0].exo_rgb, scene.exo_rgb[0:10:2])


def test_distorted_exo_is_undistorted_and_resized_with_its_intrinsics():
    scene = _random_scene(5)
    info = F.camera_info(scene.exo_K, F.header(0, "exo"))
    info.d = [0.1, -0.05, 0.001, 0.002, 0.0]
    config = demo_config(scene, clip_length=5, clip_stride=5, use_mask=False,
                         exo_width=32, exo_height=24, exo_pose_source="parameter",
                         exo_pose=[float(v) for v in np.concatenate(c2w_to_pose(
                             scene.exo_c2w[0]))])
    pipeline = ExoPipeline(config)
    clips = _feed(pipeline, scene, info=info)
    assert len(clips) == 1 and not pipeline.bad_inputs
    camera = CameraModel.from_camera_info(width=64, height=48, K=info.k, D=info.d, P=info.p)
    assert clips[0].exo_K == camera.rectified.resized(32, 24)
    assert clips[0].exo_rgb.shape == (5, 24, 32, 3)
    np.testing.assert_allclose(clips[0].exo_c2w, scene.exo_c2w, atol=1e-9)


def test_prompt_applies_to_clips_completed_afterwards():
    from std_msgs.msg import String

    scene = _random_scene(10)
    pipeline = ExoPipeline(demo_config(scene, clip_length=5, clip_stride=5, use_mask=False,
                                       prompt="a table"))
    first = _feed(pipeline, scene, stamps=scene.stamps_ns[:5])
    pipeline.on_prompt(String(data="a red ball rolls"))
    second = _feed(pipeline, scene, stamps=scene.stamps_ns[5:])
    assert [c.prompt for c in first + second] == ["a table", "a red ball rolls"]


def test_odometry_ego_pose_with_camera_offset():
    scene = _random_scene(5)
    offset = [0.1, 0.0, 0.05, -0.5, 0.5, -0.5, 0.5]    # body (x fwd, z up) -> optical frame
    config = demo_config(scene, clip_length=5, clip_stride=5, use_mask=False,
                         ego_pose_type="odometry", ego_camera_offset=offset)
    clips = _feed(ExoPipeline(config), scene, odometry=True)
    T = pose_to_c2w(np.array(offset[:3]), np.array(offset[3:]))
    np.testing.assert_allclose(clips[0].ego_c2w, scene.ego_c2w @ T, atol=1e-9)
