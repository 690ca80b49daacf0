"""Phase d of bench/gpu_suite.py: training throughput of the `synth` config on one GPU, then, in the time
that is left, a short timed `synth` run whose held-out test clips are generated and scored (H@S, TC,
Sync-C, CSIM against the ground truth), and whose weights come back as one bf16 safetensors file with
the resolved config inside (configs/experiment/synth.yaml is sized so that file stays under the 16 MiB a
GPU slot returns per file: 7.1 M parameters, 14.2 MB).

Sub-steps, each timed and recorded (a failing one ends the phase, the record says where and why):
  data        `main.py data`: the SynthAvatar splits (generated on the machine's cores: 57 MB of clips
              travel worse than the seconds it takes to draw them)
  throughput  bench/bench_train.measure: median full step (encoders + codec + forward + backward + AdamW)
  fit         `main.py fit` for as many steps as ~60 % of the time left allows at the measured step time
  generate    `main.py generate --split test`, the EMA weights
  evaluate    `main.py evaluate` against the ground truth of the same split (the probe trains here first)
  export      the fit's weights.safetensors -> d_weights_bf16.safetensors (+ d_resolved_config.yaml)

Trade-off: the fit step count comes from a throughput estimate made before Lightning's own start-up and
data loading, so the run can end early or late by a few percent; the fit subprocess has a hard timeout
and the record keeps the measured wall time and steps/s.

    python bench/gpu_train.py --out DIR [--budget-s 240] [--work DIR] [--smoke]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.gpu_env import write_phase  # noqa: E402

EXPERIMENT = "synth"
# Smoke: the tiny preset on the smoke data set, CPU, a few steps: the script is checked, nothing measured.
SMOKE_OVERRIDES = ["model.preset=tiny", "data.duration=1.2", "data.batch_size=2", "train.ema_decay=0",
                   "train.strategy.precision=32-true", "train.strategy.accelerator=cpu", "sample.steps=2",
                   "eval.probe.detector_clips=40", "eval.probe.detector_steps=20"]
FIT_SHARE = 0.6          # of the time left after the throughput step; the rest: start-up, generate, evaluate
MIN_STEPS, MAX_STEPS = 4, 20000


class StepFailed(RuntimeError):
    pass


def work_overrides(work: Path) -> list[str]:
    return [f"run.output_dir={work / 'runs'}", f"data.root={work / 'data'}", f"model.codec.cache_dir={work / 'codec'}",
            f"eval.probe.cache_dir={work / 'probe'}", f"data.gen_workers={min(16, os.cpu_count() or 1)}",
            "train.logger.kind=csv"]


def run_main(args: list[str], log: Path, timeout: float) -> None:
    """`python main.py ARGS` with its output in `log`; a non-zero exit or a timeout raises StepFailed."""
    log.parent.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    with log.open("w") as f:
        try:
            proc = subprocess.run([sys.executable, str(ROOT / "main.py"), *args], cwd=ROOT, stdout=f,
                                  stderr=subprocess.STDOUT, timeout=max(timeout, 1.0), env=env)
        except subprocess.TimeoutExpired:
            raise StepFailed(f"timed out after {timeout:.0f} s (log {log.name})") from None
    if proc.returncode != 0:
        tail = log.read_text(errors="replace")[-1500:]
        raise StepFailed(f"exit {proc.returncode}; log tail:\n{tail}")


def export_bf16(run_dir: Path, out_dir: Path) -> dict:
    """fit/weights.safetensors -> out_dir/d_weights_bf16.safetensors with the resolved config as metadata."""
    from safetensors.torch import load_file, save_file

    config = (run_dir / "resolved_config.yaml").read_text()
    state = {k: v.to(torch.bfloat16) if v.is_floating_point() else v
             for k, v in load_file(str(run_dir / "weights.safetensors")).items()}
    target = out_dir / "d_weights_bf16.safetensors"
    save_file({k: v.contiguous() for k, v in state.items()}, str(target),
              metadata={"resolved_config_yaml": config, "source": "bench/gpu_train.py"})
    (out_dir / "d_resolved_config.yaml").write_text(config)
    return {"file": target.name, "mb": round(target.stat().st_size / 1e6, 2),
            "params": sum(v.numel() for v in state.values())}


def summary_metrics(metrics_file: Path) -> dict:
    summary = json.loads(metrics_file.read_text())["summary"]
    return {k: [round(float(x), 4) for x in v] if isinstance(v, (list, tuple)) else round(float(v), 4)
            for k, v in summary.items()}


def run_phase(out: Path, work: Path, budget_s: float, smoke: bool) -> dict:
    start = time.perf_counter()
    deadline = start + budget_s
    left = lambda: deadline - time.perf_counter()
    experiment = "smoke" if smoke else EXPERIMENT
    overrides = work_overrides(work) + (SMOKE_OVERRIDES if smoke else [])
    base = ["-e", experiment, *overrides]
    device = "cpu" if smoke or not torch.cuda.is_available() else "cuda"
    steps: dict[str, dict] = {}
    record = {"experiment": experiment, "overrides": overrides, "device": device, "budget_s": budget_s,
              "steps": steps}

    def step(name: str, fn):
        t0 = time.perf_counter()
        try:
            value = fn()
            steps[name] = {"status": "ok", "wall_s": round(time.perf_counter() - t0, 1), **(value or {})}
        except Exception as error:
            steps[name] = {"status": "failed", "wall_s": round(time.perf_counter() - t0, 1),
                           "error": f"{type(error).__name__}: {error}"}
            raise StepFailed(name) from error
        print(f"[gpu_train] {name}: {json.dumps(steps[name])}", flush=True)

    def throughput():
        from bench.bench_train import measure
        from configs.loader import load_config

        cfg = load_config(experiment, overrides)
        return measure(cfg, steps=3 if smoke else 10, warmup=1 if smoke else 3, device=device)

    def fit():
        step_s = steps["throughput"]["step_s_median"]
        planned = int(min(MAX_STEPS, max(MIN_STEPS, FIT_SHARE * left() / step_s)))
        if smoke:
            planned = MIN_STEPS
        run_main(["fit", *base, f"train.max_steps={planned}", "train.val_every=0", "train.sample_clips=0",
                  f"train.ckpt_every={planned}", f"train.warmup_steps={max(1, planned // 20)}", "--quiet"],
                 work / "logs" / "fit.log", timeout=left() * 0.8)
        return {"max_steps": planned, "samples_seen": planned * steps["throughput"]["batch_size"]}

    try:
        step("data", lambda: run_main(["data", *base, "--split", "all"], work / "logs" / "data.log", left()))
        step("throughput", throughput)
        step("fit", fit)
        steps["fit"]["steps_per_s"] = round(steps["fit"]["max_steps"] / steps["fit"]["wall_s"], 2)
        step("generate", lambda: run_main(["generate", *base, "--split", "test", "--out", str(work / "gen"),
                                           "sample.attention_plot=false"], work / "logs" / "generate.log", left()))
        step("evaluate", lambda: run_main(["evaluate", *base, "--videos", str(work / "gen"), "--out",
                                           str(work / "eval"), "--with-ground-truth"],
                                          work / "logs" / "evaluate.log", left()))
        record["test_metrics"] = summary_metrics(work / "eval" / "metrics.json")
        step("export", lambda: export_bf16(work / "runs" / experiment / "fit", out))
    except StepFailed as failed:
        record["failed_step"] = str(failed)
    record["status"] = "failed" if "failed_step" in record else "ok"
    record["wall_s"] = round(time.perf_counter() - start, 1)
    return record


def markdown(record: dict) -> str:
    lines = [f"`{record['experiment']}` on {record['device']}, budget {record['budget_s']:.0f} s: "
             f"**{record['status']}**" + (f" (at {record['failed_step']})" if "failed_step" in record else ""), "",
             "| step | status | wall s | notes |", "|---|---|---|---|"]
    for name, s in record["steps"].items():
        notes = {k: v for k, v in s.items() if k not in ("status", "wall_s", "error")}
        text = s.get("error", "").splitlines()[0] if "error" in s else ", ".join(
            f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in notes.items())
        lines.append(f"| {name} | {s['status']} | {s['wall_s']} | {text} |")
    if "test_metrics" in record:
        lines += ["", "Held-out test clips (mean, std):", ""]
        lines += [f"- {k}: {v}" for k, v in record["test_metrics"].items()]
    return "\n".join(lines)


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, required=True, help="results directory (d_synth_train.json/.md, weights)")
    p.add_argument("--budget-s", type=float, default=240.0, help="wall-clock budget of the whole phase")
    p.add_argument("--work", type=Path, default=None, help="data, runs, logs (default: OUT/../gpu_work)")
    p.add_argument("--smoke", action="store_true", help="tiny preset and smoke data on CPU: script check only")
    args = p.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    work = args.work or args.out.parent / "gpu_work"
    record = run_phase(args.out, work.resolve(), args.budget_s, args.smoke)
    write_phase(args.out, "d_synth_train", record, markdown(record))
    print(json.dumps({k: v for k, v in record.items() if k != "overrides"}, indent=1))
    return record


if __name__ == "__main__":
    main()
