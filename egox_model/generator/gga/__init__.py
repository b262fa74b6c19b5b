"""Geometry-Guided Attention (GGA) as a diffusers attention processor for Wan's self-attention.

For an ego query m of latent frame i and an exo key n (any latent frame, 3D point P_n, world
frame, metres) the logit (after the 1/sqrt(d) scaling) gets an additive bias

    c = clamp(q_hat_m . normalize(P_n - c_i), -1, 1)
    official (default, the EgoX release): c' = lambda * c, except that when lambda > 1 only
        positive cosines are scaled (c' = c where c <= 0); bias = log(c' + 1 + 1e-6)
    power (paper Eq. 7):                  bias = lambda * log(c + 1 + 1e-6)

with q_hat_m the (pooled, not renormalised) ego viewing ray and c_i the ego camera centre of
the query's latent frame. Exo queries, ego keys and invalid exo keys (NaN point) get no bias
(exactly 0). lambda = 0 runs stock attention in both forms: the official form's bias would be
the constant log(1 + 1e-6) on exo keys, within 1e-6 of stock.

Token layout (Wan, patch 1x2x2, latent width-concat [exo | ego]): sequence index
s = t * h * (w_x + w_e) + r * (w_x + w_e) + col; columns col < w_x are exo tokens.

Kernels (`GGAConfig.kernel`), all exact:
- "dense": the official approach, one (N, N) fp32 bias for all queries; small N only.
- "chunked": exo queries by plain SDPA; ego queries in whole-frame chunks by SDPA with a
  (chunk, N) bias built from per-frame key directions; memory O(chunk * N), no N x N.
- "split" (default): tokens gathered once into [exo | ego] order; exo queries by plain SDPA;
  ego queries attend to ego keys by plain SDPA and to exo keys by SDPA with the (ego x exo)
  bias, the two partial softmaxes merged exactly by their log-sum-exp (cuDNN returns it, with
  a bias, on Hopper). Only ego x exo pairs (a quarter of the default clip's) take the slower
  biased kernel, and the processor builds that bias once per clip and reuses it in every
  block and step: N_ego x N_exo entries, 347 MiB in bf16 for the default clip (N x N would
  be 1.5 GiB).
On an H200 at 28,028 tokens, 40 x 128 heads, bf16 (`egox bench gga`): "split" 1.20x plain
SDPA (cuDNN), "chunked" 1.48x, "dense" 2.2x; a whole 40-block CFG step of the 14B model
(`egox bench step`): 1.09x with "split". On the CPU "split" also leads.

Modules: `config` (GGAConfig), `bias` (tables and bias rows), `sdpa` (attention with
log-sum-exp, cuDNN fallback), `kernels` (gga_attention), `processor` (GGAAttnProcessor).
"""
from egox_model.generator.gga.bias import (GGATables, gga_bias, gga_dense_bias, gga_exo_bias,
                                           gga_tables)
from egox_model.generator.gga.config import GGAConfig, GGAForm, GGAKernel
from egox_model.generator.gga.kernels import gga_attention
from egox_model.generator.gga.processor import GGAAttnProcessor

__all__ = ["GGAConfig", "GGAAttnProcessor", "GGAForm", "GGAKernel", "GGATables",
           "gga_attention", "gga_bias", "gga_dense_bias", "gga_exo_bias", "gga_tables"]
