"""Generation: trained weights + (reference image, audio, structured prompt) -> video frames.

`Generator` rebuilds the system from the config (system/build.py build_system), loads the
weights a fit wrote (EMA when on), encodes the conditions exactly as in training, samples latents with
the flow-matching sampler (models/sampling.py: Euler/Heun, dual text/audio CFG) starting from noise
seeded per clip, keeps latent frame 0 = the encoded reference, and decodes. The codec models T' = 4n+1
frames (100 -> 97 at 25 fps); the last T - T' frames (0.12 s for a 4 s clip) repeat the last generated
frame so outputs have the clip's length. Trade-off: that hold is visible at the very end; generating
one more latent frame instead would sample a length the model never saw in training.

`text_attention` measures ActAvatar's Fig. 4 on generated clips with one extra DiT forward pass: the
sampled latents are noised back to the fixed mid timestep t = 0.5 (x_t = 0.5 x0 + 0.5 noise, latent frame
0 kept clean at t = 0 as in sampling; noise seeded per clip with seed + ATTENTION_SEED_OFFSET, so the
numbers are reproducible and independent of the sampling noise), fully conditioned (no CFG branches), with
Conditions.record_text_attention = True; inference/attention_map.py reduces the recorded maps per frame and
prompt block. Trade-off: one timestep instead of an average over the sampling trajectory costs 1 forward
pass instead of `steps`, and t = 0.5 is where the prompt still shapes the motion while the clip's content
is already fixed by the latents being analysed.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from configs.loader import ConfigError
from inference.attention_map import PhaseMass, frame_phase_mass, patch_frame_seconds
from inference.windows import WindowedClips, WindowPlan, generate_windows, window_length, window_limit, window_plan
from models.contracts import ClipBatch, Conditions
from models.flow_matching import frame_timesteps, noisy_latents
from system.build import build_system, load_trained_weights
from system.sampling import sample_latents, to_uint8_frames

ATTENTION_T = 0.5  # the fixed timestep of the attention pass
ATTENTION_SEED_OFFSET = 1_000_003  # attention-pass noise seed = clip seed + this


def resolve_device(name: str) -> torch.device:
    """sample.device: auto = cuda when available (the local rank's GPU under torchrun), else cpu."""
    if name == "cpu" or (name == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise ConfigError("sample.device=cuda but no CUDA device is available (use sample.device=auto or cpu)")
    return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))


class Generator:
    def __init__(self, cfg, weights: str | Path | None = None, progress: bool = True):
        self.system = build_system(cfg, progress=progress, load_init=False)
        self.cfg = self.system.cfg
        source = weights or Path(cfg.run.output_dir) / cfg.run.name / "fit"
        load_trained_weights(self.system, source)
        self.model = self.system.model.eval()
        self.encoder = self.system.encoder.eval()
        self.codec = self.encoder.codec
        self.progress = progress
        self.device = resolve_device(self.cfg.sample.device)
        self.model.to(self.device)
        self.encoder.to(self.device)
        self.guidance = None  # None = one process; inference/parallel.py sets the multi-rank CFG passes
        window_length(self.cfg, self.codec)  # a bad sample.motion_frames / window_frames fails here

    def is_chained(self, num_frames: int) -> bool:
        """Whether a clip of num_frames is generated as chained windows (inference/windows.py): longer than
        sample.window_frames (default the training clip; up to that, one window with the codec's hold)."""
        return num_frames > window_limit(self.cfg)

    def window_plan(self, num_frames: int) -> WindowPlan | None:
        """The chained windows of a num_frames request (None: one window)."""
        return window_plan(self.cfg, self.codec, num_frames)

    @torch.no_grad()
    def latents(self, batch: ClipBatch, num_frames: int, seeds: list[int]) -> tuple[torch.Tensor, Conditions, int]:
        """Sampled latents (B, C, F, h, w), the conditions used, and the number of modelled frames T'."""
        return sample_latents(self.model, self.encoder, self._on_device(batch), num_frames, seeds, self.cfg,
                              self.guidance)

    def _on_device(self, batch: ClipBatch) -> ClipBatch:
        from lightning.fabric.utilities.apply_func import move_data_to_device
        return batch if self.device.type == "cpu" else move_data_to_device(batch, self.device)

    @torch.no_grad()
    def generate(self, batch: ClipBatch, num_frames: int, seeds: list[int]) -> Generated | WindowedClips:
        """Sample and decode: the uint8 video plus the latents and conditions it came from; a clip longer
        than a window is generated as chained windows (inference/windows.py)."""
        if self.is_chained(num_frames):
            return generate_windows(self, self._on_device(batch), num_frames, seeds, progress=self.progress)
        latents, cond, kept = self.latents(batch, num_frames, seeds)
        video = to_uint8_frames(self.codec.decode(latents))[:, :kept]
        if kept < num_frames:
            hold = np.repeat(video[:, -1:], num_frames - kept, axis=1)
            video = np.concatenate([video, hold], axis=1)
        return Generated(video, latents, cond, kept)

    @torch.no_grad()
    def frames(self, batch: ClipBatch, num_frames: int, seeds: list[int]) -> np.ndarray:
        """uint8 video (B, num_frames, H, W, 3): decoded latents, last frame held to num_frames."""
        return self.generate(batch, num_frames, seeds).frames

    @torch.no_grad()
    def text_attention(self, latents: torch.Tensor, cond: Conditions, seeds: list[int],
                       t: float = ATTENTION_T, clean: int = 1) -> tuple[PhaseMass, torch.Tensor]:
        """Text cross-attention mass per frame and prompt block of clips with these latents (B, C, F, h, w)
        (one forward pass at timestep t, see the module docstring), and each DiT frame's time in seconds.
        clean: latent frames kept clean (1 = the reference; a chained window's motion-frame prefix)."""
        B, F = latents.shape[0], latents.shape[2]
        noise = torch.stack([torch.randn(latents.shape[1:], generator=torch.Generator().manual_seed(
            seed + ATTENTION_SEED_OFFSET)) for seed in seeds]).to(latents)
        t_frames = frame_timesteps(torch.full((B,), t, device=latents.device, dtype=latents.dtype), F, clean)
        keep = torch.ones(B, dtype=torch.bool, device=latents.device)
        _, aux = self.model(noisy_latents(latents, noise, t_frames), t_frames,
                            cond.replace(record_text_attention=True, keep_text=keep, keep_audio=keep), return_aux=True)
        pt = self.model.patch_size[0]
        mass = frame_phase_mass(aux.text_attention, cond.text_phase, cond.text_mask, F // pt)
        seconds = patch_frame_seconds(self.codec.latent_frame_seconds(F, self.cfg.data.fps), pt)
        return mass, seconds


@dataclass
class Generated:
    frames: np.ndarray  # uint8 (B, T, H, W, 3)
    latents: torch.Tensor  # (B, C, F, h, w) sampled latents (frame 0 = the encoded reference)
    cond: Conditions  # the conditions they were sampled with
    kept: int  # T': video frames the latents decode to (the rest hold the last frame)
