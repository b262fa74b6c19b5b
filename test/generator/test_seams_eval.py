"""`egox eval seams`: the boundary/within measure, and the command on prior + tiny wan."""
import json

import numpy as np
from typer.testing import CliRunner

from egox_model.eval.seams import frame_changes, seam_ratio


def test_seam_ratio_counts_the_change_into_each_clip_start():
    video = np.zeros((9, 2, 2, 3), np.uint8)
    video[:] = (np.arange(9) * 2)[:, None, None, None]       # change 2 per frame
    video[5:] += 6                                            # a seam into frame 5: change 8
    np.testing.assert_allclose(frame_changes(video), [2, 2, 2, 2, 8, 2, 2, 2])
    figures = seam_ratio(video, [0, 5])
    assert figures == {"boundary": 8.0, "within": 2.0, "ratio": 4.0}


def test_egox_eval_seams_runs_prior_and_tiny_wan_with_and_without_continuation():
    from egox_model.cli import app

    result = CliRunner().invoke(app, ["eval", "seams", "--frames", "13", "--steps", "1",
                                      "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output.strip().splitlines()[-1])
    rows = {(r["backend"].split()[0], r["continuation"]): r for r in report["rows"]}
    assert set(rows) == {("prior", "n/a (ignores context)"), ("wan", "on"), ("wan", "off")}
    assert all(r["clips"] == 2 and np.isfinite(r["ratio"]) for r in rows.values())
    assert rows[("wan", "on")]["within"] > 0 and rows[("wan", "off")]["within"] > 0
    assert rows[("wan", "on")]["context_frames"] == 5
    assert rows[("wan", "on")]["overlap_vs_round_trip"] <= 0.01    # held fixed
    assert rows[("wan", "off")]["overlap_vs_round_trip"] > 1.0     # sampled afresh
    assert "boundary" in result.output and "ratio" in result.output
