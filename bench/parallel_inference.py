"""Multi-process DiT inference on CPU (issue 17, Deliver 2): one sampling step's DiT work in one process
(all cores) vs two processes of one core each with Ulysses sequence parallelism (gloo all-to-all) and
with guidance parallelism (the 3 dual-CFG passes split 2 + 1), in one run, interleaved, same weights and
inputs; the outputs are checked against the one-process output. On 2 CPU cores this measures the
communication and duplication overhead more than a speed-up (one process already uses both cores through
intra-op threads); GPU numbers belong to the GPU suite.

    python bench/parallel_inference.py [--preset synth-wide] [--frames 25 --size 16] [--repeats 5]
        [--out bench/results/parallel_inference_cpu.json]
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.multiprocessing as mp

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.bench_dit import build, inputs
from bench.bench_synthavatar import machine
from common.atomic import atomic_write_text


def _step(model, guidance, x, t, cond):
    from models.sampling import guided_velocity
    return (guidance or guided_velocity)(model, x, t, cond, 2.0, 2.0)  # dual CFG: 3 passes


def _timed(fn, repeats: int) -> tuple[float, torch.Tensor]:
    out = fn()  # warm-up
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - started)
    return sorted(times)[len(times) // 2], out


def _worker(rank: int, init: str, args, out_dir: str) -> None:
    import torch.distributed as dist
    dist.init_process_group("gloo", init_method=init, rank=rank, world_size=2)
    import deepspeed.comm
    deepspeed.comm.init_distributed(dist_backend="gloo", auto_mpi_discovery=False, verbose=False)
    from models.sequence_parallel import SequenceParallelDiT, guidance_parallel
    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = build(args.preset, args.channels, adapters=True).eval()
    x, t, cond = inputs(args.batch, args.channels, args.frames, args.size)
    with torch.no_grad():
        guidance_s, guided = _timed(lambda: _step(model, guidance_parallel(), x, t, cond), args.repeats)
        sequence = SequenceParallelDiT(model)
        sequence_s, sequenced = _timed(lambda: _step(sequence, None, x, t, cond), args.repeats)
    if rank == 0:
        torch.save({"guidance_s": guidance_s, "sequence_s": sequence_s, "guided": guided, "sequenced": sequenced},
                   Path(out_dir) / "parallel.pt")
    dist.destroy_process_group()
    os._exit(0)  # skip the teardown that aborts about one gloo run in five (tests/test_sequence_parallel.py)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", default="synth-wide")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--channels", type=int, default=16)
    parser.add_argument("--frames", type=int, default=25, help="latent frames")
    parser.add_argument("--size", type=int, default=16, help="latent height = width")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    torch.manual_seed(0)
    model = build(args.preset, args.channels, adapters=True).eval()
    x, t, cond = inputs(args.batch, args.channels, args.frames, args.size)
    threads = torch.get_num_threads()
    with torch.no_grad():
        one_s, expected = _timed(lambda: _step(model, None, x, t, cond), args.repeats)
    with tempfile.TemporaryDirectory() as tmp:
        mp.spawn(_worker, args=(f"file://{tmp}/store", args, tmp), nprocs=2, join=True)
        got = torch.load(Path(tmp) / "parallel.pt", weights_only=False)
    tokens = args.frames * (args.size // 2) ** 2
    result = {"machine": machine(), "command": "python bench/parallel_inference.py " + " ".join(sys.argv[1:]),
              "preset": args.preset, "batch": args.batch, "video_tokens": tokens, "step": "dual CFG, 3 DiT passes",
              "one_process_s": one_s, "one_process_threads": threads,
              "sequence_parallel_2_s": got["sequence_s"], "guidance_parallel_2_s": got["guidance_s"],
              "sequence_speedup": one_s / got["sequence_s"], "guidance_speedup": one_s / got["guidance_s"],
              "sequence_max_abs_diff": float((got["sequenced"] - expected).abs().max()),
              "guidance_max_abs_diff": float((got["guided"] - expected).abs().max())}
    print(json.dumps(result, indent=1))
    if args.out:
        atomic_write_text(args.out, json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
