"""Image metrics on uint8 RGB frames: PSNR (optionally over a pixel mask) and SSIM."""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from egox_model.errors import InputError

__all__ = ["psnr", "ssim"]


def psnr(prediction: np.ndarray, target: np.ndarray, mask: np.ndarray | None = None) -> float:
    """PSNR in dB of (..., H, W, 3) uint8 images over all pixels or where mask (..., H, W).

    Pooled over every selected pixel of every frame; inf for identical images, nan for an
    empty mask.
    """
    if prediction.shape != target.shape:
        raise InputError(f"prediction shape {prediction.shape} != target shape {target.shape}")
    err = (prediction.astype(np.float64) - target.astype(np.float64)) ** 2
    if mask is not None:
        if mask.shape != prediction.shape[:-1]:
            raise InputError(f"mask shape {mask.shape} != image shape {prediction.shape[:-1]}")
        if not mask.any():
            return float("nan")
        err = err[mask]
    mse = float(err.mean())
    return float("inf") if mse == 0 else 10.0 * np.log10(255.0**2 / mse)


def ssim(prediction: np.ndarray, target: np.ndarray) -> float:
    """Mean SSIM of (..., H, W, 3) uint8 images (11x11 Gaussian window, sigma 1.5, on luma)."""
    if prediction.shape != target.shape:
        raise InputError(f"prediction shape {prediction.shape} != target shape {target.shape}")
    weights = torch.tensor([0.299, 0.587, 0.114], dtype=torch.float64)

    def luma(img: np.ndarray) -> torch.Tensor:
        return (torch.from_numpy(img.reshape(-1, *img.shape[-3:])).double() @ weights)[:, None]

    x, y = luma(prediction), luma(target)
    g = torch.exp(-0.5 * ((torch.arange(11, dtype=torch.float64) - 5) / 1.5) ** 2)
    g = (g / g.sum())
    kernel = (g[:, None] * g[None, :])[None, None]

    def blur(t: torch.Tensor) -> torch.Tensor:
        return F.conv2d(t, kernel)

    mu_x, mu_y = blur(x), blur(y)
    var_x = blur(x * x) - mu_x**2
    var_y = blur(y * y) - mu_y**2
    cov = blur(x * y) - mu_x * mu_y
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    num = (2 * mu_x * mu_y + c1) * (2 * cov + c2)
    den = (mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2)
    return float((num / den).mean())
