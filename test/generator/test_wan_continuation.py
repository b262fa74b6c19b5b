"""Long episodes without seams on the tiny random-weight Wan model: the overlap of two clips.

Clip B shares its first 5 frames (2 latent frames) with clip A. With continuation B's output
of those frames is exactly the VAE round trip of A's output of them (the context latents are
held fixed, and Wan's VAE is causal in time); without it they are sampled afresh.
"""
from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from egox_model.clip import ClipContext
from egox_model.clip_stream import ClipStream
from egox_model.errors import ConfigError, InputError
from egox_model.generator.wan import ConditioningOptions, WanConfig, WanGenerator
from egox_model.generator.wan.conditioning import (decode_latents, encode_video,
                                                   frames_to_video_tensor,
                                                   video_tensor_to_frames)
from egox_model.generator.wan.tiny import save_tiny_model_dir, tiny_clip

LENGTH, STRIDE, OVERLAP = 9, 4, 5


@pytest.fixture(scope="module")
def generator(tmp_path_factory):
    model_dir = save_tiny_model_dir(tmp_path_factory.mktemp("wan") / "model")
    return WanGenerator(WanConfig(model_dir=str(model_dir), dtype="float32", device="cpu",
                                  num_inference_steps=3, progress=False))


def without_continuation(generator: WanGenerator) -> WanGenerator:
    """The same loaded pipeline with conditioning.previous_output off."""
    config = dataclasses.replace(generator.config, conditioning=ConditioningOptions(
        previous_output=False))
    return WanGenerator(config, generator.prior_config, pipe=generator.pipe)


def round_trip(generator: WanGenerator, frames: np.ndarray) -> np.ndarray:
    """VAE decode(encode(frames)) as uint8, the way the pipeline encodes and decodes."""
    vae = generator.pipe.vae
    latents = encode_video(vae, frames_to_video_tensor(frames), torch.device("cpu"))
    return video_tensor_to_frames(decode_latents(vae, latents, torch.device("cpu")))


@pytest.fixture(scope="module")
def two_clips(generator):
    """Clip A (frames 0-8) generated, clip B (frames 4-12) with A's output as context."""
    episode = tiny_clip(frames=LENGTH + STRIDE)
    clip_a, clip_b = episode.window(0, LENGTH), episode.window(STRIDE, LENGTH + STRIDE)
    stream = ClipStream()
    out_a = generator.generate(stream.with_context(clip_a))
    assert stream.record(clip_a, out_a) == 0
    clip_b = stream.with_context(clip_b)
    return out_a, clip_b


@pytest.mark.parametrize("continuation", [True, False])
def test_two_overlapping_clips_are_continuous_at_the_seam(generator, two_clips, continuation):
    out_a, clip_b = two_clips
    assert clip_b.context.num_frames == OVERLAP
    np.testing.assert_array_equal(clip_b.context.ego_rgb, out_a.ego_rgb[STRIDE:])
    gen = generator if continuation else without_continuation(generator)
    out_b = gen.generate(clip_b)
    assert out_b.diagnostics["context_frames"] == (OVERLAP if continuation else 0)
    shared_a, shared_b = out_a.ego_rgb[STRIDE:].astype(int), out_b.ego_rgb[:OVERLAP].astype(int)
    expected = round_trip(generator, out_a.ego_rgb[STRIDE:]).astype(int)
    if continuation:
        # B's shared frames are A's up to the VAE round trip, and nothing more.
        assert np.abs(shared_b - expected).max() <= 1
        assert np.abs(shared_b - shared_a).mean() <= np.abs(expected - shared_a).mean() + 0.5
    else:
        assert np.abs(shared_b - expected).mean() > 2.0
    # The new frames were sampled (they differ from the context-free result only if it is on).
    assert out_b.ego_rgb[OVERLAP:].std() > 0


def test_context_latents_follow_the_noise_level_and_end_clean(generator, two_clips):
    _, clip_b = two_clips
    seen = []
    pipe = generator.pipe

    def record(pipe_, i, t, tensors):
        seen.append(tensors["latents"][:, :, :2, :, 6:].clone())   # ego half, 2 latent frames

    prior = np.zeros((LENGTH, 32, 32, 3), np.uint8)
    out = pipe(clip_b.exo_rgb, prior, num_inference_steps=3,
               generator=torch.Generator().manual_seed(0), context_frames=clip_b.context.ego_rgb,
               callback_on_step_end=record)
    context = encode_video(pipe.vae, frames_to_video_tensor(clip_b.context.ego_rgb),
                           torch.device("cpu"))
    # Before the last step they move with the sampler; the decoded latents hold them exactly.
    assert not torch.allclose(seen[0], context, atol=1e-3)
    torch.testing.assert_close(out.latents[:, :, :2], context)


def test_clip_image_prior_shows_the_first_context_frame(generator, two_clips, monkeypatch):
    _, clip_b = two_clips
    seen = []
    pipe = generator.pipe
    monkeypatch.setattr(pipe, "encode_image", lambda image: seen.append(image))
    prior = np.zeros((LENGTH, 32, 32, 3), np.uint8)
    pipe(clip_b.exo_rgb, prior, num_inference_steps=1, context_frames=clip_b.context.ego_rgb,
         options=ConditioningOptions(clip_image="prior"))
    np.testing.assert_array_equal(seen[0], np.concatenate([clip_b.exo_rgb[0],
                                                           clip_b.context.ego_rgb[0]], axis=1))


@pytest.mark.parametrize("frames", [2, 4, 9])
def test_context_that_is_not_whole_latent_frames_is_rejected(generator, frames):
    clip = tiny_clip(frames=LENGTH)
    clip.context = ClipContext(np.zeros((frames, 32, 32, 3), np.uint8), clip.stamps_ns[:frames])
    with pytest.raises(InputError, match=r"overlap \(clip_length - clip_stride\) must be 4m\+1"):
        generator.pipe(clip.exo_rgb, np.zeros((LENGTH, 32, 32, 3), np.uint8),
                       num_inference_steps=1, context_frames=clip.context.ego_rgb)


def test_bad_clip_context_is_rejected_by_the_clip():
    clip = tiny_clip(frames=5)
    with pytest.raises(InputError, match="context stamps are not the clip's first stamps"):
        dataclasses.replace(clip, context=ClipContext(np.zeros((1, 32, 32, 3), np.uint8),
                                                      clip.stamps_ns[1:2]))
    with pytest.raises(InputError, match="context has 5 frames but must cover 1 to 4"):
        dataclasses.replace(clip, context=ClipContext(np.zeros((5, 32, 32, 3), np.uint8),
                                                      clip.stamps_ns))


def test_bad_overlap_is_a_one_line_config_error():
    from egox_ros.params import load_config

    with pytest.raises(ConfigError, match=r"^parameter clip_stride=46: backend 'wan': clips of "
                                          r"49 frames overlapping by 3, .*\(e\.g\. 48, 44, 40\)"):
        load_config(overrides={"backend": "wan", "wan.model_dir": "m", "clip_stride": 46})
    assert load_config(overrides={"backend": "wan", "wan.model_dir": "m",
                                  "clip_stride": 44}).clip_stride == 44
    assert load_config(overrides={"clip_stride": 46}).clip_stride == 46   # prior: any overlap


def _write_inputs(tmp_path, clip):
    from egox_model.clip_io import write_camera
    from egox_model.geometry.camera import CameraModel
    from egox_model.video import write_video

    write_video(tmp_path / "exo.mp4", clip.exo_rgb, fps=30.0)
    write_camera(tmp_path / "exo.json", CameraModel(clip.exo_K), clip.exo_c2w[0])
    write_camera(tmp_path / "ego.json", CameraModel(clip.ego_K), clip.ego_c2w)
    np.savez(tmp_path / "depth.npz", depth_m=clip.exo_depth_m, dynamic_mask=clip.dynamic_mask)
    return ["--exo", str(tmp_path / "exo.mp4"), "--exo-camera", str(tmp_path / "exo.json"),
            "--ego-poses", str(tmp_path / "ego.json"), "--exo-depth", str(tmp_path / "depth.npz")]


def test_egox_generate_long_input(generator, tmp_path):
    from egox_model.cli import app

    inputs = _write_inputs(tmp_path, tiny_clip(frames=15))    # clips at 0 and 4; 2 left over
    wan = ["--backend", "wan", "--wan.model_dir", generator.config.model_dir,
           "--wan.num_inference_steps", "2", "--wan.device", "cpu", "--wan.dtype", "float32",
           "--wan.progress", "false", "--frames", str(LENGTH)]
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["generate", *inputs, *wan, "--clip-stride", str(STRIDE),
                                      "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "13 frames from 2 clip(s), of 15 input frames" in result.output
    report = json.loads((out / "report.json").read_text())
    assert report["frames"] == 13 and report["diagnostics"]["clip_starts"] == [0, LENGTH]
    assert report["diagnostics"]["context_frames"] == OVERLAP
    np.testing.assert_array_equal(np.load(out / "ego_stamps_ns.npy"),
                                  np.round(np.arange(13) * 1e9 / 30))
    bad = CliRunner().invoke(app, ["generate", *inputs, *wan, "--clip-stride", "6",
                                   "--out", str(out)])
    assert bad.exit_code != 0
    assert isinstance(bad.exception, ConfigError)
    assert str(bad.exception).startswith("parameter clip-stride=6: clips of 9 frames "
                                         "overlapping by 3")
