"""sensor_msgs/Image and CompressedImage <-> numpy, without cv_bridge.

Works on messages from rclpy (`data` is an `array.array`) and from rosbags (`data` is a numpy
uint8 array) alike: decoding only reads `height`, `width`, `encoding`, `is_bigendian`, `step`,
`data` (or `format`, `data`). Decoding is zero-copy where the bytes allow it: the returned array
is a view into `msg.data` (row padding is skipped with strides); only big-endian multi-byte
data, colour reordering and unit conversion copy.

Encodings: rgb8, bgr8, rgba8, bgra8, mono8 (alias 8UC1), 16UC1 (alias mono16), 32FC1, and
compressed jpeg / png (the `format` strings image_transport writes, e.g. "rgb8; jpeg compressed
bgr8", or plain "jpeg" / "png").
"""
from __future__ import annotations

import array
import sys
from typing import Any

import cv2
import numpy as np

from egox_ros.errors import MessageError

__all__ = [
    "ENCODINGS",
    "compressed_to_numpy",
    "depth_to_metres",
    "image_to_mask",
    "image_to_numpy",
    "image_to_rgb",
    "numpy_to_compressed",
    "numpy_to_image",
]

#: encoding -> (numpy dtype, channels)
ENCODINGS: dict[str, tuple[np.dtype, int]] = {
    "rgb8": (np.dtype(np.uint8), 3),
    "bgr8": (np.dtype(np.uint8), 3),
    "rgba8": (np.dtype(np.uint8), 4),
    "bgra8": (np.dtype(np.uint8), 4),
    "mono8": (np.dtype(np.uint8), 1),
    "8UC1": (np.dtype(np.uint8), 1),
    "16UC1": (np.dtype(np.uint16), 1),
    "mono16": (np.dtype(np.uint16), 1),
    "32FC1": (np.dtype(np.float32), 1),
}

_HOST_BIG_ENDIAN = sys.byteorder == "big"


def image_to_numpy(msg: Any) -> np.ndarray:
    """Decode a sensor_msgs/Image to (H, W, C) or, for one channel, (H, W) in its own dtype.

    A view into msg.data (no copy) unless the data is big-endian multi-byte. Raises
    MessageError with cause "unknown_encoding" or "size_mismatch".
    """
    encoding = str(msg.encoding)
    if encoding not in ENCODINGS:
        raise MessageError("unknown_encoding",
                           f"image encoding {encoding!r} is not supported; use one of "
                           f"{sorted(ENCODINGS)}")
    dtype, channels = ENCODINGS[encoding]
    height, width, step = int(msg.height), int(msg.width), int(msg.step)
    row_bytes = width * channels * dtype.itemsize
    if height <= 0 or width <= 0:
        raise MessageError("size_mismatch", f"image is {width}x{height}: width and height "
                                            "must be positive")
    if step < row_bytes:
        raise MessageError("size_mismatch",
                           f"image step {step} is smaller than width*bytes per pixel = "
                           f"{row_bytes} for a {width}x{height} {encoding} image")
    buf = np.frombuffer(msg.data, dtype=np.uint8)
    if buf.size < step * height:
        raise MessageError("size_mismatch",
                           f"image data has {buf.size} bytes but step*height = "
                           f"{step}*{height} = {step * height} ({width}x{height} {encoding})")
    rows = buf[: step * height].reshape(height, step)[:, :row_bytes]
    big = bool(msg.is_bigendian)
    if dtype.itemsize > 1 and big != _HOST_BIG_ENDIAN:
        pixels = rows.view(dtype.newbyteorder()).astype(dtype)
    else:
        pixels = rows.view(dtype)
    return pixels.reshape(height, width, channels) if channels > 1 else pixels


def image_to_rgb(msg: Any) -> np.ndarray:
    """Decode a colour or mono8 image to (H, W, 3) uint8 RGB (a view for rgb8)."""
    pixels = image_to_numpy(msg)
    encoding = str(msg.encoding)
    if encoding == "rgb8":
        return pixels
    if encoding == "bgr8":
        return cv2.cvtColor(np.ascontiguousarray(pixels), cv2.COLOR_BGR2RGB)
    if encoding == "rgba8":
        return cv2.cvtColor(np.ascontiguousarray(pixels), cv2.COLOR_RGBA2RGB)
    if encoding == "bgra8":
        return cv2.cvtColor(np.ascontiguousarray(pixels), cv2.COLOR_BGRA2RGB)
    if encoding in ("mono8", "8UC1"):
        return cv2.cvtColor(np.ascontiguousarray(pixels), cv2.COLOR_GRAY2RGB)
    raise MessageError("unknown_encoding",
                       f"image encoding {encoding!r} is not a colour encoding; the exo image "
                       "must be rgb8, bgr8, rgba8, bgra8 or mono8")


def depth_to_metres(msg: Any) -> np.ndarray:
    """Decode a depth image to (H, W) float32 metres: 16UC1 in millimetres, 32FC1 in metres.

    0 and NaN mark invalid pixels and are kept as they are.
    """
    pixels = image_to_numpy(msg)
    encoding = str(msg.encoding)
    if encoding in ("16UC1", "mono16"):
        return pixels.astype(np.float32) * np.float32(0.001)
    if encoding == "32FC1":
        return pixels
    raise MessageError("unknown_encoding",
                       f"depth encoding {encoding!r} is not supported; publish 16UC1 "
                       "(millimetres) or 32FC1 (metres)")


def image_to_mask(msg: Any) -> np.ndarray:
    """Decode a mono8 / 8UC1 mask to (H, W) bool (non-zero = dynamic object)."""
    if str(msg.encoding) not in ("mono8", "8UC1"):
        raise MessageError("unknown_encoding",
                           f"mask encoding {msg.encoding!r} is not supported; publish mono8")
    return image_to_numpy(msg) != 0


def compressed_to_numpy(msg: Any) -> np.ndarray:
    """Decode a sensor_msgs/CompressedImage (jpeg or png).

    Colour images come back as (H, W, 3) uint8 RGB, grey ones as (H, W) uint8 or uint16.
    Raises MessageError with cause "unknown_encoding" or "decode_failed".
    """
    fmt = str(msg.format).lower()
    if "compresseddepth" in fmt:
        raise MessageError("unknown_encoding",
                           f"compressed format {msg.format!r} (compressedDepth) is not "
                           "supported; publish the raw 16UC1/32FC1 depth image")
    if "jpeg" not in fmt and "jpg" not in fmt and "png" not in fmt:
        raise MessageError("unknown_encoding",
                           f"compressed format {msg.format!r} is not supported; use jpeg or png")
    data = np.frombuffer(msg.data, dtype=np.uint8)
    image = cv2.imdecode(data, cv2.IMREAD_UNCHANGED) if data.size else None
    if image is None:
        raise MessageError("decode_failed",
                           f"could not decode {data.size} bytes as {msg.format!r}")
    if image.ndim == 3 and image.shape[2] == 3:
        return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
    if image.ndim == 3 and image.shape[2] == 4:
        return cv2.cvtColor(image, cv2.COLOR_BGRA2RGB)
    return image


def numpy_to_image(pixels: np.ndarray, encoding: str, header: Any, *,
                   msg_type: Any = None) -> Any:
    """Build a sensor_msgs/Image from (H, W[, C]) pixels already in `encoding`'s layout.

    `msg_type` is the Image class to build: rclpy's `sensor_msgs.msg.Image` (default) or a
    rosbags typestore class (anything with `__msgtype__`). Data is packed without row padding,
    little-endian. One copy of the pixels.
    """
    if encoding not in ENCODINGS:
        raise MessageError("unknown_encoding",
                           f"encoding {encoding!r} is not supported; use one of "
                           f"{sorted(ENCODINGS)}")
    dtype, channels = ENCODINGS[encoding]
    pixels = np.asarray(pixels)
    expected = 2 if channels == 1 else 3
    if pixels.ndim != expected or (channels > 1 and pixels.shape[2] != channels):
        want = "(H, W)" if channels == 1 else f"(H, W, {channels})"
        raise MessageError("size_mismatch",
                           f"{encoding} needs an array of shape {want}, got {pixels.shape}")
    if pixels.dtype != dtype:
        raise MessageError("size_mismatch",
                           f"{encoding} needs dtype {dtype}, got {pixels.dtype}")
    pixels = np.ascontiguousarray(pixels, dtype=dtype.newbyteorder("<"))
    height, width = pixels.shape[:2]
    step = width * channels * dtype.itemsize
    if msg_type is None:
        from sensor_msgs.msg import Image as msg_type  # noqa: N813 (rclpy only when needed)
    if hasattr(msg_type, "__msgtype__"):
        return msg_type(header=header, height=height, width=width, encoding=encoding,
                        is_bigendian=0, step=step,
                        data=pixels.reshape(-1).view(np.uint8).copy())
    msg = msg_type()
    msg.header = header
    msg.height, msg.width, msg.encoding = height, width, encoding
    msg.is_bigendian, msg.step = 0, step
    data = array.array("B")
    data.frombytes(pixels.reshape(-1).view(np.uint8))
    msg.data = data
    return msg


def numpy_to_compressed(pixels: np.ndarray, header: Any, *, fmt: str = "jpeg",
                        quality: int = 90, msg_type: Any = None) -> Any:
    """Build a sensor_msgs/CompressedImage from (H, W, 3) RGB or (H, W) grey pixels.

    fmt is "jpeg" or "png"; the `format` field follows image_transport ("rgb8; jpeg
    compressed bgr8"). `msg_type` as in `numpy_to_image`.
    """
    if fmt not in ("jpeg", "png"):
        raise MessageError("unknown_encoding", f"fmt must be 'jpeg' or 'png', got {fmt!r}")
    pixels = np.asarray(pixels)
    colour = pixels.ndim == 3
    bgr = cv2.cvtColor(pixels, cv2.COLOR_RGB2BGR) if colour else pixels
    params = [cv2.IMWRITE_JPEG_QUALITY, int(quality)] if fmt == "jpeg" else []
    ok, encoded = cv2.imencode(".jpg" if fmt == "jpeg" else ".png", bgr, params)
    if not ok:
        raise MessageError("encode_failed", f"OpenCV could not encode a {pixels.shape} "
                                            f"{pixels.dtype} image as {fmt}")
    source = "rgb8" if colour else ("mono16" if pixels.dtype == np.uint16 else "mono8")
    format_field = f"{source}; {fmt} compressed {'bgr8' if colour else source}"
    if msg_type is None:
        from sensor_msgs.msg import CompressedImage as msg_type  # noqa: N813
    if hasattr(msg_type, "__msgtype__"):
        return msg_type(header=header, format=format_field, data=encoded.reshape(-1))
    msg = msg_type()
    msg.header = header
    msg.format = format_field
    data = array.array("B")
    data.frombytes(encoded.reshape(-1))
    msg.data = data
    return msg
