"""Scaled dot-product attention that also returns each query's log-sum-exp.

The "split" kernel merges two partial softmaxes by their log-sum-exp, which
`F.scaled_dot_product_attention` does not return, so this calls ATen's fused kernels directly:
- CPU: the flash kernel for CPU (any dtype, with or without a bias).
- CUDA, fp16/bf16: cuDNN, the fastest with a bias on Hopper (H200, all ego rows of the
  default clip against all keys: 19.5 ms against 45.9 ms for the memory-efficient kernel).
  Where cuDNN cannot run the inputs (a graph it cannot build, a build without cuDNN
  attention) it falls back to flash attention (no bias) or the memory-efficient kernel
  (bias), with one RuntimeWarning per fallback kernel and process; any other error is raised.
- CUDA, fp32: the memory-efficient kernel.
"""
from __future__ import annotations

import re
import warnings

import torch

__all__ = ["cudnn_unsupported", "sdpa_lse"]

# What torch raises when cuDNN attention cannot run these inputs: cuDNN's frontend refusing
# to build the graph ("cuDNN Frontend error: [cudnn_frontend] Error: No execution plans
# support the graph."), torch built without it, torch's own shape / dtype checks.
_UNSUPPORTED = re.compile(r"cuDNN Frontend error|not compiled with cuDNN|not supported|"
                          r"does not support", re.IGNORECASE)
# ... and what, under those words, is a failure to run rather than a refusal.
_FAILED = re.compile(r"execution failed|out of memory|CUDA error", re.IGNORECASE)

_warned: set[str] = set()  # fallback kernels already reported in this process


def cudnn_unsupported(error: RuntimeError) -> bool:
    """Whether `error`, raised by the cuDNN attention op, means cuDNN cannot run these inputs
    here (the case to fall back on) rather than a failure while running (out of memory, a
    CUDA error, a failed graph execution), which must propagate.

    NotImplementedError (a RuntimeError): the op has no kernel for this backend.
    """
    if isinstance(error, torch.OutOfMemoryError):
        return False
    if isinstance(error, NotImplementedError):
        return True
    message = str(error)
    return bool(_UNSUPPORTED.search(message)) and not _FAILED.search(message)


def _warn_fallback(error: RuntimeError, kernel: str) -> None:
    """One RuntimeWarning per fallback `kernel` and process."""
    if kernel in _warned:
        return
    _warned.add(kernel)
    reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    warnings.warn(f"GGA: cuDNN attention cannot run these inputs ({reason}); using the "
                  f"{kernel} kernel instead (reported once per process and kernel)",
                  RuntimeWarning, stacklevel=4)


def _lse_rows(lse: torch.Tensor, query: torch.Tensor) -> torch.Tensor:
    """A kernel's log-sum-exp ((B, H, L), (B, H, L, 1) or padded rows) as (B, H, L)."""
    return lse.reshape(*query.shape[:2], -1)[..., :query.shape[2]]


def _cuda_sdpa_lse(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                   bias: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    """The CUDA kernels of `sdpa_lse`: cuDNN for fp16/bf16, else or on refusal flash (no
    bias) or memory-efficient attention."""
    aten = torch.ops.aten
    if bias is not None:
        bias = bias.expand(query.shape[0], query.shape[1], -1, -1)
    half = query.dtype in (torch.float16, torch.bfloat16)
    if half:
        try:
            out, lse = aten._scaled_dot_product_cudnn_attention(
                query, key, value, bias, True, 0.0, False, False)[:2]
            return out, _lse_rows(lse, query)
        except RuntimeError as err:
            if not cudnn_unsupported(err):
                raise
            _warn_fallback(err, "flash" if bias is None else "memory-efficient")
        if bias is None:
            out, lse = aten._scaled_dot_product_flash_attention(query, key, value)[:2]
            return out, _lse_rows(lse, query)
    out, lse = aten._scaled_dot_product_efficient_attention(query, key, value, bias, True)[:2]
    return out, _lse_rows(lse, query)


def sdpa_lse(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
             bias: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """softmax(q k^T / sqrt(D) + bias) v and the log-sum-exp of each query's logits.

    query (B, H, L, D), key/value (B, H, S, D), bias broadcastable to (B, H, L, S) or None
    -> out (B, H, L, D) in the input dtype, lse (B, H, L) fp32.
    """
    if query.device.type == "cpu":
        return torch.ops.aten._scaled_dot_product_flash_attention_for_cpu(
            query, key, value, 0.0, False, attn_mask=bias)
    return _cuda_sdpa_lse(query, key, value, bias)
