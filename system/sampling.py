"""The one sampling sequence, shared by generation (inference/generate.py) and the validation videos of a
fit (lightning_modules/media.py): conditions encoded as in training, noise seeded per clip, the configured
sampler and dual text/audio guidance (models/sampling.py), latent frame 0 = the encoded reference.
Trade-off: noise is drawn per clip on the CPU from its own seed, so a clip's output does not depend on
the batch it was sampled in or the device, at the cost of a host-to-device copy of the noise.
"""
from __future__ import annotations

import numpy as np
import torch

from models.contracts import ClipBatch
from models.flow_matching import as_velocity
from models.sampling import guided_velocity, sample


@torch.no_grad()
def sample_latents(model, encoder, batch: ClipBatch, num_frames: int, seeds: list[int], cfg, guidance=None):
    """The one sampling sequence (generation and validation samples): conditions encoded as in training,
    noise seeded per clip, the configured sampler and guidance, latent frame 0 = the reference.
    -> latents (B, C, F, h, w), the conditions used, the number of modelled frames T'."""
    first, cond, kept = encoder.prepare_inference(batch, num_frames)
    latents = sample_after(model, first, cond, encoder.codec.num_latent_frames(kept), seeds, cfg, guidance)
    return latents, cond, kept


@torch.no_grad()
def sample_after(model, prefix: torch.Tensor, cond, num_latent_frames: int, seeds: list[int], cfg,
                 guidance=None) -> torch.Tensor:
    """Sample F = num_latent_frames latents whose first P are the clean `prefix` (B, C, P, h, w): the
    encoded reference (P = 1), or a chained window's motion frames (inference/windows.py).
    Noise (B, C, F, h, w) is drawn per clip from its seed; -> latents (B, C, F, h, w).
    guidance: None = models.sampling.guided_velocity (one process), or a multi-rank twin."""
    noise = torch.stack([torch.randn((prefix.shape[1], num_latent_frames) + tuple(prefix.shape[3:]),
                                     generator=torch.Generator().manual_seed(seed)) for seed in seeds])
    s = cfg.sample
    velocity = as_velocity(model, cfg.train.flow.prediction)  # the network may predict x0 or motion
    return sample(velocity, noise.to(prefix), cond, steps=s.steps, solver=s.solver, shift=cfg.train.flow.shift,
                  text_scale=s.text_scale, audio_scale=s.audio_scale, first_frame=prefix,
                  guidance=guidance or guided_velocity)


def to_uint8_frames(video: torch.Tensor) -> np.ndarray:
    """(B, 3, T, H, W) in [-1, 1] -> uint8 (B, T, H, W, 3)."""
    frames = ((video.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return frames.permute(0, 2, 3, 4, 1).cpu().numpy()
