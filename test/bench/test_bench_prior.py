"""`egox bench prior --json` through the installed console script."""
import json
import subprocess
import sys
from pathlib import Path

EGOX = Path(sys.executable).parent / "egox"


def test_bench_prior_prints_figures_beside_open3d():
    run = subprocess.run([str(EGOX), "bench", "prior", "--json", "--frames", "3",
                          "--repeats", "1"], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    assert "open3d" in run.stdout and "ratio" in run.stdout
    result = json.loads(run.stdout.strip().splitlines()[-1])
    assert result["frames"] == 3 and result["points"] > 100_000
    assert result["ms_per_frame"] > 0 and result["open3d_ms_per_frame"] > 0
    assert set(result["stages_ms_per_frame"]) == {"fusion", "lift", "render"}
    assert abs(sum(result["stages_ms_per_frame"].values()) - result["ms_per_frame"]) < 0.01
