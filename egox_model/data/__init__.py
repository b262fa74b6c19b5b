"""Paired exo/ego clips for training and evaluation: the format, its reader and writers.

Modules: `format` (the on-disk format, `PairedClip`, splits), `synthetic` (clips of the
synthetic room).
"""
from egox_model.data.format import (FORMAT, VERSION, PairedClip, clip_dirs, read_paired_clip,
                                    read_splits, write_paired_clip, write_splits)

__all__ = ["FORMAT", "VERSION", "PairedClip", "clip_dirs", "read_paired_clip", "read_splits",
           "write_paired_clip", "write_splits"]
