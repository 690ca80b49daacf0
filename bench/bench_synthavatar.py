"""Benchmark of the SynthAvatar world: clips generated per second (64x64 and 128x128, 1 and 2 worker
processes) and probe training time and held-out accuracy. Not a test: run it, read the numbers, commit
the results file with the machine named.

    python bench/bench_synthavatar.py [--clips 16] [--skip-probe] [--out bench/results/synthavatar_cpu.json]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from common.atomic import atomic_write_text
from configs.loader import load_config
from synthavatar.dataset import generate_split


def print_and_write(text: str, result: dict, out: Path | None) -> None:
    """Print a benchmark's markdown; with `out`, also write it as out.md and `result` as out.json."""
    print(text)
    if out:
        atomic_write_text(out.with_suffix(".md"), text + "\n")
        atomic_write_text(out.with_suffix(".json"), json.dumps(result, indent=1))


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} logical cores, Python {platform.python_version()}"


def clips_per_second(resolution: int, workers: int, clips: int) -> float:
    root = tempfile.mkdtemp(prefix="bench-sa-")
    try:
        cfg = load_config(None, [f"data.root={root}", f"data.resolution={resolution}", f"data.num_train={clips}"])
        start = time.perf_counter()
        generate_split(cfg.data, "train", workers=workers, progress=False)
        return clips / (time.perf_counter() - start)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def probe_benchmark(experiment: str) -> dict:
    from evaluation.probe_train import get_probe

    root = tempfile.mkdtemp(prefix="bench-probe-")
    try:
        cfg = load_config(experiment, [f"data.root={root}/data", f"eval.probe.cache_dir={root}/probe"])
        generate_split(cfg.data, "train", progress=False)  # data generation is not probe time
        start = time.perf_counter()
        report = get_probe(cfg, progress=False).report
        return report | {"total_seconds_incl_val_test_generation": round(time.perf_counter() - start, 1),
                         "experiment": experiment}
    finally:
        shutil.rmtree(root, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clips", type=int, default=16)
    parser.add_argument("--skip-probe", action="store_true")
    parser.add_argument("--experiment", default="demo", help="config whose probe is timed")
    parser.add_argument("--out", type=Path, default=Path("bench/results/synthavatar_cpu.json"))
    args = parser.parse_args()
    results = {"machine": machine(), "clip_seconds": 4.0, "generation_clips_per_second": {}}
    for resolution in (64, 128):
        for workers in (1, 2):
            rate = clips_per_second(resolution, workers, args.clips)
            results["generation_clips_per_second"][f"{resolution}px_{workers}proc"] = round(rate, 2)
            print(f"{resolution}x{resolution}, {workers} process(es): {rate:.2f} clips/s", flush=True)
    if not args.skip_probe:
        results["probe"] = probe_benchmark(args.experiment)
        print("probe:", results["probe"], flush=True)
    atomic_write_text(args.out, json.dumps(results, indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
