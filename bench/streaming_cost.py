"""Issue 15, Deliver 2c: does streaming fresh procedural clips beat a fixed cached set per wall-clock minute?

SynthAvatar can render unlimited clips, but rendering is CPU work that competes with the training step on
the same cores. This benchmark measures both in one process on an idle machine: the render cost of one
clip (spec + frames + audio + ground truth, what a streaming loader would do per sample) and the median
full training step of the config (bench/bench_train.measure: encoders + DiT forward/backward + AdamW, the
batch already in memory, as with the cached set). From them, projected (streaming is not implemented: this
says whether it is worth implementing here): the best step rate a streaming loader could sustain when
rendering shares the cores with training, i.e. the CPU work of a step (threads x step time) plus the
batch's render work, spread over the same cores, next to the cached set's. Whether a fixed set overfits
is the other half of the question; that is read from the learning curves (train vs validation loss of the
pretrain run, bench/results/curves/README.md).

    python bench/streaming_cost.py [-e demo] [--clips 16] [--out bench/results/streaming_cost_cpu] [key=value ...]
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.bench_synthavatar import machine, print_and_write
from bench.bench_train import measure
from configs.loader import load_config
from synthavatar.clip import render_clip, sample_clip_spec
from synthavatar.dataset import clip_seed


def render_seconds(data_cfg, clips: int) -> float:
    """Median seconds to render one fresh train clip (indices far beyond any cached split)."""
    times = []
    for i in range(clips):
        start = time.perf_counter()
        spec = sample_clip_spec(clip_seed(data_cfg.seed, "train", 10_000_000 + i), "train", data_cfg.duration,
                                data_cfg.min_phases, data_cfg.max_phases)
        render_clip(spec, data_cfg.resolution, data_cfg.fps, data_cfg.sample_rate)
        times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2]


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-e", "--experiment", default="demo")
    parser.add_argument("--clips", type=int, default=16, help="fresh clips rendered for the timing")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--out", type=Path, default=Path("bench/results/streaming_cost_cpu"))
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args(argv)
    cfg = load_config(args.experiment, args.overrides)
    threads = torch.get_num_threads()
    step = measure(cfg, args.steps, 3, "cpu")["step_s_median"]
    render = render_seconds(cfg.data, args.clips)  # one core: rendering is single-threaded numpy
    batch = int(cfg.data.batch_size)
    # Streaming on these cores: each step also pays for rendering its batch, spread over `threads` workers.
    streaming_step = step + batch * render / threads
    result = {"machine": machine(), "torch_threads": threads, "experiment": args.experiment,
              "overrides": args.overrides, "batch_size": batch, "train_step_s": round(step, 4),
              "render_s_per_clip": round(render, 4), "render_s_per_batch_one_core": round(batch * render, 3),
              "cached_steps_per_min": round(60 / step, 1), "streaming_steps_per_min": round(60 / streaming_step, 1),
              "streaming_vs_cached": round(step / streaming_step, 3)}
    text = "\n".join([
        f"# Streaming fresh SynthAvatar clips vs a cached set ({result['machine']}, {threads} threads)", "",
        f"`{args.experiment}` {' '.join(args.overrides)}: training step {step:.3f} s (batch {batch}, median of "
        f"{args.steps}); rendering one fresh clip {render:.3f} s on one core (median of {args.clips}).", "",
        "| data | steps / min | samples / min |", "|---|---|---|",
        f"| cached clips (rendered once) | {60 / step:.1f} | {60 * batch / step:.0f} |",
        f"| streamed fresh clips (projected: rendering shares the {threads} cores) | {60 / streaming_step:.1f} | "
        f"{60 * batch / streaming_step:.0f} |", "",
        f"Streaming trains at {step / streaming_step:.2f}x the cached set's step rate on this machine."])
    print_and_write(text, result, args.out)


if __name__ == "__main__":
    main()
