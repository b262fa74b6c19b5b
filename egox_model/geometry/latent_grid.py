"""Wan's latent grid: the VAE's strides, the transformer's patch, and the clip shapes they fit.

Wan 2.1's VAE compresses 4x in time (latent frame t <-> pixel frame 4t, so a clip has 4k+1
frames) and 8x in space; the transformer patchifies 1x2x2, so one token covers 16x16 pixels.
Defined once here; the token geometry, the conditioning and the start-up checks use it.
"""
from __future__ import annotations

from egox_model.errors import InputError

__all__ = ["PATCH", "PIXELS_PER_TOKEN", "VAE_SPACE", "VAE_TIME", "check_clip_shapes",
           "check_num_frames"]

VAE_TIME, VAE_SPACE, PATCH = 4, 8, 2
PIXELS_PER_TOKEN = VAE_SPACE * PATCH


def check_num_frames(num_frames: int) -> None:
    """Reject frame counts that are not 4k+1 (e.g. 49), naming the nearest shorter one."""
    if num_frames < 1 or (num_frames - 1) % VAE_TIME:
        raise InputError(f"clip has {num_frames} frames but Wan's VAE needs 4k+1 (e.g. 49); "
                         f"trim it to {max(1, (num_frames - 1) // VAE_TIME * VAE_TIME + 1)}")


def check_clip_shapes(num_frames: int, exo_hw: tuple[int, int], ego_hw: tuple[int, int]) -> None:
    """Reject clips Wan cannot take, naming the value and the fix (nothing is rounded).

    Frames must be 4k+1; heights and widths multiples of 16 (VAE 8 x patch 2); exo and ego
    heights equal (the two halves are concatenated along the width).
    """
    check_num_frames(num_frames)
    for name, (h, w) in (("exo", exo_hw), ("ego", ego_hw)):
        if h % PIXELS_PER_TOKEN or w % PIXELS_PER_TOKEN:
            raise InputError(f"{name} frames are {h}x{w} (HxW) but height and width have to be "
                             f"divisible by {PIXELS_PER_TOKEN}; resize or crop them (and their "
                             "intrinsics)")
    if exo_hw[0] != ego_hw[0]:
        raise InputError(f"exo height {exo_hw[0]} != ego height {ego_hw[0]}: the two halves "
                         "are concatenated side by side; use equal heights (448 by default)")
