"""The SynthAvatar probe: a small CNN that reads pose, mouth, gaze, blink and identity from frames.

It plays the role of SyncNet's visual stream, DWPose, ArcFace and the Gemini judge in the papers: every
video metric is computed from its outputs, so a generated video is scored exactly like a ground-truth
one. Frames are resized to 64x64 whatever the dataset resolution (joints are predicted in [0, 1] canvas
units and scaled back). Per-frame heads: joints (J x 2), mouth opening, gaze (2), head yaw/pitch/roll,
blink, identity vector; which action happens when is read from these tracks by action_detector.py. Training adds noise and
blur so the probe still reads imperfect generated frames. Trade-off: small and CPU-trainable in minutes,
so it is only as good as its held-out report (joint error, mouth R2, action accuracy) says.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from synthavatar.identity import IDENTITY_DIM
from synthavatar.render import JOINTS

PROBE_SIZE = 64
# Regression targets, in this order along the last axis: name -> width.
TARGETS = {"joints": 2 * len(JOINTS), "mouth_open": 1, "gaze": 2, "head": 3, "blink": 1,
           "identity": IDENTITY_DIM}
TARGET_DIM = sum(TARGETS.values())


def _block(c_in, c_out, stride):
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, stride, 1), nn.SiLU())


class AddCoords(nn.Module):
    """Append x/y coordinate channels (CoordConv): joint regression learns far faster with them."""

    def forward(self, x):
        n, _, h, w = x.shape
        ys = torch.linspace(-1, 1, h, device=x.device).view(1, 1, h, 1).expand(n, 1, h, w)
        xs = torch.linspace(-1, 1, w, device=x.device).view(1, 1, 1, w).expand(n, 1, h, w)
        return torch.cat([x, xs, ys], 1)


class Probe(nn.Module):
    """frames (B, T, 3, 64, 64) in [0, 1] -> normalised targets (B, T, TARGET_DIM), features (B, T, F)."""

    def __init__(self, width: int = 32, feat_dim: int = 256):
        super().__init__()
        w = width
        self.encoder = nn.Sequential(
            AddCoords(), _block(5, w // 2, 1), _block(w // 2, w, 2), _block(w, 2 * w, 2),  # 64 -> 32 -> 16
            _block(2 * w, 4 * w, 2), _block(4 * w, 4 * w, 2),                              # 16 -> 8 -> 4
            nn.Flatten(), nn.Linear(4 * w * 16, feat_dim), nn.SiLU())
        self.regress = nn.Linear(feat_dim, TARGET_DIM)
        # No normalisation layers: GroupNorm erases absolute colour (identity) and BatchNorm over
        # batches of a few clips erases between-clip differences; He init keeps activations alive.
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
                nn.init.zeros_(m.bias)

    def per_frame(self, frames: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(N, 3, 64, 64) in [0, 1] -> normalised targets (N, TARGET_DIM), features (N, F)."""
        feats = self.encoder((frames - 0.5) * 4)
        return self.regress(feats), feats

    def forward(self, frames: torch.Tensor):
        B, T = frames.shape[:2]
        pred, feats = self.per_frame(frames.flatten(0, 1))
        return pred.view(B, T, -1), feats.view(B, T, -1)


def to_probe_input(video: torch.Tensor) -> torch.Tensor:
    """uint8 (..., T, H, W, 3) -> float (..., T, 3, 64, 64) in [0, 1], area-resized when H != 64."""
    x = video.float().div(255).movedim(-1, -3)
    if x.shape[-1] != PROBE_SIZE:
        lead = x.shape[:-3]
        x = F.interpolate(x.flatten(0, -4), size=(PROBE_SIZE, PROBE_SIZE), mode="area")
        x = x.view(*lead, 3, PROBE_SIZE, PROBE_SIZE)
    return x


def augment(frames: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Random blur and noise per frame (N, 3, H, W) so the probe tolerates imperfect generated frames."""
    blur = torch.rand(len(frames), generator=generator) < 0.3
    if blur.any():
        frames[blur] = F.avg_pool2d(frames[blur], 3, 1, 1, count_include_pad=False)
    sigma = torch.rand(len(frames), 1, 1, 1, generator=generator) * 0.04
    return (frames + sigma * torch.randn(frames.shape, generator=generator)).clamp(0, 1)
