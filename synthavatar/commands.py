"""`main.py data`: generate (or complete) SynthAvatar splits, print statistics, render previews.

Previews are what a researcher looks at first: per clip an mp4 with its audio, and a PNG contact sheet
(frames with joints and region masks drawn over them, plus a timeline of the requested phases, mouth
opening, audio envelope and expressiveness) with the structured prompt as its title.
"""
from __future__ import annotations

import collections
import textwrap
from pathlib import Path

import numpy as np

from synthavatar.actions import ACTION_NAMES
from synthavatar.audio import frame_envelope
from synthavatar.dataset import cache_dir, ensure_split, load_clip
from synthavatar.render import REGIONS
from synthavatar.splits import SPLITS, has_held_out_pair

MASK_COLOURS = np.array([[0, 1, 1], [1, 0, 0], [1, 1, 0], [0, 1, 0], [1, 0, 1]], np.float32)


def split_stats(paths) -> dict:
    phases, actions, held_out, paraphrases = collections.Counter(), collections.Counter(), 0, set()
    for path in paths:
        clip = load_clip(path)
        names = [p["action"] for p in clip["spec"]["phases"]]
        phases[len(names)] += 1
        actions.update(names)
        held_out += has_held_out_pair(names)
        paraphrases.update(p["text"] for p in clip["spec"]["phases"])
    return {"clips": len(paths), "phases_per_clip": dict(sorted(phases.items())),
            "clips_with_held_out_pair": held_out, "distinct_phase_texts": len(paraphrases),
            "action_counts": {a: actions[a] for a in ACTION_NAMES}}


def contact_sheet(clip: dict, path: Path, sample_rate: int, fps: float, num: int = 8) -> None:
    """PNG: `num` frames with joints + masks overlaid, and the ground-truth timeline below."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    video, T = clip["video"], len(clip["video"])
    idx = np.linspace(0, T - 1, num).astype(int)
    fig = plt.figure(figsize=(2 * num, 5.8))
    for i, f in enumerate(idx):
        ax = fig.add_subplot(3, num, i + 1)
        ax.imshow(video[f])
        ax.scatter(*clip["joints"][f].T, s=6, c="w", edgecolors="k", linewidths=0.3)
        ax.set_title(f"t={f / fps:.2f}s", fontsize=8)
        ax.axis("off")
        ax = fig.add_subplot(3, num, num + i + 1)
        tint = (clip["masks"][f][..., None] * MASK_COLOURS[:, None, None]).max(0)
        ax.imshow(0.5 * video[f] / 255 + 0.5 * tint)
        ax.axis("off")
    ax = fig.add_subplot(3, 1, 3)
    t = (np.arange(T) + 0.5) / fps
    env = frame_envelope(clip["audio"], sample_rate, fps, T)
    ax.plot(t, clip["mouth_open"], label="mouth opening")
    ax.plot(t, env / max(env.max(), 1e-6), label="audio envelope", alpha=0.7)
    ax.plot(t, clip["expressiveness"], label="expressiveness", alpha=0.7)
    for p in clip["spec"]["phases"]:
        ax.axvspan(p["start"], p["end"], alpha=0.12, color="C3")
        ax.text(p["start"], 1.02, p["action"], fontsize=7)
    ax.set_xlabel("seconds")
    ax.legend(fontsize=7, loc="upper right", ncols=3)
    title = "\n".join(textwrap.fill(line, 230) for line in clip["prompt_text"].splitlines())
    fig.suptitle(title + f"\nmasks: {', '.join(REGIONS)}", fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)


def write_previews(cfg, paths, out_dir: Path) -> list[Path]:
    from common.video_io import write_video

    written = []
    for path in paths[: cfg.data.preview_clips]:
        clip = load_clip(path)
        mp4 = out_dir / f"{path.stem}.mp4"
        write_video(mp4, clip["video"], cfg.data.fps, clip["audio"], cfg.data.sample_rate)
        contact_sheet(clip, out_dir / f"{path.stem}.png", cfg.data.sample_rate, cfg.data.fps)
        (out_dir / f"{path.stem}.prompt.txt").write_text(clip["prompt_text"] + "\n")
        written += [mp4, out_dir / f"{path.stem}.png"]
    return written


def cmd_data(cfg, args) -> int:
    splits = SPLITS if args.split == "all" else (args.split,)
    print(f"SynthAvatar cache: {cache_dir(cfg.data)}")
    paths = {split: ensure_split(cfg.data, split) for split in splits}
    for split in splits:
        stats = split_stats(paths[split]) if args.inspect else {"clips": len(paths[split])}
        print(f"{split}: {stats}")
    if args.preview:
        split = "test" if "test" in paths else splits[0]
        out_dir = Path(args.run_dir) / "preview"
        written = write_previews(cfg, paths[split], out_dir)
        print(f"previews ({split} split): {len(written)} files in {out_dir}")
    return 0
