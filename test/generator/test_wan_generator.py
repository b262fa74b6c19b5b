"""The `wan` backend end to end on a tiny random-weight Wan 2.1 I2V model directory.

The directory is written with save_pretrained and loaded back through the same loading code
users take; nothing is downloaded.
"""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from egox_model.errors import InputError, ModelLoadError
from egox_model.generator.gga import GGAConfig
from egox_model.generator.wan import ConditioningOptions, WanConfig, WanGenerator
from egox_model.generator.wan.conditioning import condition_mask
from egox_model.generator.wan.loading import check_model_dir, load_scheduler
from egox_model.generator.wan.lora import add_lora, save_lora
from egox_model.generator.wan.text_cache import TEXT_LENGTH
from egox_model.generator.wan.tiny import save_tiny_model_dir, tiny_clip
from egox_model.geometry.tokens import token_geometry

FRAMES, EXO_HW, EGO_HW = 5, (32, 48), (32, 32)
EXO_LATENT_W, EGO_LATENT_W = EXO_HW[1] // 8, EGO_HW[1] // 8


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return save_tiny_model_dir(tmp_path_factory.mktemp("wan") / "model")


def make_generator(model_dir, **options) -> WanGenerator:
    options = {"dtype": "float32", "device": "cpu", "num_inference_steps": 3,
               "progress": False, **options}
    return WanGenerator(WanConfig(model_dir=str(model_dir), **options))


@pytest.fixture(scope="module")
def generator(model_dir):
    return make_generator(model_dir)


def test_generate_end_to_end(generator):
    clip = tiny_clip()
    steps = []
    out = generator.generate(clip, callback=lambda i, n: steps.append((i, n)))
    assert out.backend == "wan"
    assert out.ego_rgb.shape == (FRAMES, *EGO_HW, 3) and out.ego_rgb.dtype == np.uint8
    assert out.ego_rgb.std() > 0
    np.testing.assert_array_equal(out.stamps_ns, clip.stamps_ns)
    assert out.prior.rgb.shape == out.ego_rgb.shape
    assert steps == [(0, 3), (1, 3), (2, 3)]
    assert out.diagnostics["gga"]["strength"] == 3.0
    assert {"diffusion", "token_geometry", "render"} <= set(out.ms_per_frame)


@pytest.mark.parametrize("scheduler", ["model_dir", "unipc"])
def test_exo_half_is_x0_after_every_step(generator, monkeypatch, scheduler):
    if scheduler == "unipc":  # what Wan2.1-I2V-14B-480P-Diffusers ships
        from diffusers import UniPCMultistepScheduler
        monkeypatch.setattr(generator.pipe, "scheduler", UniPCMultistepScheduler(
            prediction_type="flow_prediction", use_flow_sigmas=True, flow_shift=3.0))
    seen = []

    def record(pipe, i, t, tensors):
        seen.append((tensors["latents"].clone(), tensors["exo_latents"].clone()))

    clip = tiny_clip()
    prior = np.zeros((FRAMES, *EGO_HW, 3), np.uint8)
    generator.pipe(clip.exo_rgb, prior, clip.prompt, num_inference_steps=3,
                   generator=torch.Generator().manual_seed(0), callback_on_step_end=record)
    assert len(seen) == 3
    for latents, x0 in seen:
        assert latents.shape == (1, 16, 2, 4, EXO_LATENT_W + EGO_LATENT_W)
        assert torch.equal(latents[..., :EXO_LATENT_W], x0)
    assert not torch.equal(seen[0][0][..., EXO_LATENT_W:], seen[-1][0][..., EXO_LATENT_W:])


@pytest.mark.parametrize("clip_image", ["prior", "official"])
def test_only_the_ego_half_is_decoded(generator, monkeypatch, clip_image):
    vae = generator.pipe.vae
    decoded = []
    original = vae.decode

    def spy(latents, *args, **kwargs):
        decoded.append(tuple(latents.shape))
        return original(latents, *args, **kwargs)

    monkeypatch.setattr(vae, "decode", spy)
    clip = tiny_clip()
    out = generator.pipe(clip.exo_rgb, np.zeros((FRAMES, *EGO_HW, 3), np.uint8), "",
                         num_inference_steps=2, generator=torch.Generator().manual_seed(0),
                         options=ConditioningOptions(clip_image=clip_image))
    # The video decode is the last call: all latent frames, ego columns only.
    assert decoded[-1] == (1, 16, 2, 4, EGO_LATENT_W)
    assert out.frames.shape == (FRAMES, *EGO_HW, 3)
    if clip_image == "official":  # + frame 0 of the full-width initial latent, for CLIP
        assert decoded[:-1] == [(1, 16, 1, 4, EXO_LATENT_W + EGO_LATENT_W)]
    else:
        assert len(decoded) == 1


def test_same_seed_same_video_other_seed_differs(generator, model_dir):
    clip = tiny_clip()
    first = generator.generate(clip).ego_rgb
    np.testing.assert_array_equal(first, generator.generate(clip).ego_rgb)
    other = make_generator(model_dir, seed=1).generate(clip).ego_rgb
    assert np.abs(first.astype(int) - other).mean() > 1


def test_gga_wiring_and_ablation_switches(generator, model_dir):
    clip = tiny_clip()
    prior = np.zeros((FRAMES, *EGO_HW, 3), np.uint8)
    geometry = token_geometry(clip.exo_K, clip.exo_c2w, clip.exo_depth_m, clip.ego_K,
                              clip.ego_c2w)

    def run(pipe, geometry=None, **options):
        return pipe(clip.exo_rgb, prior, clip.prompt, num_inference_steps=2,
                    generator=torch.Generator().manual_seed(0), token_geometry=geometry,
                    options=ConditioningOptions(**options)).frames.astype(int)

    processors = generator.pipe.transformer.attn_processors
    assert type(processors["blocks.0.attn1.processor"]).__name__ == "GGAAttnProcessor"
    assert processors["blocks.0.attn1.processor"] is processors["blocks.1.attn1.processor"]
    assert type(processors["blocks.0.attn2.processor"]).__name__ == "WanAttnProcessor"
    with_gga, no_geometry = run(generator.pipe, geometry), run(generator.pipe)
    stock = run(make_generator(model_dir, gga=GGAConfig(strength=0.0)).pipe, geometry)
    assert np.abs(no_geometry - stock).max() <= 1
    assert np.abs(with_gga - stock).mean() > 0.5
    for switch in ({"zero_prior": True}, {"noisy_exo": True}, {"mask_layout": "exo"},
                   {"clip_image": "prior"}):
        assert np.abs(run(generator.pipe, **switch) - no_geometry).mean() > 0.5, switch


def test_condition_mask_layouts():
    official = condition_mask(9, 2, 3, 2, "official")
    assert official.shape == (1, 4, 3, 2, 5)
    assert torch.all(official[:, :, 0, :, :3] == 1) and torch.all(official[:, :, 0, :, 3:] == 0)
    assert torch.all(official[:, :, 1:] == 0)
    exo = condition_mask(9, 2, 3, 2, "exo")
    assert torch.all(exo[..., :3] == 1) and torch.all(exo[..., 3:] == 0)


def test_lora_from_file_changes_the_output(generator, model_dir, tmp_path):
    transformer = generator.pipe.transformer.__class__.from_pretrained(model_dir / "transformer")
    add_lora(transformer, rank=4, alpha=4)
    torch.manual_seed(0)
    for name, param in transformer.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(param, std=0.2)
    path = save_lora(transformer, tmp_path / "lora")
    clip = tiny_clip()
    with_lora = make_generator(model_dir, lora_path=str(path))
    assert with_lora.loaded["lora"]["rank"] == 4
    out = with_lora.generate(clip).ego_rgb
    assert not np.array_equal(out, generator.generate(clip).ego_rgb)


def test_text_embeddings_are_cached_on_disk(model_dir, tmp_path):
    gen = make_generator(model_dir, text_cache_dir=str(tmp_path / "text"))
    encoder = gen.pipe.prompt_encoder
    embeds = encoder.encode(["a person picks up the cup", ""])
    assert embeds.shape == (2, TEXT_LENGTH, 24)
    assert torch.all(embeds[0, 7:] == 0) and embeds[0, :6].abs().sum() > 0
    assert encoder.text_encoder is None  # unloaded after encoding
    assert len(list((tmp_path / "text").glob("*.safetensors"))) == 2

    def no_encoder():
        raise AssertionError("the text encoder must not be loaded for a cached prompt")

    fresh = make_generator(model_dir, text_cache_dir=str(tmp_path / "text")).pipe.prompt_encoder
    fresh.load_text_encoder = no_encoder
    torch.testing.assert_close(fresh.encode(["a person picks up the cup", ""]), embeds)


def test_scheduler_comes_from_the_model_dir(tmp_path):
    from diffusers import UniPCMultistepScheduler

    UniPCMultistepScheduler(prediction_type="flow_prediction", use_flow_sigmas=True,
                            flow_shift=3.0).save_pretrained(tmp_path / "scheduler")
    scheduler = load_scheduler(tmp_path, flow_shift=5.0)
    assert isinstance(scheduler, UniPCMultistepScheduler)
    assert scheduler.config.flow_shift == 5.0


def _broken_copy(model_dir, tmp_path, sub: str, **changes):
    broken = tmp_path / "broken"
    shutil.copytree(model_dir, broken)
    path = broken / sub
    config = json.loads(path.read_text())
    config.update(changes)
    path.write_text(json.dumps(config))
    return broken


def test_bad_model_dirs_raise_clear_errors(model_dir, tmp_path):
    with pytest.raises(ModelLoadError, match="is not a directory"):
        check_model_dir(tmp_path / "nope")
    broken = tmp_path / "novae"
    shutil.copytree(model_dir, broken)
    shutil.rmtree(broken / "vae")
    with pytest.raises(ModelLoadError, match="lacks vae/config.json"):
        make_generator(broken)
    t2v = _broken_copy(model_dir, tmp_path, "transformer/config.json", in_channels=16)
    with pytest.raises(ModelLoadError, match="in_channels is 16 .* needs 36"):
        make_generator(t2v)
    shutil.rmtree(t2v)
    other = _broken_copy(model_dir, tmp_path, "text_encoder/config.json", d_model=48)
    with pytest.raises(ModelLoadError, match="text_dim is 24 but text_encoder d_model is 48"):
        check_model_dir(other)
    shutil.rmtree(other)
    ddim = _broken_copy(model_dir, tmp_path, "scheduler/scheduler_config.json",
                        _class_name="DDIMScheduler")
    with pytest.raises(ModelLoadError, match="flow matching"):
        check_model_dir(ddim)


@pytest.mark.parametrize("kwargs, message", [
    ({"frames": 6}, r"6 frames but Wan's VAE needs 4k\+1"),
    ({"exo_hw": (32, 40)}, r"exo frames are 32x40 .* divisible by 16"),
    ({"ego_hw": (32, 24)}, r"ego frames are 32x24 .* divisible by 16"),
    ({"ego_hw": (48, 48)}, r"exo height 32 != ego height 48"),
])
def test_mismatched_clip_shapes_are_rejected(generator, kwargs, message):
    with pytest.raises(InputError, match=message):
        generator.generate(tiny_clip(**kwargs))


def test_egox_generate_command(model_dir, tmp_path):
    from typer.testing import CliRunner

    from egox_model.cli import app
    from egox_model.clip_io import write_camera
    from egox_model.geometry.camera import CameraModel
    from egox_model.video import write_video

    clip = tiny_clip()
    write_video(tmp_path / "exo.mp4", clip.exo_rgb, fps=30.0)
    write_camera(tmp_path / "exo.json", CameraModel(clip.exo_K), clip.exo_c2w[0])
    write_camera(tmp_path / "ego.json", CameraModel(clip.ego_K), clip.ego_c2w)
    np.savez(tmp_path / "depth.npz", depth_m=clip.exo_depth_m, dynamic_mask=clip.dynamic_mask)
    out = tmp_path / "out"
    result = CliRunner().invoke(app, [
        "generate", "--exo", str(tmp_path / "exo.mp4"), "--exo-camera", str(tmp_path / "exo.json"),
        "--ego-poses", str(tmp_path / "ego.json"), "--exo-depth", str(tmp_path / "depth.npz"),
        "--backend", "wan", "--wan.model_dir", str(model_dir), "--out", str(out),
        "--wan.num_inference_steps", "2", "--wan.device", "cpu", "--wan.dtype", "float32",
        "--wan.progress", "false", "--frames", "5", "--prompt", "a person picks up the cup"])
    assert result.exit_code == 0, result.output
    report = json.loads((out / "report.json").read_text())
    assert report["backend"] == "wan" and report["frames"] == FRAMES
    assert report["diagnostics"]["steps"] == 2 and report["diagnostics"]["dtype"] == "float32"
    assert (out / "ego.mp4").stat().st_size > 0 and (out / "prior.mp4").is_file()
    np.testing.assert_array_equal(np.load(out / "ego_stamps_ns.npy"),
                                  np.round(np.arange(FRAMES) * 1e9 / 30))


def test_registry_builds_the_wan_backend_from_the_config_tree(model_dir):
    from egox_model.config import from_flat
    from egox_model.generator import GeneratorConfig, make_generator

    config = from_flat(GeneratorConfig, {
        "backend": "wan", "wan.model_dir": str(model_dir), "wan.dtype": "float32",
        "wan.device": "cpu", "wan.gga.strength": 0.0, "wan.num_inference_steps": 1,
        "prior.render.max_splat_level": 0})
    gen = make_generator(config)
    assert isinstance(gen, WanGenerator) and gen.config == config.wan
    assert gen.prior_config.render.max_splat_level == 0
    processors = gen.pipe.transformer.attn_processors
    assert type(processors["blocks.0.attn1.processor"]).__name__ == "WanAttnProcessor"
