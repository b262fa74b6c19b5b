"""`ClipStream` and the long-input helpers: overlap found by stamps, each frame output once."""
import dataclasses

import numpy as np
import pytest

from egox_model.clip_stream import ClipStream, clip_starts, generate_stream
from egox_model.errors import InputError
from egox_model.generator.prior_backend import PriorGenerator
from egox_model.generator.wan.tiny import tiny_clip
from egox_model.output import GeneratorOutput


def _output(clip, value):
    """A stand-in output: every ego pixel = value."""
    K = clip.ego_K
    return GeneratorOutput(ego_rgb=np.full((clip.num_frames, K.height, K.width, 3), value,
                                           np.uint8), prior=None, backend="test",
                           stamps_ns=clip.stamps_ns)


def test_overlap_is_found_by_stamps_also_across_a_dropped_clip_and_a_restart():
    episode = tiny_clip(frames=21)
    a, b, c = (episode.window(s, s + 9) for s in (0, 4, 8))
    stream = ClipStream()
    assert stream.with_context(a) is a and stream.record(a, _output(a, 1)) == 0
    # b is dropped (queue overflow, failed generation): c shares only frame 8 with a
    continued = stream.with_context(c)
    assert continued.context.num_frames == 1
    np.testing.assert_array_equal(continued.context.stamps_ns, episode.stamps_ns[8:9])
    assert np.all(continued.context.ego_rgb == 1)
    assert stream.record(c, _output(c, 3)) == 1
    # the next clip shares 5 frames with c
    assert stream.overlap(episode.window(12, 21)) == 5
    assert stream.overlap(episode.window(12, 17)) == 0        # no new frame: not a continuation
    # a restarted input (stamps from the start again) shares nothing
    assert stream.overlap(a) == 0 and stream.with_context(a) is a
    # a clip without stamps shares nothing either
    assert stream.overlap(dataclasses.replace(c, stamps_ns=None)) == 0


def test_clip_starts_and_a_stride_that_would_skip_frames():
    assert clip_starts(15, 9, 4) == [0, 4]
    assert clip_starts(8, 9, 4) == []
    with pytest.raises(InputError, match="clip stride 10 must be in"):
        clip_starts(30, 9, 10)


def test_generate_stream_outputs_each_frame_once_in_order():
    episode = tiny_clip(frames=13)
    stitched, starts = generate_stream(PriorGenerator(), episode, 5, 4)
    assert starts == [0, 5, 9]
    np.testing.assert_array_equal(stitched.stamps_ns, episode.stamps_ns)
    assert stitched.ego_rgb.shape[0] == 13 and stitched.prior.rgb.shape[0] == 13
    assert stitched.diagnostics["clips"] == 3
    with pytest.raises(InputError, match="fewer than one clip of 17"):
        generate_stream(PriorGenerator(), episode, 17, 4)


def test_only_the_last_keep_frames_outlive_a_clip():
    episode = tiny_clip(frames=13)
    a, b = episode.window(0, 9), episode.window(4, 13)
    stream = ClipStream(keep=5)
    output = _output(a, 1)
    stream.record(a, output)
    output.ego_rgb[:] = 7                                  # the kept frames are a copy
    context = stream.with_context(b).context
    assert context.num_frames == 5 and np.all(context.ego_rgb == 1)
    short = ClipStream(keep=1)                             # kept fewer than shared: no context,
    short.record(a, _output(a, 1))                         # but still output once
    assert short.with_context(b).context is None and short.record(b, _output(b, 2)) == 5
