"""`main.py curve` (issue 15): snapshots at the requested steps carry their training time and samples seen,
every point is generated and scored, and the CSV/PNG (and an overlay of several runs) are written."""
import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from common.errors import ConfigError
from sweeps.curve import curve_points

ROOT = Path(__file__).resolve().parents[1]


def test_curve_points_parse_and_default():
    assert curve_points("", 360) == [90, 180, 270, 360]
    assert curve_points("240, 60,120", 360) == [60, 120, 240]
    with pytest.raises(ConfigError, match="comma-separated"):
        curve_points("60;120", 360)


def test_curve_trains_once_scores_every_point_and_overlays(tmp_path):
    places = [f"run.output_dir={tmp_path / 'runs'}", f"data.root={tmp_path / 'data'}",
              f"model.codec.cache_dir={tmp_path / 'codec'}", f"eval.probe.cache_dir={tmp_path / 'probe'}"]
    command = [sys.executable, "main.py", "curve", "-e", "smoke", "--at", "3,6", "--clips", "2", "--quiet",
               *places, "model.preset=tiny", "data.duration=1.2", "data.batch_size=2", "train.max_steps=6",
               "train.logger.kind=csv", "train.warmup_steps=1"]
    env = os.environ | {"OMP_NUM_THREADS": "1", "WANDB_MODE": "disabled"}
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    fit, curve = tmp_path / "runs" / "smoke" / "fit", tmp_path / "runs" / "smoke" / "curve"
    metas = [json.loads((fit / "snapshots" / f"step-{s}" / "weights.json").read_text()) for s in (3, 6)]
    assert [m["samples_seen"] for m in metas] == [6, 12] and 0 < metas[0]["train_wall_s"] < metas[1]["train_wall_s"]
    with open(curve / "curve.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [int(r["step"]) for r in rows] == [3, 6]
    assert all(r["val_loss"] and r["h_at_s"] and r["sync_c"] and r["psnr"] for r in rows)
    assert len(list((curve / "step-6" / "videos").glob("clip_*.mp4"))) == 2
    assert (curve / "curve.png").stat().st_size > 10_000
    overlay = subprocess.run([sys.executable, "main.py", "curve", "--overlay", str(curve / "curve.csv"),
                              str(curve / "curve.csv"), "--out", str(tmp_path / "both.png")],
                             cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert overlay.returncode == 0 and (tmp_path / "both.png").stat().st_size > 10_000, overlay.stderr
