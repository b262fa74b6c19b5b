"""Metrics against independent references: scikit-image's PSNR/SSIM, a direct scipy Frechet
distance and its closed form, hand-made object masks, LPIPS recomputed layer by layer."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import linalg
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from egox_model.errors import InputError, ModelLoadError
from egox_model.eval.frechet import FeatureStats, feature_stats, frechet_distance
from egox_model.eval.lpips import LPIPS, LPIPS_NETS, load_lpips
from egox_model.eval.metrics import psnr, ssim
from egox_model.eval.objects import object_scores


def _video(seed: int, shape=(3, 40, 56)) -> np.ndarray:
    """Smooth random frames (F, H, W, 3) uint8: low-frequency noise, upsampled."""
    rng = np.random.default_rng(seed)
    coarse = torch.from_numpy(rng.uniform(0, 255, (shape[0], 3, 6, 8)))
    full = torch.nn.functional.interpolate(coarse, size=shape[1:], mode="bicubic")
    return full.clamp(0, 255).round().byte().permute(0, 2, 3, 1).numpy()


def _shifted(video: np.ndarray, pixels: int) -> np.ndarray:
    return np.roll(video, pixels, axis=2)


@pytest.mark.parametrize("shape", [(1, 11, 11), (2, 17, 23), (3, 40, 56)])
def test_psnr_ssim_match_scikit_image(shape):
    target = _video(0, shape)
    noise = np.random.default_rng(1).normal(0, 12, target.shape)
    prediction = np.clip(target + noise, 0, 255).astype(np.uint8)
    expected_psnr = peak_signal_noise_ratio(target, prediction, data_range=255)
    assert psnr(prediction, target) == pytest.approx(expected_psnr, abs=1e-9)
    weights = np.array([0.299, 0.587, 0.114])
    expected_ssim = np.mean([
        structural_similarity(p.astype(np.float64) @ weights, t.astype(np.float64) @ weights,
                              data_range=255, gaussian_weights=True, sigma=1.5,
                              use_sample_covariance=False)
        for p, t in zip(prediction, target)])
    assert ssim(prediction, target) == pytest.approx(expected_ssim, abs=1e-9)


def test_psnr_mask_matches_scikit_image_on_the_masked_pixels():
    target, prediction = _video(2), _video(3)
    mask = np.zeros(target.shape[:-1], bool)
    mask[:, 5:20, 10:30] = True
    expected = peak_signal_noise_ratio(target[mask], prediction[mask], data_range=255)
    assert psnr(prediction, target, mask) == pytest.approx(expected, abs=1e-9)


def test_identical_videos_and_known_shifts():
    video = _video(4)
    assert psnr(video, video) == float("inf")
    assert ssim(video, video) == pytest.approx(1.0, abs=1e-12)
    psnrs = [psnr(_shifted(video, s), video) for s in (1, 3, 9)]
    ssims = [ssim(_shifted(video, s), video) for s in (1, 3, 9)]
    assert psnrs[0] > psnrs[1] > psnrs[2]
    assert 1.0 > ssims[0] > ssims[1] > ssims[2]


def _gaussian(mean, cov) -> FeatureStats:
    return FeatureStats(np.asarray(mean, float), np.asarray(cov, float), 0)


def test_frechet_closed_form_for_diagonal_gaussians():
    """Diagonal covariances commute: d^2 = |dmu|^2 + sum (sqrt(s1) - sqrt(s2))^2."""
    mu1, mu2 = np.array([0.0, 1.0, -2.0]), np.array([1.0, 1.0, 0.5])
    s1, s2 = np.array([1.0, 4.0, 0.25]), np.array([9.0, 1.0, 0.25])
    expected = np.sum((mu1 - mu2) ** 2) + np.sum((np.sqrt(s1) - np.sqrt(s2)) ** 2)
    assert frechet_distance(_gaussian(mu1, np.diag(s1)),
                            _gaussian(mu2, np.diag(s2))) == pytest.approx(expected, rel=1e-12)
    assert frechet_distance(_gaussian(mu1, np.diag(s1)), _gaussian(mu1, np.diag(s1))) == 0.0


@pytest.mark.parametrize("n,d", [(50, 8), (5, 12)])
def test_frechet_matches_direct_scipy_computation(n, d):
    """Against the textbook formula written independently: tr(S1 + S2 - 2 sqrtm(S1^1/2 S2
    S1^1/2)), which avoids the non-symmetric product the implementation takes the root of;
    (5, 12) has singular covariances (fewer vectors than dimensions)."""
    rng = np.random.default_rng(n)
    a = rng.normal(size=(n, d)) @ rng.normal(size=(d, d))
    b = rng.normal(0.3, 1.5, size=(n, d))
    mu_a, mu_b = a.mean(0), b.mean(0)
    cov_a, cov_b = np.cov(a.T), np.cov(b.T)
    root_a = linalg.sqrtm(cov_a + 0j).real
    cross = linalg.sqrtm(root_a @ cov_b @ root_a + 0j).real
    expected = (np.sum((mu_a - mu_b) ** 2) + np.trace(cov_a) + np.trace(cov_b)
                - 2 * np.trace(cross))
    got = frechet_distance(feature_stats(a), feature_stats(b))
    assert got == pytest.approx(expected, rel=1e-6, abs=1e-6)
    assert frechet_distance(feature_stats(a), feature_stats(a)) == pytest.approx(0.0, abs=1e-6)


def test_frechet_grows_with_a_mean_shift_and_rejects_bad_input():
    base = np.random.default_rng(0).normal(size=(200, 4))
    distances = [frechet_distance(feature_stats(base), feature_stats(base + s))
                 for s in (0.1, 0.5, 2.0)]
    assert distances == pytest.approx([4 * s * s for s in (0.1, 0.5, 2.0)], rel=1e-9)
    with pytest.raises(InputError, match="N >= 2"):
        feature_stats(base[:1])
    with pytest.raises(InputError, match="dimensions differ"):
        frechet_distance(feature_stats(base), feature_stats(base[:, :3]))


def test_object_iou_and_location_error_on_known_masks():
    target = np.zeros((3, 20, 30), np.uint16)
    target[:, 5:15, 5:15] = 1                      # a 10x10 square, object 1, every frame
    target[0, 2:4, 20:24] = 2                      # object 2 only in frame 0
    pred = np.zeros_like(target)
    pred[0, 5:15, 5:15] = 1                        # exact
    pred[1, 5:15, 8:18] = 1                        # shifted 3 px right: IoU 70/130
    pred[0, 2:4, 22:26] = 2                        # shifted 2 px: IoU 4/12
    scores = object_scores(pred, target)           # frame 2: object 1 missed -> IoU 0
    iou_1 = (1.0 + 70 / 130 + 0.0) / 3
    assert scores.iou == pytest.approx((iou_1 + 4 / 12) / 2)
    assert scores.location_error_px == pytest.approx(((0.0 + 3.0) / 2 + 2.0) / 2)
    assert (scores.objects, scores.object_frames, scores.missed_frames) == (2, 4, 1)
    same = object_scores(target, target)
    assert (same.iou, same.location_error_px) == (1.0, 0.0)
    with pytest.raises(InputError, match="no object"):
        object_scores(pred, np.zeros_like(target))


def _lpips_dir(tmp_path, net: str) -> tuple[LPIPS, object]:
    """A random LPIPS saved as torchvision + lpips files (non-negative linear weights, as the
    released ones are), with a classifier key torchvision's file also has."""
    torch.manual_seed(0)
    model = LPIPS(net)
    for lin in model.lins:
        lin.model[1].weight.data.abs_()
    _, _, (_, backbone_name), lin_name = LPIPS_NETS[net]
    backbone = {f"features.{k}": v for k, v in model.features.state_dict().items()}
    backbone["classifier.1.weight"] = torch.zeros(2, 2)
    torch.save(backbone, tmp_path / backbone_name)
    torch.save({f"lin{i}.model.1.weight": lin.model[1].weight.detach()
                for i, lin in enumerate(model.lins)}, tmp_path / lin_name)
    return model, tmp_path


def _lpips_by_hand(state: dict, lins: list, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """AlexNet LPIPS written out with functional ops from the torchvision keys."""
    shift = torch.tensor([-0.030, -0.088, -0.188]).view(1, 3, 1, 1)
    scale = torch.tensor([0.458, 0.448, 0.450]).view(1, 3, 1, 1)

    def conv(t, i, stride=1, pad=0):
        return torch.relu(torch.nn.functional.conv2d(t, state[f"features.{i}.weight"],
                                                     state[f"features.{i}.bias"], stride, pad))

    def taps(t):
        t = (t - shift) / scale
        r1 = conv(t, 0, 4, 2)
        r2 = conv(torch.nn.functional.max_pool2d(r1, 3, 2), 3, 1, 2)
        r3 = conv(torch.nn.functional.max_pool2d(r2, 3, 2), 6, 1, 1)
        r4 = conv(r3, 8, 1, 1)
        return [r1, r2, r3, r4, conv(r4, 10, 1, 1)]

    total = 0
    for fx, fy, w in zip(taps(x), taps(y), lins):
        nx = fx / (fx.norm(dim=1, keepdim=True) + 1e-10)
        ny = fy / (fy.norm(dim=1, keepdim=True) + 1e-10)
        total = total + torch.nn.functional.conv2d((nx - ny) ** 2, w).mean((1, 2, 3))
    return total


def test_lpips_loads_standard_files_and_matches_the_formula(tmp_path):
    model, model_dir = _lpips_dir(tmp_path, "alex")
    loaded = load_lpips(model_dir, "alex")
    video = _video(5, (2, 64, 72))
    other = _shifted(video, 4)
    x = torch.from_numpy(video).permute(0, 3, 1, 2).float() / 127.5 - 1
    y = torch.from_numpy(other).permute(0, 3, 1, 2).float() / 127.5 - 1
    state = torch.load(next(model_dir.glob("alexnet*.pth")))
    lins = [w for _, w in sorted(torch.load(model_dir / "alex.pth").items())]
    expected = _lpips_by_hand(state, lins, x, y).mean()
    assert loaded.video_distance(other, video) == pytest.approx(float(expected), rel=1e-5)
    assert loaded.video_distance(other, video) == pytest.approx(
        model.video_distance(other, video), rel=1e-6)


@pytest.mark.parametrize("net", ["alex", "vgg"])
def test_lpips_zero_for_identical_and_ordered_by_noise(tmp_path, net):
    _lpips_dir(tmp_path, net)
    lpips = load_lpips(tmp_path, net)
    video = _video(6, (2, 48, 48))
    rng = np.random.default_rng(0)
    noisy = [np.clip(video + rng.normal(0, s, video.shape), 0, 255).astype(np.uint8)
             for s in (4, 16, 64)]
    assert lpips.video_distance(video, video) == 0.0
    values = [lpips.video_distance(n, video) for n in noisy]
    assert 0 < values[0] < values[1] < values[2]


def test_lpips_names_the_missing_file(tmp_path):
    with pytest.raises(ModelLoadError, match=r"missing: alexnet\*\.pth, alex\.pth"):
        load_lpips(tmp_path, "alex")
    _lpips_dir(tmp_path, "alex")
    (tmp_path / "alex.pth").unlink()
    with pytest.raises(ModelLoadError, match=r"missing: alex\.pth"):
        load_lpips(tmp_path, "alex")
    torch.save({"lin0.model.1.weight": torch.zeros(1, 3, 1, 1)}, tmp_path / "alex.pth")
    with pytest.raises(ModelLoadError, match="does not fit LPIPS"):
        load_lpips(tmp_path, "alex")
