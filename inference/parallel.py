"""`main.py generate --parallel`: one generation spread over the processes of a torchrun launch.

    torchrun --nproc_per_node 8 main.py generate --parallel -e NAME ... sample.guidance_parallel=2

The W ranks form a grid of guidance_parallel x (W / guidance_parallel): rank = g * S + s. Ranks with the
same g are one sequence-parallel group (models/sequence_parallel.py SequenceParallelDiT: Ulysses over S
ranks); ranks with the same s are one guidance group (the dual-CFG passes of a step split over them). Every
rank reads the same requests, draws the same noise (seeded per clip on the CPU) and runs the same encoders
and decoder, so the DiT is the only part that is split; rank 0 alone prints and writes the files.
Backend: NCCL on GPUs (rank r on cuda:LOCAL_RANK), gloo on CPU (what the exactness tests run on).
Build the data and codec caches first (`main.py data`, one process), as for ZeRO-3 training: every rank
would otherwise build them at once.
Trade-off: encoders and the codec decoder run redundantly on every rank (small next to the DiT's sampling
steps), which keeps every rank's inputs bit-identical without a broadcast per tensor.
"""
from __future__ import annotations

import contextlib
import io
import os
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.distributed as dist

from configs.loader import ConfigError


@dataclass
class ParallelGroups:
    rank: int
    world: int
    sequence: int  # S: ranks per sequence-parallel group
    guidance: int  # G: ranks per guidance group
    sequence_group: object = None
    guidance_group: object = None


def init_parallel(cfg) -> ParallelGroups:
    """The process group of this torchrun launch and its sequence / guidance subgroups."""
    if "RANK" not in os.environ or "WORLD_SIZE" not in os.environ:
        raise ConfigError("generate --parallel runs under torchrun, e.g. `torchrun --nproc_per_node 2 main.py "
                          "generate --parallel ...` (RANK / WORLD_SIZE are not set)")
    nccl = torch.cuda.is_available() and cfg.sample.device != "cpu"
    if nccl:  # NCCL's collectives (and broadcast_object_list) use the current device: this rank's GPU
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
    if not dist.is_initialized():
        dist.init_process_group("nccl" if nccl else "gloo")
    import deepspeed.comm
    deepspeed.comm.init_distributed(dist_backend=dist.get_backend(), auto_mpi_discovery=False)
    rank, world = dist.get_rank(), dist.get_world_size()
    G = int(cfg.sample.guidance_parallel)
    if world % G:
        raise ConfigError(f"generate --parallel: {world} processes are not a multiple of "
                          f"sample.guidance_parallel={G}")
    S = world // G
    groups = ParallelGroups(rank, world, S, G)
    # every rank creates every group, in the same order (a torch.distributed requirement)
    for g in range(G):
        members = list(range(g * S, (g + 1) * S))
        group = dist.new_group(members)
        if rank in members:
            groups.sequence_group = group
    for s in range(S):
        members = [g * S + s for g in range(G)]
        group = dist.new_group(members)
        if rank in members:
            groups.guidance_group = group
    return groups


def parallelize(generator, groups: ParallelGroups):
    """Wrap the generator's DiT for its sequence group and its sampler for its guidance group."""
    from models.sequence_parallel import SequenceParallelDiT, guidance_parallel
    if groups.sequence > 1:
        generator.model = SequenceParallelDiT(generator.model, groups.sequence_group)
    if groups.guidance > 1:
        generator.guidance = guidance_parallel(groups.guidance_group)
    return generator


def run_parallel(cfg, args, mode: str, requests, out_dir: Path, weights) -> int:
    """cmd_generate's work under torchrun (module docstring); the exit status of rank 0 on every rank."""
    from inference.batch import report, run_generation
    from inference.generate import Generator
    groups = init_parallel(cfg)
    writer = groups.rank == 0
    quiet = contextlib.nullcontext() if writer else contextlib.redirect_stdout(io.StringIO())
    try:
        with quiet:
            generator = parallelize(Generator(cfg, weights, progress=writer), groups)
            if writer:
                print(f"generate: {groups.world} processes: sequence parallel x{groups.sequence}, "
                      f"guidance parallel x{groups.guidance} ({dist.get_backend()})")
            existing = None
            if mode != "split":  # rank 0's view of what is already written, so every rank skips the same
                names = [sorted(r.name for r in requests if (out_dir / f"{r.name}.mp4").is_file())] if writer else [None]
                dist.broadcast_object_list(names, src=0)
                existing = set(names[0])
            written, failed = run_generation(generator, cfg, args, mode, requests, out_dir, write=writer,
                                             existing=existing, progress=writer, retry=False)
            status = report(written, failed, out_dir) if writer else 0
        codes = [status]
        dist.broadcast_object_list(codes, src=0)
        return int(codes[0])
    finally:
        dist.destroy_process_group()
