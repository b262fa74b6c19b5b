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


def _reports(pipeline):
    seen = []
    pipeline._on_bad_input = lambda cause, msg, first: seen.append((cause, first))
    return seen


def test_one_far_future_frame_is_rejected_and_every_clip_still_comes_out():
    scene = _random_scene(15)
    pipeline = ExoPipeline(demo_config(scene, clip_length=5, clip_stride=5, use_mask=False))
    day = 86_400 * 10**9
    clips = _feed(pipeline, scene, stamps=scene.stamps_ns[:7])
    clips += _feed(pipeline, scene, stamps=[scene.stamps_ns[6] + day])   # every topic of it
    clips += _feed(pipeline, scene, stamps=scene.stamps_ns[7:])
    assert [list(c.stamps_ns) for c in clips] == \
        [list(scene.stamps_ns[i:i + 5]) for i in (0, 5, 10)]
    # the bad frame's image, depth, ego pose and exo pose; its CameraInfo carries no stamp check
    assert pipeline.bad_inputs == {"stamp_implausible": 4}
    assert not pipeline.matcher.dropped and not pipeline.buffer.counters


def test_the_same_clip_played_twice_gives_every_clip_both_times():
    scene = _random_scene(10)
    pipeline = ExoPipeline(demo_config(scene, clip_length=5, clip_stride=5, use_mask=False))
    seen = _reports(pipeline)
    first = _feed(pipeline, scene)
    second = _feed(pipeline, scene)                        # same stamps again (bag --loop)
    third = _feed(pipeline, scene, stamps=scene.stamps_ns[:7])   # and again, cut short
    assert [list(c.stamps_ns) for c in first + second] == \
        [list(scene.stamps_ns[i:i + 5]) for i in (0, 5)] * 2
    for clip, start in zip(second, (0, 5)):
        np.testing.assert_array_equal(clip.exo_rgb, scene.exo_rgb[start:start + 5])
        np.testing.assert_allclose(clip.ego_c2w, scene.ego_c2w[start:start + 5], atol=1e-12)
    assert [list(c.stamps_ns) for c in third] == [list(scene.stamps_ns[:5])]
    fourth = _feed(pipeline, scene)                        # the partial clip is dropped
    assert [list(c.stamps_ns) for c in fourth] == [list(scene.stamps_ns[i:i + 5]) for i in (0, 5)]
    assert pipeline.bad_inputs == {"stream_restarted": 3}
    assert seen == [("stream_restarted", True)] * 3        # logged every time
    assert pipeline.buffer.counters == {"restart_discarded": 2}
    assert not pipeline.matcher.dropped and not pipeline.matcher.rejected


def test_a_burst_in_stamp_time_is_matched_when_the_clock_allows():
    # The node measures max_wait on its monotonic clock: exo frames far ahead (in stamps) of
    # their poses are not given up while the poses are still coming.
    scene = _random_scene(20)
    now = [0]
    pipeline = ExoPipeline(demo_config(scene, clip_length=5, clip_stride=5, use_mask=False,
                                       max_wait_s=0.1), clock_ns=lambda: now[0])
    h = [F.header(int(s), "exo") for s in scene.stamps_ns]
    pipeline.on_camera_info(F.camera_info(scene.exo_K, h[0]))
    clips = []
    for i in range(20):
        clips += pipeline.on_exo_image(numpy_to_image(scene.exo_rgb[i], "rgb8", h[i]))
        clips += pipeline.on_depth(numpy_to_image(scene.exo_depth_m[i], "32FC1", h[i]))
        clips += pipeline.on_exo_pose(_pose(scene.exo_c2w[i], h[i]))
    for i in range(20):
        clips += pipeline.on_ego_pose(_pose(scene.ego_c2w[i], h[i]))
    assert len(clips) == 4 and not pipeline.matcher.dropped and not pipeline.bad_inputs
