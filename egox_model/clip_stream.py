"""`ClipStream`: consecutive, possibly overlapping clips of one video stream turned into one
seamless output stream.

Clips that overlap (clip_stride < clip_length) share frames with the clip before them. Each
frame is output once, by the first clip that made it; the next clip outputs only its new
frames and carries the earlier clip's output of the shared frames as its `ClipContext`, so a
diffusion backend continues from it instead of starting afresh (a seam; backend `wan`:
`wan.conditioning.previous_output`). The prior backend ignores the context: for it an
overlap only means the shared frames are output once, from the earlier clip.
Overlap is found by stamps, so a clip that was dropped or failed in between (or a restarted
stream) simply means less or no overlap. ROS-free: the node, `egox convert`, `egox generate`
and `egox eval seams` share it.
"""
from __future__ import annotations

import dataclasses

import numpy as np

from egox_model.clip import Clip, ClipContext
from egox_model.errors import InputError
from egox_model.generator.base import Generator
from egox_model.output import GeneratorOutput

__all__ = ["ClipStream", "clip_starts", "generate_clips", "generate_stream",
           "stitch_outputs"]


class ClipStream:
    """The last output of the stream and what it means for the next clip.

    Per clip: `with_context(clip)` before generating (a copy carrying the context; the clip
    itself when there is none), then `record(clip, output)`, which returns the index of the
    clip's first frame not output yet. `keep`: how many last ego frames of an output are kept
    for the next clip's context (the overlap, clip_length - clip_stride; None = all), so no
    more of a clip outlives it.
    """

    def __init__(self, keep: int | None = None) -> None:
        self.keep = keep
        self._stamps: np.ndarray | None = None      # (F,) stamps of the last recorded output
        self._ego_rgb: np.ndarray | None = None     # (<= keep, h, w, 3) its last ego frames

    def overlap(self, clip: Clip) -> int:
        """How many of `clip`'s first frames the last recorded output already holds (its
        last frames, stamp for stamp); 0 without stamps."""
        if self._stamps is None or clip.stamps_ns is None:
            return 0
        hits = np.flatnonzero(self._stamps == clip.stamps_ns[0])
        if len(hits) == 0:
            return 0
        k = len(self._stamps) - int(hits[0])
        if k >= clip.num_frames or not np.array_equal(self._stamps[-k:], clip.stamps_ns[:k]):
            return 0
        return k

    def with_context(self, clip: Clip) -> Clip:
        """`clip` with the last output of its shared frames as context, or `clip` itself when
        it shares none."""
        k = self.overlap(clip)
        if k == 0 or k > len(self._ego_rgb):
            return clip
        context = ClipContext(ego_rgb=self._ego_rgb[-k:], stamps_ns=self._stamps[-k:])
        return dataclasses.replace(clip, context=context)

    def record(self, clip: Clip, output: GeneratorOutput) -> int:
        """Remember `output` for the next clip; returns the index of `clip`'s first new frame
        (frames before it were output by the clip before)."""
        start = self.overlap(clip)
        if clip.stamps_ns is not None:
            ego = np.asarray(output.ego_rgb)
            kept = len(ego) if self.keep is None else min(self.keep, len(ego))
            self._stamps, self._ego_rgb = clip.stamps_ns, ego[len(ego) - kept:].copy()
        return start


def stitch_outputs(outputs: list[tuple[int, GeneratorOutput]]) -> GeneratorOutput:
    """One output of a long stream from (first new frame, output) per clip: the new frames
    of each, in order; per-frame timings averaged over the clips; the diagnostics of the
    last clip plus `clips` and `clip_starts` (index of each clip's first output frame)."""
    if not outputs:
        raise ValueError("stitch_outputs needs at least one clip's output")

    def cat(get) -> np.ndarray | None:
        parts = [get(out) for _, out in outputs]
        if any(p is None for p in parts):
            return None
        return np.concatenate([p[start:] for (start, _), p in zip(outputs, parts)])

    last = outputs[-1][1]
    prior = dataclasses.replace(
        last.prior, **{name: cat(lambda out, n=name: getattr(out.prior, n))
                       for name in ("rgb", "depth_m", "mask", "exo_depth_m", "exo_static")})
    starts = np.cumsum([0] + [len(out.ego_rgb) - start for start, out in outputs[:-1]])
    timings = {key: float(np.mean([out.ms_per_frame.get(key, 0.0) for _, out in outputs]))
               for key in last.ms_per_frame}
    return GeneratorOutput(ego_rgb=cat(lambda out: out.ego_rgb), prior=prior,
                           backend=last.backend, stamps_ns=cat(lambda out: out.stamps_ns),
                           ms_per_frame=timings,
                           diagnostics={**last.diagnostics, "clips": len(outputs),
                                        "clip_starts": [int(s) for s in starts]})


def clip_starts(num_frames: int, length: int, stride: int) -> list[int]:
    """First frame of every whole clip of `length` frames, one every `stride` frames, in a
    video of `num_frames` (frames after the last whole clip are left out, as the node does)."""
    if not 1 <= stride <= length:
        raise InputError(f"clip stride {stride} must be in [1, clip length {length}] (a larger "
                         "stride would skip frames)")
    return list(range(0, num_frames - length + 1, stride))


def generate_clips(generator: Generator, clip: Clip, length: int, stride: int
                   ) -> list[tuple[Clip, int, GeneratorOutput]]:
    """Generate a long `clip` as clips of `length` frames every `stride` frames, each with
    the output of the frames it shares with the one before as context: per clip (the clip
    as generated, index of its first new frame, its output)."""
    starts = clip_starts(clip.num_frames, length, stride)
    if not starts:
        raise InputError(f"the video has {clip.num_frames} frames, fewer than one clip of "
                         f"{length}")
    stream, done = ClipStream(keep=length - stride), []
    for first in starts:
        window = stream.with_context(clip.window(first, first + length))
        output = generator.generate(window)
        done.append((window, stream.record(window, output), output))
    return done


def generate_stream(generator: Generator, clip: Clip, length: int, stride: int
                    ) -> tuple[GeneratorOutput, list[int]]:
    """`generate_clips` stitched: the output of the long clip, each frame once, and the
    index of each clip's first output frame in it."""
    done = generate_clips(generator, clip, length, stride)
    stitched = stitch_outputs([(start, output) for _, start, output in done])
    return stitched, stitched.diagnostics["clip_starts"]
