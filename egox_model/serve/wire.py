"""The egox wire format: a `Clip` to the server, a `GeneratorOutput` back. No pickle.

A message is a length-prefixed container::

    b"EGOX" | version (u8) | kind (u8: b"C" clip, b"O" output) | header length (u32 LE)
    | header (UTF-8 JSON) | part 0 | part 1 | ...

The JSON header holds every scalar (intrinsics, per-frame c2w poses as float64 lists, stamps
as integers, prompt, fps, backend diagnostics) and an `arrays` table: per array its
encoding, shape and the byte length of each frame's part, in the order the parts follow.
A clip that continues an earlier one (`Clip.context`, overlapping clips) sends its context
frames as the array `context_rgb`; their stamps are the clip's first ones.
Python's JSON writes floats with `repr`, so poses, intrinsics and stamps arrive bit-exact.

Encodings (one PNG per frame):
- `png_rgb`: (F, H, W, 3) uint8 RGB as 8-bit RGB PNG: lossless, so the server sees exactly
  the client's pixels and `prior` results come back pixel-identical.
- `png_mask`: (F, H, W) bool as 8-bit grey PNG of 0/1 (masks compress to almost nothing).
- `png_depth`: (F, H, W) float32 as 16-bit grey PNG of `round(value / unit)`, 0 = invalid.
  Metric depth uses `unit` = `depth_unit_m` (default 1 mm: range 0.001-65.535 m, error at
  most half a unit; invalid, non-finite, negative or farther values arrive as 0 = invalid,
  counted in the header as `clipped`). The affine-ambiguous video depth D_v uses
  unit = its clip maximum / 65535 (relative error <= 7.6e-6 of the maximum). The server
  decodes exactly `quantize_depth(x)`: a local run on the decoded clip is the reference
  (`roundtrip_clip`).
"""
from __future__ import annotations

import json
import os
import struct
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Iterable

import cv2
import numpy as np

from egox_model.clip import Clip, ClipContext
from egox_model.errors import InputError
from egox_model.geometry.camera import Intrinsics
from egox_model.output import GeneratorOutput
from egox_model.prior import EgoPrior
from egox_model.serve.errors import WireError

__all__ = ["CONTENT_TYPE", "MAX_DECODED_BYTES", "VERSION", "decode_clip", "decode_output",
           "encode_clip", "encode_output", "quantize_depth", "roundtrip_clip"]

MAGIC = b"EGOX"
VERSION = 1
CONTENT_TYPE = "application/x-egox"
_PREFIX = struct.Struct("<4sBcI")
#: Largest decoded size (all arrays of one message) a decoder accepts, bytes: PNG frames of a
#: single colour compress ~1000:1, so the body size limit alone does not bound memory.
MAX_DECODED_BYTES = 4 << 30
_MAX_HEADER = 16 << 20
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_DEPTHS = ("exo_depth_m", "exo_depth_mono_m", "exo_depth_video")
_POOL: ThreadPoolExecutor | None = None


def _pool() -> ThreadPoolExecutor:
    """Threads for PNG coding (OpenCV releases the GIL while it compresses)."""
    global _POOL
    if _POOL is None:
        _POOL = ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1),
                                   thread_name_prefix="egox-wire")
    return _POOL


# ---- arrays <-> PNG parts ------------------------------------------------------------------
def _png(image: np.ndarray, level: int) -> bytes:
    ok, data = cv2.imencode(".png", image, [cv2.IMWRITE_PNG_COMPRESSION, level])
    if not ok:
        raise WireError(f"PNG encoding failed for an image of shape {image.shape}")
    return data.tobytes()


def quantize_depth(depth: np.ndarray, unit: float) -> tuple[np.ndarray, int]:
    """(uint16 counts of `unit`, number of valid values lost): 0 = invalid; values that are
    not finite or <= 0 are invalid, valid ones that round to 0 or beyond 65535 units are
    lost (become 0) and counted."""
    depth = np.asarray(depth, dtype=np.float32)
    with np.errstate(invalid="ignore"):
        counts = np.round(depth.astype(np.float64) / unit)
        valid = np.isfinite(depth) & (depth > 0)
        keep = valid & (counts >= 1) & (counts <= 65535)
    clipped = int(np.count_nonzero(valid & ~keep))
    return np.where(keep, counts, 0).astype(np.uint16), clipped


def _encode_array(name: str, array: np.ndarray, level: int,
                  depth_unit_m: float) -> tuple[dict, list[bytes]]:
    """(table entry, one PNG part per frame) of one named array."""
    entry: dict[str, Any] = {"shape": list(array.shape)}
    if name.endswith("rgb"):
        entry["encoding"] = "png_rgb"
        frames = [cv2.cvtColor(np.ascontiguousarray(f), cv2.COLOR_RGB2BGR) for f in array]
    elif name.endswith("mask") or name.endswith("static"):
        entry["encoding"] = "png_mask"
        frames = list(np.asarray(array, dtype=np.uint8))
    else:
        entry["encoding"] = "png_depth"
        if name == "exo_depth_video":
            finite = array[np.isfinite(array)]
            top = float(finite.max()) if finite.size else 0.0
            unit = top / 65535 if top > 0 else 1.0
        else:
            unit = depth_unit_m
        counts, clipped = quantize_depth(array, unit)
        entry.update(unit=unit, clipped=clipped)
        frames = list(counts)
    parts = list(_pool().map(lambda f: _png(f, level), frames))
    entry["lengths"] = [len(p) for p in parts]
    return entry, parts


def _png_size(part: bytes, name: str) -> tuple[int, int]:
    """(height, width) from a PNG's IHDR, read before decoding anything."""
    if len(part) < 24 or part[:8] != _PNG_SIGNATURE or part[12:16] != b"IHDR":
        raise WireError(f"array {name!r}: a part is not a PNG image")
    width, height = struct.unpack(">II", part[16:24])
    return height, width


def _decode_array(name: str, entry: Any, parts: list[bytes]) -> np.ndarray:
    encoding, shape = entry.get("encoding"), entry.get("shape")
    channels = {"png_rgb": 3, "png_mask": 0, "png_depth": 0}.get(encoding)
    if channels is None:
        raise WireError(f"array {name!r}: unknown encoding {encoding!r}")
    want = 4 if channels else 3
    if not (isinstance(shape, list) and len(shape) == want
            and all(isinstance(s, int) and s >= 0 for s in shape)
            and (not channels or shape[3] == 3) and shape[0] == len(parts)):
        raise WireError(f"array {name!r}: shape {shape} does not fit encoding {encoding!r} "
                        f"with {len(parts)} parts")
    frame_hw = (shape[1], shape[2])
    for part in parts:
        if _png_size(part, name) != frame_hw:
            raise WireError(f"array {name!r}: a PNG part is {_png_size(part, name)}, the "
                            f"header says {frame_hw}")
    # Decoded as stored (no conversion), then checked: a 16-bit or RGBA "RGB" frame, or a
    # colour "mask", is an error rather than silently converted.
    frames = list(_pool().map(
        lambda p: cv2.imdecode(np.frombuffer(p, np.uint8), cv2.IMREAD_UNCHANGED), parts))
    dtype = np.uint16 if encoding == "png_depth" else np.uint8
    want_shape = frame_hw + ((3,) if channels else ())
    out = np.empty(shape, dtype=dtype)
    for i, frame in enumerate(frames):
        if frame is None or frame.shape != want_shape or frame.dtype != dtype:
            raise WireError(f"array {name!r}: frame {i} does not decode to a "
                            f"{want_shape} {np.dtype(dtype).name} image")
        out[i] = cv2.cvtColor(frame, cv2.COLOR_BGR2RGB) if channels else frame
    if encoding == "png_mask":
        return out.astype(bool)
    if encoding == "png_depth":
        unit = entry.get("unit")
        if not isinstance(unit, (int, float)) or not np.isfinite(unit) or unit <= 0:
            raise WireError(f"array {name!r}: depth unit must be a positive number, got "
                            f"{unit!r}")
        return (out.astype(np.float64) * unit).astype(np.float32)
    return out


# ---- the container -------------------------------------------------------------------------
def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return str(value)


def _pack(kind: bytes, header: dict, arrays: Iterable[tuple[str, np.ndarray]], *,
          level: int, depth_unit_m: float) -> bytes:
    table, blobs = {}, []
    for name, array in arrays:
        table[name], parts = _encode_array(name, array, level, depth_unit_m)
        blobs += parts
    header = {**header, "arrays": table}
    text = json.dumps(header, default=_json_default, allow_nan=False).encode()
    return b"".join([_PREFIX.pack(MAGIC, VERSION, kind, len(text)), text, *blobs])


def _unpack(data: bytes, kind: bytes, *, max_decoded_bytes: int
            ) -> tuple[dict, dict[str, np.ndarray]]:
    data = memoryview(data)
    if len(data) < _PREFIX.size:
        raise WireError(f"message of {len(data)} bytes is shorter than its "
                        f"{_PREFIX.size}-byte prefix")
    magic, version, got_kind, size = _PREFIX.unpack_from(data)
    if magic != MAGIC:
        raise WireError(f"not an egox wire message (starts with {bytes(magic)!r}, expected "
                        f"{MAGIC!r})")
    if version != VERSION:
        raise WireError(f"wire version {version}, this side speaks {VERSION}: update the "
                        "client or the server")
    if got_kind != kind:
        raise WireError(f"expected a {kind.decode()!r} message, got {got_kind!r}")
    if size > min(_MAX_HEADER, len(data) - _PREFIX.size):
        raise WireError(f"header length {size} exceeds the message ({len(data)} bytes)")
    try:
        header = json.loads(bytes(data[_PREFIX.size:_PREFIX.size + size]))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise WireError(f"header is not valid JSON: {err}") from None
    table = header.get("arrays") if isinstance(header, dict) else None
    if not isinstance(table, dict) or not all(isinstance(e, dict) for e in table.values()):
        raise WireError("header has no 'arrays' table")
    decoded = 0
    for name, entry in table.items():
        lengths, shape = entry.get("lengths"), entry.get("shape")
        if not (isinstance(lengths, list) and all(isinstance(n, int) and n > 0
                                                  for n in lengths)):
            raise WireError(f"array {name!r}: 'lengths' must be a list of positive integers")
        if not (isinstance(shape, list) and all(isinstance(s, int) and s >= 0
                                                for s in shape)):
            raise WireError(f"array {name!r}: 'shape' must be a list of integers >= 0")
        decoded += int(np.prod(shape, dtype=np.float64)) * 4
    if decoded > max_decoded_bytes:
        raise WireError(f"message would decode to {decoded / 1e6:.0f} MB, over the "
                        f"{max_decoded_bytes / 1e6:.0f} MB limit")
    offset = _PREFIX.size + size
    total = offset + sum(sum(e["lengths"]) for e in table.values())
    if total != len(data):
        raise WireError(f"parts add up to {total} bytes but the message has {len(data)} "
                        "(truncated or padded)")
    arrays = {}
    for name, entry in table.items():
        parts = []
        for length in entry["lengths"]:
            parts.append(bytes(data[offset:offset + length]))
            offset += length
        arrays[name] = _decode_array(name, entry, parts)
    return header, arrays


def _field(header: dict, name: str, kind: type | tuple) -> Any:
    value = header.get(name)
    if not isinstance(value, kind) or isinstance(value, bool) and kind is not bool:
        raise WireError(f"header field {name!r} is missing or not {kind}: {value!r}")
    return value


# ---- clips ---------------------------------------------------------------------------------
def _intrinsics(K: Intrinsics) -> dict:
    return {"fx": K.fx, "fy": K.fy, "cx": K.cx, "cy": K.cy, "width": K.width,
            "height": K.height}


def encode_clip(clip: Clip, *, png_level: int = 1, depth_unit_m: float = 0.001,
                options: dict | None = None) -> bytes:
    """The wire message of `clip`. `png_level` 0-9 trades CPU for bytes; `depth_unit_m` is
    the metric depth quantum; `options` travel in the header (e.g. `return_prior`)."""
    if not (0 < depth_unit_m <= 1 and np.isfinite(depth_unit_m)):
        raise InputError(f"depth_unit_m must be in (0, 1] metres, got {depth_unit_m}")
    header = {"exo_K": _intrinsics(clip.exo_K), "ego_K": _intrinsics(clip.ego_K),
              "exo_c2w": clip.exo_c2w.tolist(), "ego_c2w": clip.ego_c2w.tolist(),
              "stamps_ns": None if clip.stamps_ns is None else clip.stamps_ns.tolist(),
              "prompt": clip.prompt, "fps": float(clip.fps), "options": options or {}}
    arrays = [("exo_rgb", clip.exo_rgb)]
    arrays += [(name, getattr(clip, name)) for name in _DEPTHS
               if getattr(clip, name) is not None]
    if clip.dynamic_mask is not None:
        arrays.append(("dynamic_mask", clip.dynamic_mask))
    if clip.context is not None:        # its stamps are the clip's first ones
        arrays.append(("context_rgb", clip.context.ego_rgb))
    return _pack(b"C", header, arrays, level=png_level, depth_unit_m=depth_unit_m)


def decode_clip(data: bytes, *, max_decoded_bytes: int = MAX_DECODED_BYTES
                ) -> tuple[Clip, dict]:
    """(the clip, the request options) from a wire message. WireError for a malformed
    message; InputError (from `Clip`) for a well-formed one that is not a valid clip."""
    header, arrays = _unpack(data, b"C", max_decoded_bytes=max_decoded_bytes)
    unknown = set(arrays) - {"exo_rgb", "dynamic_mask", "context_rgb", *_DEPTHS}
    if unknown or "exo_rgb" not in arrays:
        raise WireError(f"a clip has arrays exo_rgb, {', '.join(_DEPTHS)}, dynamic_mask, "
                        f"context_rgb; got {sorted(arrays)}")
    try:                       # an invalid camera (fx <= 0, ...) is Intrinsics' InputError
        cameras = {name: Intrinsics(**_field(header, name, dict)) for name in
                   ("exo_K", "ego_K")}
    except TypeError as err:
        raise WireError(f"header cameras are malformed: {err}") from None
    try:
        poses = {name: np.asarray(_field(header, name, list), dtype=np.float64)
                 for name in ("exo_c2w", "ego_c2w")}
    except (TypeError, ValueError) as err:
        raise WireError(f"header poses are malformed: {err}") from None
    stamps = header.get("stamps_ns")
    if stamps is not None and not (isinstance(stamps, list)
                                   and all(type(s) is int for s in stamps)):
        raise WireError("header field 'stamps_ns' must be null or a list of integers")
    options = header.get("options", {})
    if not isinstance(options, dict):
        raise WireError(f"header field 'options' must be an object, got {options!r}")
    try:
        stamps = None if stamps is None else np.asarray(stamps, dtype=np.int64)
    except OverflowError:
        raise WireError("header field 'stamps_ns' holds integers beyond int64") from None
    context = arrays.get("context_rgb")
    if context is not None:
        if stamps is None:
            raise WireError("a clip with context_rgb needs stamps_ns (the context's stamps are "
                            "the clip's first ones)")
        context = ClipContext(context, stamps[:len(context)])
    clip = Clip(exo_rgb=arrays["exo_rgb"], exo_K=cameras["exo_K"], exo_c2w=poses["exo_c2w"],
                ego_K=cameras["ego_K"], ego_c2w=poses["ego_c2w"], stamps_ns=stamps,
                prompt=_field(header, "prompt", str),
                fps=float(_field(header, "fps", (int, float))),
                dynamic_mask=arrays.get("dynamic_mask"), context=context,
                **{name: arrays.get(name) for name in _DEPTHS})
    return clip, options


def roundtrip_clip(clip: Clip, *, depth_unit_m: float = 0.001) -> Clip:
    """The clip exactly as a server decodes it (depth quantized): the local reference for
    a remote result."""
    return decode_clip(encode_clip(clip, png_level=0, depth_unit_m=depth_unit_m))[0]


# ---- outputs -------------------------------------------------------------------------------
def encode_output(output: GeneratorOutput, *, with_prior: bool = True, png_level: int = 1,
                  depth_unit_m: float = 0.001, extra: dict | None = None) -> bytes:
    """The wire message of a generator result: ego frames, stamps, timings, diagnostics and
    (`with_prior`) the prior's frames, coverage mask and ego depth."""
    stamps = output.stamps_ns
    header = {"backend": output.backend, "ms_per_frame": output.ms_per_frame,
              "diagnostics": output.diagnostics,
              "stamps_ns": None if stamps is None else np.asarray(stamps).tolist(),
              "prior_fusion": output.prior.fusion,
              "prior_ms_per_frame": output.prior.ms_per_frame, "extra": extra or {}}
    arrays = [("ego_rgb", output.ego_rgb)]
    if with_prior:
        arrays += [("prior_rgb", output.prior.rgb), ("prior_mask", output.prior.mask),
                   ("prior_depth_m", output.prior.depth_m)]
    return _pack(b"O", header, arrays, level=png_level, depth_unit_m=depth_unit_m)


def decode_output(data: bytes, *, max_decoded_bytes: int = MAX_DECODED_BYTES
                  ) -> tuple[GeneratorOutput, dict]:
    """(the generator output, the header's `extra`) from a wire message.

    Without the prior in the message, `prior.rgb`/`mask`/`depth_m` have shape (F, 0, 0[, 3]);
    `prior.exo_depth_m` and `prior.exo_static` never travel (shape (F, 0, 0)): the client
    has the exo depth it sent."""
    header, arrays = _unpack(data, b"O", max_decoded_bytes=max_decoded_bytes)
    if "ego_rgb" not in arrays:
        raise WireError("an output message needs the array 'ego_rgb'")
    ego = arrays["ego_rgb"]
    frames = len(ego)
    empty = np.zeros((frames, 0, 0), dtype=np.float32)
    prior = EgoPrior(rgb=arrays.get("prior_rgb", np.zeros((frames, 0, 0, 3), np.uint8)),
                     depth_m=arrays.get("prior_depth_m", empty),
                     mask=arrays.get("prior_mask", empty.astype(bool)),
                     exo_depth_m=empty, exo_static=empty.astype(bool),
                     fusion=header.get("prior_fusion") or {},
                     ms_per_frame=header.get("prior_ms_per_frame") or {})
    stamps = header.get("stamps_ns")
    output = GeneratorOutput(
        ego_rgb=ego, prior=prior, backend=_field(header, "backend", str),
        stamps_ns=None if stamps is None else np.asarray(stamps, dtype=np.int64),
        ms_per_frame=header.get("ms_per_frame") or {},
        diagnostics=header.get("diagnostics") or {})
    return output, header.get("extra") or {}
