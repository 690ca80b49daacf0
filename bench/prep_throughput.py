"""Issue 16 target: `main.py prep` throughput (clips per minute, per stage) and disk use per clip on this
machine, on SynthAvatar exported as ordinary mp4 (`data export`). Writes bench/results/prep_cpu.json.

Usage: python bench/prep_throughput.py [-e smoke] [--clips 32] [--resolution 64] [--models none|tiny|full-syncnet]
                                      [--out FILE]
--models tiny adds the analyse stage's face parser (a random-weight SegFormer, tests/support/tiny_models.py)
and the SyncNet check (narrow random weights), and the cache stage (the run's encoders -> the condition
cache); full-syncnet uses a random SyncNet of the real width (13.6 M parameters: the cost real weights have).
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
    parser.add_argument("--resolution", type=int, default=64)
    parser.add_argument("--models", choices=("none", "tiny", "full-syncnet"), default="none")
    parser.add_argument("--out", default=str(ROOT / "bench/results/prep_cpu.json"))
    args = parser.parse_args()
    from configs.loader import load_config
    from realvideo.export import export_synthavatar
    from realvideo.prep import STAGES, run_stage
    from tests.support import tiny_models

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        extra = []
        if args.models != "none":
            tmp.joinpath("m").mkdir()
            parser_dir = tiny_models.face_parser(tmp / "m/parser")
            sync = tiny_models.syncnet(tmp / "m/syncnet.model", narrow=args.models == "tiny")
            extra = [f"prep.face_parser={parser_dir}", f"prep.face_parser_size={min(args.resolution, 512)}",
                     f"prep.syncnet={sync}", "prep.max_sync_offset=15", "data.kind=real",
                     f"train.condition_cache={tmp / 'cc'}", f"model.codec.cache_dir={tmp / 'codec'}"]
        cfg = load_config([args.e], [f"data.num_train={args.clips}", f"data.manifest={tmp / 'x/manifest.jsonl'}",
                                     f"data.root={tmp / 'prep'}", f"data.resolution={args.resolution}", *extra])
        export_synthavatar(cfg.data, tmp / "x", ("train",), odd=False, progress=False)
        stages = {}
        for stage in STAGES:
            start = time.perf_counter()
            summary = run_stage(cfg, stage, progress=False)
            seconds = time.perf_counter() - start
            stages[stage] = {"seconds": round(seconds, 3), "items": summary["done"],
                             "items_per_min": round(60 * summary["done"] / seconds, 1)}
        sizes = {}
        if args.models != "none":
            from system.condition_cache import fill_condition_cache
            start = time.perf_counter()
            cache = fill_condition_cache(cfg, progress=False)
            seconds = time.perf_counter() - start
            stages["cache"] = {"seconds": round(seconds, 3), "items": cache["clips"],
                               "items_per_min": round(60 * cache["clips"] / seconds, 1),
                               "note": "includes building the encoders (and fitting the SynthCodec on the clips)"}
            sizes["condition_cache"] = cache["bytes_per_clip"]
        clips = sorted((tmp / "prep/clips").glob("*.mp4"))
        sizes["mp4"] = int(sum(p.stat().st_size for p in clips) / len(clips))
        sizes["wav"] = int(sum(p.with_suffix(".wav").stat().st_size for p in clips) / len(clips))
        regions = sorted((tmp / "prep/clips").glob("*.regions.npz"))
        if regions:
            sizes["regions_npz"] = int(sum(p.stat().st_size for p in regions) / len(regions))
        total = sum(s["seconds"] for s in stages.values())
        result = {"machine": f"{_cpu_name()}, {os.cpu_count()} logical cores, no GPU used",
                  "config": args.e, "resolution": cfg.data.resolution, "clip_frames": 97, "clips": len(clips),
                  "models": args.models, "stages": stages,
                  "clips_per_min_all_stages": round(60 * len(clips) / total, 1), "bytes_per_clip": sizes}
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
