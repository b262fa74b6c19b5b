"""Step caching of the Wan transformer with diffusers' own hooks (`WanConfig.cache`).

"first_block": diffusers' FirstBlockCache (`transformer.enable_cache(FirstBlockCacheConfig)`).
Every call runs block 0; when its residual (output - input) changed by less than
`cache_threshold` (mean |difference| / mean |previous residual|) since the last full call of
the same context, blocks 1..N are skipped and the residual they added last time is reused.
It hooks the blocks (`WanTransformerBlock`, registered with diffusers), not the attention
processors, so it works with GGA on attn1. Its state is kept per cache context: the
pipeline runs the conditional and unconditional passes under `cache_context("cond")` /
`("uncond")`, and resets the state at the start and end of every clip.

Not offered: FasterCache (recognises diffusers' own attention processor classes, not GGA,
and expects CFG batched into one call), MagCache (needs magnitude ratios calibrated per model
and schedule; none exist for EgoX), TeaCache (not in diffusers). Caching gains little at 4
steps; it is meant for the 50-step schedule.
"""
from __future__ import annotations

import torch

from egox_model.errors import ConfigError
from egox_model.generator.wan.config import WanConfig

__all__ = ["apply_step_cache", "reset_step_cache"]


def apply_step_cache(transformer: torch.nn.Module, config: WanConfig) -> dict | None:
    """Enable `config.cache` on `transformer` (a diffusers WanTransformer3DModel); returns what
    was enabled, for diagnostics, or None for cache "none"."""
    if config.cache == "none":
        return None
    if not hasattr(transformer, "enable_cache"):
        raise ConfigError(f"needs a diffusers transformer with enable_cache; "
                          f"{type(transformer).__name__} has none", key="cache",
                          value=config.cache)
    from diffusers.hooks import FirstBlockCacheConfig

    transformer.enable_cache(FirstBlockCacheConfig(threshold=config.cache_threshold))
    return {"cache": config.cache, "threshold": config.cache_threshold}


def reset_step_cache(transformer: torch.nn.Module) -> None:
    """Forget every cached residual (a new clip must not reuse the last clip's blocks)."""
    if getattr(transformer, "is_cache_enabled", False):
        transformer._reset_stateful_cache()
