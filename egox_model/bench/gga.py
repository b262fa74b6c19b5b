"""`egox bench gga`: memory-efficient GGA vs the dense-bias reference vs plain SDPA.

One self-attention call (batch 1) on random q/k/v and a random token geometry laid out as
Wan's [exo | ego] token grid: 28 rows x (49 exo + 28 ego) columns per latent frame, the
official release's 448x784 | 448x448 clip. Sizes are whole latent frames of that grid.

Peak memory is what each method allocates beyond its inputs (q, k, v and tables):
- cuda: `torch.cuda.max_memory_allocated` delta (exact, allocator-level).
- cpu: resident-set-size delta sampled every ~1 ms by a thread, with glibc told to mmap
  every allocation >= 1 MiB so freed tensors leave the RSS; a sampled estimate.
"""
from __future__ import annotations

import ctypes
import statistics
import threading
import time
from dataclasses import dataclass
from typing import Callable, Literal, get_args

import torch
import torch.nn.functional as F

from egox_model.bench import TOKENS_PER_FRAME, random_token_geometry, require_device
from egox_model.errors import InputError
from egox_model.generator.gga import (GGAConfig, GGAKernel, GGATables, gga_attention,
                                      gga_exo_bias, gga_tables)

__all__ = ["EFFICIENT_KERNELS", "GGABenchConfig", "run_gga_bench", "format_gga_bench"]

#: The kernels timed against the dense-bias reference (which is always run).
EFFICIENT_KERNELS = tuple(k for k in get_args(GGAKernel) if k != "dense")


@dataclass(frozen=True)
class GGABenchConfig:
    """Benchmark size and device.

    tokens: requested sequence length, rounded to whole latent frames (>= 1 frame);
        default 2 frames (4,312) on cpu, 13 frames (28,028) on cuda.
    heads, head_dim: default 4 x 64 on cpu, 40 x 128 (Wan 14B) on cuda.
    dtype: float32 on cpu, bfloat16 on cuda.
    kernel: the efficient GGA kernel timed as "fast". For "split" the per-clip bias table
        is built once outside the timed call, as the processor does (it reuses it in every
        block and step); its build time is reported as `split_bias_build_ms`.
    """

    device: Literal["cpu", "cuda"] = "cpu"
    tokens: int | None = None
    heads: int | None = None
    head_dim: int | None = None
    kernel: GGAKernel = GGAConfig().kernel
    strength: float = 3.0
    repeats: int = 3
    seed: int = 0

    def __post_init__(self) -> None:
        require_device(self.device)
        if self.kernel not in EFFICIENT_KERNELS:
            raise InputError(f"kernel must be one of {EFFICIENT_KERNELS} ('dense' is always run "
                             f"as the reference), got {self.kernel!r}")
        for name in ("tokens", "heads", "head_dim"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise InputError(f"{name} must be >= 1, got {value}")
        if self.repeats < 1:
            raise InputError(f"repeats must be >= 1, got {self.repeats}")

    @property
    def frames(self) -> int:
        """Latent frames T."""
        default = 2 if self.device == "cpu" else 13
        return default if self.tokens is None else max(1, round(self.tokens / TOKENS_PER_FRAME))


class _PeakMemory:
    """Context manager measuring the peak bytes allocated inside it, beyond its start."""

    def __init__(self, device: str) -> None:
        self.device, self.peak_bytes = device, 0
        self._stop = threading.Event()

    def __enter__(self) -> _PeakMemory:
        if self.device == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            self._base = torch.cuda.memory_allocated()
        else:
            import psutil  # only the cpu path needs it
            self._proc = psutil.Process()
            self._base = self._peak = self._proc.memory_info().rss
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.is_set():
            self._peak = max(self._peak, self._proc.memory_info().rss)
            time.sleep(0.001)

    def __exit__(self, *exc: object) -> None:
        if self.device == "cuda":
            torch.cuda.synchronize()
            self.peak_bytes = torch.cuda.max_memory_allocated() - self._base
        else:
            self._stop.set()
            self._thread.join()
            self.peak_bytes = max(0, self._peak - self._base)


def _use_mmap_for_large_allocations() -> None:
    """glibc: serve >= 1 MiB allocations by mmap so frees return memory (honest RSS peaks)."""
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return
    m_mmap_threshold = -3
    libc.mallopt(m_mmap_threshold, 1 << 20)


def _measure(fn: Callable[[], torch.Tensor], device: str,
             repeats: int) -> tuple[torch.Tensor, float, float]:
    """Warm up once, then (output, median ms over `repeats`, peak MiB of one call)."""
    out = fn()
    del out
    with _PeakMemory(device) as mem:
        out = fn()
    times = []
    for _ in range(repeats):
        if device == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        if device == "cuda":
            torch.cuda.synchronize()
        times.append(1e3 * (time.perf_counter() - start))
    return out, statistics.median(times), mem.peak_bytes / 2 ** 20


def run_gga_bench(config: GGABenchConfig) -> dict[str, float | int | str]:
    """Time and peak memory of plain SDPA, efficient GGA and dense-bias GGA on one input."""
    cpu = config.device == "cpu"
    if cpu:
        _use_mmap_for_large_allocations()
    heads = config.heads or (4 if cpu else 40)
    head_dim = config.head_dim or (64 if cpu else 128)
    dtype = torch.float32 if cpu else torch.bfloat16
    generator = torch.Generator().manual_seed(config.seed)
    tables: GGATables = gga_tables(random_token_geometry(config.frames, generator), config.device)
    n = tables.num_tokens
    # (1, H, N, D) views of (1, N, H, D) memory: the layout Wan's projections hand attention.
    query, key, value = (torch.randn(1, n, heads, head_dim, generator=generator)
                         .to(config.device, dtype).transpose(1, 2) for _ in range(3))
    fast = GGAConfig(strength=config.strength, kernel=config.kernel)
    dense = GGAConfig(strength=config.strength, kernel="dense")

    _, sdpa_ms, sdpa_mb = _measure(lambda: F.scaled_dot_product_attention(query, key, value),
                                   config.device, config.repeats)
    extra: dict[str, float] = {}
    exo_bias = None
    if config.kernel == "split":
        exo_bias, build_ms, build_mb = _measure(lambda: gga_exo_bias(tables, fast, dtype),
                                                config.device, 1)
        extra = {"split_bias_build_ms": round(build_ms, 3), "split_bias_mb": round(
            exo_bias.numel() * exo_bias.element_size() / 2**20, 1)}
    fast_out, fast_ms, fast_mb = _measure(
        lambda: gga_attention(query, key, value, tables, fast, exo_bias=exo_bias),
        config.device, config.repeats)
    dense_out, dense_ms, dense_mb = _measure(
        lambda: gga_attention(query, key, value, tables, dense), config.device, config.repeats)
    return {
        "device": torch.cuda.get_device_name() if not cpu else "cpu",
        "dtype": str(dtype).removeprefix("torch."), "kernel": config.kernel,
        "tokens": n, "heads": heads, "head_dim": head_dim,
        "sdpa_ms": round(sdpa_ms, 3), "fast_ms": round(fast_ms, 3),
        "dense_ms": round(dense_ms, 3), "sdpa_peak_mb": round(sdpa_mb, 1),
        "fast_peak_mb": round(fast_mb, 1), "dense_peak_mb": round(dense_mb, 1),
        "max_abs_err": float((fast_out.float() - dense_out.float()).abs().max()),
        **extra,
    }


def format_gga_bench(result: dict[str, float | int | str]) -> str:
    """Human-readable table with the ratios against plain SDPA."""
    r = result
    lines = [f"GGA attention, {r['tokens']} tokens, {r['heads']} heads x {r['head_dim']}, "
             f"{r['dtype']} on {r['device']} (batch 1, one call)",
             f"{'method':<22}{'time ms':>10}{'x sdpa':>9}{'peak MiB':>11}"]
    for label, ms, mb in (("plain SDPA (no GGA)", r["sdpa_ms"], r["sdpa_peak_mb"]),
                          (f"GGA {r['kernel']}", r["fast_ms"], r["fast_peak_mb"]),
                          ("GGA dense bias (ref)", r["dense_ms"], r["dense_peak_mb"])):
        lines.append(f"{label:<22}{ms:>10.2f}{ms / r['sdpa_ms']:>9.2f}{mb:>11.1f}")
    lines.append(f"dense / {r['kernel']}: time {r['dense_ms'] / r['fast_ms']:.2f}x, peak memory "
                 f"{r['dense_peak_mb'] / max(r['fast_peak_mb'], 1e-9):.1f}x; "
                 f"max |{r['kernel']} - dense| = {r['max_abs_err']:.2e}")
    if "split_bias_build_ms" in r:
        lines.append(f"split: per-clip bias table {r['split_bias_mb']} MiB, built once in "
                     f"{r['split_bias_build_ms']:.2f} ms (not in the per-call time)")
    return "\n".join(lines)
