"""`main.py evaluate`: score a directory of videos (or the ground truth) on a SynthAvatar split.

Videos are matched to requested clips by file name: `clip_00003.mp4` (or .npz/.webm) is the video
generated for clip 3 of the split (its structured prompt, audio and reference image). A video without
an audio track is scored against the requested audio. Writes metrics.json (per-clip rows, mean ± std,
FVD, the probe's own held-out accuracy) and metrics.md, both atomically, and prints the table.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from tqdm import tqdm

from common.atomic import atomic_write_text
from common.video_io import VideoError, read_video
from evaluation.evaluator import score_set, window_features
from evaluation.probe_train import get_probe
from evaluation.tables import to_markdown
from evaluation.video_files import find_videos
from synthavatar.dataset import ensure_split, load_clip, split_size


def _generated_items(found, clip_paths, cfg):
    for index, path in found:
        clip = load_clip(clip_paths[index])
        video = read_video(path, sample_rate=cfg.data.sample_rate)
        if video.frames.shape[1:] != clip["video"].shape[1:] or video.num_frames != len(clip["video"]):
            raise VideoError(f"{path}: shape {video.frames.shape} does not match the requested clip "
                             f"{clip['video'].shape} (frames, height, width, channels)")
        if abs(video.fps - cfg.data.fps) > 1e-3:
            raise VideoError(f"{path}: {video.fps} fps, expected {cfg.data.fps}")
        wave = video.audio if video.audio is not None and len(video.audio) else clip["audio"]
        yield path.name, video.frames, wave, clip


def _ground_truth_items(clip_paths):
    for path in clip_paths:
        clip = load_clip(path)
        yield path.name, clip["video"], clip["audio"], clip


def ground_truth_features(probe, clip_paths) -> np.ndarray:
    """Reference set of the FVD-style distance: window features of the ground-truth videos."""
    feats = []
    for path in clip_paths:
        video = load_clip(path)["video"]
        feats.append(window_features(probe.analyse(video), video.shape[1]))
    return np.concatenate(feats)


def evaluate(cfg, split: str, videos: Path | None, progress: bool = True) -> dict:
    # Check the user's videos before the (possibly minutes-long) probe training and data generation.
    found = None if videos is None else find_videos(Path(videos), split_size(cfg.data, split))
    probe = get_probe(cfg, progress)
    clip_paths = ensure_split(cfg.data, split, progress)
    if found is None:  # the ground truth is its own FVD reference: no second pass over the clips
        items, count, label, gt_feats = _ground_truth_items(clip_paths), len(clip_paths), "ground truth", None
    else:
        items, count, label = _generated_items(found, clip_paths, cfg), len(found), str(videos)
        gt_feats = lambda: ground_truth_features(probe, clip_paths)
    bar = tqdm(total=count, desc="evaluating", unit="video", disable=not progress)
    result = score_set(probe, items, cfg, gt_feats, bar)
    bar.close()
    return result | {"label": label, "split": split, "probe": probe.report}


def write_results(result: dict, out_dir: Path) -> str:
    table = to_markdown({result["label"]: result["summary"]})
    probe = result["probe"]
    note = (f"\nProbe (held-out test identities): joint error {probe.get('test_joint_error_px')} px, "
            f"mouth R2 {probe.get('test_mouth_r2')}, action frame accuracy {probe.get('test_action_frame_acc')}.\n")
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out_dir / "metrics.json", json.dumps(result, indent=1))
    atomic_write_text(out_dir / "metrics.md", table + note)
    return table + note


def cmd_evaluate_real(cfg, args) -> int:
    """data.kind=real: generated videos and the ground truth in one table (evaluation/real_evaluate.py)."""
    from evaluation.real_evaluate import evaluate_real, real_report

    result = evaluate_real(cfg, args.split, None if args.ground_truth else args.videos)
    out_dir = Path(args.out) if args.out else Path(args.run_dir)
    text = real_report(result)
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out_dir / "metrics.json", json.dumps(result, indent=1, default=float))
    atomic_write_text(out_dir / "metrics.md", text)
    print(text)
    print(f"wrote {out_dir / 'metrics.json'} and {out_dir / 'metrics.md'}")
    return 0


def cmd_evaluate(cfg, args) -> int:
    if cfg.data.kind == "real":
        return cmd_evaluate_real(cfg, args)
    videos = None if args.ground_truth else args.videos
    result = evaluate(cfg, args.split, videos)
    out_dir = Path(args.out) if args.out else Path(args.run_dir)
    text = write_results(result, out_dir)
    if getattr(args, "with_ground_truth", False) and videos is not None:
        # One table: the generated videos next to the ground truth of the same split (the ceiling).
        reference = evaluate(cfg, args.split, None, progress=False)
        table = {result["label"]: result["summary"], "ground truth": reference["summary"]}
        text = to_markdown(table) + text[text.index("\nProbe"):]
        atomic_write_text(out_dir / "comparison.md", text)
    print(text)
    print(f"wrote {out_dir / 'metrics.json'} and {out_dir / 'metrics.md'}")
    return 0
