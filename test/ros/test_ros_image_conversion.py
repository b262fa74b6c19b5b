"""Image <-> numpy without cv_bridge: every encoding round-trips through rclpy and rosbags
messages, row padding, big-endian data, compressed jpeg/png, and loud errors."""
import array

import numpy as np
import pytest
from rosbags.typesys import Stores, get_typestore
from sensor_msgs.msg import CompressedImage, Image
from std_msgs.msg import Header

from egox_ros.errors import MessageError
from egox_ros.image_conversion import (ENCODINGS, compressed_to_numpy, depth_to_metres,
                                       image_to_mask, image_to_numpy, image_to_rgb,
                                       numpy_to_compressed, numpy_to_image)

TS = get_typestore(Stores.ROS2_KILTED)
BAG_IMAGE = TS.types["sensor_msgs/msg/Image"]
BAG_HEADER = TS.types["std_msgs/msg/Header"](
    stamp=TS.types["builtin_interfaces/msg/Time"](sec=1, nanosec=2), frame_id="f")


def _pixels(encoding, rng, h=5, w=7):
    dtype, channels = ENCODINGS[encoding]
    shape = (h, w) if channels == 1 else (h, w, channels)
    if dtype == np.float32:
        return rng.normal(size=shape).astype(np.float32)
    return rng.integers(0, np.iinfo(dtype).max, shape, dtype=dtype, endpoint=True)


@pytest.mark.parametrize("encoding", sorted(ENCODINGS))
@pytest.mark.parametrize("kind", ["rclpy", "rosbags"])
def test_every_encoding_round_trips(encoding, kind):
    rng = np.random.default_rng(0)
    pixels = _pixels(encoding, rng)
    if kind == "rclpy":
        msg = numpy_to_image(pixels, encoding, Header())
        assert isinstance(msg.data, array.array)
    else:
        msg = numpy_to_image(pixels, encoding, BAG_HEADER, msg_type=BAG_IMAGE)
        # and through CDR, as a bag stores it
        msg = TS.deserialize_cdr(TS.serialize_cdr(msg, msg.__msgtype__), msg.__msgtype__)
    assert (msg.height, msg.width, msg.encoding) == (5, 7, encoding)
    out = image_to_numpy(msg)
    assert out.dtype == pixels.dtype and out.shape == pixels.shape
    np.testing.assert_array_equal(out, pixels)


def test_rgb8_decode_is_a_zero_copy_view():
    rgb = np.arange(4 * 6 * 3, dtype=np.uint8).reshape(4, 6, 3)
    msg = numpy_to_image(rgb, "rgb8", Header())
    out = image_to_rgb(msg)
    assert np.shares_memory(out, np.frombuffer(msg.data, np.uint8))


@pytest.mark.parametrize("encoding,convert", [("bgr8", lambda p: p[..., ::-1]),
                                              ("rgba8", lambda p: p[..., :3]),
                                              ("bgra8", lambda p: p[..., 2::-1]),
                                              ("mono8", lambda p: np.repeat(p[..., None], 3, 2))])
def test_colour_encodings_decode_to_rgb(encoding, convert):
    pixels = _pixels(encoding, np.random.default_rng(1))
    out = image_to_rgb(numpy_to_image(pixels, encoding, Header()))
    np.testing.assert_array_equal(out, convert(pixels))


@pytest.mark.parametrize("encoding", ["rgb8", "mono8", "16UC1", "32FC1"])
def test_row_padding_step_is_skipped(encoding):
    pixels = _pixels(encoding, np.random.default_rng(2))
    dense = numpy_to_image(pixels, encoding, Header())
    pad = 12
    rows = np.frombuffer(dense.data, np.uint8).reshape(dense.height, dense.step)
    padded = np.concatenate([rows, np.full((dense.height, pad), 0xAB, np.uint8)], axis=1)
    msg = Image(height=dense.height, width=dense.width, encoding=encoding,
                step=dense.step + pad)
    msg.data = array.array("B", padded.tobytes())
    np.testing.assert_array_equal(image_to_numpy(msg), pixels)


@pytest.mark.parametrize("encoding", ["16UC1", "32FC1"])
def test_big_endian_data_is_byteswapped(encoding):
    pixels = _pixels(encoding, np.random.default_rng(3))
    big = pixels.astype(pixels.dtype.newbyteorder(">"))
    msg = Image(height=5, width=7, encoding=encoding, is_bigendian=1,
                step=7 * pixels.dtype.itemsize)
    msg.data = array.array("B", big.tobytes())
    out = image_to_numpy(msg)
    assert out.dtype.isnative
    np.testing.assert_array_equal(out, pixels)


def test_depth_units():
    mm = np.array([[0, 1000], [1500, 65535]], np.uint16)
    np.testing.assert_allclose(depth_to_metres(numpy_to_image(mm, "16UC1", Header())),
                               [[0.0, 1.0], [1.5, 65.535]], rtol=1e-6)
    m = np.array([[np.nan, 2.5]], np.float32)
    out = depth_to_metres(numpy_to_image(m, "32FC1", Header()))
    assert np.isnan(out[0, 0]) and out[0, 1] == 2.5
    with pytest.raises(MessageError, match="depth encoding 'rgb8'"):
        depth_to_metres(numpy_to_image(np.zeros((2, 2, 3), np.uint8), "rgb8", Header()))


def test_mask_decodes_to_bool():
    mask = np.array([[0, 255], [1, 0]], np.uint8)
    np.testing.assert_array_equal(image_to_mask(numpy_to_image(mask, "mono8", Header())),
                                  mask != 0)


@pytest.mark.parametrize("kind", ["rclpy", "rosbags"])
def test_compressed_png_is_lossless_and_jpeg_close(kind):
    msg_type = CompressedImage if kind == "rclpy" else TS.types["sensor_msgs/msg/CompressedImage"]
    header = Header() if kind == "rclpy" else BAG_HEADER
    rng = np.random.default_rng(4)
    rgb = rng.integers(0, 256, (16, 24, 3), dtype=np.uint8)
    png = numpy_to_compressed(rgb, header, fmt="png", msg_type=msg_type)
    assert "png" in png.format
    np.testing.assert_array_equal(compressed_to_numpy(png), rgb)
    smooth = np.broadcast_to(np.linspace(0, 255, 24, dtype=np.uint8)[None, :, None],
                             (16, 24, 3)).copy()
    jpeg = numpy_to_compressed(smooth, header, fmt="jpeg", quality=95, msg_type=msg_type)
    assert jpeg.format == "rgb8; jpeg compressed bgr8"
    assert np.abs(compressed_to_numpy(jpeg).astype(int) - smooth).mean() < 3
    depth = rng.integers(0, 65535, (8, 8), dtype=np.uint16)
    np.testing.assert_array_equal(
        compressed_to_numpy(numpy_to_compressed(depth, header, fmt="png", msg_type=msg_type)),
        depth)


def test_bad_messages_raise_with_a_cause():
    msg = numpy_to_image(np.zeros((4, 4, 3), np.uint8), "rgb8", Header())
    msg.encoding = "yuv422"
    with pytest.raises(MessageError, match="encoding 'yuv422' is not supported") as err:
        image_to_numpy(msg)
    assert err.value.cause == "unknown_encoding"
    msg = numpy_to_image(np.zeros((4, 4, 3), np.uint8), "rgb8", Header())
    msg.height = 5
    with pytest.raises(MessageError, match="step\\*height") as err:
        image_to_numpy(msg)
    assert err.value.cause == "size_mismatch"
    msg.height, msg.step = 4, 5
    with pytest.raises(MessageError, match="step 5 is smaller"):
        image_to_numpy(msg)
    bad = CompressedImage(format="jpeg")
    bad.data = array.array("B", b"not a jpeg")
    with pytest.raises(MessageError, match="could not decode") as err:
        compressed_to_numpy(bad)
    assert err.value.cause == "decode_failed"
    with pytest.raises(MessageError, match="compressedDepth"):
        compressed_to_numpy(CompressedImage(format="16UC1; compressedDepth png"))
