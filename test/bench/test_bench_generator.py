"""`egox bench step` and `egox bench clip` bookkeeping on the CPU, and the compute floor."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from egox_model.bench import step as step_bench
from egox_model.bench.floor import wan_forward_flops
from egox_model.bench.step import WAN_14B_I2V, StepBenchConfig, format_step_bench
from egox_model.errors import InputError

EGOX = Path(sys.executable).parent / "egox"


def test_floor_of_wan_14b_at_the_default_clip():
    """The issue's figures: ~0.67 PFLOP linear + ~0.64 attention per forward at 28,028 tokens."""
    flops = wan_forward_flops(WAN_14B_I2V, 28_028)
    assert flops["linear"] / 1e15 == pytest.approx(0.674, abs=0.005)
    assert flops["attention"] / 1e15 == pytest.approx(0.661, abs=0.005)
    # Self-attention is quadratic in tokens, linear layers linear.
    half = wan_forward_flops(WAN_14B_I2V, 14_014)
    assert half["linear"] / flops["linear"] == pytest.approx(0.5, abs=0.01)
    assert half["attention"] / flops["attention"] == pytest.approx(0.25, abs=0.01)


def test_step_bench_rows_per_runtime_and_precision(monkeypatch):
    """A narrow model of the same structure (the 14B slice takes minutes on 2 cores)."""
    narrow = {**WAN_14B_I2V, "num_attention_heads": 2, "attention_head_dim": 32,
              "ffn_dim": 128, "text_dim": 32, "image_dim": 32, "added_kv_proj_dim": 64}
    monkeypatch.setattr(step_bench, "WAN_14B_I2V", narrow)
    result = step_bench.run_step_bench(StepBenchConfig(
        layers=1, runtimes=("eager", "compile", "tensorrt"), precisions=("bf16", "fp8")))
    rows = {(r["runtime"], r["precision"]): r for r in result["rows"]}
    assert set(rows) == {(r, p) for r in ("eager", "compile", "tensorrt")
                         for p in ("bf16", "fp8")}
    assert rows["eager", "fp8"]["skipped"].startswith("FP8 needs a CUDA GPU")
    assert rows["tensorrt", "bf16"]["skipped"]
    for key in (("eager", "bf16"), ("compile", "bf16")):
        row = rows[key]
        assert row["skipped"] is None and row["gga_on_ms"] > 0 and row["gga_off_ms"] > 0
        assert row["vs_floor"] == pytest.approx(row["gga_on_ms"] / result["floor_ms"], rel=0.02)
    assert rows["eager", "bf16"]["vs_eager"] == 1.0
    # torch.compile computes the same step as eager (bf16 rounding apart).
    assert rows["compile", "bf16"]["rel_error_vs_bf16"] < 0.02
    assert result["floor_ms"] > 0 and result["matmul_tflops"] > 0
    text = format_step_bench(result)
    assert "floor:" in text and "skipped: FP8 needs" in text and "computed, not measured" in text


@pytest.mark.parametrize("bad", [{"runtimes": ("jit",)}, {"precisions": ()},
                                 {"layers": 0}])
def test_step_bench_rejects_bad_options(bad):
    with pytest.raises(InputError):
        StepBenchConfig(**bad)


def test_bench_clip_tiny_on_the_cpu():
    run = subprocess.run([str(EGOX), "bench", "clip", "--device", "cpu", "--json",
                          "--schedule", "6x2,4x1", "--measured-steps", "4"],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    result = json.loads(run.stdout.strip().splitlines()[-1])
    long, short = result["schedules"]
    assert (long["steps"], long["calls_per_step"], long["computed"]) == (6, 2, True)
    assert (short["steps"], short["calls_per_step"], short["computed"]) == (4, 1, False)
    for row in (long, short):
        stages = row["stages_s"]
        assert {"text_encode", "vae_encode", "steps", "vae_decode", "clip_image",
                "prior_render"} <= set(stages)
        assert all(v >= 0 for v in stages.values()) and stages["steps"] > 0
    assert "steps computed from 4 measured steps x 1.5" in run.stdout


def test_bench_clip_14b_on_the_cpu_is_a_user_error(monkeypatch, capfd):
    """Through the console script's `main` in this process (the run above is the real
    process; another would pay its seconds of imports for one line)."""
    from egox_ros.cli import main

    monkeypatch.setattr(sys, "argv", ["egox", "bench", "clip", "--device", "cpu", "--size",
                                      "14b"])
    with pytest.raises(SystemExit) as exit_:
        main()
    err = capfd.readouterr().err
    assert exit_.value.code == 2 and "needs --device cuda" in err and "Traceback" not in err
