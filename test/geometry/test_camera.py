"""Intrinsics, CameraInfo parsing and undistortion."""
import cv2
import numpy as np
import pytest

from egox_model.errors import InputError
from egox_model.geometry.camera import DISTORTION_MODELS, CameraModel, Intrinsics

K9 = [400.0, 0.0, 319.5, 0.0, 410.0, 239.5, 0.0, 0.0, 1.0]


def test_resize_and_crop_keep_projection_consistent():
    k = Intrinsics(400.0, 410.0, 319.5, 239.5, 640, 480)
    point = np.array([0.3, -0.2, 2.0])

    def pixel(intr):
        return np.array([intr.fx * point[0] / point[2] + intr.cx,
                         intr.fy * point[1] / point[2] + intr.cy])

    half = k.resized(320, 240)
    # A pixel centre u maps to (u + 0.5) * s - 0.5 under resizing.
    np.testing.assert_allclose(pixel(half), (pixel(k) + 0.5) * 0.5 - 0.5)
    crop = k.cropped(100, 50, 200, 200)
    np.testing.assert_allclose(pixel(crop), pixel(k) - [100, 50])
    with pytest.raises(InputError, match="crop"):
        k.cropped(500, 0, 200, 200)


@pytest.mark.parametrize("fx", [0.0, -1.0, float("nan")])
def test_bad_focal_length_is_rejected(fx):
    with pytest.raises(InputError, match="focal|finite"):
        Intrinsics(fx, 400.0, 10.0, 10.0, 20, 20)


def test_camera_info_all_zero_k_and_unknown_model_are_reported():
    with pytest.raises(InputError, match="all zero"):
        CameraModel.from_camera_info(width=640, height=480, K=[0.0] * 9)
    with pytest.raises(InputError, match="distortion_model 'kannala'"):
        CameraModel.from_camera_info(width=640, height=480, K=K9, D=[0.1, 0, 0, 0],
                                     distortion_model="kannala")
    with pytest.raises(InputError, match="needs 8"):
        CameraModel.from_camera_info(width=640, height=480, K=K9, D=[0.1] * 5,
                                     distortion_model="rational_polynomial")


def test_camera_info_uses_p_as_the_rectified_camera():
    P = [300.0, 0, 320.0, 0, 0, 300.0, 240.0, 0, 0, 0, 1, 0]
    cam = CameraModel.from_camera_info(width=640, height=480, K=K9, D=[0.0] * 5, P=P)
    assert cam.rectified.fx == 300.0 and cam.intrinsics.fx == 400.0
    assert not cam.is_distorted
    image = np.zeros((480, 640, 3), np.uint8)
    assert cam.undistort(image) is image                   # nothing to do without distortion


def _dots_image(pixels: np.ndarray, size=(480, 640)) -> np.ndarray:
    image = np.zeros(size, np.float32)
    for u, v in pixels:
        cv2.circle(image, (int(round(u * 16)), int(round(v * 16))), 3 * 16, 1.0, -1,
                   cv2.LINE_AA, shift=4)
    return image


@pytest.mark.parametrize("model,D", [
    ("plumb_bob", [-0.25, 0.08, 0.001, -0.0005, 0.0]),
    ("rational_polynomial", [0.2, -0.1, 0.001, 0.0005, 0.01, 0.45, -0.05, 0.02]),
    ("equidistant", [0.05, -0.02, 0.004, -0.001]),
])
def test_undistortion_moves_points_to_their_pinhole_positions(model, D):
    cam = CameraModel.from_camera_info(width=640, height=480, K=K9, D=D,
                                       distortion_model=model)
    rng = np.random.default_rng(1)
    pinhole = np.stack([rng.uniform(80, 560, 12), rng.uniform(60, 420, 12)], -1)
    rays = np.concatenate([(pinhole - [319.5, 239.5]) / [400.0, 410.0], np.ones((12, 1))], -1)
    K = np.array(K9).reshape(3, 3)
    if model == "equidistant":
        distorted = cv2.fisheye.projectPoints(rays[:, None], np.zeros(3), np.zeros(3), K,
                                              np.array(D))[0][:, 0]
    else:
        distorted = cv2.projectPoints(rays, np.zeros(3), np.zeros(3), K, np.array(D))[0][:, 0]
    assert np.abs(distorted - pinhole).max() > 3.0         # the distortion is real
    undistorted = cam.undistort(_dots_image(distorted))
    for u, v in pinhole:
        patch = undistorted[int(v) - 8:int(v) + 9, int(u) - 8:int(u) + 9]
        ys, xs = np.mgrid[int(v) - 8:int(v) + 9, int(u) - 8:int(u) + 9]
        centroid = np.array([(xs * patch).sum(), (ys * patch).sum()]) / patch.sum()
        assert np.abs(centroid - [u, v]).max() < 0.5


def test_undistort_rejects_wrong_image_size():
    cam = CameraModel.from_camera_info(width=640, height=480, K=K9, D=[0.1, 0, 0, 0, 0])
    with pytest.raises(InputError, match="640x480"):
        cam.undistort(np.zeros((100, 100), np.uint8))


@pytest.mark.parametrize("D", [[], [0.0] * 4, [0.0] * 9, [0.1, 0.0, 0.0, 0.0]])
def test_unknown_distortion_model_is_rejected_whatever_d_holds(D):
    with pytest.raises(InputError, match="distortion_model 'kannala_brandt' is not supported"):
        CameraModel.from_camera_info(width=640, height=480, K=K9, D=D,
                                     distortion_model="kannala_brandt")


@pytest.mark.parametrize("model", sorted(DISTORTION_MODELS) + [""])
@pytest.mark.parametrize("D", [[], [0.0] * 5])
def test_known_or_empty_model_with_zero_d_is_a_pinhole_camera(model, D):
    cam = CameraModel.from_camera_info(width=640, height=480, K=K9, D=D, distortion_model=model)
    assert not cam.is_distorted and cam.distortion_model == model
    assert cam.rectified == Intrinsics.from_matrix(K9, 640, 480)
    image = np.zeros((480, 640), np.uint8)
    assert cam.undistort(image) is image


def test_empty_model_with_non_zero_d_is_rejected():
    with pytest.raises(InputError, match="distortion_model is empty but D="):
        CameraModel.from_camera_info(width=640, height=480, K=K9, D=[-0.2, 0.0, 0.0, 0.0, 0.0],
                                     distortion_model="")
