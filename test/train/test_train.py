"""`egox train` on the tiny random-weight model and synthetic clips (CPU): the loss falls on
overfit draws, a resumed run continues the same loss curve, the cache is reused, LR schedule,
the flow-matching target and the official LoRA file."""
import json
from dataclasses import replace

import pytest
import torch
from safetensors.torch import load_file

from egox_model.generator.wan.lora import load_lora
from egox_model.generator.wan.tiny import TINY_TRANSFORMER
from egox_model.train.objective import training_sigmas
from egox_model.train.smoke import SMOKE_SCENE, smoke_config
from egox_model.train.trainer import lr_factor, preprocess_split, train


def _losses(out):
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def test_smoke_test_lowers_loss(tmp_path):
    """`egox train --smoke-test --out DIR`: metrics.jsonl with one line per step, the JSON
    printed last, and the loss of the two overfit draws down by >= 30 %."""
    from typer.testing import CliRunner

    from egox_ros.cli import app

    run = CliRunner().invoke(app, ["train", "--smoke-test", "--out", str(tmp_path),
                                   "--no-progress"])
    assert run.exit_code == 0, run.output
    result = json.loads(run.stdout.strip().splitlines()[-1])
    records = _losses(tmp_path)
    assert [r["step"] for r in records] == list(range(60))
    assert result["first_loss"] == pytest.approx((records[0]["loss"] + records[1]["loss"]) / 2)
    assert result["last_loss"] == pytest.approx((records[-2]["loss"] + records[-1]["loss"]) / 2)
    assert result["last_loss"] <= 0.7 * result["first_loss"], result
    assert result["cache"]["computed"] == 2
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    events = EventAccumulator(str(tmp_path / "tensorboard")).Reload()
    logged = [(e.step, e.value) for e in events.Scalars("train/loss")]
    assert logged == [(r["step"], pytest.approx(r["loss"])) for r in records]
    assert (tmp_path / "pytorch_lora_weights.safetensors").is_file()


def test_resume_continues_the_same_curve(setup, tmp_path):
    """Stopped after step 7 (checkpoint at 5 and 7) and resumed: the same losses, LR,
    validation losses (steps 5, 10, 12) and LoRA weights as an uninterrupted run; fresh
    draws, two clips, GGA on."""
    _, model_dir, data = setup
    config = replace(smoke_config(model_dir, data, steps=12), overfit_draws=0, save_every=5,
                     val_every=5)
    config = replace(config, data=replace(config.data, val_split="val"))
    whole = train(config, tmp_path / "whole", progress=False)
    part = train(config, tmp_path / "cut", progress=False, stop_after=7)
    assert part.steps == 7 and sorted(p.name for p in (tmp_path / "cut/checkpoints").iterdir()) \
        == ["step_0000005", "step_0000007"]
    rest = train(config, tmp_path / "cut", progress=False)
    assert rest.start_step == 7 and rest.cache["loaded"] == 2 and rest.cache["computed"] == 0
    a, b = _losses(tmp_path / "whole"), _losses(tmp_path / "cut")
    assert [r["step"] for r in b] == list(range(12))
    for ra, rb in zip(a, b):
        assert rb["loss"] == pytest.approx(ra["loss"], rel=1e-5, abs=1e-6)
        assert (rb["lr"], rb["clip"], rb["sigma"]) == (ra["lr"], ra["clip"], ra["sigma"])
        assert ("val_loss" in rb) == ("val_loss" in ra) == (ra["step"] in (4, 9, 11))
        if "val_loss" in ra:
            assert rb["val_loss"] == pytest.approx(ra["val_loss"], rel=1e-5)
    assert len({r["clip"] for r in a}) == 2
    wa = load_file(str(whole.lora_path))
    wb = load_file(str(tmp_path / "cut/pytorch_lora_weights.safetensors"))
    assert wa.keys() == wb.keys()
    for key in wa:
        torch.testing.assert_close(wb[key], wa[key], rtol=1e-5, atol=1e-7)
    assert whole.first_loss == a[0]["loss"] and whole.last_loss == a[-1]["loss"]


def _fail(*args, **kwargs):
    raise AssertionError("loaded or computed what it must not")


def test_cache_is_reused(setup, monkeypatch):
    """Preprocessing loads the encoders but not the transformer; a second one loads every
    clip from the cache and never touches the VAE."""
    import egox_model.generator.wan.loading as loading

    root, model_dir, data = setup
    config = replace(smoke_config(model_dir, data), data=replace(
        smoke_config(model_dir, data).data, cache_dir=str(root / "cache_test")))
    with monkeypatch.context() as patch:
        patch.setattr(loading, "load_transformer", _fail)
        first, stats = preprocess_split(config, torch.device("cpu"))
    same = replace(config.data, mask_layout="exo", val_split="val", split="train")
    assert preprocess_split(replace(config, data=same), torch.device("cpu"))[0].paths == \
        first.paths                     # options preprocessing does not use share the entry
    assert stats["computed"] == 2 and stats["loaded"] == 0
    import egox_model.train.preprocess as pre

    monkeypatch.setattr(pre, "encode_video", _fail)
    monkeypatch.setattr(pre, "load_components", _fail)
    again, stats = preprocess_split(config, torch.device("cpu"))
    assert stats["computed"] == 0 and stats["loaded"] == 2
    for x, y in zip(first, again):
        for key, value in x.tensors().items():
            torch.testing.assert_close(y.tensors()[key], value, rtol=0, atol=0)
    lat = first[0]
    assert lat.exo_latents.shape == (16, 2, 4, 6) and lat.ego_latents.shape == (16, 2, 4, 4)
    assert lat.geometry.exo_points.shape == (2, 2, 3, 3)
    assert lat.image_embeds.shape[-1] == TINY_TRANSFORMER["image_dim"]
    # another resolution or CLIP image is another cache entry
    monkeypatch.undo()
    for data_options in (replace(config.data, ego_width=48),
                         replace(config.data, clip_image="official")):
        other, _ = preprocess_split(replace(config, data=data_options), torch.device("cpu"),
                                    shard=(0, 2))        # computes clip 0 only
        assert other.paths[0].is_file() and other.paths[0] not in first.paths
        assert not other.paths[1].exists()


def test_lr_schedule():
    assert [lr_factor(s, 4, 10, "constant") for s in range(6)] == [0.25, 0.5, 0.75, 1, 1, 1]
    assert lr_factor(9, 4, 10, "linear") == 0.0
    assert lr_factor(4, 4, 10, "linear") == pytest.approx(5 / 6)
    assert lr_factor(9, 0, 10, "cosine") == pytest.approx(0.0, abs=1e-12)
    assert lr_factor(4, 0, 10, "cosine") == pytest.approx(0.5 * (1 + torch.cos(
        torch.tensor(torch.pi * 0.5)).item()))


def test_training_sigmas_match_the_scheduler():
    from diffusers import FlowMatchEulerDiscreteScheduler

    scheduler = FlowMatchEulerDiscreteScheduler(shift=3.0)
    torch.testing.assert_close(training_sigmas(dict(scheduler.config)), scheduler.sigmas.float())


def test_lora_file_loads_for_inference(setup, tmp_path):
    """The trained LoRA is in the official naming and loads through wan.lora_path's loader."""
    _, model_dir, data = setup
    result = train(smoke_config(model_dir, data, steps=2), tmp_path, progress=False)
    keys = load_file(str(result.lora_path)).keys()
    assert "transformer.blocks.0.attn1.to_q.lora_A.weight" in keys
    assert "transformer.blocks.1.attn2.to_out.0.lora_B.weight" in keys
    from diffusers import WanTransformer3DModel
    fresh = WanTransformer3DModel.from_pretrained(str(model_dir / "transformer"))
    assert load_lora(fresh, result.lora_path) == {"rank": 32, "alpha": 32.0, "modules": 16}


def test_clip_with_prior_video_and_no_depth(setup, tmp_path):
    """A clip's own prior.mp4 is encoded as p0 (here the ego video itself: p0 == y0
    exactly); without exo depth it has no GGA geometry; with neither it is refused."""
    import dataclasses

    from egox_model.data import PairedClip, write_paired_clip
    from egox_model.data.synthetic import synthetic_paired_clip
    from egox_model.errors import InputError
    from egox_model.train.preprocess import Preprocessor

    _, model_dir, _ = setup
    paired = synthetic_paired_clip(SMOKE_SCENE)
    no_depth = dataclasses.replace(paired.clip, exo_depth_m=None)
    write_paired_clip(tmp_path / "clips/a", PairedClip("a", no_depth, paired.ego_rgb,
                                                       prior_rgb=paired.ego_rgb))
    write_paired_clip(tmp_path / "clips/b", PairedClip("b", no_depth, paired.ego_rgb))
    options = smoke_config(model_dir, tmp_path).data
    pre = Preprocessor(model_dir, options, tmp_path / "cache", torch.device("cpu"),
                       dtype=torch.float32)
    latents = pre(tmp_path / "clips/a")
    assert latents.geometry is None
    torch.testing.assert_close(latents.prior_latents, latents.ego_latents, rtol=0, atol=0)
    with pytest.raises(InputError, match="neither prior.mp4 nor exo_depth.npz.*"
                                         "perception.depth_model"):
        pre(tmp_path / "clips/b")


def test_clip_without_depth_or_prior_gets_estimated_depth(setup, tmp_path, monkeypatch):
    """perception.depth_model (a tiny Depth Pro directory) estimates the exo depth of a plain
    RGB clip, the prior is rendered with the configured prior.* settings, and GGA geometry
    follows from the estimate; prior and perception settings are part of the cache key."""
    import dataclasses

    from egox_model.config import from_flat
    from egox_model.data import PairedClip, write_paired_clip
    from egox_model.data.synthetic import synthetic_paired_clip
    from egox_model.perception.tiny import save_depth_model
    from egox_model.train.config import TrainConfig
    from egox_model.train.preprocess import Preprocessor

    _, model_dir, _ = setup
    paired = synthetic_paired_clip(SMOKE_SCENE)
    rgb_only = dataclasses.replace(paired.clip, exo_depth_m=None)
    write_paired_clip(tmp_path / "clips/rgb", PairedClip("rgb", rgb_only, paired.ego_rgb))
    depth_pro = save_depth_model(tmp_path / "depth_pro", "tiny-depth-pro")
    config = from_flat(TrainConfig, {"perception.depth_model": str(depth_pro),
                                     "prior.render.views_per_batch": 1})

    def preprocessor(config: TrainConfig) -> Preprocessor:
        return Preprocessor(model_dir, smoke_config(model_dir, tmp_path).data,
                            tmp_path / "cache", torch.device("cpu"), dtype=torch.float32,
                            prior=config.prior, perception=config.perception)

    import egox_model.train.preprocess as preprocess

    used = []
    render = preprocess.render_ego_prior
    monkeypatch.setattr(preprocess, "render_ego_prior",
                        lambda clip, prior: used.append(prior) or render(clip, prior))
    pre = preprocessor(config)
    latents = pre(tmp_path / "clips/rgb")
    assert used == [config.prior]
    assert latents.geometry is not None and torch.isfinite(latents.geometry.exo_points).all()
    assert pre._perception is not None and pre.computed == 1
    other = from_flat(TrainConfig, {"prior.lift.mesh": False}, config)
    assert preprocessor(other).cache_path(tmp_path / "clips/rgb") != \
        pre.cache_path(tmp_path / "clips/rgb")
    moved = from_flat(TrainConfig, {"perception.device": "cpu", "prior.device": "cpu"}, config)
    assert preprocessor(moved).cache_path(tmp_path / "clips/rgb") == \
        pre.cache_path(tmp_path / "clips/rgb")


def test_lora_model_setup(setup):
    """bf16 frozen base, fp32 LoRA on the official targets only, GGA on attn1 (strength 1 by
    default, chunked kernel), gradient checkpointing on."""
    from egox_model.generator.gga import GGAAttnProcessor
    from egox_model.train.trainer import _lora_model

    _, model_dir, data = setup
    config = replace(smoke_config(model_dir, data), dtype="bfloat16")
    model, processor = _lora_model(config, model_dir)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all(".lora_" in n for n in trainable)
    assert {n.split(".")[2] + "." + n.split(".")[3] for n in trainable} == {
        "attn1.to_q", "attn1.to_k", "attn1.to_v", "attn1.to_out", "attn2.to_q", "attn2.to_k",
        "attn2.to_v", "attn2.to_out"}
    assert all(p.dtype == torch.float32 for n, p in model.named_parameters() if n in trainable)
    keep_fp32 = model._keep_in_fp32_modules        # diffusers' own (norms, time embedder)
    frozen_fp32 = [n for n, p in model.named_parameters()
                   if n not in trainable and p.dtype != torch.bfloat16]
    assert all(any(k in n.split(".") for k in keep_fp32) for n in frozen_fp32), frozen_fp32
    assert model.blocks[0].attn1.to_q.base_layer.weight.dtype == torch.bfloat16
    assert processor.config.strength == 1.0 and processor.config.kernel == "chunked"
    attn1 = {k: v for k, v in model.attn_processors.items() if "attn1" in k}
    assert attn1 and all(v is processor for v in attn1.values())
    assert not any(isinstance(v, GGAAttnProcessor) for k, v in model.attn_processors.items()
                   if "attn2" in k)
    assert model.gradient_checkpointing and model.training


@pytest.mark.parametrize("flags, match", [
    ({"data.frames": 6}, "parameter data.frames=6: .*4k\\+1"),
    ({"data.height": 40}, "parameter data.height=40: must be a multiple of 16"),
    ({"gga_kernel": "split"}, "gga_kernel"),
    ({"optim.lr": 0}, "optim.lr"),
    ({"device": "gpu"}, "parameter device='gpu': must be 'auto', 'cpu', 'cuda' or 'cuda:N'"),
])
def test_config_errors(flags, match):
    from egox_model.config import from_flat
    from egox_model.errors import ConfigError
    from egox_model.train.config import TrainConfig

    with pytest.raises(ConfigError, match=match):
        from_flat(TrainConfig, flags)


def test_train_refuses_missing_inputs(setup, tmp_path):
    from egox_model.errors import ConfigError, InputError

    _, model_dir, data = setup
    with pytest.raises(ConfigError, match="model_dir"):
        train(replace(smoke_config(model_dir, data), model_dir=""), tmp_path)
    config = smoke_config(model_dir, data)
    with pytest.raises(InputError, match="no split 'test'"):
        train(replace(config, data=replace(config.data, split="test")), tmp_path)
    with pytest.raises(InputError, match="uses 9 .*data.frames"):
        train(replace(config, data=replace(config.data, frames=9)), tmp_path)
