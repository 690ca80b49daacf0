"""LightningDataModule over the cached SynthAvatar splits.

Each sample: video float (T, 3, H, W) in [-1, 1], audio float (N,), reference image (3, H, W) = first
frame, the structured prompt (JSON form, text rendering, flat global prompt, brief caption) and the
ground truth (joints, mouth opening, viseme, gaze, head pose, blink, expressiveness, per-frame action
label, region masks). `collate` stacks tensors and pads the variable number of phases to the batch
maximum with a mask (phase windows in seconds and normalised, action labels, texts).
`prepare_data` generates missing clips (once, on rank 0); `setup` only reads.
"""
from __future__ import annotations

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from datamodules.samplers import StepSampler
from synthavatar.actions import ACTION_LABEL
from synthavatar.dataset import clip_paths, ensure_split, load_clip

GT_KEYS = ("joints", "mouth_open", "viseme", "gaze", "head", "blink", "expressiveness", "speaking",
           "action_label", "masks")
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
        sample = {"index": index, "video": video, "reference": video[0].clone(),
                  "audio": torch.from_numpy(clip["audio"]), "prompt": clip["prompt"],
                  "gt": {k: torch.from_numpy(np.asarray(clip[k])) for k in GT_KEYS}}
        return sample | {k: clip[k] for k in TEXT_KEYS}


def collate(samples: list[dict]) -> dict:
    """Stack tensors; pad phases to the longest prompt in the batch (phase_mask marks real ones)."""
    batch = {k: torch.stack([s[k] for s in samples]) for k in ("video", "reference", "audio")}
    batch["index"] = torch.tensor([s["index"] for s in samples])
    batch["gt"] = {k: torch.stack([s["gt"][k] for s in samples]) for k in samples[0]["gt"]}
    for key in TEXT_KEYS + ("prompt",):
        batch[key] = [s[key] for s in samples]
    batch["base_text"] = [s["prompt"]["base"] for s in samples]
    P = max(len(s["prompt"]["phases"]) for s in samples)
    B = len(samples)
    windows, mask = torch.zeros(B, P, 2), torch.zeros(B, P, dtype=torch.bool)
    actions, texts = torch.full((B, P), -1, dtype=torch.long), []
    for b, s in enumerate(samples):
        phases = s["prompt"]["phases"]
        for k, p in enumerate(phases):
            windows[b, k] = torch.tensor([p["start"], p["end"]])
            actions[b, k] = ACTION_LABEL[p["action"]] if p.get("action") else -1
        mask[b, : len(phases)] = True
        texts.append([p["text"] for p in phases] + [""] * (P - len(phases)))
    durations = torch.tensor([s["prompt"].get("duration") or 1.0 for s in samples])
    batch.update(phase_windows=windows, phase_windows_norm=windows / durations[:, None, None],
                 phase_mask=mask, phase_actions=actions, phase_texts=texts)
    return batch


class SynthAvatarDataModule(L.LightningDataModule):
    """`train_steps` > 0: the train loader follows the global step (datamodules/samplers.py) so
    resumed runs see the same batches; otherwise a plain shuffled loader."""

    def __init__(self, data_cfg, train_steps: int = 0, seed: int = 0):
        super().__init__()
        self.data_cfg = data_cfg
        self.train_steps, self.seed = train_steps, seed
        self.datasets: dict[str, SynthAvatarDataset] = {}

    def prepare_data(self) -> None:
        for split in ("train", "val", "test"):
            ensure_split(self.data_cfg, split)

    def setup(self, stage: str | None = None) -> None:
        self.datasets = {s: SynthAvatarDataset(self.data_cfg, s) for s in ("train", "val", "test")}

    def _loader(self, split: str, shuffle: bool) -> DataLoader:
        return DataLoader(self.datasets[split], batch_size=self.data_cfg["batch_size"], shuffle=shuffle,
                          num_workers=self.data_cfg["loader_workers"], collate_fn=collate)

    def train_dataloader(self) -> DataLoader:
        if not self.train_steps:
            return self._loader("train", True)
        trainer = self.trainer
        sampler = StepSampler(len(self.datasets["train"]), self.data_cfg["batch_size"], self.train_steps,
                              self.seed, trainer.global_rank, trainer.world_size,
                              start_step=lambda: trainer.global_step)
        return DataLoader(self.datasets["train"], batch_size=self.data_cfg["batch_size"], sampler=sampler,
                          num_workers=self.data_cfg["loader_workers"], collate_fn=collate)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", False)
