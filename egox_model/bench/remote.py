"""`egox bench remote`: backend 'prior' through `egox serve` on loopback vs in-process.

One run starts a loopback-only server (a private Ray, token required), then times the same
synthetic clip through the `remote` backend and through the local backend, and checks that
the remote result equals the local one on the decoded clip (pixels, coverage, stamps).
Reported beside the wan backend's clip times from docs/speed.md (H200: 262 s with 50 steps
+ CFG, 13.6 s with 4 steps): the issue's target is a remote overhead under 10 % of those.
"""
from __future__ import annotations

import os
import secrets
import statistics
import time

import numpy as np

from egox_model.generator import GeneratorConfig, make_generator
from egox_model.generator.remote import RemoteConfig, RemoteGenerator
from egox_model.scene import SceneConfig, render_scene
from egox_model.serve.config import ServeConfig, ServeOptions
from egox_model.serve.wire import roundtrip_clip

__all__ = ["WAN_CLIP_S", "format_remote_bench", "run_remote_bench"]

#: Wan 14B seconds per default clip on an H200 (docs/speed.md, measured stages).
WAN_CLIP_S = {"wan 50x2": 262.0, "wan 4x1": 13.6}
_TOKEN_ENV = "EGOX_BENCH_TOKEN"


def run_remote_bench(*, frames: int = 49, repeats: int = 3, port: int = 8000) -> dict:
    """Median ms per clip local vs remote, the remote parts, bytes each way, equality."""
    from egox_model.serve.server import start_server

    scene = render_scene(SceneConfig(seed=0, num_frames=frames))
    clip = scene.to_clip()
    os.environ[_TOKEN_ENV] = secrets.token_urlsafe(32)
    server = start_server(ServeConfig(serve=ServeOptions(port=port, token_env=_TOKEN_ENV)),
                          log=lambda text: None)
    try:
        remote = RemoteGenerator(RemoteConfig(url=server.url, token_env=_TOKEN_ENV,
                                              retries=20, backoff_s=0.25))
        local = make_generator(GeneratorConfig())
        remote.generate(clip)                              # warm-up (replica start, imports)
        local.generate(clip)
        remote_ms, local_ms, parts = [], [], []
        for _ in range(repeats):
            start = time.perf_counter()
            out_remote = remote.generate(clip)
            remote_ms.append((time.perf_counter() - start) * 1e3)
            parts.append(dict(out_remote.diagnostics["remote"]))
            start = time.perf_counter()
            local.generate(clip)
            local_ms.append((time.perf_counter() - start) * 1e3)
        reference = local.generate(roundtrip_clip(clip))
    finally:
        server.stop()
        os.environ.pop(_TOKEN_ENV, None)
    identical = bool(np.array_equal(out_remote.ego_rgb, reference.ego_rgb)
                     and np.array_equal(out_remote.prior.rgb, reference.prior.rgb)
                     and np.array_equal(out_remote.prior.mask, reference.prior.mask)
                     and np.array_equal(out_remote.stamps_ns, clip.stamps_ns))
    med = statistics.median
    local_med, remote_med = med(local_ms), med(remote_ms)
    overhead = remote_med - local_med
    raw = clip.exo_rgb.nbytes + sum(getattr(clip, n).nbytes for n in
                                    ("exo_depth_m", "exo_depth_mono_m", "exo_depth_video",
                                     "dynamic_mask") if getattr(clip, n) is not None)
    return {
        "frames": frames, "exo_hw": list(clip.exo_rgb.shape[1:3]),
        "ego_hw": [clip.ego_K.height, clip.ego_K.width], "repeats": repeats,
        "local_ms": round(local_med, 1), "remote_ms": round(remote_med, 1),
        "ratio": round(remote_med / local_med, 3), "overhead_ms": round(overhead, 1),
        "encode_ms": round(med(p["encode_ms"] for p in parts), 1),
        "http_rtt_ms": round(med(p["rtt_ms"] for p in parts), 1),
        "server_generate_ms": round(med(p["server_ms"] for p in parts), 1),
        "server_decode_ms": round(med(p["server_decode_ms"] for p in parts), 1),
        "decode_ms": round(med(p["decode_ms"] for p in parts), 1),
        "request_bytes": parts[-1]["request_bytes"], "response_bytes": parts[-1]["response_bytes"],
        "raw_request_bytes": int(raw),
        "raw_response_bytes": int(out_remote.ego_rgb.nbytes + out_remote.prior.rgb.nbytes
                                  + out_remote.prior.mask.nbytes
                                  + out_remote.prior.depth_m.nbytes),
        "identical_to_local": identical,
        "overhead_vs_wan": {k: round(overhead / (s * 1e3), 4) for k, s in WAN_CLIP_S.items()},
    }


def format_remote_bench(result: dict) -> str:
    """The result as a small table (times in ms per clip, sizes in MB)."""
    mb = 1e6
    rows = [
        f"egox bench remote: backend 'prior', {result['frames']} frames, exo "
        f"{result['exo_hw'][0]}x{result['exo_hw'][1]}, ego {result['ego_hw'][0]}x"
        f"{result['ego_hw'][1]}, loopback, median of {result['repeats']}",
        f"{'':28}{'local':>10}{'remote':>10}{'ratio':>8}",
        f"{'ms per clip':28}{result['local_ms']:>10.0f}{result['remote_ms']:>10.0f}"
        f"{result['ratio']:>8.2f}",
        f"  remote parts: encode {result['encode_ms']:.0f} + HTTP round trip "
        f"{result['http_rtt_ms']:.0f} (server: decode {result['server_decode_ms']:.0f}, "
        f"generate {result['server_generate_ms']:.0f}, the rest encode + transfer) + "
        f"decode {result['decode_ms']:.0f} ms",
        f"payload per clip: request {result['request_bytes'] / mb:.1f} MB (raw "
        f"{result['raw_request_bytes'] / mb:.1f}), response {result['response_bytes'] / mb:.1f}"
        f" MB (raw {result['raw_response_bytes'] / mb:.1f})",
        f"remote == local on the decoded clip (pixels, coverage, stamps): "
        f"{result['identical_to_local']}",
        "overhead vs a wan clip (docs/speed.md, H200): " + ", ".join(
            f"{k} {v * 100:.2f} % (target < 10 %)" for k, v in result["overhead_vs_wan"].items()),
    ]
    return "\n".join(rows)
