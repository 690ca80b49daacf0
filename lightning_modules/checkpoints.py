"""Step checkpoints of a fit: atomic writes, finding the latest complete one, pruning.

Layout of a fit run (runs/NAME/fit/):
    checkpoints/step-00000100.ckpt   full training state (a file; a directory under DeepSpeed)
    weights.safetensors, ...         the exported weights (system/weights.py)
A checkpoint is written as `<name>.partial` and renamed when complete, so a crash leaves at most a
`.partial` that `--resume auto` ignores; a complete-looking file that fails to load is skipped with a
warning and the next older one is tried. Trade-off: validating a candidate costs one (mmap) load.
"""
from __future__ import annotations

import os
import re
import shutil
import warnings
from pathlib import Path

from common.errors import CheckpointError  # noqa: F401 (raised here, caught by its callers)
from common.safe_load import load_checkpoint_file

STEP_NAME = re.compile(r"^step-(\d+)\.ckpt$")


def step_checkpoint_path(directory: Path, step: int) -> Path:
    return Path(directory) / f"step-{step:08d}.ckpt"


def _is_complete(path: Path) -> tuple[bool, str]:
    """(usable, why not) for a step checkpoint: a Lightning file, or a DeepSpeed directory."""
    try:
        if path.is_dir():  # DeepSpeed: <dir>/latest names the tag; each rank wrote its model/optim shard
            tag = (path / "latest").read_text().strip()  # Lightning: "checkpoint"
            shards = list((path / tag).glob("*optim_states.pt"))  # zero_pp_rank_<r>_mp_rank_00_optim_states.pt
            model_states = list((path / tag).glob("*model_states.pt"))
            if not shards or not model_states:
                return False, f"no model/optimizer shards under {path / tag}"
            per_rank = [m for m in model_states if m.name.startswith("zero_pp_rank_")]  # ZeRO-3: one per rank
            if per_rank and len(per_rank) != len(shards):
                return False, f"{len(per_rank)} model-state files but {len(shards)} optimizer shards"
            return True, ""
        state = load_checkpoint_file(path, mmap=True)
        missing = [k for k in ("state_dict", "global_step", "optimizer_states") if k not in state]
        return (not missing), f"missing {missing}" if missing else ""
    except Exception as error:  # truncated zip, bad pickle, unreadable file
        return False, f"{type(error).__name__}: {error}"


def find_resume_checkpoint(directory: Path) -> Path | None:
    """Newest complete step checkpoint in `directory` (partial and corrupt ones skipped, with a warning)."""
    directory = Path(directory)
    if not directory.is_dir():
        return None
    candidates = sorted((int(m.group(1)), p) for p in directory.iterdir() if (m := STEP_NAME.match(p.name)))
    for path in sorted(directory.glob("step-*.ckpt.partial")):  # a save cut short before its rename
        warnings.warn(f"skipping checkpoint {path}: partial (the save was interrupted)", stacklevel=2)
    for _step, path in reversed(candidates):
        ok, why = _is_complete(path)
        if ok:
            return path
        warnings.warn(f"skipping checkpoint {path}: incomplete or corrupt ({why})", stacklevel=2)
    return None


def promote_partial(partial: Path, final: Path) -> None:
    """Rename a fully written `.partial` checkpoint (file or directory) to its final name."""
    if final.is_dir():
        shutil.rmtree(final)
    os.replace(partial, final)


def prune_checkpoints(directory: Path, keep_last: int) -> None:
    steps = sorted((int(m.group(1)), p) for p in Path(directory).iterdir() if (m := STEP_NAME.match(p.name)))
    for _, path in steps[:-keep_last] if keep_last > 0 else []:
        shutil.rmtree(path) if path.is_dir() else path.unlink(missing_ok=True)


# ------------------------------------------------------------------ weights for generation / later stages


