"""SDPA with log-sum-exp: values on the CPU, and the CUDA path's cuDNN fallback on fakes."""
from __future__ import annotations

import math
import warnings

import pytest
import torch
import torch.nn.functional as F

from egox_model.generator.gga import sdpa
from egox_model.generator.gga.sdpa import cudnn_unsupported, sdpa_lse

UNSUPPORTED = "cuDNN Frontend error: [cudnn_frontend] Error: No execution plans support the graph."


def _qkvb(dtype: torch.dtype = torch.float32) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, 3, n, 5, generator=g).to(dtype) for n in (7, 9, 9))
    return q, k, v, torch.randn(1, 1, 7, 9, generator=g).to(dtype)


@pytest.mark.parametrize("with_bias", [False, True])
def test_cpu_values_and_log_sum_exp(with_bias: bool) -> None:
    q, k, v, bias = _qkvb()
    bias = bias if with_bias else None
    logits = q.double() @ k.double().transpose(-1, -2) / math.sqrt(5)
    logits = logits + (0 if bias is None else bias.double())
    out, lse = sdpa_lse(q, k, v, bias)
    torch.testing.assert_close(out.double(), torch.softmax(logits, -1) @ v.double(),
                               atol=1e-6, rtol=0)
    torch.testing.assert_close(lse.double(), torch.logsumexp(logits, -1), atol=1e-5, rtol=0)


@pytest.mark.parametrize(("error", "unsupported"), [
    (RuntimeError(UNSUPPORTED), True),
    (RuntimeError("cuDNN Frontend error: s_q not a multiple of 64 is not supported"), True),
    (RuntimeError("PyTorch was not compiled with cuDNN Flash Attention enabled!"), True),
    (NotImplementedError("Could not run 'aten::_scaled_dot_product_cudnn_attention' with "
                         "arguments from the 'CUDA' backend."), True),
    (RuntimeError("cuDNN Frontend error: [cudnn_frontend] ERROR: Graph execution failed."),
     False),
    (torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB (not supported)"),
     False),
    (RuntimeError("CUDA error: an illegal memory access was encountered"), False),
    (RuntimeError("Expected query, key and value to have the same dtype"), False),
])
def test_fallback_only_when_cudnn_cannot_run_the_inputs(error: RuntimeError,
                                                        unsupported: bool) -> None:
    assert cudnn_unsupported(error) is unsupported


class _FakeCuda:
    """Stands in for the CUDA ops, computed by the CPU kernel, in their output layouts."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, cudnn_error: Exception | None) -> None:
        self.calls: list[str] = []
        self.cudnn_error = cudnn_error
        aten = torch.ops.aten
        self._cpu = aten._scaled_dot_product_flash_attention_for_cpu
        for name, fake in (("_scaled_dot_product_cudnn_attention", self.cudnn),
                           ("_scaled_dot_product_flash_attention", self.flash),
                           ("_scaled_dot_product_efficient_attention", self.efficient)):
            monkeypatch.setattr(aten, name, fake)
        monkeypatch.setattr(sdpa, "_warned", set())   # a fresh process, as far as warnings go

    def cudnn(self, q, k, v, bias, compute_lse, dropout, causal, debug):
        self.calls.append("cudnn")
        if self.cudnn_error is not None:
            raise self.cudnn_error
        out, lse = self._cpu(q, k, v, 0.0, False, attn_mask=bias)
        return out, lse[..., None], None                        # lse (B, H, L, 1)

    def flash(self, q, k, v):
        self.calls.append("flash")
        out, lse = self._cpu(q, k, v, 0.0, False)
        return out, lse, None

    def efficient(self, q, k, v, bias, compute_lse):
        self.calls.append("efficient")
        out, lse = self._cpu(q, k, v, 0.0, False, attn_mask=bias)
        return out, F.pad(lse, (0, -lse.shape[-1] % 32, 0, 0)), None  # rows padded to 32


def _check(q, k, v, bias) -> None:
    out, lse = sdpa._cuda_sdpa_lse(q, k, v, bias)
    ref_out, ref_lse = sdpa_lse(q.float(), k.float(), v.float(),
                                None if bias is None else bias.float())
    assert lse.shape == q.shape[:3]
    torch.testing.assert_close(out.float(), ref_out, atol=2e-2, rtol=0)
    torch.testing.assert_close(lse.float(), ref_lse, atol=2e-2, rtol=0)


def test_cudnn_refusal_falls_back_and_warns_once_per_kernel(monkeypatch) -> None:
    fake = _FakeCuda(monkeypatch, RuntimeError(UNSUPPORTED))
    q, k, v, bias = _qkvb(torch.bfloat16)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")            # only the module's own once-only rule
        for _ in range(3):
            _check(q, k, v, None)
            _check(q, k, v, bias)
    assert fake.calls == ["cudnn", "flash", "cudnn", "efficient"] * 3
    messages = [str(w.message) for w in caught]
    assert len(messages) == 2 and all(w.category is RuntimeWarning for w in caught)
    assert "using the flash kernel" in messages[0] and "No execution plans" in messages[0]
    assert "using the memory-efficient kernel" in messages[1]


@pytest.mark.parametrize("error", [
    RuntimeError("CUDA error: an illegal memory access was encountered"),
    torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"),
    RuntimeError("cuDNN Frontend error: [cudnn_frontend] ERROR: Graph execution failed.")])
def test_other_cudnn_errors_propagate(monkeypatch, error: RuntimeError) -> None:
    fake = _FakeCuda(monkeypatch, error)
    q, k, v, bias = _qkvb(torch.float16)
    with warnings.catch_warnings():
        warnings.simplefilter("error")             # no fallback warning either
        with pytest.raises(type(error), match=str(error).split(":")[0]):
            sdpa._cuda_sdpa_lse(q, k, v, bias)
    assert fake.calls == ["cudnn"]


def test_cudnn_is_used_for_half_and_efficient_for_float32(monkeypatch) -> None:
    fake = _FakeCuda(monkeypatch, None)
    q, k, v, bias = _qkvb(torch.bfloat16)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _check(q, k, v, bias)
        _check(q, k, v, None)
        q, k, v, bias = _qkvb(torch.float32)
        _check(q, k, v, bias)
        _check(q, k, v, None)
    assert fake.calls == ["cudnn", "cudnn", "efficient", "efficient"]
