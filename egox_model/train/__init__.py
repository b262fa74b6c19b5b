"""LoRA fine-tuning of Wan 2.1 I2V on paired exo/ego clips (`egox train`, docs/training.md).

Modules: `config` (TrainConfig), `preprocess` (the per-clip cache of latents, embeddings and
GGA geometry), `objective` (flow matching on the ego half), `checkpoint` (exact resume),
`trainer` (the loop), `smoke` (the CPU smoke run on a tiny model).
"""
