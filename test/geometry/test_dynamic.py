"""Motion-based dynamic masks find the moving ball of the ground-truth scene."""
import numpy as np
import pytest

from egox_model.errors import ConfigError, InputError
from egox_model.geometry.dynamic import MotionMaskConfig, motion_masks
from egox_model.scene import SceneConfig, render_scene


def test_motion_masks_cover_the_moving_object():
    # A temporal median needs the object to move off each pixel for most of the clip.
    scene = render_scene(SceneConfig(num_frames=49, exo_size=(112, 196), ego_size=(16, 16)))
    masks = motion_masks(scene.exo_rgb)
    truth = scene.dynamic_mask
    recall = (masks & truth).sum() / truth.sum()
    assert recall > 0.9
    assert masks.mean() < 5 * truth.mean()                # and not much else


def test_static_video_has_no_motion():
    frames = np.repeat(np.random.default_rng(0).integers(0, 255, (1, 32, 48, 3), np.uint8), 5, 0)
    assert not motion_masks(frames).any()


def test_bad_input():
    with pytest.raises(InputError, match="rgb"):
        motion_masks(np.zeros((0, 4, 4, 3), np.uint8))
    with pytest.raises(ConfigError, match="threshold"):
        MotionMaskConfig(threshold=0)
