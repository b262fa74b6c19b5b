"""Wan's latent grid: the VAE's strides, the transformer's patch, and the clip shapes they fit.

Wan 2.1's VAE compresses 4x in time (latent frame t <-> pixel frame 4t, so a clip has 4k+1
frames) and 8x in space; the transformer patchifies 1x2x2, so one token covers 16x16 pixels.
Defined once here; the token geometry, the conditioning and the start-up checks use it.
"""
from __future__ import annotations

from egox_model.errors import InputError

__all__ = ["PATCH", "PIXELS_PER_TOKEN", "VAE_SPACE", "VAE_TIME", "check_clip_shapes",
           "check_context_frames", "check_num_frames", "latent_frames"]

VAE_TIME, VAE_SPACE, PATCH = 4, 8, 2
PIXELS_PER_TOKEN = VAE_SPACE * PATCH


def check_num_frames(num_frames: int) -> None:
    """Reject frame counts that are not 4k+1 (e.g. 49), naming the nearest shorter one."""
    if num_frames < 1 or (num_frames - 1) % VAE_TIME:
        raise InputError(f"clip has {num_frames} frames but Wan's VAE needs 4k+1 (e.g. 49); "
                         f"trim it to {max(1, (num_frames - 1) // VAE_TIME * VAE_TIME + 1)}")


def latent_frames(num_frames: int) -> int:
    """Latent frames of 4k+1 pixel frames: k+1 (pixel frame 0 alone, then 4 per latent)."""
    return (num_frames - 1) // VAE_TIME + 1


def check_context_frames(num_context: int, num_frames: int) -> None:
    """Reject an overlap between consecutive clips that is not whole latent frames.

    The first 4m+1 pixel frames of a clip are exactly its first m+1 latent frames (frame 0
    alone, then 4 per latent frame), so only an overlap of 4m+1 frames (1, 5, 9, ...; with
    4k+1-frame clips, a clip stride that is a multiple of 4) can be held fixed in latent
    space; it must also leave at least one new frame.
    """
    if num_context < 1 or (num_context - 1) % VAE_TIME or num_context >= num_frames:
        strides = ", ".join(str(num_frames - o) for o in (1, 5, 9) if o < num_frames)
        raise InputError(f"clips of {num_frames} frames overlapping by {num_context}, but Wan "
                         "continues from whole latent frames: the overlap (clip_length - "
                         "clip_stride) must be 4m+1 = 1, 5, 9, ... frames, i.e. clip_stride a "
                         f"multiple of 4 (e.g. {strides or 'none fits'}), or no overlap")


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
