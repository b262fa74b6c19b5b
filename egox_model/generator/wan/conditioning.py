"""EgoX conditioning of Wan 2.1 I2V: width-concat latents, the [x0 | p0] condition and its mask.

Latent layout (B, C, T, h, w_x + w_e): exo columns on the left, ego on the right, T latent
frames = (F - 1) / 4 + 1, h = H / 8. The transformer input stacks on channels
[z (16) | mask (4) | condition (16)] = 36, where z = [x0 | z_t] and condition = [x0 | p0].
"""
from __future__ import annotations

import torch

from egox_model.geometry.latent_grid import VAE_TIME, check_num_frames

__all__ = ["build_condition", "clip_image_states", "condition_mask", "decode_latents",
           "encode_video", "frames_to_video_tensor", "noisy_exo", "video_tensor_to_frames"]


def frames_to_video_tensor(frames, device=None, dtype=torch.float32) -> torch.Tensor:
    """(F, H, W, 3) uint8 RGB frames -> (1, 3, F, H, W) video in [-1, 1]."""
    video = torch.as_tensor(frames).to(device=device)
    return (video.permute(3, 0, 1, 2)[None].to(dtype) / 127.5 - 1.0)


def video_tensor_to_frames(video: torch.Tensor):
    """(1, 3, F, H, W) video in [-1, 1] -> (F, H, W, 3) uint8 numpy."""
    video = ((video[0].float().clamp(-1, 1) + 1.0) * 127.5).round().to(torch.uint8)
    return video.permute(1, 2, 3, 0).cpu().numpy()


def clip_image_states(image_encoder, image_processor, image, device: torch.device,
                      dtype: torch.dtype) -> torch.Tensor:
    """CLIP penultimate hidden states (1, 257, C) of an (H, W, 3) uint8 image, in `dtype` on
    `device` (where the encoder runs): Wan 2.1 I2V's image conditioning."""
    inputs = image_processor(images=image, return_tensors="pt")
    pixels = inputs["pixel_values"].to(device, image_encoder.dtype)
    hidden = image_encoder(pixel_values=pixels, output_hidden_states=True).hidden_states
    return hidden[-2].to(device, dtype)


def _latent_stats(vae, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    shape = (1, vae.config.z_dim, 1, 1, 1)
    mean = torch.tensor(vae.config.latents_mean).view(shape).to(like.device, like.dtype)
    std = torch.tensor(vae.config.latents_std).view(shape).to(like.device, like.dtype)
    return mean, std


def encode_video(vae, video: torch.Tensor, device: torch.device) -> torch.Tensor:
    """Normalized VAE latent (mode of the posterior) of a (1, 3, F, H, W) video in [-1, 1].

    `device` is where the VAE runs: the pipeline's execution device, not the VAE's current
    parameter device (with model CPU offload the VAE moves there only inside `encode`).
    Returns (1, z_dim, T, H/8, W/8) float32 on `device`, normalized with the VAE's
    latents_mean/std as diffusers' Wan pipelines do.
    """
    latents = vae.encode(video.to(device, vae.dtype)).latent_dist.mode().float()
    mean, std = _latent_stats(vae, latents)
    return (latents - mean) / std


def decode_latents(vae, latents: torch.Tensor, device: torch.device) -> torch.Tensor:
    """(1, 3, F, H, W) video in [-1, 1] from normalized latents (1, z_dim, T, h, w); the VAE
    runs on `device` (as in `encode_video`)."""
    mean, std = _latent_stats(vae, latents.float())
    latents = (latents.float() * std + mean).to(device, vae.dtype)
    return vae.decode(latents, return_dict=False)[0]


def condition_mask(num_frames: int, height: int, exo_width: int, ego_width: int,
                   layout: str, device=None) -> torch.Tensor:
    """Binary mask (1, 4, T, h, w_x + w_e) marking condition (1) vs. synthesis (0) regions.

    Built like diffusers' I2V mask: a per-pixel-frame mask of F frames (exo columns 1, ego
    0), frame 0 repeated x4, folded 4 pixel frames per latent frame onto 4 channels.
    layout 'official': only frame 0 is marked (the release's inference code), so only latent
    frame 0's exo region is 1; 'exo': every frame's exo columns are 1.
    """
    check_num_frames(num_frames)
    frames = torch.zeros(num_frames, exo_width + ego_width, device=device)
    marked = slice(0, 1) if layout == "official" else slice(None)
    frames[marked, :exo_width] = 1.0
    frames = torch.cat([frames[:1].repeat(VAE_TIME - 1, 1), frames], dim=0)  # (F + 3, w)
    mask = frames.view(-1, VAE_TIME, 1, exo_width + ego_width).transpose(0, 1)  # (4, T, 1, w)
    return mask.expand(-1, -1, height, -1)[None].contiguous()


def build_condition(exo_latents: torch.Tensor, prior_latents: torch.Tensor,
                    mask: torch.Tensor) -> torch.Tensor:
    """The 20 condition channels [mask (4) | x0 | p0 (16)]: (1, 20, T, h, w_x + w_e)."""
    return torch.cat([mask.to(exo_latents), torch.cat([exo_latents, prior_latents], dim=-1)],
                     dim=1)


def noisy_exo(exo_latents: torch.Tensor, noise: torch.Tensor, sigma: float) -> torch.Tensor:
    """Flow-matching forward process (1 - sigma) x0 + sigma * noise (SDEdit-style ablation)."""
    return (1.0 - sigma) * exo_latents + sigma * noise
