"""UMT5 prompt embeddings with a memory + disk cache, so the ~11 GB text encoder can go.

Embeddings are padded to 512 tokens with zeros after the prompt's own length, as diffusers'
Wan pipelines do: diffusers' Wan I2V attention splits image from text tokens at `len - 512`,
so any other length silently breaks the image conditioning.
"""
from __future__ import annotations

import gc
import hashlib
import html
import re
from pathlib import Path
from typing import Callable

import torch
from safetensors.torch import load_file, save_file

__all__ = ["TEXT_LENGTH", "PromptEncoder", "TextEmbeddingCache", "text_encoder_key"]

#: T5 sequence length Wan was trained with (and diffusers' I2V attention assumes).
TEXT_LENGTH = 512


def _clean(prompt: str) -> str:
    return re.sub(r"\s+", " ", html.unescape(html.unescape(prompt))).strip()


def text_encoder_key(model_dir: Path) -> str:
    """Identity of a text encoder + tokenizer: hash of their configs and weight file sizes.

    Stable when the model directory moves; changes when the weights or the tokenizer do.
    """
    digest = hashlib.sha256()
    for sub in ("text_encoder", "tokenizer"):
        folder = Path(model_dir) / sub
        for path in sorted(folder.iterdir()):
            if path.suffix == ".json":
                digest.update(path.name.encode() + path.read_bytes())
            elif path.is_file():
                digest.update(f"{path.name}:{path.stat().st_size}".encode())
    return digest.hexdigest()[:16]


class TextEmbeddingCache:
    """prompt -> (L, D) embedding (L = the prompt's token count), in memory and on disk.

    Files: `cache_dir/<sha256(model_key, prompt)>.safetensors`, tensor "prompt_embeds",
    metadata "prompt" and "model". `cache_dir=None` keeps the cache in memory only.
    """

    def __init__(self, model_key: str, cache_dir: Path | None = None) -> None:
        self.model_key = model_key
        self.cache_dir = None if cache_dir is None else Path(cache_dir)
        self._memory: dict[str, torch.Tensor] = {}

    def _path(self, prompt: str) -> Path:
        name = hashlib.sha256(f"{self.model_key}\0{prompt}".encode()).hexdigest()
        return self.cache_dir / f"{name}.safetensors"

    def get(self, prompt: str) -> torch.Tensor | None:
        """The cached embedding of `prompt`, or None."""
        if prompt in self._memory:
            return self._memory[prompt]
        if self.cache_dir is not None and self._path(prompt).is_file():
            self._memory[prompt] = load_file(self._path(prompt))["prompt_embeds"]
            return self._memory[prompt]
        return None

    def put(self, prompt: str, embeds: torch.Tensor) -> None:
        """Store an (L, D) embedding (kept on CPU)."""
        embeds = embeds.detach().to("cpu").contiguous()
        self._memory[prompt] = embeds
        if self.cache_dir is not None:
            self.cache_dir.mkdir(parents=True, exist_ok=True)
            save_file({"prompt_embeds": embeds}, self._path(prompt),
                      metadata={"prompt": prompt, "model": self.model_key})


class PromptEncoder:
    """Tokenizer + lazily loaded UMT5 encoder + `TextEmbeddingCache`.

    `load_text_encoder()` builds the encoder on demand (only for prompts not in the cache);
    with keep_loaded=False it is freed right after encoding, with keep_loaded and offload it
    waits on the CPU between prompts.
    """

    def __init__(self, tokenizer, load_text_encoder: Callable[[], torch.nn.Module],
                 cache: TextEmbeddingCache, *, device: torch.device | str = "cpu",
                 keep_loaded: bool = False, offload: bool = False) -> None:
        self.tokenizer = tokenizer
        self.load_text_encoder = load_text_encoder
        self.cache = cache
        self.device = torch.device(device)
        self.keep_loaded = keep_loaded
        self.offload = offload
        self.text_encoder: torch.nn.Module | None = None

    @torch.no_grad()
    def _encode_uncached(self, prompts: list[str]) -> list[torch.Tensor]:
        if self.text_encoder is None:
            self.text_encoder = self.load_text_encoder()
        self.text_encoder.to(self.device)
        tokens = self.tokenizer(prompts, padding="max_length", max_length=TEXT_LENGTH,
                                truncation=True, add_special_tokens=True,
                                return_attention_mask=True, return_tensors="pt")
        mask = tokens.attention_mask.to(self.device)
        hidden = self.text_encoder(tokens.input_ids.to(self.device), mask).last_hidden_state
        lengths = mask.gt(0).sum(dim=1).tolist()
        return [h[:n] for h, n in zip(hidden, lengths)]

    def unload(self) -> None:
        """Free the text encoder (it is reloaded when an uncached prompt comes)."""
        self.text_encoder = None
        gc.collect()
        if self.device.type == "cuda":
            torch.cuda.empty_cache()

    def encode(self, prompts: list[str]) -> torch.Tensor:
        """(B, 512, D) embeddings on CPU, zero after each prompt's length."""
        prompts = [_clean(p) for p in prompts]
        todo = [p for p in dict.fromkeys(prompts) if self.cache.get(p) is None]
        if todo:
            for prompt, embeds in zip(todo, self._encode_uncached(todo)):
                self.cache.put(prompt, embeds)
            if not self.keep_loaded:
                self.unload()
            elif self.offload:
                self.text_encoder.to("cpu")
        out = []
        for prompt in prompts:
            embeds = self.cache.get(prompt)
            out.append(torch.cat([embeds, embeds.new_zeros(TEXT_LENGTH - len(embeds),
                                                           embeds.shape[1])]))
        return torch.stack(out)
