"""The preprocessing cache: what training needs of each paired clip, computed once.

Per clip one safetensors file `CACHE/NAME/<key>.safetensors` (key: a hash of the clip's files,
the model's VAE / text / image encoders, the preprocessing options and the prior and
perception settings, so any change makes a new file) holding float32 tensors:

    exo_latents    (16, T, h, w_x)  normalized VAE latent x0 of the exo video
    ego_latents    (16, T, h, w_e)  ... of the ego ground truth y0 (the training target)
    prior_latents  (16, T, h, w_e)  ... of the ego prior p0 (prior.mp4, else rendered here)
    prompt_embeds  (L, D)           UMT5 embedding of the caption (L = its token count)
    image_embeds   (257, C)         CLIP penultimate states (only for image_dim models)
    ego_dirs, ego_centers, exo_points   GGA token geometry (TokenGeometry; only with depth:
                                        a clip without exo depth trains without GGA)

T = (F - 1) / 4 + 1, h = H / 8, w = W / 8 at the training resolution (`DataOptions`): the
clip's frames are resized to it (depth and masks nearest-neighbour) and its intrinsics with
them. A clip without prior.mp4 gets the ego prior rendered with the `prior.*` settings
inference uses; one without exo depth either gets it estimated by the `perception.*` models
(as `egox generate` and the node do for a plain RGB camera) or is refused.
"""
from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
from safetensors.torch import load_file, save_file

from egox_model.clip import Clip
from egox_model.config import to_flat
from egox_model.data.format import PairedClip, read_paired_clip
from egox_model.errors import InputError
from egox_model.generator.wan.conditioning import (clip_image_states, encode_video,
                                                   frames_to_video_tensor)
from egox_model.generator.wan.loading import (WanComponents, check_model_dir, load_components,
                                              load_text_encoder)
from egox_model.generator.wan.text_cache import (PromptEncoder, TextEmbeddingCache,
                                                 text_encoder_key)
from egox_model.geometry.tokens import TokenGeometry, token_geometry
from egox_model.perception.config import PerceptionConfig
from egox_model.perception.perceive import Perception, has_depth
from egox_model.prior import PriorConfig, render_ego_prior
from egox_model.train.config import DataOptions

__all__ = ["KEY_OPTIONS", "CachedClips", "ClipLatents", "Preprocessor", "load_latents",
           "resize_paired_clip"]

_GEOMETRY = ("ego_dirs", "ego_centers", "exo_points")
#: The `DataOptions` that change what preprocessing computes (and so enter the cache key).
KEY_OPTIONS = ("frames", "height", "exo_width", "ego_width", "clip_image")


@dataclass
class ClipLatents:
    """One clip's cached training inputs (module docstring); geometry None without depth."""

    name: str
    exo_latents: torch.Tensor
    ego_latents: torch.Tensor
    prior_latents: torch.Tensor
    prompt_embeds: torch.Tensor
    image_embeds: torch.Tensor | None
    geometry: TokenGeometry | None

    @property
    def num_frames(self) -> int:
        """Pixel frames F = 4 (T - 1) + 1."""
        return 4 * (self.exo_latents.shape[1] - 1) + 1

    def tensors(self) -> dict[str, torch.Tensor]:
        """The tensors as stored in the cache file."""
        out = {"exo_latents": self.exo_latents, "ego_latents": self.ego_latents,
               "prior_latents": self.prior_latents, "prompt_embeds": self.prompt_embeds}
        if self.image_embeds is not None:
            out["image_embeds"] = self.image_embeds
        if self.geometry is not None:
            out.update({k: getattr(self.geometry, k) for k in _GEOMETRY})
        return {k: v.detach().float().cpu().contiguous() for k, v in out.items()}

    @classmethod
    def from_tensors(cls, name: str, tensors: dict[str, torch.Tensor]) -> ClipLatents:
        """Inverse of `tensors`."""
        geometry = (TokenGeometry(*(tensors[k] for k in _GEOMETRY))
                    if all(k in tensors for k in _GEOMETRY) else None)
        return cls(name, tensors["exo_latents"], tensors["ego_latents"],
                   tensors["prior_latents"], tensors["prompt_embeds"],
                   tensors.get("image_embeds"), geometry)


def load_latents(path: Path) -> ClipLatents:
    """A cache file's `ClipLatents` (named after its clip folder)."""
    return ClipLatents.from_tensors(Path(path).parent.name, load_file(str(path)))


class CachedClips(Sequence):
    """The clips of a split as cache files, each loaded when indexed (the last one kept), so
    a process never holds the whole split's latents."""

    def __init__(self, paths: list[Path]) -> None:
        self.paths = list(paths)
        self._last: tuple[int, ClipLatents] | None = None

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> ClipLatents:
        if self._last is None or self._last[0] != index:
            self._last = (index, load_latents(self.paths[index]))
        return self._last[1]


def _resize(frames: np.ndarray | None, height: int, width: int,
            interpolation: int) -> np.ndarray | None:
    if frames is None:
        return None
    dtype = frames.dtype
    if frames.dtype == bool:
        frames = frames.astype(np.uint8)
    out = np.stack([cv2.resize(f, (width, height), interpolation=interpolation)
                    for f in frames])
    return out.astype(dtype)


def resize_paired_clip(paired: PairedClip, options: DataOptions) -> PairedClip:
    """The first `options.frames` frames at the training resolution (exo height x exo_width,
    ego height x ego_width); intrinsics follow the resize, depth and masks are resized
    nearest-neighbour."""
    clip, frames = paired.clip, options.frames
    if clip.num_frames < frames:
        raise InputError(f"clip {paired.name} has {clip.num_frames} frames but training uses "
                         f"{frames} (data.frames); use longer clips or fewer frames")
    H, wx, we = options.height, options.exo_width, options.ego_width
    area, nearest = cv2.INTER_AREA, cv2.INTER_NEAREST
    first = slice(0, frames)
    resized = Clip(
        exo_rgb=_resize(clip.exo_rgb[first], H, wx, area), exo_K=clip.exo_K.resized(wx, H),
        exo_c2w=clip.exo_c2w[first], ego_K=clip.ego_K.resized(we, H),
        ego_c2w=clip.ego_c2w[first],
        stamps_ns=None if clip.stamps_ns is None else clip.stamps_ns[first],
        exo_depth_m=(None if clip.exo_depth_m is None
                     else _resize(clip.exo_depth_m[first], H, wx, nearest)),
        dynamic_mask=(None if clip.dynamic_mask is None
                      else _resize(clip.dynamic_mask[first], H, wx, nearest)),
        prompt=clip.prompt, fps=clip.fps, meta=clip.meta)
    return PairedClip(
        name=paired.name, clip=resized, ego_rgb=_resize(paired.ego_rgb[first], H, we, area),
        prior_rgb=(None if paired.prior_rgb is None
                   else _resize(paired.prior_rgb[first], H, we, area)),
        ego_objects=(None if paired.ego_objects is None
                     else _resize(paired.ego_objects[first], H, we, nearest)),
        source=paired.source)


def _files_digest(clip_dir: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(clip_dir.iterdir()):
        if path.is_file():
            digest.update(path.name.encode())
            digest.update(path.read_bytes() if path.suffix == ".json"
                          else str(path.stat().st_size).encode())
    return digest.hexdigest()


def _result_settings(name: str, config) -> dict:
    """`config`'s settings under dotted names `name.*`, less those that change only where or
    how fast it runs (device, batch size)."""
    return {f"{name}.{key}": value for key, value in to_flat(config).items()
            if key.rsplit(".", 1)[-1] not in ("device", "batch_size")}


class Preprocessor:
    """Builds or loads the `ClipLatents` of clip directories with one model's encoders.

    The VAE, CLIP image encoder and tokenizer are loaded from `model_dir` on the first clip
    that is not cached (a fully cached split loads nothing); the text encoder only for
    captions missing from the text cache (CACHE/text, `TextEmbeddingCache`; in memory only with
    text_cache_on_disk=False, for processes preprocessing side by side). `computed` /
    `loaded` count the clips encoded here and those found in the cache.
    """

    def __init__(self, model_dir: Path, options: DataOptions, cache_dir: Path,
                 device: torch.device, *, dtype: torch.dtype = torch.bfloat16,
                 vae_dtype: torch.dtype = torch.float32, text_cache_on_disk: bool = True,
                 prior: PriorConfig = PriorConfig(),
                 perception: PerceptionConfig = PerceptionConfig()) -> None:
        self.model_dir, self.options = Path(model_dir), options
        self.prior_config, self.perception_config = prior, perception
        self._perception: Perception | None = None          # loaded on the first clip needing it
        self.cache_dir, self.device = Path(cache_dir), torch.device(device)
        self.dtype, self.vae_dtype = dtype, vae_dtype
        self.text_cache_dir = self.cache_dir / "text" if text_cache_on_disk else None
        configs = check_model_dir(self.model_dir)
        self.model_key = hashlib.sha256("\0".join(
            [text_encoder_key(self.model_dir)]
            + [json.dumps(configs.get(k), sort_keys=True) for k in ("vae", "image_encoder")]
        ).encode()).hexdigest()[:16]
        self._components: WanComponents | None = None
        self._prompt_encoder: PromptEncoder | None = None
        self.computed = self.loaded = 0

    def _load(self) -> tuple[WanComponents, PromptEncoder]:
        if self._components is None:
            parts = load_components(self.model_dir, dtype=self.dtype, vae_dtype=self.vae_dtype,
                                    text_encoder=False, transformer=False)
            parts.vae.to(self.device)
            if parts.image_encoder is not None:
                parts.image_encoder.to(self.device)
            self._components = parts
            self._prompt_encoder = PromptEncoder(
                parts.tokenizer, lambda: load_text_encoder(self.model_dir, self.dtype),
                TextEmbeddingCache(text_encoder_key(self.model_dir), self.text_cache_dir),
                device=self.device)
        return self._components, self._prompt_encoder

    def cache_path(self, clip_dir: Path) -> Path:
        """Where the cache file of `clip_dir` lives (it may not exist yet)."""
        options = json.dumps({**{k: getattr(self.options, k) for k in KEY_OPTIONS},
                              **_result_settings("prior", self.prior_config),
                              **_result_settings("perception", self.perception_config)})
        key = hashlib.sha256(f"{_files_digest(clip_dir)}\0{self.model_key}\0{options}"
                             .encode()).hexdigest()[:16]
        return self.cache_dir / clip_dir.name / f"{key}.safetensors"

    def ensure(self, clip_dir: str | Path) -> Path:
        """The clip's cache file, computed and stored first when missing."""
        clip_dir = Path(clip_dir)
        path = self.cache_path(clip_dir)
        if path.is_file():
            self.loaded += 1
            return path
        latents = self.compute(resize_paired_clip(read_paired_clip(clip_dir), self.options))
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(".partial")
        save_file(latents.tensors(), str(partial),
                  metadata={"clip": clip_dir.name, "model": self.model_key})
        partial.replace(path)                   # never a half-written cache file
        self.computed += 1
        return path

    def __call__(self, clip_dir: str | Path) -> ClipLatents:
        """The clip's latents: loaded from the cache, or computed and stored."""
        return load_latents(self.ensure(clip_dir))

    @torch.no_grad()
    def compute(self, paired: PairedClip) -> ClipLatents:
        """Encode one clip already at the training resolution."""
        components, prompt_encoder = self._load()
        clip, vae = paired.clip, components.vae
        prior_rgb, exo_depth = paired.prior_rgb, clip.exo_depth_m
        if prior_rgb is None:
            if not has_depth(clip):
                if not self.perception_config.depth_model:
                    raise InputError(
                        f"clip {paired.name} has neither prior.mp4 nor exo_depth.npz: training "
                        "needs one to build the ego prior (and depth for GGA), or "
                        "--perception.depth_model DIR to estimate the depth")
                if self._perception is None:
                    self._perception = Perception.from_config(self.perception_config,
                                                              self.prior_config.fusion)
                clip, _ = self._perception.complete(clip)
            prior = render_ego_prior(clip, self.prior_config)
            prior_rgb, exo_depth = prior.rgb, prior.exo_depth_m

        def encode(frames: np.ndarray) -> torch.Tensor:
            return encode_video(vae, frames_to_video_tensor(frames), self.device)[0]

        image_embeds = None
        if components.image_encoder is not None:
            second = paired.ego_rgb if self.options.clip_image == "official" else prior_rgb
            image = np.concatenate([clip.exo_rgb[0], second[0]], axis=1)
            image_embeds = clip_image_states(
                components.image_encoder, components.image_processor, image,
                self.device, torch.float32)[0]
        geometry = None
        if exo_depth is not None:
            geometry = token_geometry(clip.exo_K, clip.exo_c2w, exo_depth, clip.ego_K,
                                      clip.ego_c2w)
        prompt = prompt_encoder.encode([clip.prompt])[0]   # zero rows after its length
        length = int(prompt.abs().sum(-1).nonzero().max()) + 1
        return ClipLatents(paired.name, encode(clip.exo_rgb), encode(paired.ego_rgb),
                           encode(prior_rgb), prompt[:length], image_embeds, geometry)
