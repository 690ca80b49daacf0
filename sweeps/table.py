"""The ablation table of a sweep: one row per variant, mean ± std over seeds of each run's mean metric.

Each run's score is its mean over the held-out clips (evaluation/commands.py metrics.json). With one
seed the "±" is the spread over clips instead, and the table says so. Written as markdown + JSON next
to the runs (atomically) and, unless W&B is disabled, as a W&B Table in an offline run of the sweep's
group. Trade-off: seeds are few (each is a full training), so the std is a rough guide, not a test.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from common.atomic import atomic_write_text
from evaluation.tables import METRIC_DIRECTIONS, to_markdown


def collect(spec, eval_dir_of) -> dict[str, list[dict]]:
    """variant -> [summary dict of each finished seed] ({metric: (mean over clips, std over clips)})."""
    runs = {}
    for variant in spec.variants:
        for seed in spec.seeds:
            path = Path(eval_dir_of(variant, seed)) / "metrics.json"
            if path.is_file():
                runs.setdefault(variant, []).append(json.loads(path.read_text())["summary"])
    return runs


def aggregate(summaries: list[dict], metrics: list[str]) -> dict[str, tuple[float, float]]:
    row = {}
    for metric in metrics:
        values = [s[metric] for s in summaries if metric in s]
        if not values:
            continue
        means = np.array([v[0] for v in values], dtype=float)
        spread = means.std() if len(values) > 1 else float(values[0][1])
        row[metric] = (float(means.mean()), float(spread))
    return row


def write_table(spec, output_dir: str, eval_dir_of) -> str:
    runs = collect(spec, eval_dir_of)
    table = {f"{variant} (n={len(summaries)})": aggregate(summaries, spec.metrics)
             for variant, summaries in runs.items()}
    if not table:
        return f"sweep {spec.name}: no evaluated runs yet"
    seeds = max(len(s) for s in runs.values())
    note = ("± = std over seeds" if seeds > 1 else "one seed: ± = std over the held-out clips") + \
        f"; sweep file {spec.source}"
    text = f"### {spec.name}\n\n" + to_markdown(table) + f"\n{note}\n"
    out = Path(output_dir) / "sweeps" / spec.name
    atomic_write_text(out / "table.md", text)
    atomic_write_text(out / "table.json", json.dumps({"rows": table, "note": note, "per_seed": runs}, indent=1))
    _log_wandb(spec, table)
    return text + f"\nwrote {out / 'table.md'}"


def _log_wandb(spec, table: dict) -> None:
    if os.environ.get("WANDB_MODE", "offline") == "disabled":
        return
    try:
        import wandb
    except ImportError:
        return
    metrics = [m for m in spec.metrics if any(m in row for row in table.values())]
    columns = ["variant"] + [f"{m}{' ↑' if METRIC_DIRECTIONS.get(m) else ' ↓' if m in METRIC_DIRECTIONS else ''}"
                             for m in metrics] + [f"{m}_std" for m in metrics]
    rows = [[variant] + [row.get(m, (None, None))[0] for m in metrics] + [row.get(m, (None, None))[1] for m in metrics]
            for variant, row in table.items()]
    run = wandb.init(project="actsync", name=f"{spec.name}-table", group=spec.name, job_type="ablation-table",
                     mode=os.environ.get("WANDB_MODE", "offline"), dir=str(Path("runs") / "sweeps" / spec.name),
                     reinit="finish_previous")
    run.log({"ablation_table": wandb.Table(columns=columns, data=rows)})
    run.finish()
