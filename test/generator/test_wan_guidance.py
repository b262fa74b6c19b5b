"""Classifier-free guidance, prompt wiring and the condition latent of `EgoXWanPipeline`,
checked against values computed independently here.

The real tiny random-weight diffusers modules run (nothing is mocked); a forward hook records
every transformer call and a thin wrapper around `scheduler.step` records what the scheduler
is given. The checks are formulas, not grey-level thresholds: the noise prediction handed to
the scheduler must equal uncond + s * (cond - uncond) of the recorded outputs; the calls must
get the UMT5 embeddings of the right prompt (encoded here with the tokenizer and the text
encoder directly); the condition channels must equal the VAE latents of the exo and prior
videos (encoded here with the VAE directly).
"""
from __future__ import annotations

import inspect
import re
from dataclasses import dataclass

import numpy as np
import pytest
import torch
from transformers import AutoTokenizer

from egox_model.errors import ConfigError, ModelLoadError
from egox_model.generator.wan.config import ConditioningOptions, WanConfig
from egox_model.generator.wan.loading import load_components, load_scheduler, load_text_encoder
from egox_model.generator.wan.pipeline import EgoXWanPipeline, EgoXWanPipelineOutput
from egox_model.generator.wan.text_cache import (TEXT_LENGTH, PromptEncoder,
                                                 TextEmbeddingCache)
from egox_model.generator.wan.tiny import save_tiny_model_dir, tiny_clip

FRAMES, EXO_HW, EGO_HW, STEPS, SEED = 5, (32, 48), (32, 32), 2, 0
LATENT_T, LATENT_H = (FRAMES - 1) // 4 + 1, EXO_HW[0] // 8
W_X, W_E = EXO_HW[1] // 8, EGO_HW[1] // 8
Z, MASK = 16, 4
PROMPT, NEGATIVE = "a person picks up the cup", ""
TOL = dict(rtol=1e-6, atol=1e-6)  # fp32: the same operations in another order


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return save_tiny_model_dir(tmp_path_factory.mktemp("wan") / "model")


@pytest.fixture(scope="module")
def pipe(model_dir) -> EgoXWanPipeline:
    """Stock attention (no GGA), float32 on the CPU, in-memory prompt cache."""
    parts = load_components(model_dir, dtype=torch.float32, text_encoder=False)
    pipe = EgoXWanPipeline(parts.vae, parts.transformer, parts.scheduler,
                           image_encoder=parts.image_encoder,
                           image_processor=parts.image_processor)
    pipe.prompt_encoder = PromptEncoder(
        parts.tokenizer, lambda: load_text_encoder(model_dir, torch.float32),
        TextEmbeddingCache("test_wan_guidance"))
    pipe.to("cpu")
    pipe.set_progress_bar_config(disable=True)
    return pipe


@pytest.fixture(scope="module")
def clip():
    return tiny_clip(FRAMES, EXO_HW, EGO_HW)


@pytest.fixture(scope="module")
def prior_frames():
    """A random-texture prior: its latent is far from any constant and from the exo latent."""
    return np.random.default_rng(7).integers(0, 256, (FRAMES, *EGO_HW, 3), dtype=np.uint8)


@pytest.fixture(scope="module")
def text_embeds(model_dir) -> dict[str, torch.Tensor]:
    """(1, 512, D) UMT5 embeddings of PROMPT and NEGATIVE, each encoded alone, straight from
    the tokenizer and the text encoder; zero after the prompt's tokens (as diffusers' Wan)."""
    tokenizer = AutoTokenizer.from_pretrained(model_dir / "tokenizer")
    encoder = load_text_encoder(model_dir, torch.float32)
    out = {}
    for prompt in (PROMPT, NEGATIVE):
        tokens = tokenizer([prompt], padding="max_length", max_length=TEXT_LENGTH,
                           truncation=True, return_attention_mask=True, return_tensors="pt")
        with torch.no_grad():
            hidden = encoder(tokens.input_ids, tokens.attention_mask).last_hidden_state
        out[prompt] = hidden * tokens.attention_mask[..., None]
    assert (out[PROMPT] - out[NEGATIVE]).abs().max() > 0.1  # else a swap could not show
    return out


def vae_latent(vae, frames: np.ndarray) -> torch.Tensor:
    """Normalized posterior mode (1, 16, T, H/8, W/8) of (F, H, W, 3) uint8 frames."""
    video = torch.from_numpy(frames).float().permute(3, 0, 1, 2)[None] / 127.5 - 1.0
    with torch.no_grad():
        latent = vae.encode(video).latent_dist.mode()
    mean = torch.tensor(vae.config.latents_mean).view(1, Z, 1, 1, 1)
    std = torch.tensor(vae.config.latents_std).view(1, Z, 1, 1, 1)
    return (latent - mean) / std


@dataclass
class Row:
    """One batch row of one transformer call."""

    hidden_states: torch.Tensor          # (1, 36, T, h, w_x + w_e)
    encoder_hidden_states: torch.Tensor  # (1, 512, D)
    image_embeds: torch.Tensor | None
    output: torch.Tensor                 # (1, 16, T, h, w_x + w_e)


@dataclass
class Step:
    """The transformer rows run for one scheduler step, and what the scheduler got."""

    rows: list[Row]
    noise_pred: torch.Tensor
    sample: torch.Tensor
    prev_sample: torch.Tensor


class Recorder:
    """Records the real transformer's inputs/outputs (forward hook) and the scheduler's steps
    (a wrapper that forwards to the real `step`). Batched calls are split into rows."""

    def __init__(self, pipe: EgoXWanPipeline, monkeypatch) -> None:
        self.steps: list[Step] = []
        self._pending: list[Row] = []
        self._signature = inspect.signature(pipe.transformer.forward)
        self.handle = pipe.transformer.register_forward_hook(self._on_forward, with_kwargs=True)
        real_step = pipe.scheduler.step

        def step(model_output, timestep, sample, *args, **kwargs):
            noise_pred, before = model_output.detach().clone(), sample.detach().clone()
            result = real_step(model_output, timestep, sample, *args, **kwargs)
            prev = result[0] if isinstance(result, tuple) else result.prev_sample
            self.steps.append(Step(self._pending, noise_pred, before, prev.detach().clone()))
            self._pending = []
            return result

        monkeypatch.setattr(pipe.scheduler, "step", step)

    def _on_forward(self, module, args, kwargs, output) -> None:
        bound = self._signature.bind(*args, **kwargs).arguments
        out = output[0] if isinstance(output, tuple) else output.sample
        image = bound.get("encoder_hidden_states_image")
        for b in range(out.shape[0]):
            self._pending.append(Row(
                bound["hidden_states"][b:b + 1].detach().clone(),
                bound["encoder_hidden_states"][b:b + 1].detach().clone(),
                None if image is None else image[b:b + 1].detach().clone(),
                out[b:b + 1].detach().clone()))


@pytest.fixture
def recorder(pipe, monkeypatch):
    rec = Recorder(pipe, monkeypatch)
    yield rec
    rec.handle.remove()


def run(pipe, clip, prior_frames, guidance_scale: float, callback=None, **options):
    return pipe(clip.exo_rgb, prior_frames, PROMPT, NEGATIVE, num_inference_steps=STEPS,
                guidance_scale=guidance_scale, generator=torch.Generator().manual_seed(SEED),
                options=ConditioningOptions(**options), callback_on_step_end=callback)


def rows_with_embeds(rows: list[Row], embeds: torch.Tensor) -> list[Row]:
    """The rows whose text embeddings are `embeds` (fp32 tolerance: batched vs. alone)."""
    return [row for row in rows
            if torch.allclose(row.encoder_hidden_states, embeds, **TOL)]


@pytest.mark.parametrize("guidance_scale", [5.0, 2.5])
def test_guided_noise_is_uncond_plus_scale_times_difference(pipe, clip, prior_frames,
                                                            text_embeds, recorder,
                                                            guidance_scale):
    run(pipe, clip, prior_frames, guidance_scale)
    assert len(recorder.steps) == STEPS
    for i, step in enumerate(recorder.steps):
        # Two evaluations per step: one with the prompt, one with the negative prompt.
        rows = len(step.rows)
        assert rows == 2, f"step {i}: {rows} transformer rows, not 2"
        cond = rows_with_embeds(step.rows, text_embeds[PROMPT])
        uncond = rows_with_embeds(step.rows, text_embeds[NEGATIVE])
        assert len(cond) == 1 and len(uncond) == 1, (
            f"step {i}: {len(cond)} rows got the prompt's embeddings and {len(uncond)} the "
            "negative prompt's; expected one each")
        cond, uncond = cond[0], uncond[0]
        # Same latent input and CLIP image for both; only the text differs.
        assert torch.equal(cond.hidden_states, uncond.hidden_states)
        assert torch.equal(cond.image_embeds, uncond.image_embeds)
        difference = cond.output - uncond.output
        # The text moves the tiny model's output by ~1e-3: 1000x the tolerance, so a flipped
        # sign or a dropped term shows.
        assert difference[..., W_X:].abs().max() > 1e-4
        expected = uncond.output + guidance_scale * difference
        torch.testing.assert_close(step.noise_pred[..., W_X:], expected[..., W_X:], **TOL)
        assert torch.all(step.noise_pred[..., :W_X] == 0)


def test_no_guidance_at_scale_one_uses_only_the_prompt(pipe, clip, prior_frames, text_embeds,
                                                       recorder):
    run(pipe, clip, prior_frames, 1.0)
    assert len(recorder.steps) == STEPS
    for i, step in enumerate(recorder.steps):
        rows = len(step.rows)
        assert rows == 1, f"step {i}: {rows} transformer rows, not 1"
        row = step.rows[0]
        torch.testing.assert_close(row.encoder_hidden_states, text_embeds[PROMPT], **TOL)
        torch.testing.assert_close(step.noise_pred[..., W_X:], row.output[..., W_X:],
                                   rtol=0, atol=0)
        assert torch.all(step.noise_pred[..., :W_X] == 0)


def official_mask() -> torch.Tensor:
    """(1, 4, T, h, w_x + w_e): 1 on latent frame 0's exo columns, 0 elsewhere."""
    mask = torch.zeros(1, MASK, LATENT_T, LATENT_H, W_X + W_E)
    mask[:, :, 0, :, :W_X] = 1.0
    return mask


@pytest.mark.parametrize("zero_prior", [False, True])
def test_transformer_input_is_latents_mask_exo_and_prior(pipe, clip, prior_frames, recorder,
                                                         zero_prior):
    x0 = vae_latent(pipe.vae, clip.exo_rgb)
    p0 = torch.zeros(1, Z, LATENT_T, LATENT_H, W_E) if zero_prior else vae_latent(
        pipe.vae, prior_frames)
    assert x0.shape == (1, Z, LATENT_T, LATENT_H, W_X)
    z_t = torch.randn(1, Z, LATENT_T, LATENT_H, W_X + W_E,
                      generator=torch.Generator().manual_seed(SEED))[..., W_X:]
    run(pipe, clip, prior_frames, 2.0, zero_prior=zero_prior)
    assert len(recorder.steps) == STEPS
    for i, step in enumerate(recorder.steps):
        for row in step.rows:
            hidden = row.hidden_states
            assert hidden.shape == (1, Z + MASK + Z, LATENT_T, LATENT_H, W_X + W_E)
            noisy, mask, condition = hidden[:, :Z], hidden[:, Z:Z + MASK], hidden[:, Z + MASK:]
            torch.testing.assert_close(noisy[..., :W_X], x0, **TOL)  # the clean exo half
            if i == 0:  # the seeded start noise on the ego half
                torch.testing.assert_close(noisy[..., W_X:], z_t, rtol=0, atol=0)
            else:       # the previous step's result
                torch.testing.assert_close(noisy, recorder.steps[i - 1].prev_sample,
                                           rtol=0, atol=0)
            torch.testing.assert_close(mask, official_mask(), rtol=0, atol=0)
            torch.testing.assert_close(condition[..., :W_X], x0, **TOL)
            torch.testing.assert_close(condition[..., W_X:], p0, **TOL)
            if zero_prior:
                assert torch.all(condition[..., W_X:] == 0)


@pytest.mark.parametrize("scheduler", ["model_dir", "unipc"])
def test_exo_half_is_x0_after_every_step(pipe, clip, prior_frames, monkeypatch, scheduler):
    """After each step the exo half is x0 exactly; with the model directory's flow-matching
    Euler scheduler the ego half moves by (sigma_{i+1} - sigma_i) * the guided prediction.
    UniPC (what Wan2.1-I2V-14B-480P-Diffusers ships) is a multistep solver: a zero exo
    prediction alone does not keep the exo half fixed there, the reset to x0 must."""
    if scheduler == "unipc":
        from diffusers import UniPCMultistepScheduler
        monkeypatch.setattr(pipe, "scheduler", UniPCMultistepScheduler(
            prediction_type="flow_prediction", use_flow_sigmas=True, flow_shift=3.0))
    recorder = Recorder(pipe, monkeypatch)
    x0 = vae_latent(pipe.vae, clip.exo_rgb)
    seen = []

    def on_step_end(pipeline, i, t, tensors):
        seen.append(tensors["latents"].clone())

    try:
        out = run(pipe, clip, prior_frames, 5.0, callback=on_step_end)
    finally:
        recorder.handle.remove()
    sigmas = pipe.scheduler.sigmas.tolist()
    assert len(seen) == len(recorder.steps) == STEPS and len(sigmas) == STEPS + 1
    for i, (latents, step) in enumerate(zip(seen, recorder.steps)):
        torch.testing.assert_close(latents[..., :W_X], x0, **TOL)
        assert torch.equal(latents[..., :W_X], step.sample[..., :W_X])  # unchanged, exactly
        if scheduler == "model_dir":  # flow-matching Euler: z + (sigma_{i+1} - sigma_i) * v
            expected = step.sample + (sigmas[i + 1] - sigmas[i]) * step.noise_pred
            torch.testing.assert_close(latents[..., W_X:], expected[..., W_X:], **TOL)
    assert torch.equal(out.latents, seen[-1][..., W_X:])


# --- fewer model calls: guidance 1 and the step-distilled (lightx2v) sampling recipe --------

def count_calls(pipe, clip, prior_frames, guidance_scale: float, steps: int = STEPS
                ) -> tuple[list[int], list[float], EgoXWanPipelineOutput]:
    """(batch size of every transformer call, its timestep, the output) of one run."""
    batches, timesteps = [], []

    def hook(module, args, kwargs, output):
        batches.append(kwargs["hidden_states"].shape[0])
        timesteps.append(float(kwargs["timestep"][0]))

    handle = pipe.transformer.register_forward_hook(hook, with_kwargs=True)
    try:
        out = pipe(clip.exo_rgb, prior_frames, PROMPT, NEGATIVE, num_inference_steps=steps,
                   guidance_scale=guidance_scale,
                   generator=torch.Generator().manual_seed(SEED))
    finally:
        handle.remove()
    return batches, timesteps, out


@pytest.mark.parametrize("guidance_scale, calls_per_step", [(1.0, 1), (5.0, 2)])
def test_transformer_calls_per_step(pipe, clip, prior_frames, guidance_scale,
                                    calls_per_step):
    """guidance_scale 1 skips the unconditional pass: one call of batch 1 per step."""
    batches, _, _ = count_calls(pipe, clip, prior_frames, guidance_scale)
    assert batches == [1] * (STEPS * calls_per_step)


LIGHTX2V_TIMESTEPS = (1000, 750, 500, 250)


def shifted(t: float, shift: float = 5.0) -> float:
    """lightx2v's step-distill schedule: sigma = t / 1000, then Wan's shift."""
    sigma = t / 1000
    return shift * sigma / (1 + (shift - 1) * sigma)


def test_scheduler_kind_overrides_the_model_dirs_and_keeps_its_shift(model_dir, tmp_path):
    from diffusers import FlowMatchEulerDiscreteScheduler, UniPCMultistepScheduler

    unipc = load_scheduler(model_dir, kind="unipc")       # the tiny dir ships Euler, shift 3
    assert type(unipc) is UniPCMultistepScheduler
    assert (unipc.config.flow_shift, unipc.config.use_flow_sigmas,
            unipc.config.prediction_type) == (3.0, True, "flow_prediction")
    assert load_scheduler(model_dir, 5.0, kind="unipc").config.flow_shift == 5.0
    UniPCMultistepScheduler(prediction_type="flow_prediction", use_flow_sigmas=True,
                            flow_shift=7.0).save_pretrained(tmp_path / "scheduler")
    euler = load_scheduler(tmp_path, kind="euler")
    assert isinstance(euler, FlowMatchEulerDiscreteScheduler) and euler.config.shift == 7.0
    assert type(load_scheduler(tmp_path)) is UniPCMultistepScheduler   # "" = the dir's


def test_fixed_timesteps_follow_lightx2v(model_dir):
    scheduler = load_scheduler(model_dir, 5.0, kind="euler", timesteps=LIGHTX2V_TIMESTEPS)
    scheduler.set_timesteps(4)
    expected = [shifted(t) for t in LIGHTX2V_TIMESTEPS]
    torch.testing.assert_close(scheduler.sigmas, torch.tensor(expected + [0.0]))
    torch.testing.assert_close(scheduler.timesteps, torch.tensor(expected) * 1000)
    with pytest.raises(ValueError, match="num_inference_steps is 3 but the scheduler has 4"):
        scheduler.set_timesteps(3)


def test_stochastic_sampling_renoises_x0_with_seeded_noise(model_dir):
    """prev = (1 - sigma_next) * (x - sigma * v) + sigma_next * noise, the noise drawn from a
    CPU generator seeded with noise_seed at set_timesteps."""
    scheduler = load_scheduler(model_dir, 5.0, kind="euler", timesteps=LIGHTX2V_TIMESTEPS,
                               stochastic_sampling=True, noise_seed=11)
    gen = torch.Generator().manual_seed(0)
    sample = torch.randn(1, 4, 2, 3, generator=gen)
    velocity = torch.randn(1, 4, 2, 3, generator=gen)
    results = []
    for _ in range(2):
        scheduler.set_timesteps(4)
        t = scheduler.timesteps[0]
        results.append(scheduler.step(velocity, t, sample, return_dict=False)[0])
    sigma, sigma_next = shifted(1000), shifted(750)
    noise = torch.randn(sample.shape, generator=torch.Generator().manual_seed(11))
    expected = (1 - sigma_next) * (sample - sigma * velocity) + sigma_next * noise
    torch.testing.assert_close(results[0], expected, rtol=1e-6, atol=1e-6)
    assert torch.equal(results[0], results[1])                     # reseeded per clip


def test_four_step_recipe_one_call_per_step(pipe, clip, prior_frames, model_dir, monkeypatch):
    """shift 5, Euler at lightx2v's 4 timesteps, stochastic sampling, guidance 1: four calls
    at the expected timesteps; the same seeds give the same video."""
    monkeypatch.setattr(pipe, "scheduler", load_scheduler(
        model_dir, 5.0, kind="euler", timesteps=LIGHTX2V_TIMESTEPS, stochastic_sampling=True,
        noise_seed=3))
    batches, timesteps, out = count_calls(pipe, clip, prior_frames, 1.0, steps=4)
    assert batches == [1] * 4
    np.testing.assert_allclose(timesteps, [shifted(t) * 1000 for t in LIGHTX2V_TIMESTEPS],
                               rtol=1e-5)
    assert np.isfinite(out.latents.numpy()).all()
    _, _, again = count_calls(pipe, clip, prior_frames, 1.0, steps=4)
    assert torch.equal(again.latents, out.latents)


@pytest.mark.parametrize("options, message", [
    (dict(scheduler_timesteps=(1000, 500)),
     "has 2 timesteps but num_inference_steps is 50"),
    (dict(scheduler="euler", num_inference_steps=2, scheduler_timesteps=(500, 750)),
     "must be strictly decreasing"),
    (dict(num_inference_steps=2, scheduler_timesteps=(1000, 500)), "set scheduler to 'euler'"),
    (dict(stochastic_sampling=True, scheduler="unipc"), "set scheduler to 'euler'"),
    (dict(scheduler="ddim"), "must be one of ['', 'euler', 'unipc']"),
    (dict(scheduler="euler", num_inference_steps=1, scheduler_timesteps=(1001,)),
     "must be a list of integers in [1, 1000]"),
])
def test_bad_scheduler_settings(options, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        WanConfig(**options)


def test_timesteps_need_the_euler_scheduler(model_dir):
    with pytest.raises(ModelLoadError, match="set scheduler to 'euler'"):
        load_scheduler(model_dir, kind="unipc", timesteps=LIGHTX2V_TIMESTEPS)
