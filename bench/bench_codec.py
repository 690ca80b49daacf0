"""Benchmark of the latent codecs on SynthAvatar: fit time, encode/decode throughput, reconstruction
PSNR/SSIM (whole frame, mouth, hands) on held-out test clips, and the repo's evaluation metrics of the
reconstructed ground truth against the ground truth itself: the ceiling a DiT trained on these latents
can reach on Sync-C, H@S, AA, TC, CSIM and FVD. Not a test: run it, read the numbers, commit the results.

    python bench/bench_codec.py [-e demo] [--out bench/results/codec_cpu.json] [--no-sweep]

Uses the demo split when cached (else smoke, generated if needed). Every codec is fitted fresh into a
temporary cache (so the fit is timed), then reloaded from that cache (the cache-hit time). Every row,
the ground truth's included, is scored on the first 97 frames (4n+1: valid for s = 1, 2 and 4), so the
rows compare like with like.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from common.atomic import atomic_write_text
from configs.loader import load_config
from datamodules.synth_avatar import SynthAvatarSource
from evaluation.evaluator import score_set, window_features
from evaluation.probe_train import get_probe
from evaluation.tables import to_markdown
from models.codec import CodecConfig
from models.codec_factory import build_codec
from synthavatar.dataset import ensure_split, is_complete, load_clip

SWEEP = [dict(channels=16), dict(channels=96), dict(temporal_stride=2), dict(spatial_stride=4)]
DESIGN_NOTES = """Measured once while choosing the design (scripts not kept; same demo split, p8 s4):
- a conv autoencoder initialised from the C16 PCA (zero-init residual branches) and trained 600 steps
  with a mouth/eyes/hands-weighted MSE took 95 s on the 2 cores and gained +0.9 dB PSNR (+2.6 dB mouth)
  but no Sync-C (0.60); a mask-weighted linear codec (1500 Adam steps from PCA) gained nothing.
- Sync-C is the metric temporal compression costs: a linear codec spends its channels on energy
  (identities, head and arm layout), not on the 2-3 px mouth's frame-to-frame motion. More channels,
  s = 2 or p = 4 buy it back at more DiT input width / tokens (rows above).
- H@S / AA / TC differences of a few hundredths between rows are within the noise of 16 clips (~40 phases);
  the probe reads actions off joints and head pose, which every codec here keeps."""
EVAL_KEYS = ("sync_c", "sync_d", "h_at_s", "aa", "tc", "csim", "psnr", "ssim", "fvd")


def machine() -> str:
    cpu = platform.machine()
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    return f"{cpu} ({os.cpu_count()} logical cores), {torch.get_num_threads()} torch threads, torch {torch.__version__}"


def pick_experiment(requested: str | None) -> str:
    if requested:
        return requested
    demo = load_config("demo")
    return "demo" if all(is_complete(demo.data, s) for s in ("train", "test")) else "smoke"


def to_video(frames_uint8: np.ndarray) -> torch.Tensor:
    """uint8 (T, H, W, 3) -> (1, 3, T, H, W) in [-1, 1]."""
    return torch.from_numpy(frames_uint8).permute(3, 0, 1, 2)[None].float().div(127.5).sub(1)


def to_uint8(video: torch.Tensor) -> np.ndarray:
    """(1, 3, T, H, W) in [-1, 1] -> uint8 (T, H, W, 3)."""
    return video[0].permute(1, 2, 3, 0).add(1).mul(127.5).round().clamp(0, 255).byte().numpy()


def region_psnr(recon: np.ndarray, truth: np.ndarray, mask: np.ndarray) -> float:
    err = ((recon.astype(np.float64) - truth) ** 2).mean(-1)[mask]  # mask (T, H, W): pixels of the region
    return float(10 * np.log10(255.0 ** 2 / max(err.mean(), 1e-10)))


def throughput(codec, clips: list[dict], batch: int = 4, repeats: int = 3) -> dict:
    """Video frames per second through encode and through decode, batches of `batch` clips."""
    T = codec.valid_num_frames(len(clips[0]["video"]))
    video = torch.cat([to_video(c["video"][:T]) for c in clips[:batch]])
    with torch.no_grad():
        codec.encode(video)  # warm-up
        start = time.perf_counter()
        for _ in range(repeats):
            latents = codec.encode(video)
        encode_s = (time.perf_counter() - start) / repeats
        start = time.perf_counter()
        for _ in range(repeats):
            codec.decode(latents)
        decode_s = (time.perf_counter() - start) / repeats
    frames = video.shape[0] * T
    return {"encode_frames_per_s": round(frames / encode_s, 1), "decode_frames_per_s": round(frames / decode_s, 1),
            "latent_shape_per_clip": list(latents.shape[1:])}


def reconstruct(codec, clips: list[dict], T: int) -> tuple[list[tuple], dict]:
    """Evaluator items (name, recon uint8, audio, clip cut to T frames) and region PSNRs."""
    items, mouth, hands = [], [], []
    for index, clip in enumerate(clips):
        truth = clip | {"video": clip["video"][:T]}
        with torch.no_grad():
            recon = to_uint8(codec.decode(codec.encode(to_video(truth["video"]))))
        mouth.append(region_psnr(recon, truth["video"], clip["masks"][:T, 1]))
        hands.append(region_psnr(recon, truth["video"], clip["masks"][:T, 4]))
        items.append((f"clip_{index:05d}", recon, clip["audio"], truth))
    return items, {"mouth_psnr": round(float(np.mean(mouth)), 2), "hands_psnr": round(float(np.mean(hands)), 2)}


def summary(result: dict) -> dict:
    """{metric: [mean, std over clips]} (FVD is a set metric: std 0)."""
    return {k: [round(v, 4) for v in result["summary"][k]] for k in EVAL_KEYS if k in result["summary"]}


def bench_codec(overrides: dict, cfg, probe, clips, T: int, gt_feats, cache_root: Path) -> dict:
    codec_cfg = CodecConfig(**(overrides | {"cache_dir": str(cache_root / "codec")}))
    frames = SynthAvatarSource(cfg.data).fit_frames(codec_cfg.fit_clips, progress=False)
    start = time.perf_counter()
    codec = build_codec(codec_cfg, frames, progress=False)
    fit_s = time.perf_counter() - start
    start = time.perf_counter()
    build_codec(codec_cfg, frames, progress=False)
    load_s = time.perf_counter() - start
    info = json.loads(next((cache_root / "codec").glob("*.json")).read_text())
    items, regions = reconstruct(codec, clips, T)
    result = score_set(probe, items, cfg, gt_features=lambda: gt_feats)
    name = "p{spatial_stride} s{temporal_stride} C{channels}".format(**codec_cfg.__dict__)
    row = {"codec": name, "config": {k: getattr(codec_cfg, k) for k in ("spatial_stride", "temporal_stride", "channels")},
           "fit_s": round(fit_s, 2), "cache_load_s": round(load_s, 3),
           "explained_variance": info["explained_variance"], "fit_frames": info["frames"],
           "compression": 3 * codec_cfg.temporal_stride * codec_cfg.spatial_stride ** 2 / codec_cfg.channels}
    row |= throughput(codec, clips) | regions | {"eval": summary(result)}
    F_, h, w = row["latent_shape_per_clip"][1:]
    row["dit_tokens"] = F_ * (h // 2) * (w // 2)  # DiT patch [1, 2, 2] (models/dit_config.py)
    print(json.dumps(row), flush=True)
    return row


def ground_truth(cfg, probe, clips, T: int) -> tuple[dict, np.ndarray]:
    """Evaluator summary of the ground truth cut to T frames, and its FVD reference features."""
    cut = [c | {"video": c["video"][:T]} for c in clips]
    items = [(f"clip_{i:05d}", c["video"], c["audio"], c) for i, c in enumerate(cut)]
    feats = np.concatenate([window_features(probe.analyse(c["video"]), c["video"].shape[1]) for c in cut])
    return summary(score_set(probe, items, cfg)), feats


def reference_rows(cfg, probe, clips, T: int, gt_feats) -> dict:
    """Floors that place the ceilings: the ground truth with the next clip's audio (no lip sync) and
    the first frame held still (no motion at all)."""
    cut = [c | {"video": c["video"][:T]} for c in clips]
    mismatched = [(str(i), c["video"], cut[(i + 1) % len(cut)]["audio"], c) for i, c in enumerate(cut)]
    still = [(str(i), np.repeat(c["video"][:1], T, 0), c["audio"], c) for i, c in enumerate(cut)]
    return {name: summary(score_set(probe, items, cfg, gt_features=lambda: gt_feats))
            for name, items in (("ground truth, next clip's audio", mismatched), ("first frame held still", still))}


def markdown(report: dict) -> str:
    lines = [f"# Latent codec benchmark ({report['experiment']} split, CPU)", "",
             f"Machine: {report['machine']}. Data: {report['data']}. Regenerate: `python bench/bench_codec.py`.", "",
             "| codec (p spatial, s temporal, C channels) | compression | DiT tokens | fit s | enc frames/s | "
             "dec frames/s | PSNR | SSIM | mouth PSNR | hands PSNR |", "|---|---|---|---|---|---|---|---|---|---|"]
    for row in report["codecs"]:
        e = row["eval"]
        lines.append(f"| {row['codec']} (latents {row['latent_shape_per_clip']}) | {row['compression']:.0f}x | "
                     f"{row['dit_tokens']} | {row['fit_s']:.1f} | {row['encode_frames_per_s']:.0f} | {row['decode_frames_per_s']:.0f} | "
                     f"{e['psnr'][0]:.2f} | {e['ssim'][0]:.3f} | {row['mouth_psnr']:.2f} | {row['hands_psnr']:.2f} |")
    table = {"ground truth (97 frames)": {k: tuple(v) for k, v in report["ground_truth"].items()}}
    table |= {row["codec"]: {k: tuple(v) for k, v in row["eval"].items()} for row in report["codecs"]}
    table |= {name: {k: tuple(v) for k, v in row.items()} for name, row in report["references"].items()}
    lines += ["", "Evaluator metrics of the reconstructed test clips (the codec's ceiling) vs the ground truth "
              "(mean ± std over clips; FVD against the ground-truth set):", "", to_markdown(table)]
    default, gt = report["codecs"][0], report["ground_truth"]
    keep = ", ".join(f"{k} {default['eval'][k][0] / gt[k][0]:.0%}" for k in ("sync_c", "h_at_s", "aa", "tc", "csim"))
    floor = report["references"]["ground truth, next clip's audio"]["sync_c"][0]
    gain = (default["eval"]["sync_c"][0] - floor) / (gt["sync_c"][0] - floor)
    lines += [f"Default codec ({default['codec']}) keeps, of the ground truth's score: {keep}; "
              f"{gain:.0%} of the Sync-C gap between unsynced audio ({floor:.3f}) and the ground truth.",
              "", DESIGN_NOTES]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-e", "--experiment", default=None, help="demo or smoke (default: demo if cached)")
    parser.add_argument("--out", default="bench/results/codec_cpu.json")
    parser.add_argument("--no-sweep", action="store_true", help="only the default codec")
    args = parser.parse_args()
    experiment = pick_experiment(args.experiment)
    cfg = load_config(experiment)
    ensure_split(cfg.data, "train")
    clips = [load_clip(p) for p in ensure_split(cfg.data, "test")]
    probe = get_probe(cfg)
    T = 4 * ((len(clips[0]["video"]) - 1) // 4) + 1  # 100 -> 97, a valid length for s = 1, 2, 4
    gt_summary, gt_feats = ground_truth(cfg, probe, clips, T)
    print("ground truth", gt_summary, flush=True)
    references = reference_rows(cfg, probe, clips, T, gt_feats)
    rows = []
    for overrides in [{}] + ([] if args.no_sweep else SWEEP):
        with tempfile.TemporaryDirectory(prefix="bench-codec-") as tmp:
            rows.append(bench_codec(overrides, cfg, probe, clips, T, gt_feats, Path(tmp)))
    report = {"machine": machine(), "experiment": experiment,
              "data": f"{cfg.data.num_train} train clips (fit), {len(clips)} test clips, "
                      f"{cfg.data.resolution}x{cfg.data.resolution}, {cfg.data.fps} fps, {cfg.data.duration} s",
              "probe": probe.report, "ground_truth": gt_summary, "codecs": rows, "references": references,
              "design_notes": DESIGN_NOTES}
    out = Path(args.out)
    text = markdown(report)  # rendered before either file is written, so a rendering error leaves no half pair
    atomic_write_text(out, json.dumps(report, indent=1))
    atomic_write_text(out.with_suffix(".md"), text)
    print(text)
    print(f"wrote {out} and {out.with_suffix('.md')}")


if __name__ == "__main__":
    main()
