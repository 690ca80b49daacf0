"""Is a low score the generator's or the judge's? (issue 15, Deliver 4). Scores degraded versions of the
held-out ground truth with the evaluator every table uses (the probe, evaluation/evaluator.py):

- ground truth; its H.264 round trip (generated clips are written as mp4);
- the codec's reconstruction (the ceiling of any DiT trained on these latents);
- Gaussian blur (sigma 1.5 px) and pixel noise (sigma 0.1 of the [0, 1] range): a generator's typical blur/grain;
- the reference frame repeated (the copy-the-reference shortcut: what an untrained-for-motion generator emits).

If blurred/noised/reconstructed ground truth keeps its H@S / TC / Sync-C, the judge is not what holds the
generator back; the static row is the floor the generator must leave.

    python bench/judge_check.py [-e demo] [--out bench/results/judge_check_cpu]
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.bench_synthavatar import machine, print_and_write
from common.video_io import read_video, write_video
from configs.loader import load_config
from evaluation.evaluator import score_set, window_features
from evaluation.probe_train import get_probe
from evaluation.tables import to_markdown
from synthavatar.dataset import ensure_split, load_clip
from system.build import build_system

METRICS = ("sync_c", "h_at_s", "aa", "tc", "csim", "psnr", "fvd")


def _blur(video: np.ndarray, sigma: float = 1.5) -> np.ndarray:
    x = torch.from_numpy(video).float().permute(0, 3, 1, 2)  # (T, H, W, 3) -> (T, 3, H, W)
    r = int(3 * sigma)
    k = torch.exp(-torch.arange(-r, r + 1).float() ** 2 / (2 * sigma**2))
    k = k / k.sum()
    x = F.conv2d(F.pad(x, (r, r, 0, 0), mode="replicate"), k.view(1, 1, 1, -1).expand(3, 1, 1, -1), groups=3)
    x = F.conv2d(F.pad(x, (0, 0, r, r), mode="replicate"), k.view(1, 1, -1, 1).expand(3, 1, -1, 1), groups=3)
    return x.permute(0, 2, 3, 1).round().clamp(0, 255).byte().numpy()


def _noise(video: np.ndarray, sigma: float = 0.1, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.clip(video + rng.normal(0, sigma * 255, video.shape), 0, 255).astype(np.uint8)


def _mp4(video: np.ndarray, fps: int, work: Path) -> np.ndarray:
    path = work / "clip.mp4"
    write_video(path, video, fps=fps)
    return read_video(path, sample_rate=None).frames[: len(video)]


def _reconstruct(codec, video: np.ndarray) -> np.ndarray:
    T = codec.valid_num_frames(len(video))
    x = torch.from_numpy(video[:T]).float().div(127.5).sub(1).permute(3, 0, 1, 2)[None]  # (1, 3, T, H, W)
    with torch.no_grad():
        y = codec.decode(codec.encode(x))[0].permute(1, 2, 3, 0)
    out = video.copy()
    out[:T] = y.add(1).mul(127.5).round().clamp(0, 255).byte().numpy()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-e", "--experiment", action="append", default=None)
    parser.add_argument("--out", type=Path)
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args()
    cfg = load_config(args.experiment or ["demo"], args.overrides)
    probe = get_probe(cfg, progress=True)
    clips = [load_clip(p) for p in ensure_split(cfg.data, "test", progress=True)]
    codec = build_system(cfg, progress=True).encoder.codec
    reference = np.concatenate([window_features(probe.analyse(c["video"]), c["video"].shape[1]) for c in clips])
    with tempfile.TemporaryDirectory() as tmp:
        variants = {
            "ground truth": lambda v: v,
            "H.264 round trip": lambda v: _mp4(v, cfg.data.fps, Path(tmp)),
            "codec reconstruction": lambda v: _reconstruct(codec, v),
            "blur sigma 1.5 px": _blur,
            "noise sigma 0.1": _noise,
            "reference frame repeated": lambda v: np.repeat(v[:1], len(v), axis=0),
        }
        table = {}
        for name, change in variants.items():
            items = ((f"clip_{i}", change(c["video"]), c["audio"], c) for i, c in enumerate(clips))
            summary = score_set(probe, items, cfg, lambda: reference)["summary"]
            table[name] = {k: summary[k] for k in METRICS if k in summary}
            print(name, {k: round(v[0], 3) for k, v in table[name].items()}, flush=True)
    text = (f"# The judge on degraded ground truth ({len(clips)} held-out test clips, {machine()})\n\n"
            f"Command: `python bench/judge_check.py {' '.join(sys.argv[1:])}`\n\n" + to_markdown(table))
    print_and_write(text, table, args.out)


if __name__ == "__main__":
    main()
