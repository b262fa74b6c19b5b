"""The paper-style result table: one row per method / ablation, per-clip rows below.

`EvalRow` holds a row's split-level metrics, its per-clip metrics and notes (what was not
computed and why; rows that do not apply to a backend carry only a note). `write_table`
writes `results.md` (markdown) and `results.json` (the same content, machine-readable).
"""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

__all__ = ["COLUMNS", "EvalRow", "format_markdown", "write_table"]

#: Metric key -> (column title as in the paper, higher is better, decimals).
COLUMNS = {
    "psnr": ("PSNR↑", True, 2),
    "ssim": ("SSIM↑", True, 3),
    "lpips": ("LPIPS↓", False, 3),
    "clip_i": ("CLIP-I↑", True, 3),
    "location_error_px": ("Loc.Err↓", False, 2),
    "iou": ("IoU↑", True, 3),
    "fvd": ("FVD↓", False, 2),
}


@dataclass
class EvalRow:
    """One table row: `name` (e.g. "full", "no_gga"), a human `label`, the generator
    settings it changes, metrics (key of COLUMNS -> value; absent = not computed), per-clip
    metrics (clip name -> metrics) and notes."""

    name: str
    label: str
    settings: dict = field(default_factory=dict)
    metrics: dict = field(default_factory=dict)
    clips: dict = field(default_factory=dict)
    notes: list = field(default_factory=list)


def _cell(value, decimals: int) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    if isinstance(value, float) and math.isinf(value):
        return "inf"
    return f"{value:.{decimals}f}"


def _table(head: str, rows: list[tuple[str, dict]], keys: list[str]) -> list[str]:
    lines = [f"| {head} | " + " | ".join(COLUMNS[k][0] for k in keys) + " |",
             "|---|" + "---:|" * len(keys)]
    for name, metrics in rows:
        cells = [_cell(metrics.get(k), COLUMNS[k][2]) for k in keys]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return lines


def format_markdown(title: str, rows: list[EvalRow], info: dict, notes: list[str]) -> str:
    """The markdown report: the split table (every paper column, — where not computed),
    the notes of the table and of each row, setup info, then per-clip tables."""
    lines = [f"# {title}", ""]
    lines += _table("Config", [(r.label, r.metrics) for r in rows], list(COLUMNS))
    lines += [""] + [f"- {note}" for note in notes]
    for row in rows:
        lines += [f"- {row.label}: {note}" for note in row.notes]
    lines += ["", "## Setup", ""] + [f"- {k}: {v}" for k, v in info.items()]
    clip_keys = [k for k in COLUMNS if k != "fvd"]              # FVD is per split
    for row in rows:
        if row.clips:
            lines += ["", f"## Per clip: {row.label}", ""]
            lines += _table("Clip", list(row.clips.items()), clip_keys)
    return "\n".join(lines) + "\n"


def _json_safe(value):
    """inf / nan as strings "inf" / "nan": JSON has neither."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_json_safe(v) for v in value]
    return value


def write_table(out_dir: str | Path, title: str, rows: list[EvalRow], info: dict,
                notes: list[str] = ()) -> str:
    """Write OUT/results.md and OUT/results.json; returns the markdown. `notes` are about
    the whole table (e.g. which backbone was not given)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    markdown = format_markdown(title, rows, info, list(notes))
    (out_dir / "results.md").write_text(markdown)
    payload = {"title": title, "info": info, "notes": list(notes),
               "columns": {k: v[0] for k, v in COLUMNS.items()},
               "rows": [asdict(r) for r in rows]}
    (out_dir / "results.json").write_text(json.dumps(_json_safe(payload), indent=1))
    return markdown
