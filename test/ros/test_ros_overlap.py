"""Overlapping clips (clip_stride < clip_length) in the live node and in `egox convert` (one
process and the --ray driver loop): every exo frame's ego image is output exactly once, by the
first clip that made it, and each later clip gets the earlier clip's output of the frames
they share as its context; a bad overlap for `wan` is a one-line error.

13 frames, clips of 5 every 4 frames: clips start at frames 0, 4 and 8 and share one frame
with the clip before (the overlap 4m+1 = 1 that backend 'wan' could continue from too).
"""
import time

import numpy as np
import pytest

from ros_fixtures import RosHarness, tiny_scene, unique_ns, wait_until  # noqa: I100
from exo_bags import write_exo_bag
from test_ros_node import ALL_INPUTS, start, tiny_config

from egox_model.generator import Generator, GeneratorConfig, make_generator
from egox_ros.convert import convert_bag
from egox_ros.image_conversion import image_to_rgb
from egox_ros.player import ScenePlayer
from egox_ros.ros_demo import demo_config

FRAMES, LENGTH, STRIDE = 13, 5, 4
CLIP_STARTS = (0, 4, 8)


class NumberedClips(Generator):
    """The prior backend, its ego frames painted with the clip's number (1, 2, ...), and a
    record of the context each clip came with (None or its stamps)."""

    name = "prior"

    def __init__(self):
        self.inner = make_generator(GeneratorConfig())
        self.contexts = []

    @classmethod
    def from_config(cls, config):
        return cls()

    def generate(self, clip, *, callback=None):
        out = self.inner.generate(clip, callback=callback)
        self.contexts.append(None if clip.context is None else
                             (clip.context.stamps_ns.tolist(), clip.context.ego_rgb[:, 0, 0, 0]))
        out.ego_rgb[:] = len(self.contexts)
        return out


def _check_once(stamps_out, values_out, scene, generator):
    """Every stamp once, in order, each painted by the first clip holding it; contexts =
    the earlier clip's output of the shared frame."""
    assert stamps_out == [int(s) for s in scene.stamps_ns]
    first_clip = [1 + sum(s + LENGTH <= f for s in CLIP_STARTS) for f in range(FRAMES)]
    assert values_out == first_clip
    assert generator.contexts[0] is None
    for n, start_frame in enumerate(CLIP_STARTS[1:], start=1):
        stamps, painted = generator.contexts[n]
        assert stamps == [int(scene.stamps_ns[start_frame])]
        assert painted.tolist() == [n]                     # the clip before made it


def test_convert_writes_each_frame_once_from_the_clip_that_made_it(tmp_path):
    from test_ros_bag import EGO, _bag_frames

    scene = tiny_scene(frames=FRAMES)
    write_exo_bag(tmp_path / "exo", scene)
    config = demo_config(scene, clip_length=LENGTH, clip_stride=STRIDE,
                         exo_pose_source="parameter", use_mask=False,
                         exo_pose=[0.0, -0.5, 1.0, 0.0, 0.0, 0.0, 1.0])
    generator = NumberedClips()
    summary = convert_bag(tmp_path / "exo", tmp_path / "ego", config, generator)
    assert summary["clips"] == 3 and summary["ego_frames"] == FRAMES
    frames = _bag_frames(tmp_path / "ego", EGO)
    stamps = sorted(frames)
    _check_once(stamps, [int(frames[s][0, 0, 0]) for s in stamps], scene, generator)


@pytest.mark.parametrize("backend, continued", [("remote", True), ("prior", False)])
def test_convert_dir_loop_continues_clips_in_sequence(tmp_path, backend, continued):
    """`egox convert --ray`'s driver loop (clips run in this process): each frame once; with
    a backend that continues clips (remote: its server decides) each clip gets the output of
    the one before, so a bag's clips go out one at a time."""
    from test_ros_bag import EGO, _bag_frames

    from egox_ros.convert_ray import LocalRunner, convert_dir

    scene = tiny_scene(frames=FRAMES)
    write_exo_bag(tmp_path / "in" / "a", scene)
    config = demo_config(scene, clip_length=LENGTH, clip_stride=STRIDE, backend=backend,
                         exo_pose_source="parameter", use_mask=False,
                         exo_pose=[0.0, -0.5, 1.0, 0.0, 0.0, 0.0, 1.0])
    generator = NumberedClips()
    results = convert_dir(tmp_path / "in", tmp_path / "out", config, LocalRunner(generator),
                          max_in_flight=4)
    assert [(r.status, r.clips, r.ego_frames) for r in results] == [("done", 3, FRAMES)]
    frames = _bag_frames(tmp_path / "out" / "a", EGO)
    stamps = sorted(frames)
    values = [int(frames[s][0, 0, 0]) for s in stamps]
    if continued:
        _check_once(stamps, values, scene, generator)
    else:                                          # in parallel: no context, frames still once
        assert stamps == [int(s) for s in scene.stamps_ns] and generator.contexts == [None] * 3


def test_bad_overlap_for_wan_is_one_line_exit_2(tmp_path, monkeypatch, capfd):
    from test_ros_cli import _egox_main

    status, stderr = _egox_main(monkeypatch, capfd, "convert", "in", "out", "--backend", "wan",
                                "--wan.model_dir", "m", "--clip_stride", "46", cwd=tmp_path)
    assert status == 2 and "Traceback" not in stderr
    assert stderr.strip().splitlines() == [
        "error: parameter clip_stride=46: backend 'wan': clips of 49 frames overlapping by 3, "
        "but Wan continues from whole latent frames: the overlap (clip_length - clip_stride) "
        "must be 4m+1 = 1, 5, 9, ... frames, i.e. clip_stride a multiple of 4 (e.g. 48, 44, "
        "40), or no overlap"]


@pytest.fixture
def harness():
    h = RosHarness()
    yield h
    h.close()


def test_node_publishes_each_frame_once_from_the_clip_that_made_it(harness):
    ns, scene = unique_ns(), tiny_scene(frames=FRAMES)
    config = tiny_config(clip_length=LENGTH, clip_stride=STRIDE, subscription_qos="reliable",
                         subscription_depth=FRAMES + 10)
    generator = NumberedClips()
    node, sink = start(harness, ns, config, generator)
    player = harness.add(ScenePlayer(scene, namespace=ns, context=harness.context))
    assert player.wait_for_subscribers(1, topics=ALL_INPUTS)
    player.play()
    assert wait_until(lambda: node.stats().get("clips_published", 0) == 3, 30)
    time.sleep(0.3)                                       # nothing more may arrive
    images = sink.msgs["ego/image"]
    stamps = [m.header.stamp.sec * 10**9 + m.header.stamp.nanosec for m in images]
    for topic in ("ego/camera_info", "ego_prior/image", "ego_prior/camera_info"):
        assert [m.header.stamp.sec * 10**9 + m.header.stamp.nanosec
                for m in sink.msgs[topic]] == stamps, topic
    _check_once(stamps, [int(image_to_rgb(m)[0, 0, 0]) for m in images], scene, generator)
    assert node.stats()["frames_published"] == FRAMES
    assert np.all(np.diff(stamps) > 0)
