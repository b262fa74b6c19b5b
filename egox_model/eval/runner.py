"""`egox eval split`: generate (or read) the ego videos of a paired-clip split and score them.

Rows of the table:
- without `predictions`: the configured generator ("full") and one row per ablation, each
  the same generator with the switches of `ABLATIONS` set (backend 'wan' only: for other
  backends the row says why it does not apply). Generated videos are kept under
  OUT/videos/ROW/NAME/ (ego.mp4, prior.mp4, report.json), itself a predictions folder;
- with `predictions`: one row per folder holding NAME/ego.mp4 per clip of the split (optional
  NAME/masks.npz with `ego_objects`, the paired-clip format's object ids, for IoU / location
  error).

PSNR and SSIM are always computed; LPIPS, CLIP-I and FVD when their local backbone is
given; IoU / location error when the ground truth and the prediction both have object ids.
Per clip: PSNR pooled over the clip's pixels, SSIM / LPIPS / CLIP-I averaged over frames;
the split value is the mean over clips (FVD: over all windows of the split).
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from egox_model.data import PairedClip, clip_dirs, read_paired_clip
from egox_model.errors import ConfigError, InputError
from egox_model.eval.clip_image import ClipImageScorer, load_clip_image_scorer
from egox_model.eval.fvd import VideoFeatures, fvd, load_video_features
from egox_model.eval.lpips import LPIPS, load_lpips
from egox_model.eval.metrics import psnr, ssim
from egox_model.eval.objects import object_scores
from egox_model.eval.table import EvalRow, write_table
from egox_model.video import read_video

__all__ = ["ABLATIONS", "EvalOptions", "MetricModels", "Prediction", "RowScorer", "first_frames",
           "make_generate", "read_prediction", "run_eval"]

#: generate(overrides, paired, save_dir) -> ego frames (F, H, W, 3) uint8 of the generator
#: with the setting overrides of a row; saves ego.mp4, prior.mp4, report.json to save_dir.
GenerateFn = Callable[[dict, PairedClip, Path], np.ndarray]

#: Ablation name -> (row label as in the paper, generator settings it sets).
ABLATIONS = {
    "no_gga": ("w/o GGA", {"wan.gga.strength": 0.0}),
    "no_prior": ("w/o ego prior", {"wan.conditioning.zero_prior": True}),
    "noisy_exo": ("w/o clean latent", {"wan.conditioning.noisy_exo": True}),
}
#: Why an ablation has no row for backend 'prior'.
_NOT_APPLICABLE = {
    "no_gga": "has no attention to bias (GGA lives in Wan's self-attention)",
    "no_prior": "outputs the ego prior itself: there is no prior latent to zero",
    "noisy_exo": "has no exo latent to re-noise",
}


@dataclass(frozen=True)
class EvalOptions:
    """What to evaluate and with which backbones ('' = not given)."""

    split: str = "test"
    frames: int = 0                      # first N frames of every clip (0 = all)
    max_clips: int = 0                   # first N clips of the split (0 = all)
    ablations: tuple[str, ...] = ()
    lpips_dir: str = ""
    lpips_net: str = "alex"
    clip_model: str = ""
    i3d: str = ""
    fvd_window: int = 16
    device: str = "cpu"                  # where the metric backbones run

    def __post_init__(self) -> None:
        unknown = [a for a in self.ablations if a not in ABLATIONS]
        if unknown:
            raise InputError(f"unknown ablation(s) {unknown}; choose from {sorted(ABLATIONS)}")
        if self.frames < 0 or self.max_clips < 0:
            raise InputError(f"frames and max_clips must be >= 0, got {self.frames}, "
                             f"{self.max_clips}")


@dataclass
class MetricModels:
    """The loaded metric backbones (None = not given) and, for each missing one, a note
    saying how to give it (metric key -> sentence)."""

    lpips: LPIPS | None = None
    clip: ClipImageScorer | None = None
    fvd: VideoFeatures | None = None
    missing: dict = field(default_factory=dict)

    @classmethod
    def load(cls, options: EvalOptions) -> MetricModels:
        """Load what `options` names; ModelLoadError when a given path is unusable."""
        models = cls()
        if options.lpips_dir:
            models.lpips = load_lpips(options.lpips_dir, options.lpips_net, options.device)
        else:
            models.missing["lpips"] = ("LPIPS not computed: give --lpips-dir DIR holding "
                                       "torchvision's alexnet-owt-7be5be79.pth and lpips' "
                                       "alex.pth")
        if options.clip_model:
            models.clip = load_clip_image_scorer(options.clip_model, options.device)
        else:
            models.missing["clip_i"] = ("CLIP-I not computed: give --clip-model DIR (a local "
                                        "transformers CLIP directory)")
        if options.i3d:
            models.fvd = load_video_features(options.i3d, options.device, options.fvd_window)
        else:
            models.missing["fvd"] = "FVD not computed: give --i3d FILE (i3d_torchscript.pt)"
        return models


@dataclass
class Prediction:
    """A predicted ego video (F, H, W, 3) uint8 and its object ids (F, H, W) or None."""

    ego_rgb: np.ndarray
    ego_objects: np.ndarray | None = None


def first_frames(paired: PairedClip, count: int) -> PairedClip:
    """`paired` cut to its first `count` frames (all of them for 0)."""
    clip = paired.clip
    if count == 0 or count == clip.num_frames:
        return paired
    if count > clip.num_frames:
        raise InputError(f"clip {paired.name} has {clip.num_frames} frames, fewer than "
                         f"--frames {count}")
    cut = {name: getattr(clip, name)[:count] for name in (
        "exo_rgb", "exo_c2w", "ego_c2w", "stamps_ns", "exo_depth_m", "exo_depth_mono_m",
        "exo_depth_video", "dynamic_mask") if getattr(clip, name) is not None}
    return dataclasses.replace(
        paired, clip=dataclasses.replace(clip, **cut), ego_rgb=paired.ego_rgb[:count],
        prior_rgb=None if paired.prior_rgb is None else paired.prior_rgb[:count],
        ego_objects=None if paired.ego_objects is None else paired.ego_objects[:count])


def read_prediction(pred_dir: Path, paired: PairedClip) -> Prediction:
    """NAME/ego.mp4 (+ NAME/masks.npz `ego_objects`) of `pred_dir`, cut to the clip's
    frame count; a missing file or another frame size raises InputError naming it."""
    clip_dir = pred_dir / paired.name
    frames = read_video(clip_dir / "ego.mp4")[0]
    F, h, w = paired.ego_rgb.shape[:3]
    if frames.shape[1:3] == (h + h % 2, w + w % 2):  # write_video pads odd sizes
        frames = frames[:, :h, :w]
    if len(frames) < F or frames.shape[1:3] != (h, w):
        raise InputError(f"{clip_dir / 'ego.mp4'} is {len(frames)} frames of "
                         f"{frames.shape[2]}x{frames.shape[1]}; the ground truth of clip "
                         f"{paired.name} is {F} frames of {w}x{h}")
    objects = None
    if (clip_dir / "masks.npz").is_file():
        with np.load(clip_dir / "masks.npz") as data:
            if "ego_objects" in data.files:
                objects = data["ego_objects"][:F]
    return Prediction(frames[:F], objects)


def _mean(values: list[float]) -> float:
    finite = [v for v in values if not math.isnan(v)]
    return float(np.mean(finite)) if finite else float("nan")


class RowScorer:
    """Scores one row clip by clip (`add`), then its split values (`finish`)."""

    def __init__(self, row: EvalRow, models: MetricModels,
                 target_features: dict[str, np.ndarray]) -> None:
        """`target_features` caches the ground truth's FVD features by clip name, shared by
        the rows."""
        self.row, self.models, self.target_features = row, models, target_features
        self.predicted_features: list[np.ndarray] = []
        self.no_objects: list[str] = []

    def add(self, paired: PairedClip, pred: Prediction) -> None:
        """Score the prediction of one clip against its ground truth."""
        models, target = self.models, paired.ego_rgb
        scores = {"psnr": psnr(pred.ego_rgb, target), "ssim": ssim(pred.ego_rgb, target)}
        if models.lpips is not None:
            scores["lpips"] = models.lpips.video_distance(pred.ego_rgb, target)
        if models.clip is not None:
            scores["clip_i"] = models.clip.score(pred.ego_rgb, target)
        if paired.ego_objects is not None and paired.ego_objects.any():
            if pred.ego_objects is None:
                self.no_objects.append(paired.name)
            else:
                objects = object_scores(pred.ego_objects, paired.ego_objects)
                scores.update(iou=objects.iou, location_error_px=objects.location_error_px)
        if models.fvd is not None:
            if paired.name not in self.target_features:
                self.target_features[paired.name] = models.fvd(target)
            self.predicted_features.append(models.fvd(pred.ego_rgb))
        self.row.clips[paired.name] = scores

    def finish(self) -> EvalRow:
        """The row with its split metrics (means over clips, FVD over all windows) and
        notes."""
        row, models = self.row, self.models
        if not row.clips:
            raise InputError(f"row {row.name!r}: no clip to score")
        for key in ("psnr", "ssim", "lpips", "clip_i", "iou", "location_error_px"):
            values = [s[key] for s in row.clips.values() if key in s]
            if values:
                row.metrics[key] = _mean(values)
        if models.fvd is not None:
            predicted = np.concatenate(self.predicted_features)
            target = np.concatenate([self.target_features[n] for n in row.clips])
            if len(predicted) >= 2:
                row.metrics["fvd"] = fvd(predicted, target)
                row.notes.append(f"FVD over {len(predicted)} windows of {models.fvd.window} "
                                 "frames")
            else:
                row.notes.append(f"FVD not computed: {len(predicted)} window of "
                                 f"{models.fvd.window} frames; it needs >= 2 (more clips or "
                                 "a shorter --fvd-window)")
        if self.no_objects:
            row.notes.append(f"IoU / Loc.Err not computed for {len(self.no_objects)} clip(s) "
                             "with ground-truth objects: the prediction has no masks.npz "
                             "`ego_objects` (track the objects in the generated video, e.g. "
                             "with SAM2, and score that folder with --predictions)")
        return row


def make_generate(settings: dict) -> tuple[str, GenerateFn]:
    """The configured backend's name and a `GenerateFn` building the generator of `settings`
    (dotted flag values of GeneratorConfig) plus each row's overrides, one at a time."""
    from egox_model.clip_io import write_generation
    from egox_model.config import from_flat
    from egox_model.generator import GeneratorConfig, make_generator
    from egox_model.perception.perceive import with_perception

    base = from_flat(GeneratorConfig, settings)
    built: dict = {}

    def generate(overrides: dict, paired: PairedClip, save_dir: Path) -> np.ndarray:
        key = repr(sorted(overrides.items()))
        if key not in built:
            built.clear()                               # one model in memory at a time
            config = from_flat(GeneratorConfig, {**settings, **overrides})
            built[key] = config, with_perception(make_generator(config), config)
        config, generator = built[key]
        clip = paired.clip
        if (clip.exo_depth_m is None and clip.exo_depth_mono_m is None
                and not config.perception.depth_model):
            raise ConfigError(f"clip {paired.name} has no exo_depth.npz: give a local metric "
                              "depth model directory (docs/perception.md)",
                              key="perception.depth_model", value="")
        config.check_clip_shapes(clip.num_frames, clip.exo_rgb.shape[1:3],
                                 (clip.ego_K.height, clip.ego_K.width))
        output = generator.generate(clip)
        write_generation(save_dir, output, clip.fps)
        return output.ego_rgb

    return base.backend, generate


def run_eval(data_dir: str | Path, out_dir: str | Path, options: EvalOptions, *,
             predictions: list[Path] = (), generate: GenerateFn | None = None,
             backend: str = "", log: Callable[[str], None] = lambda _: None) -> list[EvalRow]:
    """Score the split of `data_dir` and write OUT/results.md and OUT/results.json.

    With `predictions`, one row per folder; otherwise `generate` (see `make_generate`) makes
    the videos of each row, `backend` naming the configured backend.
    """
    if predictions and options.ablations:
        raise InputError("ablation rows are generated; drop --ablations when scoring "
                         "--predictions folders")
    if not predictions and generate is None:
        raise InputError("nothing to score: give predictions folders or a generator")
    dirs = clip_dirs(data_dir, options.split)
    if options.max_clips:
        dirs = dirs[:options.max_clips]
    if not dirs:
        raise InputError(f"split {options.split!r} of {data_dir} holds no clip")
    for pred_dir in predictions:
        if not Path(pred_dir).is_dir():
            raise InputError(f"predictions folder {str(pred_dir)!r} does not exist")
    models = MetricModels.load(options)
    out_dir = Path(out_dir)

    def clips() -> Iterator[PairedClip]:
        for i, clip_dir in enumerate(dirs):
            log(f"clip {i + 1}/{len(dirs)}: {clip_dir.name}")
            yield first_frames(read_paired_clip(clip_dir), options.frames)

    rows: list[EvalRow] = []
    target_features: dict[str, np.ndarray] = {}
    if predictions:                       # clips outer: each ground truth is read once
        folders = [Path(d) for d in predictions]
        names = [d.name for d in folders]
        names = names if len(set(names)) == len(names) else [str(d) for d in folders]
        scorers = [RowScorer(EvalRow(n, n, {"predictions": str(d)}), models, target_features)
                   for n, d in zip(names, folders)]
        for paired in clips():
            for pred_dir, scorer in zip(folders, scorers):
                scorer.add(paired, read_prediction(pred_dir, paired))
        rows = [scorer.finish() for scorer in scorers]
    else:                                 # rows outer: one generator in memory at a time
        label = "EgoX (wan)" if backend == "wan" else f"{backend} backend"
        specs = [("full", label, {})] + [(a, *ABLATIONS[a]) for a in options.ablations]
        for name, row_label, overrides in specs:
            row = EvalRow(name, row_label, dict(overrides))
            if name != "full" and backend != "wan":
                why = (_NOT_APPLICABLE[name] if backend == "prior" else
                       f"runs the server's generator: start `egox serve` with {overrides} "
                       "and score that run as its own row")
                row.notes.append(f"not applicable: backend {backend!r} {why}; ablations "
                                 "apply to backend 'wan'")
                rows.append(row)
                continue
            log(f"row {name}: generating with backend {backend!r} {overrides or ''}")
            save = out_dir / "videos" / name
            row.notes.append(f"videos: {save}")
            scorer = RowScorer(row, models, target_features)
            for paired in clips():
                scorer.add(paired, Prediction(generate(overrides, paired, save / paired.name)))
            rows.append(scorer.finish())
    info = {"dataset": str(data_dir), "split": options.split, "clips": len(dirs),
            "frames per clip": options.frames or "all",
            "LPIPS": f"{options.lpips_net} from {options.lpips_dir}" if options.lpips_dir
            else "not given",
            "CLIP-I": options.clip_model or "not given",
            "FVD": (f"{options.i3d}, windows of {options.fvd_window} frames at 224x224 "
                    "(comparable with the paper only with the real I3D, the same window and "
                    "clip count)") if options.i3d else "not given",
            "PSNR / SSIM": "per clip: PSNR pooled over its pixels, SSIM (luma, 11x11 "
                           "Gaussian) averaged over frames; split: mean over clips",
            "Loc.Err": "pixels of the ground-truth ego frames (centroid distance)"}
    write_table(out_dir, f"egox eval: split {options.split!r} of {Path(data_dir).name}", rows,
                info, list(models.missing.values()))
    return rows
