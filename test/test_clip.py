"""Clip validation: bad input raises InputError naming the field."""
import numpy as np
import pytest

from egox_model.clip import Clip
from egox_model.errors import InputError
from egox_model.geometry.camera import Intrinsics

F, H, W = 3, 16, 32


def _fields(**overrides):
    fields = dict(exo_rgb=np.zeros((F, H, W, 3), np.uint8),
                  exo_K=Intrinsics(20.0, 20.0, 15.5, 7.5, W, H),
                  exo_c2w=np.tile(np.eye(4), (F, 1, 1)),
                  ego_K=Intrinsics(20.0, 20.0, 7.5, 7.5, 16, 16),
                  ego_c2w=np.tile(np.eye(4), (F, 1, 1)),
                  exo_depth_m=np.ones((F, H, W), np.float32))
    fields.update(overrides)
    return fields


def test_valid_clip():
    clip = Clip(**_fields(stamps_ns=[1, 2, 3]))
    assert clip.num_frames == F and clip.stamps_ns.dtype == np.int64


@pytest.mark.parametrize("overrides,match", [
    (dict(exo_rgb=np.zeros((0, H, W, 3), np.uint8)), "exo_rgb must be a non-empty"),
    (dict(exo_rgb=np.zeros((F, H, W, 3), np.float32)), "uint8"),
    (dict(exo_K=Intrinsics(20.0, 20.0, 7.5, 7.5, 16, 16)), "exo_K is for 16x16"),
    (dict(exo_c2w=np.tile(np.eye(4), (F + 1, 1, 1))), "exo_c2w must have shape 3x4x4"),
    (dict(ego_c2w=np.full((F, 4, 4), np.nan)), "ego_c2w has .* non-finite"),
    (dict(exo_depth_m=np.ones((F, H, W + 1), np.float32)), "exo_depth_m must have shape"),
    (dict(exo_depth_m=None, exo_depth_mono_m=np.ones((F, H, W))), "needs exo_depth_m"),
    (dict(dynamic_mask=np.zeros((F, 2, 2), bool)), "dynamic_mask must have shape"),
    (dict(stamps_ns=[1, 2]), "stamps_ns must have shape 3"),
    (dict(fps=0.0), "fps must be positive"),
])
def test_bad_clips_name_the_field(overrides, match):
    with pytest.raises(InputError, match=match):
        Clip(**_fields(**overrides))
