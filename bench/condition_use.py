"""Does a trained DiT use its conditions, and does it predict motion or copy the reference? (issue 15)

For exported weights (a `main.py curve` snapshot or a fit's export) and the first clips of a split, at a
few noise levels t with fixed noise, the model's clean-latent estimate x0_hat = x_t - t * v is compared
with the true latents x0 on the *motion* part (x0 minus the reference latent repeated over frames):

- `x0_err / copy_err`: error of x0_hat over the error of copying the reference into every frame.
  1.0 = the model knows nothing the reference does not tell; 0.0 = it predicts the motion exactly;
- the same with the text (all text fields) or the audio of another clip of the batch, and with text
  and audio dropped (the null condition of CFG): if these equal the true-condition value, the model
  does not use that condition at that noise level.

    python bench/condition_use.py -e demo --weights runs/curves/memorise8/fit/snapshots/step-360
        [--split train] [--clips 8] [--out bench/results/condition_use_X.json] [key=value ...]
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.bench_synthavatar import machine
from common.atomic import atomic_write_text
from configs.loader import load_config
from models.flow_matching import as_velocity, frame_timesteps, noisy_latents

T_LEVELS = (0.3, 0.6, 0.8, 0.95)
TEXT_FIELDS = ("text", "text_mask", "text_phase", "text_window", "text_is_phase")


def roll(cond, names):
    return cond.replace(**{n: getattr(cond, n).roll(1, 0) for n in names if getattr(cond, n) is not None})


@torch.no_grad()
def measure(generator, batch) -> list[dict]:
    model = as_velocity(generator.model, generator.cfg.train.flow.prediction)
    encoder = generator.encoder
    x0, cond = encoder.prepare(batch)
    B = x0.shape[0]
    copy = x0[:, :, :1].expand_as(x0)
    motion = x0 - copy                                    # (B, C, F, h, w): what the reference does not give
    copy_err = motion[:, :, 1:].square().mean().item()
    off = torch.zeros(B, dtype=torch.bool)
    variants = {"true": cond, "text_of_other_clip": roll(cond, TEXT_FIELDS),
                "audio_of_other_clip": roll(cond, ("audio",)),
                "null_text_and_audio": cond.replace(keep_text=off, keep_audio=off)}
    rows = []
    noise = torch.randn(x0.shape, generator=torch.Generator().manual_seed(0))
    for t in T_LEVELS:
        t_frames = frame_timesteps(torch.full((B,), t), x0.shape[2], True)
        x_t = noisy_latents(x0, noise, t_frames)
        row = {"t": t}
        for name, c in variants.items():
            v = model(x_t, t_frames, c)
            x0_hat = x_t - t_frames[:, None, :, None, None] * v
            row[name] = round((x0_hat - x0)[:, :, 1:].square().mean().item() / copy_err, 4)
        rows.append(row)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-e", "--experiment", action="append", default=[])
    parser.add_argument("--weights", required=True)
    parser.add_argument("--split", default="test", choices=("train", "val", "test"))
    parser.add_argument("--clips", type=int, default=8)
    parser.add_argument("--out", default="")
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args()
    from inference.generate import Generator

    cfg = load_config(args.experiment or ["demo"], args.overrides)
    generator = Generator(cfg, args.weights, progress=False)
    source = generator.system.source
    source.prepare(args.split, progress=False)
    dataset = source.dataset(args.split)
    batch = source.collate([dataset[i] for i in range(min(args.clips, len(dataset)))])
    rows = measure(generator, batch)
    print("x0 error on the motion (frames 1..), relative to copying the reference (1.0 = copy):")
    print(f"{'t':>5} " + " ".join(f"{k:>20}" for k in rows[0] if k != "t"))
    for row in rows:
        print(f"{row['t']:>5} " + " ".join(f"{row[k]:>20.3f}" for k in row if k != "t"))
    if args.out:
        result = {"machine": machine(), "weights": args.weights, "split": args.split, "clips": len(batch.index),
                  "experiment": args.experiment, "overrides": args.overrides, "rows": rows}
        atomic_write_text(Path(args.out), json.dumps(result, indent=1) + "\n")
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
