"""Latent-frame geometry shared by the codec, the audio adapter, the region masks and the DiT.

A causal video VAE (Wan) encodes video frame 0 alone and every later group of `stride` frames into one
latent frame: latent 0 <-> video frame 0, latent k >= 1 <-> video frames s(k-1)+1 .. sk, so T = s(F-1)+1
video frames give F latents (Wan2.2: s = 4, 4n+1 frames). Without `causal_first`, latent k <-> frames
sk .. sk+s-1. Times are normalised clip times in [0, 1] over the T decoded frames: video frame i sits at
(i + 0.5) / T and a latent frame at the mean of its frames' times. ActAvatar binds phase windows to these
times, so every module must use this one definition.
Trade-off: the mean frame time ignores the VAE's causal receptive field (a latent also sees earlier frames).
"""
from __future__ import annotations

import torch


def num_video_frames(num_latent_frames: int, stride: int, causal_first: bool) -> int:
    return stride * (num_latent_frames - 1) + 1 if causal_first else stride * num_latent_frames


def num_latent_frames(num_video: int, stride: int, causal_first: bool) -> int:
    """Latent frames for the largest valid clip of at most `num_video` frames."""
    return (num_video - 1) // stride + 1 if causal_first else num_video // stride


def latent_frame_spans(num_latent: int, stride: int, causal_first: bool = True) -> torch.Tensor:
    """(F, 2) long: first and last (inclusive) video frame of every latent frame."""
    if num_latent < 1 or stride < 1:
        raise ValueError(f"need num_latent_frames >= 1 and stride >= 1 (got {num_latent}, {stride})")
    k = torch.arange(num_latent)
    if causal_first:
        first = torch.where(k == 0, 0, stride * (k - 1) + 1)
        last = stride * k
    else:
        first, last = stride * k, stride * k + stride - 1
    return torch.stack([first, last], 1)


def latent_frame_times(num_latent: int, stride: int, causal_first: bool) -> torch.Tensor:
    """(F,) float32 normalised time of each latent frame's centre."""
    total = num_video_frames(num_latent, stride, causal_first)
    spans = latent_frame_spans(num_latent, stride, causal_first).float()
    return ((spans[:, 0] + spans[:, 1]) / 2 + 0.5) / total
