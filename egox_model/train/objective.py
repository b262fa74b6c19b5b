"""EgoX's training objective: flow matching on the ego half, the exo half clean.

For a clip with exo latent x0, ego ground-truth latent y0 and prior latent p0, a sigma drawn
uniformly from the scheduler's training sigmas and noise n ~ N(0, I) of y0's shape:

    z_t    = (1 - sigma) y0 + sigma n                      the noisy ego half
    input  = [[x0 | z_t] (16) | mask (4) | [x0 | p0] (16)]  width-concat, as at inference
    target = n - y0                                        the flow-matching velocity
    loss   = mean((v_theta(input, 1000 sigma)[..., ego columns] - target)^2)

The exo columns of the prediction are ignored (the release trains the ego half only).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from egox_model.generator.wan.conditioning import build_condition, condition_mask
from egox_model.generator.wan.text_cache import TEXT_LENGTH
from egox_model.train.preprocess import ClipLatents

__all__ = ["StepDraw", "draw_step", "flow_matching_loss", "training_sigmas",
           "validation_draws"]


def training_sigmas(scheduler_config: dict, num_train_timesteps: int = 1000) -> torch.Tensor:
    """The N = num_train_timesteps training sigmas t / N (t = N .. 1) with the model's shift
    applied, shift s / (1 + (shift - 1) s), float32, as FlowMatchEulerDiscreteScheduler builds
    them; the shift is the scheduler config's `shift` (Euler) or `flow_shift` (UniPC)."""
    shift = float(scheduler_config.get("shift", scheduler_config.get("flow_shift", 1.0)))
    n = int(scheduler_config.get("num_train_timesteps", num_train_timesteps))
    sigmas = torch.arange(n, 0, -1, dtype=torch.float64) / n
    return (shift * sigmas / (1 + (shift - 1) * sigmas)).float()


class StepDraw:
    """The random draws of one training step: which clip, which sigma, which noise."""

    def __init__(self, clip_index: int, sigma: float, noise: torch.Tensor) -> None:
        self.clip_index, self.sigma, self.noise = clip_index, sigma, noise


def draw_step(seed: int, step: int, process: int, num_clips: int, sigmas: torch.Tensor,
              latent_shape_of) -> StepDraw:
    """Draws of `step` on `process` from a generator seeded by (seed, step, process) only, so
    a resumed run repeats them; `latent_shape_of(i)` is clip i's ego latent shape."""
    generator = torch.Generator().manual_seed(
        (seed * 1_000_003 + step) * 1_009 + process)
    clip_index = int(torch.randint(num_clips, (), generator=generator))
    sigma = float(sigmas[int(torch.randint(len(sigmas), (), generator=generator))])
    noise = torch.randn(latent_shape_of(clip_index), generator=generator)
    return StepDraw(clip_index, sigma, noise)


def validation_draws(seed: int, clip_index: int, count: int, sigmas: torch.Tensor,
                     shape: tuple[int, ...]) -> list[tuple[float, torch.Tensor]]:
    """`count` fixed (sigma, noise) draws of validation clip `clip_index`: sigmas at evenly
    spaced quantiles of the training sigmas, noise seeded by (seed, clip_index), so every
    validation sees the same draws and its loss moves only with the weights."""
    generator = torch.Generator().manual_seed(2**40 + seed * 1_000_003 + clip_index)
    picks = ((torch.arange(count) + 0.5) / count * len(sigmas)).long()
    return [(float(sigmas[i]), torch.randn(shape, generator=generator)) for i in picks]


def _pad_text(embeds: torch.Tensor) -> torch.Tensor:
    """(L, D) -> (1, 512, D), zero after L (what diffusers' Wan I2V attention expects)."""
    return torch.cat([embeds, embeds.new_zeros(TEXT_LENGTH - len(embeds), embeds.shape[1])])[None]


def flow_matching_loss(transformer, latents: ClipLatents, sigma: float, noise: torch.Tensor,
                       *, mask_layout: str, device: torch.device,
                       dtype: torch.dtype) -> torch.Tensor:
    """The loss of one clip at one sigma (module docstring); float32 scalar.

    `latents` may live on the CPU (moved here); `noise` has the ego latent's shape
    (16, T, h, w_e). The transformer input is cast to `dtype`.
    """
    x0 = latents.exo_latents[None].to(device)
    y0 = latents.ego_latents[None].to(device)
    p0 = latents.prior_latents[None].to(device)
    noise = noise[None].to(device)
    exo_width = x0.shape[-1]
    z_t = (1.0 - sigma) * y0 + sigma * noise
    mask = condition_mask(latents.num_frames, x0.shape[-2], exo_width, y0.shape[-1],
                          mask_layout, device=device)
    hidden = torch.cat([torch.cat([x0, z_t], dim=-1), build_condition(x0, p0, mask)], dim=1)
    image = (None if latents.image_embeds is None
             else latents.image_embeds[None].to(device, dtype))
    timestep = torch.full((1,), 1000.0 * sigma, device=device)
    pred = transformer(hidden_states=hidden.to(dtype), timestep=timestep,
                       encoder_hidden_states=_pad_text(latents.prompt_embeds).to(device, dtype),
                       encoder_hidden_states_image=image, return_dict=False)[0]
    return F.mse_loss(pred[..., exo_width:].float(), (noise - y0).float())
