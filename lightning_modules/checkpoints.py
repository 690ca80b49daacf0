"""Checkpoint files: atomic step checkpoints, finding the latest complete one, stage weights, export.

Layout of a fit run (runs/NAME/fit/):
    checkpoints/step-00000100.ckpt   full training state (a file; a directory under DeepSpeed)
    weights.safetensors              the DiT weights for generation (EMA when on), written at the end
    weights.json                     what they are: step, stage, config of the run
A checkpoint is written as `<name>.partial` and renamed when complete, so a crash leaves at most a
`.partial` that `--resume auto` ignores; a complete-looking file that fails to load is skipped with a
warning and the next older one is tried. Trade-off: validating a candidate costs one (mmap) load.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import warnings
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from common.atomic import atomic_write, atomic_write_text
from common.safe_load import load_checkpoint_file  # noqa: F401 (re-exported)
from models.convert import NEW_MODULE_PATTERN
from common.errors import CheckpointError  # noqa: F401 (raised here, caught by its callers)

STEP_NAME = re.compile(r"^step-(\d+)\.ckpt$")
WEIGHTS = "weights.safetensors"


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
    for step, path in reversed(candidates):
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


def save_weights(state: dict[str, torch.Tensor], run_dir: Path, meta: dict) -> Path:
    """Atomically write weights.safetensors (+ weights.json describing them) into `run_dir`."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().cpu().contiguous() for k, v in state.items() if torch.is_tensor(v)}
    path = atomic_write(run_dir / WEIGHTS, lambda tmp: save_file(tensors, tmp))
    atomic_write_text(run_dir / "weights.json", json.dumps(meta, indent=1, default=str))
    return path


def resolve_weights(source: str | Path) -> Path:
    """A run dir (runs/NAME/fit), a weights .safetensors or a Lightning .ckpt -> the file to read."""
    path = Path(source)
    if path.is_dir() and (path / WEIGHTS).is_file():
        return path / WEIGHTS
    if path.is_dir() and (path / "fit" / WEIGHTS).is_file():
        return path / "fit" / WEIGHTS
    if path.is_file():
        return path
    raise CheckpointError(f"{path}: no weights found (expected a run directory containing {WEIGHTS}, "
                          "a .safetensors file or a .ckpt file); did that stage finish?")


def read_weights(source: str | Path) -> dict[str, torch.Tensor]:
    path = resolve_weights(source)
    try:
        if path.suffix == ".safetensors":
            return load_file(str(path))
        state = load_checkpoint_file(path)
    except CheckpointError:
        raise
    except Exception as error:
        raise CheckpointError(f"{path}: cannot read weights ({type(error).__name__}: {error})") from error
    if "state_dict" not in state:
        raise CheckpointError(f"{path}: not a Lightning checkpoint (no 'state_dict')")
    return {k[len("model."):]: v for k, v in state["state_dict"].items() if k.startswith("model.")}


def load_stage_weights(model: torch.nn.Module, source: str | Path) -> dict:
    """Initialise `model` from an earlier stage. Only ActSync's new zero-init modules may be missing
    (e.g. phase embeddings added in ActAvatar stage 2); weights the model lacks are an error."""
    state = read_weights(source)
    own = model.state_dict()
    missing = [k for k in own if k not in state and not NEW_MODULE_PATTERN.fullmatch(k)]
    unexpected = [k for k in state if k not in own]
    # checked before loading: torch raises a RuntimeError (not naming the file) on a shape mismatch
    shapes = [f"{k} {tuple(v.shape)} vs {tuple(own[k].shape)}" for k, v in state.items()
              if k in own and v.shape != own[k].shape]
    if missing or unexpected or shapes:
        raise CheckpointError(
            f"{resolve_weights(source)}: does not fit this model: missing {missing[:5]} "
            f"unexpected {unexpected[:5]} shape (file vs model) {shapes[:3]} "
            "(is model.* the same as in that stage?)")
    result = model.load_state_dict(state, strict=False)
    return {"loaded": len(state), "new_modules": len(result.missing_keys)}
