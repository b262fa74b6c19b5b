"""`Sam3VideoSegmenter`: text-prompted video segmentation with transformers' Sam3VideoModel.

The directory is a Sam3Video checkpoint as saved by save_pretrained (config.json with
model_type 'sam3_video', weights, preprocessor_config.json, and its CLIP tokenizer files).
transformers' Sam3VideoProcessor needs torchvision, which this project does not install, so
the frames are normalised here (resize to the processor's square size, mean/std from
preprocessor_config.json) and the inference session is built directly; prompts are
tokenised as the processor does (padding to 32 tokens). The masks come from the model's
low-resolution logits, resized by `TextMaskEstimator`.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from egox_model.perception.model_dir import (check_model_dir, licence_of, load_pretrained,
                                             read_json, resolve_device, resolve_dtype)

__all__ = ["Sam3VideoSegmenter", "load_sam3_segmenter"]


class Sam3VideoSegmenter:
    """A loaded Sam3VideoModel + tokenizer, run once per clip over all its frames."""

    def __init__(self, model: torch.nn.Module, tokenizer, processor: dict, *,
                 device: torch.device, dtype: torch.dtype, info: dict | None = None) -> None:
        self.model = model.to(device=device, dtype=dtype).eval()
        self.tokenizer, self.device, self.dtype = tokenizer, device, dtype
        size = processor.get("size") or {}
        side = int(size.get("height", size.get("longest_edge", 1008)))
        self.input_size = (side, side)
        self.mean = torch.tensor(processor.get("image_mean", (0.5, 0.5, 0.5))).view(1, 3, 1, 1)
        self.std = torch.tensor(processor.get("image_std", (0.5, 0.5, 0.5))).view(1, 3, 1, 1)
        self.info = {"model_type": "sam3_video", "device": str(device),
                     "dtype": str(dtype).replace("torch.", ""), **(info or {})}

    @torch.inference_mode()
    def segment(self, frames: np.ndarray, phrases: list[str]) -> list[dict[int, np.ndarray]]:
        """Per frame: object id -> low-resolution mask logits (h', w') float32."""
        from transformers.models.sam3_video.modeling_sam3_video import (
            Sam3VideoInferenceSession)

        video = torch.from_numpy(frames).permute(0, 3, 1, 2).float() / 255.0
        video = F.interpolate(video, size=self.input_size, mode="bilinear", antialias=True,
                              align_corners=False)
        video = (video - self.mean) / self.std
        session = Sam3VideoInferenceSession(
            video=video, video_height=frames.shape[1], video_width=frames.shape[2],
            inference_device=self.device, inference_state_device=self.device,
            video_storage_device=self.device, dtype=self.dtype)
        for phrase in phrases:
            prompt_id = session.add_prompt(phrase)
            if prompt_id not in session.prompt_input_ids:
                tokens = self.tokenizer(phrase, return_tensors="pt", padding="max_length",
                                        max_length=32).to(self.device)
                session.prompt_input_ids[prompt_id] = tokens.input_ids
                session.prompt_attention_masks[prompt_id] = tokens.attention_mask
        result: list[dict[int, np.ndarray]] = [{} for _ in range(len(frames))]
        for out in self.model.propagate_in_video_iterator(session):
            hidden = set(out.suppressed_obj_ids or ()) | set(session.hotstart_removed_obj_ids)
            result[out.frame_idx] = {int(i): m.float().cpu().numpy()[0]
                                     for i, m in (out.obj_id_to_mask or {}).items()
                                     if int(i) not in hidden}
        return result


def load_sam3_segmenter(model_dir: str | Path, setting: str = "perception.mask_model", *,
                        device: str = "auto", dtype: str = "auto") -> Sam3VideoSegmenter:
    """Load a Sam3Video directory (config, weights, preprocessor config, tokenizer)."""
    from transformers import AutoTokenizer, Sam3VideoModel

    config = check_model_dir(model_dir, setting, {"sam3_video": "Sam3VideoModel (SAM 3)"})
    check_model_dir(model_dir, setting, {"sam3_video": "Sam3VideoModel (SAM 3)"},
                    processor_file="tokenizer_config.json")
    torch_device = resolve_device(device)
    torch_dtype = resolve_dtype(dtype, torch_device)
    model = load_pretrained(Sam3VideoModel, model_dir, setting, dtype=torch_dtype)
    tokenizer = load_pretrained(AutoTokenizer, model_dir, setting)
    processor = read_json(Path(model_dir) / "preprocessor_config.json")
    info = {"model_dir": str(model_dir), "licence": licence_of(model_dir, config)}
    return Sam3VideoSegmenter(model, tokenizer, processor, device=torch_device,
                              dtype=torch_dtype, info=info)
