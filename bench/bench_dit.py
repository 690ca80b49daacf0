"""Benchmark of the DiT: forward and forward+backward time and tokens/s per preset, with and without the
ActAvatar/SyncDreamer adapters, at SynthAvatar latent shapes; parameter counts of every preset (the 5B
one built on the meta device). Not a test: run it, read the numbers, commit the results with the machine.

    python bench/bench_dit.py [--presets tiny demo synth-wide] [--batch 2] [--frames 25 --size 8 --channels 16]
        [--repeats 3] [--out bench/results/dit_cpu.json]
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.bench_synthavatar import machine
from common.atomic import atomic_write_text
from models.audio_config import AudioConfig
from models.contracts import Conditions
from models.dit import WanDiT
from models.dit_config import preset_config
from models.frames import num_video_frames
from models.visual import VisualConfig

TEXT_DIM, TEXT_LEN = 384, 100  # MiniLM width, a typical SynthAvatar structured prompt


def build(preset: str, channels: int, adapters: bool, text_dim: int = TEXT_DIM) -> WanDiT:
    cfg = preset_config(preset, in_channels=channels, out_channels=channels, text_dim=text_dim,
                        phase_embedding=adapters, phase_window_bias=adapters)
    if not adapters:
        return WanDiT(cfg)
    return WanDiT(cfg, AudioConfig(), VisualConfig(qformer_dim=min(256, cfg.dim)))


def inputs(batch: int, channels: int, frames: int, size: int) -> tuple:
    x = torch.randn(batch, channels, frames, size, size)
    t = torch.rand(batch, 1).expand(batch, frames).clone()
    t[:, 0] = 0
    cond = Conditions(text=torch.randn(batch, TEXT_LEN, TEXT_DIM),
                      text_mask=torch.ones(batch, TEXT_LEN, dtype=torch.bool),
                      text_phase=torch.randint(0, 4, (batch, TEXT_LEN)),
                      text_window=torch.rand(batch, TEXT_LEN, 2).sort(-1).values,
                      text_is_phase=torch.rand(batch, TEXT_LEN) > 0.3,
                      audio=torch.randn(batch, num_video_frames(frames, 4, True), 81))
    return x, t, cond


def timed(fn, repeats: int) -> float:
    fn()  # warm-up
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    return (time.perf_counter() - start) / repeats


def bench_preset(preset, adapters, args) -> dict:
    torch.manual_seed(0)
    model = build(preset, args.channels, adapters)
    x, t, cond = inputs(args.batch, args.channels, args.frames, args.size)
    tokens = args.batch * args.frames * (args.size // 2) ** 2

    def forward():
        with torch.no_grad():
            model(x, t, cond)

    def train_step():
        model.zero_grad(set_to_none=True)
        model(x, t, cond).square().mean().backward()

    fwd, step = timed(forward, args.repeats), timed(train_step, args.repeats)
    return {"preset": preset, "adapters": adapters, "params": sum(p.numel() for p in model.parameters()),
            "tokens_per_sample": tokens // args.batch, "forward_s": round(fwd, 4), "train_step_s": round(step, 4),
            "train_samples_per_s": round(args.batch / step, 2), "train_tokens_per_s": round(tokens / step, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--presets", nargs="+", default=["tiny", "demo", "synth-wide"])
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--frames", type=int, default=25, help="latent frames (97 video frames at stride 4)")
    parser.add_argument("--size", type=int, default=8, help="latent height = width")
    parser.add_argument("--channels", type=int, default=16, help="latent channels")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", default="bench/results/dit_cpu.json")
    args = parser.parse_args()
    rows = []
    for preset in args.presets:
        for adapters in (False, True):
            rows.append(bench_preset(preset, adapters, args))
            print(json.dumps(rows[-1]))
    with torch.device("meta"):
        big = build("wan2.2-ti2v-5b", 48, adapters=False, text_dim=4096)  # umT5-XXL width
        big_full = build("wan2.2-ti2v-5b", 48, adapters=True, text_dim=4096)
    counts = {"wan2.2-ti2v-5b": sum(p.numel() for p in big.parameters()),
              "wan2.2-ti2v-5b+adapters": sum(p.numel() for p in big_full.parameters())}
    print(json.dumps(counts))
    result = {"machine": machine(), "threads": torch.get_num_threads(), "torch": torch.__version__,
              "shape": {"batch": args.batch, "latent_frames": args.frames, "latent_size": args.size,
                        "channels": args.channels, "text_tokens": TEXT_LEN},
              "rows": rows, "param_counts": counts}
    atomic_write_text(args.out, json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
