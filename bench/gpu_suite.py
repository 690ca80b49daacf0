"""The GPU suite (issue 13): one prepared command that measures, in one short GPU slot, everything that has
never run on a GPU. Phases run in order, each as its own subprocess under its own time cap, each writing
JSON + markdown (device, driver, torch/triton/CUDA versions, commit, wall time) into one directory; a phase
that fails or times out is recorded and the suite goes on.

  a  kernel_tests   compiled kernel vs reference: `pytest -m gpu tests/test_time_attention_kernel.py`
                    (fp16/bf16, head_dim 64/128, the split dK/dV path)
  b  kernel_bench   bench/bench_time_attention.py --tile-search at the 720p shape: fused vs SDPA + bias vs
                    unbiased SDPA, text/audio, fwd and fwd+bwd, the Lk sweep, the tile search
  c  dit_5b         bench/bench_dit_5b.py: the 5B DiT in bf16 at 704x1280x121 (sdpa/triton forward, batched
                    guidance, checkpointed fwd+bwd, projected clip time vs the 2-min goal)
  d  synth_train    bench/gpu_train.py: `synth` throughput, then a timed run, its test clips scored, its bf16
                    weights returned

Phases a-c import only torch, triton and this repo; d needs the wheels of bench/gpu_carry.py (installed
into .gpu_site/, which this script puts on PYTHONPATH when it exists). The README's "GPU checks" section
gives the device calls. Trade-off: every phase pays its own Python/CUDA start-up (a few seconds each) so
that a crash or a hang in one (a Triton compile, an OOM) cannot take the others down.

    python bench/gpu_suite.py [--out DIR] [--phases a,b,c,d] [--budget-s 450] [--tar FILE] [--smoke]
    python bench/gpu_suite.py --adopt bench/results/gpu/nvidia-h200   # phase b's tile winner -> kernels/
"""
from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tarfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.gpu_env import device_slug, environment, write_phase  # noqa: E402
from common.atomic import atomic_write_text  # noqa: E402

PHASES = {"a": "a_kernel_tests", "b": "b_kernel_bench", "c": "c_dit_5b", "d": "d_synth_train"}
CAPS_S = {"a": 90, "b": 150, "c": 150}        # d gets what is left of --budget-s
MIN_D_S = 60
KERNEL_TESTS = "tests/test_time_attention_kernel.py"
WEIGHTS = "d_weights_bf16.safetensors"


def phase_command(phase: str, out: Path, work: Path, smoke: bool, budget_s: float) -> list[str]:
    py = sys.executable
    if phase == "a":
        select = ["-k", "gpu or head_dim_128"] if smoke else ["-m", "gpu"]
        return [py, "-m", "pytest", "-q", "-p", "no:cacheprovider", *select, KERNEL_TESTS]
    if phase == "b":
        return [py, "bench/bench_time_attention.py", "--tile-search", "--out", str(out / "b_kernel_bench.json"),
                *(["--smoke"] if smoke else [])]
    if phase == "c":
        return [py, "bench/bench_dit_5b.py", "--out", str(out), *(["--smoke"] if smoke else [])]
    return [py, "bench/gpu_train.py", "--out", str(out), "--work", str(work), "--budget-s", f"{budget_s:.0f}",
            *(["--smoke"] if smoke else [])]


def phase_env(smoke: bool) -> dict:
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    site = ROOT / ".gpu_site"
    if site.is_dir():
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(site), env.get("PYTHONPATH")]))
    if smoke:
        env["TRITON_INTERPRET"] = "1"  # before any kernel module is imported (phase b; a's conftest sets it too)
    return env


def pytest_counts(text: str) -> dict:
    """'3 passed, 12 skipped, 1 failed in 3.7s' -> {'passed': 3, 'skipped': 12, 'failed': 1}."""
    return {word: int(n) for n, word in re.findall(r"(\d+) (passed|failed|skipped|errors?|deselected)", text)}


def run_phase(phase: str, out: Path, work: Path, smoke: bool, cap_s: float) -> dict:
    log = out / "logs" / f"{PHASES[phase]}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    cmd = phase_command(phase, out, work, smoke, cap_s - 10)
    print(f"[gpu_suite] phase {phase} ({PHASES[phase]}), cap {cap_s:.0f} s: {' '.join(cmd[1:])}", flush=True)
    start = time.perf_counter()
    with log.open("w") as f:
        try:
            rc = subprocess.run(cmd, cwd=ROOT, stdout=f, stderr=subprocess.STDOUT, timeout=cap_s,
                                env=phase_env(smoke)).returncode
        except subprocess.TimeoutExpired:
            rc = None
    wall = round(time.perf_counter() - start, 1)
    text = log.read_text(errors="replace")
    record = {"phase": PHASES[phase], "wall_s": wall, "cap_s": cap_s, "returncode": rc,
              "status": "timeout" if rc is None else ("ok" if rc == 0 else "failed")}
    if phase == "a":
        record["tests"] = pytest_counts(text.strip().splitlines()[-1] if text.strip() else "")
        if record["status"] == "ok" and not smoke and not record["tests"].get("passed"):
            record["status"] = "failed"  # every GPU test skipped: no CUDA device was seen
        write_phase(out, PHASES[phase], record, f"`{' '.join(cmd[3:])}`: {record['status']}, {record['tests']}\n\n"
                    f"```\n{text[-3000:]}\n```")
    if phase == "d" and record["status"] == "ok":
        record["status"] = json.loads((out / "d_synth_train.json").read_text())["status"]
    if record["status"] != "ok":
        record["log_tail"] = text[-2000:]
    print(f"[gpu_suite] phase {phase}: {record['status']} in {wall} s", flush=True)
    return record


def headline(out: Path, phase: str) -> str:
    """One line of what a phase measured, read back from its JSON (never typed in)."""
    path = out / f"{PHASES[phase]}.json"
    if not path.is_file():
        return "no result file"
    data = json.loads(path.read_text())
    if phase == "a":
        return ", ".join(f"{n} {k}" for k, n in data.get("tests", {}).items())
    if phase == "b":
        return "; ".join(f"{mode}: sdpa+bias/fused {r['speedup_vs_sdpa_bias']}x (target >= 1.5), fused/sdpa "
                         f"{r['fused_over_sdpa']}x (target <= 1.3)" for mode, r in data.get("ratios", {}).items())
    if phase == "c":
        p = data["clip_projection"]
        return (f"fwd+bwd {data['rows']['forward_backward_checkpointed']['s']} s; projected clip "
                f"{p['sequential_s']} s sequential / {p['batched_s']} s batched vs goal {p['goal_s']} s")
    metrics = data.get("test_metrics", {})
    keys = ("h_at_s", "tc", "sync_c", "csim")
    fit = data.get("steps", {}).get("fit", {})
    return (f"{fit.get('max_steps', '?')} steps in {fit.get('wall_s', '?')} s; test "
            + ", ".join(f"{k} {metrics[k][0]}" for k in keys if k in metrics))


def write_summary(out: Path, records: dict, smoke: bool) -> dict:
    previous = out / "suite.json"
    merged = json.loads(previous.read_text()).get("phases", {}) if previous.is_file() else {}
    merged.update(records)  # a later call (e.g. phase d alone) adds to the same directory's summary
    summary = {"environment": environment(), "smoke": smoke, "phases": merged,
               "wall_s": round(sum(r["wall_s"] for r in merged.values()), 1)}
    env = summary["environment"]
    lines = [f"# GPU suite — {env['device']}", "",
             f"commit {env['commit']}, torch {env['torch']}, triton {env['triton']}, CUDA {env['cuda']}, "
             f"driver {env.get('driver')}; phases' wall time {summary['wall_s']} s (goal <= 480 s)."
             + (" **Smoke run on CPU: no number here is a measurement.**" if smoke else ""), "",
             "| phase | status | wall s | result |", "|---|---|---|---|"]
    for key, name in PHASES.items():
        if name in merged:
            r = merged[name]
            lines.append(f"| {name} | {r['status']} | {r['wall_s']} | {headline(out, key)} |")
    atomic_write_text(previous, json.dumps(summary, indent=1, default=str) + "\n")
    atomic_write_text(out / "suite.md", "\n".join(lines) + "\n")
    return summary


def pack(out: Path, tar_path: Path) -> None:
    """Everything but the weights into one tar.gz (a GPU slot returns at most 8 files)."""
    with tarfile.open(tar_path, "w:gz") as tar:
        for path in sorted(out.rglob("*")):
            if path.is_file() and path.name != WEIGHTS:
                tar.add(path, arcname=str(path.relative_to(out)))


def adopt(results: Path) -> None:
    """Phase b's tile-search winner becomes this GPU family's default in kernels/tuned_tiles.json."""
    from kernels.time_attention_triton import TUNED_TILES_FILE, head_dim_key

    bench = json.loads((results / "b_kernel_bench.json").read_text())
    family = json.loads((results / "suite.json").read_text())["environment"].get("capability")
    if not family:
        sys.exit(f"{results / 'suite.json'}: no GPU capability recorded (a smoke run cannot be adopted)")
    winner = bench["tile_search"]["winner"]
    tuned = json.loads(TUNED_TILES_FILE.read_text()) if TUNED_TILES_FILE.is_file() else {}
    tuned.setdefault(family, {})[head_dim_key(winner["head_dim"])] = {
        "fwd": winner["fwd"], "bwd": winner["bwd"], "source": f"{results} ({bench.get('device')})"}
    atomic_write_text(TUNED_TILES_FILE, json.dumps(tuned, indent=1) + "\n")
    print(f"{TUNED_TILES_FILE}: {family} {head_dim_key(winner['head_dim'])} <- fwd {winner['fwd']}, "
          f"bwd {winner['bwd']}")


def main(argv=None) -> dict | None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=None, help="default: bench/results/gpu/<device>/")
    p.add_argument("--phases", default="a,b,c,d", help="comma-separated subset of a,b,c,d")
    p.add_argument("--budget-s", type=float, default=450.0, help="wall-clock budget of this call's phases")
    p.add_argument("--work", type=Path, default=None, help="phase d's data and runs (default: OUT/../gpu_work)")
    p.add_argument("--tar", type=Path, default=None, help="also pack the results (not the weights) into FILE")
    p.add_argument("--smoke", action="store_true", help="every phase at tiny shapes on CPU (Triton interpreter)")
    p.add_argument("--adopt", type=Path, metavar="RESULTS", help="only: adopt RESULTS' tile winner, then exit")
    args = p.parse_args(argv)
    if args.adopt:
        adopt(args.adopt)
        return None
    phases = [x.strip() for x in args.phases.split(",") if x.strip()]
    if bad := [x for x in phases if x not in PHASES]:
        p.error(f"unknown phase(s) {bad}; choose from {','.join(PHASES)}")
    out = (args.out or ROOT / "bench" / "results" / "gpu" / device_slug()).resolve()
    out.mkdir(parents=True, exist_ok=True)
    work = (args.work or out.parent / f"{out.name}_work").resolve()
    start, records = time.perf_counter(), {}
    for phase in phases:
        left = args.budget_s - (time.perf_counter() - start)
        cap = CAPS_S.get(phase, max(MIN_D_S, left - 5))
        records[PHASES[phase]] = run_phase(phase, out, work, args.smoke, cap)
    summary = write_summary(out, records, args.smoke)
    if args.tar:
        pack(out, args.tar)
    print((out / "suite.md").read_text())
    return summary


if __name__ == "__main__":
    main()
