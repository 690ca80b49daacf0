"""Resuming sharded (DeepSpeed ZeRO-3) checkpoints with a different number of processes.

A ZeRO-3 step checkpoint is a directory (lightning_modules/checkpoints.py):
    step-00000100.ckpt/latest                                    names the tag ("checkpoint")
    step-00000100.ckpt/checkpoint/zero_pp_rank_<r>_mp_rank_00_{model,optim}_states.pt   one pair per rank
Each optimizer shard holds 1/world_size of the flat fp32 weights and Adam moments, so the native format
only loads with the world size that wrote it (DeepSpeed: "... DP world size of 2 but the current world
size is 1"). When the saved world size (count of optimizer shards) differs from this run's
(devices x nodes), `prepare_resume` converts the checkpoint once to DeepSpeed's universal format
(deepspeed.checkpoint.ds_to_universal: one fp32 file per parameter and moment), cached next to it as
    step-00000100.ckpt/checkpoint_universal/   + step-00000100.ckpt/latest_universal
and sets `checkpoint.load_universal` in the strategy's DeepSpeed config, so every rank loads its new
slice of weights and moments. The conversion is written to a temporary directory and renamed, and
`latest_universal` is written last, so an interrupted conversion is redone, never half-read. Only
global rank 0 converts (other ranks started by torchrun/srun wait for the result; with Lightning's own
launcher the other ranks start after rank 0 has finished). Trade-off: the conversion needs the whole
fp32 state in rank 0's CPU memory once; the cached result is reused by every later resume of that step.
"""
from __future__ import annotations

import contextlib
import io
import os
import shutil
import sys
import time
from pathlib import Path

UNIVERSAL = "checkpoint_universal"
LATEST_UNIVERSAL = "latest_universal"
WAIT_SECONDS = float(os.environ.get("ACTSYNC_UNIVERSAL_WAIT_S", 4 * 3600))  # other ranks wait this long


def is_deepspeed_checkpoint(path: Path) -> bool:
    return Path(path).is_dir() and (Path(path) / "latest").is_file()


def deepspeed_tag_dir(path: Path) -> Path:
    """<checkpoint>/<tag> as named by <checkpoint>/latest (Lightning always uses the tag 'checkpoint')."""
    path = Path(path)
    return path / (path / "latest").read_text().strip()


def saved_world_size(path: Path) -> int:
    """Data-parallel world size that wrote a ZeRO checkpoint: one optimizer-state shard per rank."""
    return len(list(deepspeed_tag_dir(path).glob("*optim_states.pt")))


def universal_ready(path: Path) -> bool:
    latest = Path(path) / LATEST_UNIVERSAL
    return (Path(path) / UNIVERSAL).is_dir() and latest.is_file() and latest.read_text().strip() == UNIVERSAL


def convert_to_universal(path: Path) -> float:
    """Convert <path>/<tag> into <path>/checkpoint_universal (atomic); returns the seconds it took."""
    from deepspeed.checkpoint import ds_to_universal

    from common.atomic import atomic_write_text

    path = Path(path)
    start = time.perf_counter()
    for stale in path.glob(f".{UNIVERSAL}.tmp-*"):  # left by an interrupted conversion
        shutil.rmtree(stale, ignore_errors=True)
    final = path / UNIVERSAL
    if not final.is_dir():
        tmp = path / f".{UNIVERSAL}.tmp-{os.getpid()}"
        workers = max(1, min(4, (os.cpu_count() or 1) // 2))
        argv = ["ds_to_universal", "--input_folder", str(deepspeed_tag_dir(path)), "--output_folder", str(tmp),
                "--num_extract_workers", str(workers), "--num_merge_workers", str(max(1, workers // 2))]
        log = io.StringIO()
        saved_argv, sys.argv = sys.argv, argv
        try:  # in-process (no second interpreter start); its progress output goes to the error message only
            with contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):
                ds_to_universal.main(ds_to_universal.parse_arguments())
        except BaseException as error:
            shutil.rmtree(tmp, ignore_errors=True)
            raise RuntimeError(f"{path}: conversion to a universal checkpoint failed: {error}\n"
                               f"{log.getvalue()[-4000:]}") from error
        finally:
            sys.argv = saved_argv
        os.replace(tmp, final)
    # ds_to_universal pointed latest_universal at the temporary name: point it at the final one, last.
    atomic_write_text(path / LATEST_UNIVERSAL, UNIVERSAL)
    return time.perf_counter() - start


def _launch_rank(trainer) -> int:
    """Global rank of this process before the process group exists (LOCAL_RANK/NODE_RANK, torchrun's
    GROUP_RANK, SLURM_LOCALID/SLURM_NODEID: whatever the trainer's cluster environment reads)."""
    env = trainer.strategy.cluster_environment
    if env is None:
        return 0
    return env.node_rank() * trainer.num_devices + env.local_rank()


def prepare_resume(ckpt_path: str | None, trainer) -> str | None:
    """Make `trainer` able to resume `ckpt_path`; converts a ZeRO checkpoint written by another world size.

    Returns the path to pass to trainer.fit (unchanged). Prints one line when the world size changed."""
    from lightning.pytorch.strategies import DeepSpeedStrategy

    from configs.loader import ConfigError

    if ckpt_path is None:
        return None
    path = Path(ckpt_path)
    deepspeed_strategy = isinstance(trainer.strategy, DeepSpeedStrategy)
    if not is_deepspeed_checkpoint(path):
        if deepspeed_strategy and path.is_file():
            raise ConfigError(f"--resume {path}: a single-file checkpoint cannot resume a deepspeed_zero3 run "
                              "(optimizer states are sharded); resume with the strategy that wrote it")
        return ckpt_path
    if not deepspeed_strategy:
        raise ConfigError(f"--resume {path}: a DeepSpeed (sharded) checkpoint; resume it with "
                          "train.strategy.name=deepspeed_zero3, or consolidate it with `main.py export`")
    saved, current = saved_world_size(path), trainer.num_devices * trainer.num_nodes
    if saved == current:
        return ckpt_path
    rank = _launch_rank(trainer)
    if rank == 0:
        cached = universal_ready(path)
        seconds = 0.0 if cached else convert_to_universal(path)
        how = "cached" if cached else f"converted in {seconds:.1f} s"
        processes = f"{saved} process{'es' * (saved != 1)}"
        print(f"resume: {path.name} was written by {processes}, this run has {current}: loading its universal "
              f"checkpoint ({how}: {path / UNIVERSAL})", flush=True)
    else:
        deadline = time.monotonic() + WAIT_SECONDS
        while not universal_ready(path):
            if time.monotonic() > deadline:
                raise TimeoutError(f"rank {rank}: no universal checkpoint in {path} after {WAIT_SECONDS:.0f} s "
                                   "(rank 0 converts it; see its log)")
            time.sleep(2.0)
    trainer.strategy.config.setdefault("checkpoint", {})["load_universal"] = True
    return ckpt_path
