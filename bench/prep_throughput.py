"""Issue 16 target: `main.py prep` throughput (clips per minute, per stage) and disk use per clip on this
machine, on SynthAvatar exported as ordinary mp4 (`data export`). Writes bench/results/prep_cpu.json.

Usage: python bench/prep_throughput.py [-e smoke] [--clips 32] [--out DIR]
Run it alone (no other heavy job): it is a wall-clock measurement.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("-e", default="smoke")
    parser.add_argument("--clips", type=int, default=32)
    parser.add_argument("--out", default=str(ROOT / "bench/results/prep_cpu.json"))
    args = parser.parse_args()
    from configs.loader import load_config
    from realvideo.export import export_synthavatar
    from realvideo.prep import STAGES, run_stage

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        cfg = load_config([args.e], [f"data.num_train={args.clips}", f"data.manifest={tmp / 'x/manifest.jsonl'}",
                                     f"data.root={tmp / 'prep'}"])
        export_synthavatar(cfg.data, tmp / "x", ("train",), odd=False, progress=False)
        stages = {}
        for stage in STAGES:
            start = time.perf_counter()
            summary = run_stage(cfg, stage, progress=False)
            seconds = time.perf_counter() - start
            stages[stage] = {"seconds": round(seconds, 3), "items": summary["done"],
                             "items_per_min": round(60 * summary["done"] / seconds, 1)}
        clips = sorted((tmp / "prep/clips").glob("*.mp4"))
        mp4 = sum(p.stat().st_size for p in clips) / len(clips)
        wav = sum(p.with_suffix(".wav").stat().st_size for p in clips) / len(clips)
        total = sum(s["seconds"] for s in stages.values())
        result = {"machine": f"{_cpu_name()}, {os.cpu_count()} logical cores, no GPU used",
                  "config": args.e, "resolution": cfg.data.resolution, "clip_frames": 97, "clips": len(clips),
                  "stages": stages, "clips_per_min_all_stages": round(60 * len(clips) / total, 1),
                  "bytes_per_clip": {"mp4": int(mp4), "wav": int(wav)}}
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
