"""The compute floor of a Wan transformer call: its FLOPs over the measured matmul rate.

FLOPs count multiply-adds as 2. One block at N video tokens, model width d, FFN width f,
L_t text and L_i image tokens:
- linear: self-attention q, k, v, out (4 * 2N d^2); cross-attention q and out (2 * 2N d^2),
  its k, v on text and image tokens (2 * 2 (L_t + L_i) d^2); FFN (2 * 2N d f);
- attention: QK^T and PV of self-attention (2 * 2 N^2 d), of cross-attention
  (2 * 2 N (L_t + L_i) d).
Embeddings, norms, modulation and the output head are left out (< 0.1 %).
"""
from __future__ import annotations

import time

import torch

__all__ = ["matmul_tflops", "wan_forward_flops"]


def wan_forward_flops(config: dict, tokens: int, text_tokens: int = 512,
                      image_tokens: int = 257) -> dict[str, float]:
    """{"linear", "attention", "total"} FLOPs of one forward of a Wan transformer `config`
    (its transformer/config.json keys) at `tokens` video tokens."""
    d = config["num_attention_heads"] * config["attention_head_dim"]
    f, n = config["ffn_dim"], tokens
    context = text_tokens + (image_tokens if config.get("image_dim") else 0)
    linear = 2 * (6 * n * d * d + 2 * context * d * d + 2 * n * d * f)
    attention = 4 * n * n * d + 4 * n * context * d
    layers = config["num_layers"]
    return {"linear": layers * linear, "attention": layers * attention,
            "total": layers * (linear + attention)}


def matmul_tflops(device: str, dtype: torch.dtype = torch.bfloat16, size: int | None = None,
                  repeats: int = 10) -> float:
    """Measured dense matmul rate in TFLOP/s on `device`: mean of `repeats` size^3 products
    of random matrices after three warm-ups (8192 on CUDA, 1024 on the CPU)."""
    size = size or (8192 if device == "cuda" else 1024)
    gen = torch.Generator(device=device).manual_seed(0)
    a = torch.randn(size, size, device=device, dtype=dtype, generator=gen)
    b = torch.randn(size, size, device=device, dtype=dtype, generator=gen)
    for _ in range(3):
        a @ b
    if device == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(repeats):
        a @ b
    if device == "cuda":
        torch.cuda.synchronize()
    seconds = (time.perf_counter() - start) / repeats
    return 2 * size ** 3 / seconds / 1e12
