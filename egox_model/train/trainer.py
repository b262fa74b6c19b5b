"""`train`: LoRA fine-tuning of Wan 2.1 I2V on paired clips (what `egox train` runs).

1. Preprocess every clip of the split once (`Preprocessor`: latents, text / CLIP embeddings,
   GGA geometry into the cache; each process its share), then read each step's clip from its
   cache file.
2. Transformer in `dtype` (frozen) + a float32 LoRA (official targets and naming), GGA on
   attn1 at `gga_strength`, gradient checkpointing.
3. AdamW on the LoRA, linear warm-up then the schedule, gradient clipping; accelerate wraps
   model and optimizer (one process, or DDP under `accelerate launch`).
4. Each step draws (clip, sigma, noise) from (seed, step, process) alone, so a resumed run
   continues the same loss curve; one JSON line per step in OUT/metrics.jsonl, TensorBoard
   scalars in OUT/tensorboard, a tqdm bar, checkpoints in OUT/checkpoints, and the LoRA in
   the official format at OUT/pytorch_lora_weights.safetensors (wan.lora_path loads it).
   With `data.val_split` and `val_every`, the step's record also holds `val_loss`, the mean
   loss over the validation clips' fixed draws.
"""
from __future__ import annotations

import gc
import json
import math
import time
from dataclasses import dataclass, replace
from pathlib import Path

import torch

from egox_model.data.format import clip_dirs
from egox_model.errors import ConfigError
from egox_model.generator.gga import GGAAttnProcessor, GGAConfig
from egox_model.generator.wan.backend import resolve_device
from egox_model.generator.wan.loading import check_model_dir, load_transformer, resolve_dtype
from egox_model.generator.wan.lora import ADAPTER, add_lora, save_lora
from egox_model.generator.wan.pipeline import install_attn1_processor
from egox_model.train.checkpoint import latest_checkpoint, load_checkpoint, save_checkpoint
from egox_model.train.config import TrainConfig
from egox_model.train.objective import (draw_step, flow_matching_loss, training_sigmas,
                                        validation_draws)
from egox_model.train.preprocess import CachedClips, Preprocessor

__all__ = ["TrainResult", "lr_factor", "preprocess_split", "train", "validation_loss"]

#: metrics.jsonl key -> TensorBoard tag.
_TENSORBOARD_TAGS = {"loss": "train/loss", "lr": "train/lr", "grad_norm": "train/grad_norm",
                     "val_loss": "val/loss"}


@dataclass
class TrainResult:
    """What a run did. first_loss / last_loss: mean loss of this invocation's first / last
    step (of its first / last max(1, overfit_draws) steps: one cycle of fixed draws)."""

    first_loss: float | None
    last_loss: float | None
    start_step: int
    steps: int
    seconds: float
    out_dir: Path
    lora_path: Path
    cache: dict
    processes: int = 1
    is_main: bool = True

    def as_dict(self) -> dict:
        """JSON-ready summary."""
        return {"first_loss": self.first_loss, "last_loss": self.last_loss,
                "start_step": self.start_step, "steps": self.steps,
                "seconds": round(self.seconds, 2), "out_dir": str(self.out_dir),
                "lora_path": str(self.lora_path), "cache": self.cache,
                "processes": self.processes}


def lr_factor(step: int, warmup: int, total: int, schedule: str) -> float:
    """LR multiplier of optimizer step `step` (0-based): linear warm-up (step + 1) / warmup,
    then 1 (constant) or a linear / cosine decay reaching 0 after the last step."""
    if step < warmup:
        return (step + 1) / warmup
    if schedule == "constant":
        return 1.0
    progress = (step - warmup + 1) / max(1, total - warmup)
    if schedule == "linear":
        return max(0.0, 1.0 - progress)
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


def preprocess_split(config: TrainConfig, device: torch.device, *,
                     shard: tuple[int, int] = (0, 1)) -> tuple[CachedClips, dict]:
    """The split's clips as cache files (`CachedClips`) and the cache counters.

    shard (rank, processes): this process computes the missing entries of clips rank,
    rank + processes, ... only (the others are another process's); wait for every process
    before loading them all.
    """
    root = Path(config.data.root).expanduser()
    if not config.data.root:
        raise ConfigError("give the paired-clip dataset root", key="data.root", value="")
    dirs = clip_dirs(root, config.data.split)
    if not dirs:
        raise ConfigError(f"split {config.data.split!r} of {root} has no clips",
                          key="data.split", value=config.data.split)
    cache_dir = (Path(config.data.cache_dir).expanduser() if config.data.cache_dir
                 else root / "cache")
    rank, processes = shard
    pre = Preprocessor(Path(config.model_dir).expanduser(), config.data, cache_dir, device,
                       dtype=resolve_dtype(config.dtype),
                       vae_dtype=resolve_dtype(config.vae_dtype),
                       text_cache_on_disk=processes == 1, prior=config.prior,
                       perception=config.perception)
    for clip_dir in dirs[rank::processes]:
        pre.ensure(clip_dir)
    return (CachedClips([pre.cache_path(d) for d in dirs]),
            {"clips": len(dirs), "computed": pre.computed, "loaded": pre.loaded,
             "dir": str(cache_dir)})


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def _lora_model(config: TrainConfig, model_dir: Path) -> tuple[torch.nn.Module,
                                                               GGAAttnProcessor | None]:
    """Frozen transformer + float32 LoRA, GGA on attn1, gradient checkpointing."""
    transformer = load_transformer(model_dir, resolve_dtype(config.dtype))
    add_lora(transformer, rank=config.lora.rank, alpha=config.lora.alpha)
    for name, param in transformer.named_parameters():
        if f".{ADAPTER}." in name or name.endswith(f".{ADAPTER}"):
            param.data = param.data.float()     # fp32 LoRA on a bf16 base
    processor = None
    if config.gga_strength > 0:
        processor = GGAAttnProcessor(GGAConfig(strength=config.gga_strength,
                                               form=config.gga_form, kernel=config.gga_kernel))
        install_attn1_processor(transformer, processor)
    if config.gradient_checkpointing:
        transformer.enable_gradient_checkpointing()
    return transformer.train(), processor


def _accelerator(config: TrainConfig):
    from accelerate import Accelerator

    device = resolve_device(config.device)
    bf16 = device.type == "cuda" and config.dtype == "bfloat16"
    return Accelerator(cpu=device.type == "cpu", mixed_precision="bf16" if bf16 else "no")


def _metrics_file(path: Path, start: int) -> None:
    """Keep the lines of steps before `start` (a resumed run rewrites the rest)."""
    kept = []
    if start and path.is_file():
        kept = [line for line in path.read_text().splitlines()
                if line.strip() and json.loads(line)["step"] < start]
    path.write_text("".join(line + "\n" for line in kept))


@torch.no_grad()
def validation_loss(model: torch.nn.Module, clips: CachedClips, config: TrainConfig,
                    sigmas: torch.Tensor, processor: GGAAttnProcessor | None,
                    accelerator) -> float:
    """Mean loss over the validation clips' fixed draws (`validation_draws`); each process
    takes every n-th clip, the sums are reduced over the processes."""
    device, dtype = accelerator.device, resolve_dtype(config.dtype)
    total = torch.zeros(2, device=device, dtype=torch.float64)
    for index in range(accelerator.process_index, len(clips), accelerator.num_processes):
        latents = clips[index]
        if processor is not None:
            processor.set_geometry(None if latents.geometry is None
                                   else latents.geometry.to(device))
        for sigma, noise in validation_draws(config.seed, index, config.val_draws, sigmas,
                                             tuple(latents.ego_latents.shape)):
            with accelerator.autocast():
                total[0] += flow_matching_loss(model, latents, sigma, noise,
                                               mask_layout=config.data.mask_layout,
                                               device=device, dtype=dtype).double()
            total[1] += 1
    total = accelerator.reduce(total, "sum")
    return float(total[0] / total[1])


def train(config: TrainConfig, out_dir: str | Path, *, resume: bool = True,
          progress: bool = True, stop_after: int | None = None) -> TrainResult:
    """Train the LoRA of `config` into `out_dir` (module docstring).

    resume: continue from the newest checkpoint in OUT/checkpoints, if any. stop_after: end
    this invocation after that many optimizer steps in total (a checkpoint is written there),
    as an interrupted run would; None runs to `config.optim.steps`.
    """
    from accelerate.utils import set_seed
    from torch.utils.tensorboard import SummaryWriter
    from tqdm.auto import tqdm

    t_start = time.monotonic()
    if not config.model_dir:
        raise ConfigError("give the Wan 2.1 I2V model directory", key="model_dir", value="")
    model_dir, out_dir = Path(config.model_dir).expanduser(), Path(out_dir)
    opt, steps = config.optim, config.optim.steps
    end = steps if stop_after is None else min(steps, stop_after)
    accelerator = _accelerator(config)
    device, main = accelerator.device, accelerator.is_main_process
    scheduler_config = check_model_dir(model_dir)["scheduler"]

    # 1. Preprocessing cache
    shard = (accelerator.process_index, accelerator.num_processes)
    clips, cache = preprocess_split(config, device, shard=shard)
    val_clips = None
    if config.data.val_split and config.val_every:
        val_clips, _ = preprocess_split(
            replace(config, data=replace(config.data, split=config.data.val_split)), device,
            shard=shard)
    accelerator.wait_for_everyone()
    gc.collect()                                  # the encoders are gone: free their memory
    if device.type == "cuda":
        torch.cuda.empty_cache()

    # 2. Model (LoRA A initialised from the seed), optimizer, LR schedule
    set_seed(config.seed)
    transformer, processor = _lora_model(config, model_dir)
    params = [p for p in transformer.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=opt.lr, betas=(opt.beta1, opt.beta2),
                                  eps=opt.eps, weight_decay=opt.weight_decay)
    lr_scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: lr_factor(s, opt.warmup_steps, steps, opt.schedule))
    model, optimizer = accelerator.prepare(transformer, optimizer)
    checkpoints = out_dir / "checkpoints"
    start = 0
    found = latest_checkpoint(checkpoints) if resume else None
    if found is not None:
        start = load_checkpoint(found, accelerator.unwrap_model(model), optimizer, lr_scheduler)

    # 3. Steps
    metrics_path = out_dir / "metrics.jsonl"
    writer = None
    if main:
        out_dir.mkdir(parents=True, exist_ok=True)
        _metrics_file(metrics_path, start)
        writer = SummaryWriter(str(out_dir / "tensorboard"), purge_step=start)
    sigmas = training_sigmas(scheduler_config)
    dtype = resolve_dtype(config.dtype)
    losses: list[float] = []
    geometry_of = None
    bar = tqdm(total=steps, initial=start, desc="train", unit="step",
               disable=not (progress and main))
    for step in range(start, end):
        draw_index = step % config.overfit_draws if config.overfit_draws else step
        draw = draw_step(config.seed, draw_index, accelerator.process_index, len(clips), sigmas,
                         lambda i: clips[i].ego_latents.shape)
        latents = clips[draw.clip_index]
        if processor is not None and latents is not geometry_of:   # tables built per clip
            processor.set_geometry(None if latents.geometry is None
                                   else latents.geometry.to(device))
            geometry_of = latents
        lr = optimizer.param_groups[0]["lr"]
        with accelerator.autocast():
            loss = flow_matching_loss(model, latents, draw.sigma, draw.noise,
                                      mask_layout=config.data.mask_layout, device=device,
                                      dtype=dtype)
        accelerator.backward(loss)
        grad_norm = (float(accelerator.clip_grad_norm_(params, opt.grad_clip))
                     if opt.grad_clip > 0 else None)
        optimizer.step()
        lr_scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        value = float(accelerator.reduce(loss.detach(), "mean"))
        losses.append(value)
        done = step + 1
        record = {"step": step, "loss": value, "lr": lr, "grad_norm": grad_norm,
                  "sigma": draw.sigma, "clip": latents.name}
        if val_clips is not None and (done % config.val_every == 0 or done == steps):
            record["val_loss"] = validation_loss(accelerator.unwrap_model(model), val_clips,
                                                 config, sigmas, processor, accelerator)
            geometry_of = None                 # validation set other clips' geometry
        if main:
            with metrics_path.open("a") as handle:
                handle.write(json.dumps(record) + "\n")
            for key, tag in _TENSORBOARD_TAGS.items():
                if record.get(key) is not None:
                    writer.add_scalar(tag, record[key], step)
        bar.set_postfix(loss=f"{value:.4f}")
        bar.update()
        if done % config.save_every == 0 or done == end:
            accelerator.wait_for_everyone()
            if main:
                save_checkpoint(checkpoints, done, accelerator.unwrap_model(model), optimizer,
                                lr_scheduler, config, keep=config.keep_checkpoints)
    bar.close()
    if processor is not None:
        processor.set_geometry(None)
    lora_path = out_dir / "pytorch_lora_weights.safetensors"
    if main:
        writer.close()
        save_lora(accelerator.unwrap_model(model), lora_path)
    accelerator.wait_for_everyone()
    window = max(1, config.overfit_draws)
    return TrainResult(first_loss=_mean(losses[:window]), last_loss=_mean(losses[-window:]),
                       start_step=start,
                       steps=max(start, end), seconds=time.monotonic() - t_start,
                       out_dir=out_dir, lora_path=lora_path, cache=cache,
                       processes=accelerator.num_processes, is_main=main)
