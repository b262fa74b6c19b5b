"""A clip that continues an earlier one keeps its context over the wire (backend remote)."""
import dataclasses

import numpy as np
import pytest

from egox_model.clip import ClipContext
from egox_model.generator.wan.tiny import tiny_clip
from egox_model.serve.errors import WireError
from egox_model.serve.wire import decode_clip, encode_clip


def test_context_frames_and_stamps_round_trip_exactly():
    clip = tiny_clip(frames=9)
    rng = np.random.default_rng(0)
    context = ClipContext(rng.integers(0, 256, (5, 32, 32, 3), dtype=np.uint8),
                          clip.stamps_ns[:5])
    decoded, _ = decode_clip(encode_clip(dataclasses.replace(clip, context=context)))
    np.testing.assert_array_equal(decoded.context.ego_rgb, context.ego_rgb)
    np.testing.assert_array_equal(decoded.context.stamps_ns, clip.stamps_ns[:5])
    assert decode_clip(encode_clip(clip))[0].context is None


def test_context_without_stamps_is_a_wire_error():
    clip = tiny_clip(frames=5)
    message = encode_clip(dataclasses.replace(
        clip, context=ClipContext(np.zeros((1, 32, 32, 3), np.uint8), clip.stamps_ns[:1]),
        stamps_ns=None))
    with pytest.raises(WireError, match="context_rgb needs stamps_ns"):
        decode_clip(message)
