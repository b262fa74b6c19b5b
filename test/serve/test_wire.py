"""The wire format, the token and the remote client's retry logic, without a server."""
import json
import struct

import cv2
import numpy as np
import pytest

from egox_model.clip import Clip
from egox_model.config import from_flat
from egox_model.errors import ConfigError, InputError
from egox_model.generator import GeneratorConfig, make_generator
from egox_model.generator.remote import RemoteConfig, RemoteGenerator
from egox_model.geometry.camera import Intrinsics
from egox_model.serve.auth import read_token, token_digest, token_matches
from egox_model.serve.errors import RemoteError, WireError
from egox_model.serve.wire import (decode_clip, decode_output, encode_clip, encode_output,
                                   quantize_depth, roundtrip_clip)


def random_clip(frames: int, exo_hw: tuple, ego_hw: tuple, seed: int = 0,
                depth: str = "metric") -> Clip:
    rng = np.random.default_rng(seed)
    h, w = exo_hw
    poses = np.tile(np.eye(4), (frames, 1, 1))
    poses[:, :3, 3] = rng.normal(size=(frames, 3))
    depth_m = rng.uniform(0.2, 70.0, (frames, h, w)).astype(np.float32)
    depth_m.flat[::7] = np.nan
    fields = ({"exo_depth_m": depth_m} if depth == "metric" else
              {"exo_depth_mono_m": depth_m,
               "exo_depth_video": rng.uniform(0, 3e-3, (frames, h, w)).astype(np.float32)})
    return Clip(exo_rgb=rng.integers(0, 256, (frames, h, w, 3), dtype=np.uint8),
                exo_K=Intrinsics(1.1 * w + 0.1, 0.9 * w, w / 2 - 0.3, h / 2 + 0.7, w, h),
                exo_c2w=poses, ego_K=Intrinsics(300.123456789, 301.0, 0.5, 1.5, *ego_hw[::-1]),
                ego_c2w=poses[::-1].copy(),
                stamps_ns=np.arange(frames, dtype=np.int64) * 33_333_333 + 2**62,
                dynamic_mask=rng.random((frames, h, w)) < 0.3, prompt="un robot \u00e9 \U0001f916",
                fps=29.97, **fields)


@pytest.mark.parametrize("frames,exo_hw,ego_hw", [
    (1, (1, 1), (1, 1)), (3, (5, 7), (4, 3)), (2, (48, 64), (32, 32))])
def test_clip_round_trip_is_exact_except_the_quantized_depth(frames, exo_hw, ego_hw):
    clip = random_clip(frames, exo_hw, ego_hw)
    back, options = decode_clip(encode_clip(clip, options={"return_prior": False}))
    assert options == {"return_prior": False}
    np.testing.assert_array_equal(back.exo_rgb, clip.exo_rgb)
    np.testing.assert_array_equal(back.dynamic_mask, clip.dynamic_mask)
    for name in ("exo_c2w", "ego_c2w", "stamps_ns"):                # bit-exact
        assert getattr(back, name).tobytes() == getattr(clip, name).tobytes()
    assert back.exo_K == clip.exo_K and back.ego_K == clip.ego_K
    assert (back.prompt, back.fps) == (clip.prompt, clip.fps)
    # Depth: nearest millimetre where 1 mm..65.535 m, 0 (invalid) elsewhere.
    src = clip.exo_depth_m.astype(np.float64)
    counts = np.round(src / 0.001)
    expect = np.where(np.isfinite(src) & (counts <= 65535), counts * 0.001, 0.0)
    np.testing.assert_array_equal(back.exo_depth_m, expect.astype(np.float32))
    valid = expect > 0
    assert (np.abs(back.exo_depth_m[valid] - src[valid]) <= 0.0005 + 1e-6).all()


def test_exo_rgb_travels_as_standard_rgb_png():
    clip = random_clip(1, (4, 5), (2, 2))
    data = encode_clip(clip)
    size = struct.unpack_from("<I", data, 6)[0]
    header = json.loads(data[10:10 + size])
    first = data[10 + size:10 + size + header["arrays"]["exo_rgb"]["lengths"][0]]
    bgr = cv2.imdecode(np.frombuffer(first, np.uint8), cv2.IMREAD_COLOR)
    np.testing.assert_array_equal(bgr[..., ::-1], clip.exo_rgb[0])   # any PNG reader agrees


def test_depth_quantization_counts_what_it_loses():
    counts, clipped = quantize_depth(np.array([0.0, -1.0, np.nan, np.inf, 0.0004, 0.0006,
                                               65.535, 65.5356, 1.23449]), 0.001)
    assert counts.tolist() == [0, 0, 0, 0, 0, 1, 65535, 0, 1234]
    assert clipped == 2                  # 0.4 mm rounds to the invalid 0; 65.5356 m too far
    fine = roundtrip_clip(random_clip(2, (6, 6), (4, 4)), depth_unit_m=0.0001)
    assert fine.exo_depth_m.max() <= 6.5535 + 1e-6                  # 0.1 mm: range 6.5 m


def test_video_depth_keeps_its_relative_precision():
    clip = random_clip(2, (8, 9), (4, 4), depth="fusion")
    back = roundtrip_clip(clip)
    video = clip.exo_depth_video
    step = video.max() / 65535
    assert np.abs(back.exo_depth_video - video).max() <= step / 2 * 1.0001
    assert back.exo_depth_mono_m is not None and back.exo_depth_m is None


def test_output_round_trip_and_without_prior(small_scene):
    clip = small_scene.to_clip()
    out = make_generator(GeneratorConfig()).generate(clip)
    back, extra = decode_output(encode_output(out, extra={"server_ms": 12.5}))
    assert extra == {"server_ms": 12.5} and back.backend == "prior"
    np.testing.assert_array_equal(back.ego_rgb, out.ego_rgb)
    np.testing.assert_array_equal(back.prior.rgb, out.prior.rgb)
    np.testing.assert_array_equal(back.prior.mask, out.prior.mask)
    np.testing.assert_array_equal(back.stamps_ns, clip.stamps_ns)
    assert np.abs(back.prior.depth_m - out.prior.depth_m).max() <= 0.0005 + 1e-6
    assert back.diagnostics == json.loads(json.dumps(out.diagnostics))
    assert back.ms_per_frame == out.ms_per_frame
    bare, _ = decode_output(encode_output(out, with_prior=False))
    assert bare.prior.rgb.shape == (clip.num_frames, 0, 0, 3)
    np.testing.assert_array_equal(bare.ego_rgb, out.ego_rgb)


def _patched(data: bytes, edit) -> bytes:
    size = struct.unpack_from("<I", data, 6)[0]
    header = json.loads(data[10:10 + size])
    edit(header)
    text = json.dumps(header).encode()
    return data[:6] + struct.pack("<I", len(text)) + text + data[10 + size:]


def test_malformed_messages_are_wire_errors():
    good = encode_clip(random_clip(2, (6, 8), (4, 4)))
    cases = {
        "shorter than": good[:5],
        "not an egox wire message": b"GET / HTTP/1.1\r\n" + good,
        "wire version": good[:4] + b"\x07" + good[5:],
        "expected a 'C' message": good[:5] + b"O" + good[6:],
        "truncated or padded": good[:-1],
        "truncated or padded ": good + b"\0",
        "header length": good[:6] + struct.pack("<I", 1 << 30) + good[10:],
        "does not fit encoding": _patched(good, lambda h: h["arrays"]["exo_rgb"].update(
            shape=[2, 6, 8, 4])),
        "the header says": _patched(good, lambda h: h["arrays"]["exo_rgb"].update(
            shape=[2, 6, 9, 3])),
        "limit": _patched(good, lambda h: h["arrays"]["exo_rgb"].update(
            shape=[2, 60000, 60000, 3])),
        "unknown encoding": _patched(good, lambda h: h["arrays"]["exo_rgb"].update(
            encoding="pickle")),
        "'lengths'": _patched(good, lambda h: h["arrays"]["exo_rgb"].update(lengths="x")),
        "no 'arrays' table": _patched(good, lambda h: h.pop("arrays")),
        "stamps_ns": _patched(good, lambda h: h.update(stamps_ns=[1.5, 2])),
        "beyond int64": _patched(good, lambda h: h.update(stamps_ns=[2**63, 0])),
        "cameras are malformed": _patched(good, lambda h: h["exo_K"].update(bogus=1)),
        "poses are malformed": _patched(good, lambda h: h["ego_c2w"][0].append([1.0])),
    }
    for match, data in cases.items():
        with pytest.raises(WireError, match=match.strip()):
            decode_clip(data)
    # Well-formed, but not a valid clip: InputError from Clip (the server answers 422).
    with pytest.raises(InputError, match="focal length") as info:
        decode_clip(_patched(good, lambda h: h["exo_K"].update(fx=0.0)))
    assert not isinstance(info.value, WireError)
    # A PNG part replaced by other bytes of the same length.
    size = struct.unpack_from("<I", good, 6)[0]
    start = 10 + size
    broken = good[:start] + b"x" * 30 + good[start + 30:]
    with pytest.raises(WireError, match="not a PNG"):
        decode_clip(broken)


def _with_frame(data: bytes, frame: np.ndarray) -> bytes:
    """The message with exo_rgb frame 0 replaced by the PNG of `frame` (lengths fixed)."""
    size = struct.unpack_from("<I", data, 6)[0]
    header = json.loads(data[10:10 + size])
    lengths = header["arrays"]["exo_rgb"]["lengths"]
    png = cv2.imencode(".png", frame)[1].tobytes()
    start = 10 + size
    rest = data[start + lengths[0]:]
    lengths[0] = len(png)
    text = json.dumps(header).encode()
    return data[:6] + struct.pack("<I", len(text)) + text + png + rest


@pytest.mark.parametrize("frame,kind", [
    (np.zeros((6, 8, 3), np.uint16), "16-bit RGB"), (np.zeros((6, 8, 4), np.uint8), "RGBA"),
    (np.zeros((6, 8), np.uint8), "grey")])
def test_rgb_frames_of_another_kind_are_rejected_not_converted(frame, kind):
    good = encode_clip(random_clip(2, (6, 8), (4, 4)))
    decode_clip(_with_frame(good, np.zeros((6, 8, 3), np.uint8)))       # the helper is sound
    with pytest.raises(WireError, match=r"frame 0 does not decode to a \(6, 8, 3\) uint8"):
        decode_clip(_with_frame(good, frame))


def test_token_checks(tmp_path, monkeypatch):
    digest = token_digest("s3cret")
    assert token_matches("Bearer s3cret", digest) and token_matches("bearer  s3cret ", digest)
    for header in (None, "", "Bearer", "Bearer wrong", "Basic s3cret", "s3cret"):
        assert not token_matches(header, digest)
    path = tmp_path / "token"
    path.write_text("from-file\n")
    monkeypatch.setenv("EGOX_T", " from-env ")
    assert read_token(str(path), "EGOX_T") == "from-file"
    assert read_token("", "EGOX_T") == "from-env" and read_token("", "EGOX_UNSET") == ""
    path.write_text("  \n")
    with pytest.raises(ConfigError, match="token_file.*empty"):
        read_token(str(path), "")
    with pytest.raises(ConfigError, match="cannot be read"):
        read_token(str(tmp_path / "missing"), "")


def test_remote_config_rejects_bad_urls():
    for url in ("127.0.0.1:8000", "ftp://host/", "http://"):
        with pytest.raises(ConfigError, match="remote.url"):
            from_flat(GeneratorConfig, {"remote.url": url})


def test_client_retries_with_backoff_then_gives_up(small_scene):
    waits, calls = [], []
    gen = RemoteGenerator(RemoteConfig(retries=3, backoff_s=0.5, backoff_max_s=1.0),
                          sleep=waits.append)

    def down(body):
        calls.append(len(body))
        raise RemoteError("server unreachable: ConnectionRefusedError", retryable=True)

    gen._post = down
    ticks = []
    with pytest.raises(RemoteError, match="gave up after 4 attempts"):
        gen.generate(small_scene.to_clip(), callback=lambda i, n: ticks.append((i, n)))
    assert len(calls) == 4 and gen.status()["server"] == "down"
    assert gen.status()["retries"] == 3 and gen.status()["clips_failed"] == 1
    assert sum(waits) == pytest.approx(0.5 + 1.0 + 1.0)     # doubled, capped
    assert ticks and set(ticks) == {(0, 1)}

    def refused(body):
        raise RemoteError("answered 401", status=401)

    gen._post = refused
    with pytest.raises(RemoteError, match="401"):
        gen.generate(small_scene.to_clip())
    assert gen.status()["server"] == "error" and gen.status()["requests"] == 5   # no retry


def test_a_node_that_publishes_the_prior_always_asks_for_it():
    from egox_ros.params import EgoxConfig

    config = from_flat(EgoxConfig, {"backend": "remote", "remote.return_prior": False})
    assert RemoteGenerator.from_config(config).config.return_prior is True
    quiet = from_flat(EgoxConfig, {"backend": "remote", "remote.return_prior": False,
                                   "publish_prior": False})
    assert RemoteGenerator.from_config(quiet).config.return_prior is False
    plain = from_flat(GeneratorConfig, {"backend": "remote", "remote.return_prior": False})
    assert RemoteGenerator.from_config(plain).config.return_prior is False
