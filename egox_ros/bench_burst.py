"""`egox bench burst`: a burst of clips published faster than real time into the node.

The `egox` node runs in-process with the `prior` backend; a player publishes `clips` clips of
`frames` frames at the default sizes unpaced (as fast as DDS takes them) on reliable topics
into reliable subscriptions `depth` deep, so transport loses nothing. Reported: clips
complete / published, every drop by cause (with a small queue most clips are dropped by the
queue policy, counted exactly), and the process's RSS before the burst (the baseline, the
resting level), at its peak and after it settled, with after / before as the ratio.
"""
from __future__ import annotations

import threading
import time
from types import SimpleNamespace
from typing import Any, Sequence

import numpy as np

from egox_ros.dds import local_ros_env

__all__ = ["bench_burst", "format_burst"]

SETTLE_S = 3.0          # no new input for this long, queue empty: the burst is over


class _Cycle:
    """frames[i % len(frames)]: a long stream from one clip without copying it."""

    def __init__(self, frames: Sequence[Any]) -> None:
        self.frames = frames

    def __getitem__(self, i: int) -> Any:
        return self.frames[i % len(self.frames)]


def bench_burst(*, clips: int = 20, frames: int = 49, queue_size: int = 2,
                depth: int = 1000, seed: int = 0) -> dict[str, Any]:
    """Publish the burst, wait until the node settled; counts and RSS figures (MB)."""
    local_ros_env()
    import psutil

    from egox_model.generator import GeneratorConfig, make_generator
    from egox_model.scene import SceneConfig, render_scene
    from egox_ros.harness import RosHarness
    from egox_ros.node import EgoxNode
    from egox_ros.player import ScenePlayer
    from egox_ros.ros_demo import PLAYED_TOPICS, demo_config

    scene = render_scene(SceneConfig(seed=seed, num_frames=frames))
    total = clips * frames
    period = int(round(1e9 / scene.fps))
    played = SimpleNamespace(
        **{k: _Cycle(getattr(scene, k)) for k in ("exo_rgb", "exo_depth_m", "dynamic_mask",
                                                  "exo_c2w", "ego_c2w")},
        exo_K=scene.exo_K, fps=scene.fps,
        stamps_ns=int(scene.stamps_ns[0]) + np.arange(total, dtype=np.int64) * period)
    config = demo_config(scene, subscription_qos="reliable", subscription_depth=depth,
                         queue_size=queue_size, publish_prior=False)
    process = psutil.Process()
    peak = [0]
    sampling = threading.Event()

    def sample() -> None:
        while not sampling.is_set():
            peak[0] = max(peak[0], process.memory_info().rss)
            time.sleep(0.05)

    with RosHarness() as harness:
        node = harness.add(EgoxNode(config=config, generator=make_generator(GeneratorConfig()),
                                    context=harness.context))
        player = harness.add(ScenePlayer(played, rate=0, publish_mask=True,
                                         context=harness.context))
        harness.wait_until(lambda: player.wait_for_subscribers(1, 0.0, PLAYED_TOPICS), 20,
                           what="discovery of the node's subscriptions")
        time.sleep(1.0)
        before = process.memory_info().rss
        peak[0] = before
        threading.Thread(target=sample, daemon=True).start()
        start = time.monotonic()
        player.play()
        published_s = time.monotonic() - start
        last = [-1, time.monotonic()]

        def settled() -> bool:
            stats = node.stats()
            if stats["frames_in"] != last[0]:
                last[:] = [stats["frames_in"], time.monotonic()]
            done = stats.get("clips_published", 0) + stats.get("queue_overflow", 0)
            return (time.monotonic() - last[1] > SETTLE_S and stats["queue_depth"] == 0
                    and done >= stats.get("clips_complete", 0))

        harness.wait_until(settled, 60 + 10 * clips, what="the node to finish the burst")
        time.sleep(SETTLE_S)          # past a diagnostics period: the node trims its heap
        after = process.memory_info().rss
        sampling.set()
        stats = node.stats()
        drops = node.drop_totals()
    mb = 1 << 20
    return {"clips": clips, "frames": total, "queue_size": queue_size, "depth": depth,
            "published_s": round(published_s, 1), "frames_in": stats["frames_in"],
            "clips_complete": stats.get("clips_complete", 0),
            "clips_published": stats.get("clips_published", 0),
            "drops": {k: v for k, v in drops.items() if v},
            "rss_before_MB": before // mb, "rss_peak_MB": peak[0] // mb,
            "rss_after_MB": after // mb, "rss_after_vs_before": round(after / before, 2)}


def format_burst(result: dict[str, Any]) -> str:
    """One line: counts, drops and RSS beside its resting baseline."""
    drops = ", ".join(f"{k} {v}" for k, v in result["drops"].items()) or "none"
    return (f"burst {result['clips']} clips ({result['frames']} frames in "
            f"{result['published_s']} s, queue_size {result['queue_size']}, depth "
            f"{result['depth']}): {result['clips_complete']} complete, "
            f"{result['clips_published']} published; drops: {drops}; RSS "
            f"{result['rss_before_MB']} MB at rest (baseline) -> peak {result['rss_peak_MB']} "
            f"MB -> {result['rss_after_MB']} MB after (x{result['rss_after_vs_before']} the "
            "baseline)")
