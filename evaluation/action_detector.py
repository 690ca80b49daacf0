"""Action detector: per-frame action labels from pose tracks (joints, head pose, gaze).

The papers judge "which action happens when" with Gemini (ActAvatar) and DWPose; here a temporal CNN
reads the probe's predicted pose tracks and labels every frame with an action (or idle). It is trained
on ground-truth tracks of freshly sampled train-rule clips (no rendering needed, so thousands of
sequences in seconds), with Gaussian noise matching the probe's measured per-channel error, so that at
evaluation it reads the probe's imperfect tracks as it would read ground truth. Trade-off: separating
pose estimation from action recognition makes the detector identity-independent and cheap to train,
but anything the pose tracks do not carry (hand shape: thumbs up vs fist) must be inferred from the arm.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from synthavatar.actions import NUM_LABELS
from synthavatar.clip import clip_pose, sample_clip_spec
from synthavatar.motion import action_labels
from synthavatar.render import JOINTS, joints_of, layout

NECK = JOINTS.index("neck")
TRACK_DIM = 2 * (len(JOINTS) - 1) + 3 + 2


def track_features(joints: np.ndarray, head: np.ndarray, gaze: np.ndarray, size: float) -> np.ndarray:
    """(T, J, 2) joints in pixels, (T, 3) head pose, (T, 2) gaze -> (T, TRACK_DIM) float32.

    Joints are taken relative to the neck (so body sway is not mistaken for an arm action) in canvas units.
    """
    rel = (joints - joints[:, NECK:NECK + 1]) / size
    rel = np.delete(rel, NECK, axis=1).reshape(len(joints), -1)
    return np.concatenate([rel, head, gaze], 1).astype(np.float32)


class ActionDetector(nn.Module):
    """tracks (B, T, TRACK_DIM), normalised -> logits (B, T, NUM_LABELS); receptive field 29 frames."""

    def __init__(self, width: int = 64):
        super().__init__()
        layers, c_in = [], TRACK_DIM
        for dilation in (1, 2, 4):
            layers += [nn.Conv1d(c_in, width, 5, padding=2 * dilation, dilation=dilation), nn.SiLU()]
            c_in = width
        self.net = nn.Sequential(*layers, nn.Conv1d(width, NUM_LABELS, 1))

    def forward(self, tracks: torch.Tensor) -> torch.Tensor:
        return self.net(tracks.transpose(1, 2)).transpose(1, 2)


def synthetic_tracks(seed: int, count: int, duration: float, fps: float, min_phases: int, max_phases: int):
    """Ground-truth tracks and labels of `count` train-rule clips: (N, T, TRACK_DIM), (N, T)."""
    feats, labels = [], []
    for i in range(count):
        spec = sample_clip_spec(np.random.SeedSequence([seed, 977, i]), "train", duration, min_phases, max_phases)
        pose, _ = clip_pose(spec, fps)
        joints = joints_of(layout(spec["identity"], pose), 1)
        head = np.stack([pose["head_yaw"], pose["head_pitch"], pose["head_roll"]], 1)
        gaze = np.stack([pose["gaze_x"], pose["gaze_y"]], 1)
        feats.append(track_features(joints, head, gaze, 1.0))
        labels.append(action_labels(len(joints), fps, spec["phases"]))
    return torch.from_numpy(np.stack(feats)), torch.from_numpy(np.stack(labels))


def train_detector(tracks, labels, noise_std, steps: int = 1500, batch: int = 64, lr: float = 2e-3,
                   seed: int = 0, progress: bool = True):
    """Train on (N, T, D) tracks + noise of per-channel std `noise_std` (D,); returns model, mean, std."""
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    mean, std = tracks.flatten(0, 1).mean(0), tracks.flatten(0, 1).std(0).clamp_min(1e-4)
    model = ActionDetector()
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    for _ in tqdm(range(steps), desc="action detector", unit="step", disable=not progress):
        idx = torch.randint(len(tracks), (batch,), generator=gen)
        x = tracks[idx] + noise_std * torch.randn(tracks[idx].shape, generator=gen)
        loss = F.cross_entropy(model((x - mean) / std).flatten(0, 1), labels[idx].flatten())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
    return model.eval(), mean, std
