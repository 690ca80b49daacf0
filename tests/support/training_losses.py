"""The first training losses of a config, from a real `main.py fit` (Lightning loop, data loader, EMA,
scheduler), one thread: the reference that refactors must reproduce bit for bit (issue 14, torchtitan's
loss-parity check). tests/test_loss_parity.py compares against tests/assets/losses_*.json.

Regenerate an asset only for a change that is meant to alter training (and say so in the commit):
    python tests/support/training_losses.py smoke     # tests/assets/losses_smoke_tiny.json (fast test)
    python tests/support/training_losses.py demo      # tests/assets/losses_demo.json (slow test)
"""
from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[2]
ASSETS = ROOT / "tests" / "assets"
STEPS = 50
CASES = {
    # The smoke data set and the tiny preset: 12 s.
    "smoke": dict(asset="losses_smoke_tiny.json", overrides=["-e", "smoke", "model.preset=tiny", "data.duration=1.2",
                                                              "data.batch_size=2"], own_data=True),
    # The CPU main job's config and data (cache/synthavatar, shared with `make demo`): about 2 min.
    "demo": dict(asset="losses_demo.json", overrides=["-e", "demo"], own_data=False),
}


def training_losses(case: str, work: Path) -> list[float]:
    spec = CASES[case]
    places = [f"run.output_dir={work / 'runs'}"]
    if spec["own_data"]:
        places += [f"data.root={work / 'data'}", f"model.codec.cache_dir={work / 'codec'}"]
    cmd = [sys.executable, str(ROOT / "main.py"), "fit", *spec["overrides"], *places, "train.logger.kind=csv",
           "train.logger.log_every=1", f"train.max_steps={STEPS}", "train.val_every=0", "train.sample_clips=0",
           f"train.ckpt_every={STEPS}", "data.gen_workers=1", "--quiet"]
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")  # thread count changes reduction order
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"fit failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}")
    name = spec["overrides"][1]
    with (work / "runs" / name / "fit" / "logs" / "metrics.csv").open() as f:
        rows = [r for r in csv.DictReader(f) if r.get("train/loss")]
    return [float(r["train/loss"]) for r in sorted(rows, key=lambda r: int(r["step"]))]


def machine() -> dict:
    return {"cpu_capability": torch.backends.cpu.get_cpu_capability(), "torch": torch.__version__}


def main(case: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        losses = training_losses(case, Path(tmp))
    path = ASSETS / CASES[case]["asset"]
    path.write_text(json.dumps({"case": case, "steps": STEPS, **machine(), "losses": losses}, indent=1) + "\n")
    print(f"wrote {path}: {len(losses)} losses, first {losses[0]!r}, last {losses[-1]!r}")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "smoke")
