"""Per-action frame accuracy of the action detector on the test split: from the probe's predicted pose
tracks vs from ground-truth tracks. Separates pose-estimation error from action-recognition error.

    python bench/probe_confusion.py [-e demo] [key=value ...]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from configs.loader import load_config
from evaluation.action_detector import track_features
from evaluation.probe_train import get_probe
from synthavatar.actions import ACTION_NAMES, NUM_LABELS
from synthavatar.dataset import ensure_split, load_clip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("-e", "--experiment", default="demo")
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args()
    cfg = load_config(args.experiment, args.overrides)
    probe = get_probe(cfg)
    from_probe, from_gt = np.zeros((2, NUM_LABELS, NUM_LABELS), int)
    for path in ensure_split(cfg.data, "test"):
        clip = load_clip(path)
        for a, b in zip(clip["action_label"], probe.analyse(clip["video"])["action"]):
            from_probe[a, b] += 1
        tracks = torch.from_numpy(track_features(clip["joints"], clip["head"], clip["gaze"], cfg.data.resolution))
        with torch.no_grad():
            pred = probe.detector(((tracks - probe.det_mean) / probe.det_std)[None])[0].argmax(-1).numpy()
        for a, b in zip(clip["action_label"], pred):
            from_gt[a, b] += 1
    print(f"{'label':18s} {'frames':>6s} {'probe tracks':>12s} {'gt tracks':>9s}")
    for i, name in enumerate(("idle",) + ACTION_NAMES):
        n = max(from_probe[i].sum(), 1)
        print(f"{name:18s} {from_probe[i].sum():6d} {from_probe[i, i] / n:12.2f} {from_gt[i, i] / n:9.2f}")
    print(f"{'all':18s} {from_probe.sum():6d} {np.trace(from_probe) / from_probe.sum():12.3f} "
          f"{np.trace(from_gt) / from_gt.sum():9.3f}")


if __name__ == "__main__":
    main()
