"""Stand-in estimators that return a synthetic scene's ground truth (with known distortions),
so the plumbing around the models is tested against exact answers."""
import cv2
import numpy as np

from egox_model.perception.base import DepthEstimator, DepthPrediction


class MetricFromTruth(DepthEstimator):
    """D_m = ground truth x (1 + noise): a metric per-frame model with pixel noise."""

    kind = "metric"

    def __init__(self, depth_m, noise=0.02, seed=0):
        self.depth_m, self.noise, self.seed = depth_m, noise, seed
        self.info = {"model_type": "stand-in", "licence": "n/a"}
        self.calls = 0

    def estimate(self, frames, K):
        self.calls += 1
        rng = np.random.default_rng(self.seed)
        noisy = self.depth_m * (1 + self.noise * rng.standard_normal(self.depth_m.shape))
        return DepthPrediction(np.where(self.depth_m > 0, noisy, 0).astype(np.float32), "metric")


class RelativeFromTruth(DepthEstimator):
    """Relative inverse depth s_t / D + o_t with a different (s_t, o_t) every frame: the
    per-frame flicker of a single-image relative model."""

    kind = "inverse_relative"

    def __init__(self, depth_m, seed=0, noise=0.0):
        rng = np.random.default_rng(seed + 100)
        num = len(depth_m)
        self.scale = rng.uniform(0.5, 2.0, num)
        self.shift = rng.uniform(0.0, 0.3, num)
        self.pixel = 1 + noise * rng.standard_normal(depth_m.shape)      # per-pixel flicker
        self.depth_m = depth_m
        self.info = {"model_type": "stand-in", "licence": "n/a"}

    def estimate(self, frames, K):
        with np.errstate(divide="ignore"):
            inv = self.scale[:, None, None] * self.pixel / self.depth_m \
                + self.shift[:, None, None]
        return DepthPrediction(np.where(self.depth_m > 0, inv, 0).astype(np.float32),
                               "inverse_relative")


class TruthSegmenter:
    """A text-prompted video segmenter returning the scene's moving object (id 7) at its
    own input size, and an empty second track (id 9) on odd frames."""

    def __init__(self, masks, input_size=(48, 80)):
        self.masks, self.input_size = masks, input_size
        self.info = {"model_type": "stand-in"}
        self.seen: list = []

    def segment(self, frames, phrases):
        self.seen.append((frames.shape, list(phrases)))
        h, w = self.input_size
        out = []
        for f, mask in enumerate(self.masks):
            small = cv2.resize(mask.astype(np.float32), (w, h), interpolation=cv2.INTER_AREA)
            objects = {7: small - 0.5}                       # logits: > 0 is the object
            if f % 2:
                objects[9] = np.zeros((h // 2, w // 2), bool)
            out.append(objects)
        return out
