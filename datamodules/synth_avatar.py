"""SynthAvatar as a data source (data.kind = synthavatar): the cached procedural splits behind the core's
`ClipBatch` contract.

Each sample: video float (T, 3, H, W) in [-1, 1], audio float (N,), reference image (3, H, W) = first
frame, the structured prompt (JSON form), the region masks (T, R, H, W) of synthavatar.render.REGIONS and
the ground truth (joints, mouth opening, viseme, gaze, head pose, blink, expressiveness, per-frame action
label) that only evaluators read. `collate` stacks tensors and adds the phase table to the ground truth,
padded to the batch's largest number of phases (windows in seconds and normalised, action labels, texts,
a mask of the real ones). `prepare` generates missing clips (once, on rank 0); `dataset` only reads.
Trade-off: the region masks ride in the batch for every run (8x packed on disk, small at 64 px) rather
than only when the localisation loss is on, so one collate serves every config.
"""
from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch
from torch.utils.data import Dataset

from datamodules.sources import DataSource, phase_table
from models.contracts import ClipBatch
from synthavatar.actions import ACTION_LABEL
from synthavatar.dataset import CACHE_VERSION, clip_paths, ensure_split, gen_settings, load_clip
from synthavatar.render import REGIONS

GT_KEYS = ("joints", "mouth_open", "viseme", "gaze", "head", "blink", "expressiveness", "speaking",
           "action_label")
TEXT_KEYS = ("prompt_text", "prompt_global", "prompt_brief")


class SynthAvatarDataset(Dataset):
    def __init__(self, data_cfg, split: str):
        self.paths = clip_paths(data_cfg, split)
        self.duration = float(data_cfg["duration"])

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> dict:
        clip = load_clip(self.paths[index])
        video = torch.from_numpy(clip["video"]).permute(0, 3, 1, 2).float().div(127.5).sub(1)  # (T, 3, H, W)
        return {"index": index, "video": video, "reference": video[0].clone(),
                "audio": torch.from_numpy(clip["audio"]), "prompt": clip["prompt"],
                "masks": torch.from_numpy(clip["masks"]),
                "gt": {k: torch.from_numpy(np.asarray(clip[k])) for k in GT_KEYS}}


def collate(samples: list[dict]) -> ClipBatch:
    """Stack tensors; pad phases to the longest prompt in the batch (phase_mask marks real ones)."""
    stack = lambda key: torch.stack([s[key] for s in samples])
    truth = {k: torch.stack([s["gt"][k] for s in samples]) for k in samples[0]["gt"]}
    truth.update(phase_table([s["prompt"] for s in samples], ACTION_LABEL.__getitem__))
    P = truth["phase_mask"].shape[1]
    texts = [[p["text"] for p in s["prompt"]["phases"]] + [""] * (P - len(s["prompt"]["phases"])) for s in samples]
    truth["phase_texts"] = texts
    return ClipBatch(reference=stack("reference"), prompt=[s["prompt"] for s in samples], audio=stack("audio"),
                     video=stack("video"), region_masks=stack("masks"), region_names=REGIONS,
                     index=torch.tensor([s["index"] for s in samples]), ground_truth=truth)


class SynthFitFrames:
    """The first `num_clips` train clips, for the PCA SynthCodec (models/codec_synth.py)."""

    def __init__(self, data_cfg, num_clips: int, paths):
        self.paths = paths[:num_clips]
        self.num_clips = num_clips
        # Same fields as the codec cache key has always hashed, so existing cached codecs stay valid.
        self.fingerprint = {"data": gen_settings(data_cfg), "data_version": CACHE_VERSION, "clips": int(num_clips)}

    def videos(self) -> Iterator[np.ndarray]:
        return (load_clip(path)["video"] for path in self.paths)


class SynthAvatarSource(DataSource):
    kind = "synthavatar"
    region_names = REGIONS
    cacheable = True  # clip i of a split is the same every read (datamodules/condition_cache.py)

    def prepare(self, split: str, progress: bool = True) -> None:
        ensure_split(self.cfg, split, progress)

    def dataset(self, split: str) -> SynthAvatarDataset:
        return SynthAvatarDataset(self.cfg, split)

    def collate(self, samples: list[dict]) -> ClipBatch:
        return collate(samples)

    def fit_frames(self, max_clips: int = 0, progress: bool = True) -> SynthFitFrames:
        paths = ensure_split(self.cfg, "train", progress)
        num_clips = len(paths) if max_clips == 0 else min(max_clips, len(paths))
        return SynthFitFrames(self.cfg, num_clips, paths)

    def prompt_texts(self, split: str = "train", progress: bool = True) -> list[str]:
        texts = []
        for path in ensure_split(self.cfg, split, progress):
            clip = load_clip(path)
            texts += [clip[k] for k in TEXT_KEYS]
        return texts
