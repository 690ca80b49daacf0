"""What every GPU-suite result carries (bench/gpu_suite.py): device, driver, library versions, commit, and
one writer for a phase's JSON + markdown.

Imports only the standard library and torch, so every phase can use it on a bare GPU machine.
"""
from __future__ import annotations

import json
import os
import platform
import re
import subprocess
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from common.atomic import atomic_write_text  # noqa: E402


def _run(cmd: list[str]) -> str | None:
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=20, cwd=ROOT)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() if out.returncode == 0 and out.stdout.strip() else None


def commit() -> str:
    """The commit measured: $ACTSYNC_COMMIT (a GPU machine gets a copy of the tree without .git), else git."""
    return os.environ.get("ACTSYNC_COMMIT") or _run(["git", "rev-parse", "--short=12", "HEAD"]) or "unknown"


def device_name() -> str:
    if torch.cuda.is_available():
        return torch.cuda.get_device_name()
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu} CPU ({os.cpu_count()} logical cores)"


def device_slug(name: str | None = None) -> str:
    """'NVIDIA H200' -> 'nvidia-h200': the folder under bench/results/gpu/."""
    return re.sub(r"[^a-z0-9]+", "-", (name or device_name()).lower()).strip("-")[:60] or "unknown"


def environment() -> dict:
    env = {"device": device_name(), "commit": commit(), "torch": torch.__version__,
           "python": platform.python_version(), "cuda": torch.version.cuda}
    try:
        import triton
        env["triton"] = triton.__version__
    except ImportError:
        env["triton"] = None
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        env.update(driver=_run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"]),
                   capability=f"sm{props.major}{props.minor}", sms=props.multi_processor_count,
                   memory_gib=round(props.total_memory / 2 ** 30, 1))
    return env


def write_phase(out_dir: Path, name: str, result: dict, markdown_body: str) -> None:
    """out_dir/<name>.json (result + environment) and out_dir/<name>.md (a header line + the body)."""
    result = {"phase": name, "environment": environment(), **result}
    env = result["environment"]
    header = (f"# {name} — {env['device']}\n\ncommit {env['commit']}, torch {env['torch']}, triton {env['triton']}, "
              f"CUDA {env['cuda']}, driver {env.get('driver')}; wall {result.get('wall_s', '?')} s.\n\n")
    atomic_write_text(out_dir / f"{name}.json", json.dumps(result, indent=1, default=str) + "\n")
    atomic_write_text(out_dir / f"{name}.md", header + markdown_body.rstrip() + "\n")


def cuda_sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()
