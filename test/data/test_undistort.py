"""Fisheye (equidistant) and plumb-bob ego views undistorted to pinhole: a pinhole render,
distorted with OpenCV's point model (cv2.fisheye.distortPoints / cv2.projectPoints), comes
back from `undistort_frames` (remap tables) close to the original inside the image."""
import cv2
import numpy as np
import pytest

from egox_model.data.undistort import undistort_frames
from egox_model.geometry.camera import CameraModel
from egox_model.scene import SceneConfig, render_scene


def distort(pinhole: np.ndarray, K: np.ndarray, D: np.ndarray, model: str) -> np.ndarray:
    """The distorted image: each distorted pixel samples the pinhole image where its ray
    lands (forward model per pixel, independent of the remap tables under test)."""
    h, w = pinhole.shape[:2]
    v, u = np.mgrid[0:h, 0:w].astype(np.float64)
    pts = np.stack([u.ravel(), v.ravel()], -1)[:, None]
    if model == "equidistant":
        norm = cv2.fisheye.undistortPoints(pts, K, D)
    else:
        norm = cv2.undistortPoints(pts, K, D)
    xy = norm[:, 0] @ K[:2, :2].T + K[:2, 2]
    map_x = xy[:, 0].reshape(h, w).astype(np.float32)
    map_y = xy[:, 1].reshape(h, w).astype(np.float32)
    return cv2.remap(pinhole, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)


@pytest.mark.parametrize("model, D", [("equidistant", [0.08, -0.02, 0.004, -0.001]),
                                      ("plumb_bob", [-0.25, 0.07, 0.0005, -0.0008, 0.0])])
def test_undistort_recovers_pinhole(model, D):
    scene = render_scene(SceneConfig(num_frames=2, exo_size=(16, 16), ego_size=(96, 128),
                                     ego_hfov_deg=70.0))
    K, D = scene.ego_K.K, np.array(D)
    distorted = np.stack([distort(f, K, D, model) for f in scene.ego_rgb])
    camera = CameraModel.from_camera_info(width=128, height=96, K=K.ravel(), D=D,
                                          distortion_model=model)
    frames, rect = undistort_frames(camera, distorted)
    assert rect == scene.ego_K and frames.shape == scene.ego_rgb.shape
    inner = (slice(None), slice(12, -12), slice(16, -16))
    err = np.abs(frames[inner].astype(float) - scene.ego_rgb[inner].astype(float))
    assert np.median(err) < 3 and np.mean(err) < 6, (np.median(err), np.mean(err))
    far = np.abs(distorted[inner].astype(float) - scene.ego_rgb[inner].astype(float))
    assert np.mean(far) > 2 * np.mean(err)      # the distortion was real


def test_pinhole_passes_through():
    frames = np.zeros((2, 4, 6, 3), np.uint8)
    camera = CameraModel.from_camera_info(width=6, height=4, K=[5, 0, 2.5, 0, 5, 1.5, 0, 0, 1])
    out, rect = undistort_frames(camera, frames)
    assert out is frames and rect == camera.intrinsics
