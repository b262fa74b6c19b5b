"""Masks: the text-prompted path (resize, union of tracks, dilation) with a stand-in model
returning the scene's ground truth; motion masks of a moving exo camera with compensation
against the uncompensated baseline (IoU with the ground truth reported and asserted)."""
import dataclasses

import cv2
import numpy as np
import pytest

from egox_model.errors import InputError
from egox_model.geometry.dynamic import MotionMaskConfig, camera_moves, motion_masks
from egox_model.perception.masks import TextMaskEstimator, dilate_masks
from egox_model.perception.perceive import Perception
from egox_model.scene import SceneConfig, render_scene
from standins import MetricFromTruth, TruthSegmenter


def _iou(a, b):
    return float((a & b).sum() / max(1, (a | b).sum()))


@pytest.fixture(scope="module")
def ball_scene():
    return render_scene(SceneConfig(seed=1, num_frames=7, fps=5.0, exo_size=(240, 420),
                                    ego_size=(32, 32)))


@pytest.mark.parametrize("input_size", [(120, 210), (240, 420), (300, 160)])
def test_text_masks_follow_the_segmenters_tracks(ball_scene, input_size):
    truth = ball_scene.dynamic_mask
    segmenter = TruthSegmenter(truth, input_size)
    plain = TextMaskEstimator(segmenter, dilate_px=0).estimate(ball_scene.exo_rgb, ["ball"])
    assert plain.shape == truth.shape and plain.dtype == bool
    assert segmenter.seen[0] == ((len(truth), *input_size, 3), ["ball"])
    iou = _iou(plain, truth)
    assert iou > (0.99 if input_size == truth.shape[1:] else 0.6), iou
    # Dilation: contains the undilated mask, and every added pixel lies within r of it.
    radius = 3
    estimator = TextMaskEstimator(segmenter, dilate_px=radius)
    grown = estimator.estimate(ball_scene.exo_rgb, ["ball", "arm"])
    assert (grown >= plain).all() and grown.sum() > plain.sum()
    for f in range(len(truth)):
        if plain[f].any():
            dist = cv2.distanceTransform((~plain[f]).astype(np.uint8), cv2.DIST_L2, 5)
            assert dist[grown[f]].max() <= radius + 0.5
    assert estimator.last["objects"] == 2 and estimator.last["phrases"] == ["ball", "arm"]
    assert estimator.last["frames_with_objects"] == int(plain.any((1, 2)).sum())


def test_mask_plumbing_errors(ball_scene):
    class Short(TruthSegmenter):
        def segment(self, frames, phrases):
            return super().segment(frames, phrases)[:-1]
    with pytest.raises(InputError, match="returned 6 frames of masks for a clip of 7"):
        TextMaskEstimator(Short(ball_scene.dynamic_mask)).estimate(ball_scene.exo_rgb, ["x"])
    with pytest.raises(InputError, match="at least one phrase"):
        TextMaskEstimator(TruthSegmenter(ball_scene.dynamic_mask)).estimate(
            ball_scene.exo_rgb, [])
    assert (dilate_masks(ball_scene.dynamic_mask, 0) == ball_scene.dynamic_mask).all()


def test_perception_fills_masks_and_keeps_given_ones(ball_scene):
    truth = ball_scene.dynamic_mask
    masks = TextMaskEstimator(TruthSegmenter(truth, truth.shape[1:]), dilate_px=0)
    perception = Perception(MetricFromTruth(ball_scene.exo_depth_m), masks=masks,
                            phrases=["person", "ball"])
    clip = ball_scene.to_clip()
    bare = dataclasses.replace(clip, exo_depth_m=None, dynamic_mask=None)
    filled, diagnostics = perception.complete(bare)
    assert _iou(filled.dynamic_mask, truth) > 0.99
    assert diagnostics["masks"]["phrases"] == ["person", "ball"]
    given = np.zeros_like(truth)
    kept, _ = perception.complete(dataclasses.replace(bare, dynamic_mask=given))
    assert not kept.dynamic_mask.any()
    same, diagnostics = perception.complete(clip)         # nothing lacking: unchanged
    assert same is clip and diagnostics == {}


@pytest.mark.parametrize("seed,motion_m,fps,size", [(1, 0.05, 5.0, (160, 280)),
                                                    (2, 0.15, 4.0, (120, 210)),
                                                    (3, 0.10, 6.0, (144, 252))])
def test_motion_masks_compensate_a_moving_exo_camera(seed, motion_m, fps, size):
    scene = render_scene(SceneConfig(seed=seed, num_frames=9, fps=fps, exo_size=size,
                                     ego_size=(32, 32), exo_motion_m=motion_m))
    assert camera_moves(scene.exo_c2w)
    truth = scene.dynamic_mask
    config = MotionMaskConfig(dilate_radius_px=0)
    baseline = motion_masks(scene.exo_rgb, config)
    compensated = motion_masks(scene.exo_rgb, config, depth_m=scene.exo_depth_m,
                               K=scene.exo_K, c2w=scene.exo_c2w)
    iou_base, iou_comp = _iou(baseline, truth), _iou(compensated, truth)
    false_static = float((compensated & ~truth).sum() / (~truth).sum())
    false_base = float((baseline & ~truth).sum() / (~truth).sum())
    print(f"exo sway {motion_m} m: IoU compensated {iou_comp:.3f} vs uncompensated "
          f"{iou_base:.3f}; static pixels masked {false_static:.4f} vs {false_base:.4f}")
    assert iou_comp > iou_base + 0.15
    assert false_static < 0.006 and false_static < false_base / 2
    assert (compensated & truth).sum() > 0.8 * truth.sum()


def test_static_camera_keeps_todays_masks(ball_scene):
    config = MotionMaskConfig()
    assert not camera_moves(ball_scene.exo_c2w)
    np.testing.assert_array_equal(
        motion_masks(ball_scene.exo_rgb, config),
        motion_masks(ball_scene.exo_rgb, config, depth_m=ball_scene.exo_depth_m,
                     K=ball_scene.exo_K, c2w=ball_scene.exo_c2w))
    moving = ball_scene.exo_c2w.copy()
    moving[1:, 0, 3] += 0.01
    with pytest.raises(InputError, match="camera moves"):
        motion_masks(ball_scene.exo_rgb, config, c2w=moving)
