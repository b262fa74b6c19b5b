"""CLIP-I: cosine similarity of CLIP image embeddings of generated and real frames.

Frame f of the prediction is compared with frame f of the ground truth; the clip's score is
the mean over frames (1 = same embedding). The model is a transformers CLIP directory saved
locally (a full `CLIPModel` such as openai/clip-vit-large-patch14, or a
`CLIPVisionModelWithProjection`) with its `preprocessor_config.json`; nothing is downloaded.
The paper does not name its CLIP variant: scores are comparable only for the same model.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from egox_model.errors import InputError
from egox_model.perception.model_dir import check_model_dir, load_pretrained

__all__ = ["ClipImageScorer", "load_clip_image_scorer"]

_MODEL_TYPES = {"clip": "CLIP (CLIPModel)",
                "clip_vision_model": "CLIP vision tower (CLIPVisionModelWithProjection)"}


class ClipImageScorer:
    """CLIP image embeddings and the CLIP-I score of two videos."""

    def __init__(self, model: torch.nn.Module, processor, batch: int = 16) -> None:
        self.model, self.processor, self.batch = model.eval(), processor, batch

    @torch.no_grad()
    def embed(self, frames: np.ndarray) -> torch.Tensor:
        """Unit-norm image embeddings (F, D) float32 of frames (F, H, W, 3) uint8."""
        device = next(self.model.parameters()).device
        out = []
        for i in range(0, len(frames), self.batch):
            pixels = self.processor(images=list(frames[i:i + self.batch]),
                                    return_tensors="pt")["pixel_values"]
            embeds = self.model(pixel_values=pixels.to(device)).image_embeds.float()
            out.append(torch.nn.functional.normalize(embeds, dim=-1).cpu())
        return torch.cat(out)

    def score(self, prediction: np.ndarray, target: np.ndarray) -> float:
        """Mean over frames of cos(embed(prediction_f), embed(target_f))."""
        if prediction.shape != target.shape:
            raise InputError(f"prediction shape {prediction.shape} != target shape "
                             f"{target.shape}")
        return float((self.embed(prediction) * self.embed(target)).sum(-1).mean())


def load_clip_image_scorer(model_dir: str | Path, device: str = "cpu",
                           setting: str = "--clip-model") -> ClipImageScorer:
    """The scorer of a local CLIP directory (module docstring); ModelLoadError names what
    is missing."""
    from transformers import CLIPImageProcessor, CLIPVisionModelWithProjection

    check_model_dir(model_dir, setting, _MODEL_TYPES)
    model = load_pretrained(CLIPVisionModelWithProjection, model_dir, setting)
    processor = load_pretrained(CLIPImageProcessor, model_dir, setting)
    return ClipImageScorer(model.to(device), processor)
