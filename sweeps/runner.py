"""`main.py sweep SWEEP.yaml`: run an ablation grid, evaluate every run, write the ablation table.

Each stage of each (variant, seed) is one `main.py fit` process; then `main.py generate --split test`
and `main.py evaluate --videos` score the last stage on the held-out SynthAvatar clips. Runs whose
weights (or metrics) already exist are skipped, so an interrupted sweep is re-run with the same command
(a half-finished stage resumes from its checkpoints with --resume auto). `--print-commands` prints the
same commands, one per line, for a cluster array job or a W&B agent instead of running them.
Runs are named runs/sweeps/<sweep>/<variant>/seed<k>/<experiment>, tagged with the sweep and the variant
and grouped by variant in W&B. Trade-off: one process per stage costs ~15 s of imports each, but a
crash or OOM never takes the sweep down and every run is reproducible from its printed command.
"""
from __future__ import annotations

import re
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from configs.loader import REPO_ROOT
from sweeps.spec import SweepSpec, load_sweep
from sweeps.table import write_table


@dataclass
class Job:
    kind: str          # fit | generate | evaluate
    argv: list[str]
    done_marker: Path  # skip the job when this exists

    def command(self) -> str:
        return " ".join(shlex.quote(a) for a in [sys.executable, "main.py"] + self.argv)


def _slug(label: str) -> str:
    """'+ PACA + progressive audio' -> 'PACA_progressive_audio' (directory and W&B group names)."""
    return re.sub(r"[^0-9A-Za-z-]+", "_", label).strip("_")


def run_dir(spec: SweepSpec, variant: str, seed: int, stage: str) -> str:
    return f"sweeps/{spec.name}/{_slug(variant)}/seed{seed}/{stage}"


def eval_dir(output_dir: str, spec: SweepSpec, variant: str, seed: int) -> Path:
    return Path(output_dir) / "sweeps" / spec.name / _slug(variant) / f"seed{seed}" / "eval"


def plan(spec: SweepSpec, output_dir: str = "runs", extra: list[str] = ()) -> list[Job]:
    """Every job of the sweep in order: prerequisites, then per (variant, seed) its stages + evaluation."""
    jobs = []
    for experiment in spec.prerequisites:
        jobs.append(Job("fit", ["fit", "-e", experiment, "--resume", "auto", "--quiet", *extra],
                        _weights_marker(output_dir, experiment)))
    trained = {}  # (stage, seed, previous run) -> run name: identical stage runs are shared between variants
    for variant, stages in spec.variants.items():
        for seed in spec.seeds:
            previous = None
            for stage in stages:
                key = (stage, seed, previous)
                if key in trained:  # e.g. the same ActAvatar stage 1 under two stage-2 variants
                    previous = trained[key]
                    continue
                name = trained[key] = run_dir(spec, variant, seed, stage)
                args = ["fit", "-e", stage, f"run.name={name}", f"run.seed={seed}",
                        f"train.logger.group={_slug(variant)}",
                        f"train.logger.tags=[{spec.name},{_slug(variant)},seed{seed}]", *spec.overrides, *extra]
                if previous:
                    args.append(f"train.init_from={Path(output_dir) / previous / 'fit'}")
                jobs.append(Job("fit", args + ["--resume", "auto", "--quiet"],
                                Path(output_dir) / name / "fit" / "weights.safetensors"))
                previous = name
            out = eval_dir(output_dir, spec, variant, seed)
            common = ["-e", stages[-1], f"run.name={previous}", f"run.seed={seed}", *spec.overrides, *extra,
                      f"sample.num_clips={spec.eval_clips}"]
            jobs.append(Job("generate", ["generate", *common, "--split", "test", "--out", str(out / "videos")],
                            out / "videos" / ".complete"))
            jobs.append(Job("evaluate", ["evaluate", *common, "--videos", str(out / "videos"), "--out", str(out)],
                            out / "metrics.json"))
    return jobs


def _weights_marker(output_dir: str, experiment: str) -> Path:
    from configs.loader import load_config
    return Path(output_dir) / load_config(experiment).run.name / "fit" / "weights.safetensors"


def run_jobs(jobs: list[Job], log_dir: Path) -> None:
    log_dir.mkdir(parents=True, exist_ok=True)
    todo = [j for j in jobs if not j.done_marker.exists()]
    print(f"sweep: {len(jobs)} jobs, {len(jobs) - len(todo)} already done")
    for number, job in enumerate(todo, 1):
        print(f"[{number}/{len(todo)}] {job.command()}", flush=True)
        start = time.time()
        log = log_dir / f"job{number:03d}-{job.kind}.log"
        with open(log, "w") as handle:
            status = subprocess.call([sys.executable, "main.py", *job.argv], cwd=REPO_ROOT,
                                     stdout=handle, stderr=subprocess.STDOUT)
        if status != 0 or not _finished(job):
            raise RuntimeError(f"sweep job failed (exit {status}); log: {log}\n  {job.command()}")
        if job.kind == "generate":
            job.done_marker.write_text("ok\n")
        print(f"    done in {time.time() - start:.0f} s", flush=True)


def _finished(job: Job) -> bool:
    return job.kind == "generate" or job.done_marker.exists()


def cmd_sweep(cfg, args) -> int:
    spec = load_sweep(args.sweep_file)
    output_dir = cfg.run.output_dir
    extra = list(args.overrides)
    jobs = plan(spec, output_dir, extra)
    if args.print_commands:
        for job in jobs:
            print(job.command())
        return 0
    if not args.table_only:
        run_jobs(jobs, Path(output_dir) / "sweeps" / spec.name / "logs")
    print(write_table(spec, output_dir, lambda v, s: eval_dir(output_dir, spec, v, s)))
    return 0
