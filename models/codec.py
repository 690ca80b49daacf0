"""The latent codec: one encode/decode interface between pixels and the DiT's latents.

Both papers run their DiT on the latents of Wan2.2's causal video VAE (Wan2.2 report, "Wan-VAE"; our
notes section 3): 4x16x16 compression, 48 channels, a clip of 4n+1 frames -> n+1 latent frames (video
frame 0 is encoded alone, every later group of 4 frames into one latent), latents normalised per channel
with fixed mean/std. `LatentCodec` fixes that contract for every backend:

- `WanVAECodec` (models/codec_wan.py): the real Wan VAE from a local diffusers directory;
- `SynthCodec` (models/codec_synth.py): a closed-form space-time-patch PCA codec fitted in seconds on CPU
  on the frames a data source hands it (models.contracts.FitFrames), with the same causal frame rule,
  for the demo/synth presets.
`build_codec` (models/codec_factory.py) picks one by `model.codec.kind`.

Shapes: video (B, 3, T, H, W) in [-1, 1] <-> latents (B, C, F, h, w), roughly zero-mean unit-variance per
channel. Time convention (shared with the DiT and the audio/visual adapters through models/frames.py):
clip time 0..1 spans the T' encoded/decoded video frames (T' = valid_num_frames(T), 97 of a 100-frame
clip), video frame i sits at (i + 0.5) / T', and a latent frame at the mean time of the frames it
encodes. ActAvatar phase windows are bound to tokens by these times; the datamodule normalises windows
by the full clip (100 frames), so compare in seconds (`latent_frame_seconds`) or rescale the windows by
duration * fps / T'.
Trade-off: the codec is frozen (parameters never require grad, so optimisers skip it) but stays
differentiable w.r.t. its input, so pixel-space losses can still back-propagate through `decode`.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn

from common.errors import CodecError  # noqa: F401 (raised here, caught by its callers)
from models import frames

CODEC_KINDS = ("synth", "wan")
NORMALIZE_MODES = ("channel", "global")


@dataclass
class CodecConfig:
    """Which codec turns pixels into DiT latents, and the SynthCodec's hyper-parameters."""

    kind: str = "synth"  # synth (PCA codec fitted on SynthAvatar) | wan (diffusers AutoencoderKLWan)
    path: str = ""  # wan: local directory holding the VAE's config.json + weights (or its vae/ subfolder)
    dtype: str = "float32"  # wan: weights/compute dtype (float32 | bfloat16 | float16); latents are float32
    tile: int = 0  # wan: encode/decode in spatial tiles of this many pixels (diffusers enable_tiling; 0 = whole frame)
    cache_dir: str = "cache/codec"  # synth: fitted codecs, <cache_dir>/<hash>.safetensors + .json
    spatial_stride: int = 8  # synth: pixels per latent side (64x64 frames -> 8x8 latents)
    temporal_stride: int = 4  # synth: video frames per latent frame after the first (1, 2 or 4)
    channels: int = 48  # synth: latent channels (48 = Wan2.2's z_dim)
    normalize: str = "channel"  # synth: channel = unit variance per channel (as Wan); global = one scale
    fit_clips: int = 0  # synth: train clips used by the fit (0 = the whole train split)

    def check(self) -> list[tuple[str, str]]:
        problems = []
        if self.kind not in CODEC_KINDS:
            problems.append(("kind", f"must be one of {', '.join(CODEC_KINDS)} (got {self.kind!r})"))
        if self.kind == "wan" and not self.path:
            problems.append(("path", "kind 'wan' needs the local directory of a diffusers AutoencoderKLWan"))
        if self.dtype not in ("float32", "bfloat16", "float16"):
            problems.append(("dtype", f"must be float32, bfloat16 or float16 (got {self.dtype!r})"))
        if self.tile and (self.tile < 64 or self.tile % 32):
            problems.append(("tile", f"must be 0 (off) or a multiple of 32 >= 64 pixels (got {self.tile})"))
        if self.temporal_stride not in (1, 2, 4):
            problems.append(("temporal_stride", f"must be 1, 2 or 4 (got {self.temporal_stride})"))
        if self.spatial_stride not in (1, 2, 4, 8, 16, 32):
            problems.append(("spatial_stride", f"must be a power of two <= 32 (got {self.spatial_stride})"))
        patch_dim = 3 * self.temporal_stride * self.spatial_stride ** 2
        if not 1 <= self.channels <= patch_dim:
            problems.append(("channels", f"must be in [1, 3 * temporal_stride * spatial_stride^2 = {patch_dim}] "
                             f"(got {self.channels})"))
        if self.normalize not in NORMALIZE_MODES:
            problems.append(("normalize", f"must be one of {', '.join(NORMALIZE_MODES)} (got {self.normalize!r})"))
        if self.fit_clips < 0:
            problems.append(("fit_clips", f"must be >= 0 (got {self.fit_clips})"))
        return problems


class LatentCodec(nn.Module):
    """Frozen pixels <-> latents map with Wan's frame rule; subclasses implement `_encode` / `_decode`.

    Subclasses set `latent_channels`, `temporal_stride` (s), `spatial_stride` and `causal_first` (latent 0
    <-> video frame 0 alone, latent k >= 1 <-> frames s(k-1)+1 .. sk; otherwise latent k <-> sk .. sk+s-1),
    then call `freeze()`.
    """

    latent_channels: int
    temporal_stride: int
    spatial_stride: int
    causal_first: bool
    # What decides the latent space (SynthCodec: the hash of its fit; Wan VAE: its directory). Trained weights
    # record it (weights.json "codec_key") and `train.init_from` refuses weights of another latent space.
    key: str = ""

    def freeze(self) -> LatentCodec:
        self.requires_grad_(False)
        return self.eval()

    # ------------------------------------------------------------------ frame rule
    def num_latent_frames(self, num_video_frames: int) -> int:
        """Latent frames of the largest valid clip of at most `num_video_frames` frames."""
        return frames.num_latent_frames(num_video_frames, self.temporal_stride, self.causal_first)

    def num_video_frames(self, num_latent_frames: int) -> int:
        """Video frames decoded from `num_latent_frames` latents (s(F-1)+1 when causal_first)."""
        return frames.num_video_frames(num_latent_frames, self.temporal_stride, self.causal_first)

    def valid_num_frames(self, num_video_frames: int) -> int:
        """Largest T' <= T the codec accepts (4n+1 for s = 4 with causal_first: 100 -> 97)."""
        if num_video_frames < (1 if self.causal_first else self.temporal_stride):
            raise ValueError(f"{type(self).__name__}: a clip of {num_video_frames} frames is too short "
                             f"(temporal stride {self.temporal_stride})")
        return self.num_video_frames(self.num_latent_frames(num_video_frames))

    def latent_frame_times(self, num_latent_frames: int) -> torch.Tensor:
        """(F,) clip time in [0, 1] of each latent frame's centre; 0..1 spans the T' decoded frames.

        Video frame i sits at (i + 0.5) / T'; a latent frame at the mean time of its frames, so latent 0
        of a causal codec (frame 0 alone) sits at 0.5 / T'. Same definition as models/frames.py."""
        return frames.latent_frame_times(num_latent_frames, self.temporal_stride, self.causal_first)

    def latent_frame_seconds(self, num_latent_frames: int, fps: float) -> torch.Tensor:
        """(F,) centre of each latent frame in seconds from the clip start (frame i at (i + 0.5) / fps).

        Use this against phase windows in seconds: the clip-normalised windows of the datamodule divide
        by the full clip duration (100 frames), while `latent_frame_times` divides by the T' = 97 kept."""
        T = self.num_video_frames(num_latent_frames)
        return self.latent_frame_times(num_latent_frames) * (T / fps)

    # ------------------------------------------------------------------ encode / decode
    def encode(self, video: torch.Tensor) -> torch.Tensor:
        """video (B, 3, T, H, W) in [-1, 1], T valid -> normalised latents (B, C, F, h, w)."""
        self._check_video(video)
        return self._encode(video)

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """latents (B, C, F, h, w) -> video (B, 3, num_video_frames(F), H, W) clamped to [-1, 1]."""
        if latents.dim() != 5 or latents.shape[1] != self.latent_channels:
            raise ValueError(f"{type(self).__name__}.decode: latents must be (B, {self.latent_channels}, F, h, w), "
                             f"got {tuple(latents.shape)}")
        return self._decode(latents).clamp(-1.0, 1.0)

    def _check_video(self, video: torch.Tensor) -> None:
        name = f"{type(self).__name__}.encode"
        if video.dim() != 5 or video.shape[1] != 3:
            raise ValueError(f"{name}: video must be (B, 3, T, H, W), got {tuple(video.shape)}; "
                             "datamodule batches are (B, T, 3, H, W): pass video.transpose(1, 2)")
        T, H, W = video.shape[2:]
        if T < 1 or self.valid_num_frames(T) != T:
            rule = (f"{self.temporal_stride}n+1" if self.causal_first else f"a multiple of {self.temporal_stride}")
            raise ValueError(f"{name}: {T} frames; the frame count must be {rule} "
                             f"(use video[:, :, :codec.valid_num_frames(T)], here {self.valid_num_frames(T)})")
        if H % self.spatial_stride or W % self.spatial_stride:
            raise ValueError(f"{name}: frame size {H}x{W} is not a multiple of the spatial stride "
                             f"{self.spatial_stride}")

    def _encode(self, video: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def _decode(self, latents: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError
