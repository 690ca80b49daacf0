"""Where a training step's time goes (issue 15, Deliver 2): data loading + collate, each frozen condition
encoder (codec, text, audio), and the DiT's forward + backward, on the config's real batches.

    python bench/profile_step.py -e demo [--steps 5] [--out bench/results/profile_step_cpu.json] [key=value ...]

Text is timed twice: the first encoding of a prompt (the first epoch) and the frozen encoder's output
cache hit that every later epoch gets. Run it alone on an idle machine. The medians over `--steps`
batches (after one warm-up) are printed and, with --out, written as JSON with the machine named. This
is what decides whether caching the conditions per clip (latents, audio features) is worth it: it
pays exactly the encoder and decoding shares.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.bench_synthavatar import machine
from configs.loader import load_config
from models.prompt_tokens import structured_prompts
from system.build import build_system


class _Clock:
    """Accumulates named intervals: `with clock("codec"): ...`."""

    def __init__(self):
        self.last: dict[str, float] = {}

    def __call__(self, name: str):
        self.name = name
        return self

    def __enter__(self):
        self.start = time.perf_counter()

    def __exit__(self, *exc):
        self.last[self.name] = time.perf_counter() - self.start


def profile(cfg, steps: int) -> dict:
    system = build_system(cfg, progress=False)
    source, encoder, model = system.source, system.encoder, system.model
    source.prepare("train", progress=False)
    dataset, batch_size = source.dataset("train"), system.cfg.data.batch_size
    names = ("load_collate", "codec", "text", "text_cached", "audio", "dit_fwd_bwd")
    parts: dict[str, list[float]] = {k: [] for k in names}
    clock = _Clock()
    for step in range(steps + 1):
        clock.last = dict.fromkeys(names, 0.0)
        with clock("load_collate"):
            batch = source.collate([dataset[(step * batch_size + i) % len(dataset)] for i in range(batch_size)])
        T = encoder.codec.valid_num_frames(batch.num_frames)
        with torch.no_grad():
            with clock("codec"):
                x0 = encoder.encode_video(batch)  # (B, C, F, h, w)
            with clock("text"):
                cond = encoder.encode_text(structured_prompts(batch.prompt))  # first epoch: cache misses
            with clock("text_cached"):  # later epochs: the frozen encoder's output cache (TextConfig.cache_size)
                cond = encoder.encode_text(structured_prompts(batch.prompt))
            if encoder.audio_encoder is not None:
                with clock("audio"):
                    cond.audio = encoder.encode_audio(batch.audio, batch.num_frames)[:, :T]
        t_frames = torch.rand(batch_size)[:, None].expand(-1, x0.shape[2]).contiguous()
        with clock("dit_fwd_bwd"):
            model.zero_grad(set_to_none=True)
            model(x0, t_frames, cond).float().pow(2).mean().backward()
        if step:  # the first batch warms caches and allocators
            for key in names:
                parts[key].append(clock.last[key])
    medians = {k: statistics.median(v) for k, v in parts.items()}
    later = {k: v for k, v in medians.items() if k != "text"}  # a step after the first epoch
    total = sum(later.values())
    return {"machine": machine(), "batch_size": batch_size, "steps": steps, "threads": torch.get_num_threads(),
            "median_s": {k: round(v, 4) for k, v in medians.items()},
            "share_after_first_epoch": {k: round(v / total, 3) for k, v in later.items()},
            "step_s_first_epoch": round(total - later["text_cached"] + medians["text"], 4),
            "step_s_after_first_epoch": round(total, 4)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-e", "--experiment", action="append", default=None)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--out", type=Path)
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args()
    result = profile(load_config(args.experiment or ["demo"], args.overrides), args.steps)
    print(json.dumps(result, indent=1))
    if args.out:
        args.out.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
