"""The typed contracts between data, model and training: what a data source yields, what the DiT reads,
what it reports besides the velocity, and what a codec needs to be fitted.

`ClipBatch` is the one batch every data source hands the core (SynthAvatar today, real video next): the
clip's frames (or cached latents), the reference image, the waveform (or cached audio features), the
structured prompt, optional region masks, and optional ground truth that only evaluators read. The
condition encoder (models/conditioning.py) turns it into `Conditions`, the DiT's typed inputs
(models/dit.py), and the DiT returns `AuxOutputs` next to the velocity when asked. `FitFrames` is what a
codec that must be fitted (the PCA SynthCodec) gets from the data source instead of its config.
Trade-off: dataclasses instead of string-keyed dicts cost an import and a `replace` here and there, but a
misspelt key fails at once instead of silently disabling a condition, and every field's shape is written
down in one place. Lightning moves dataclass batches to the device field by field.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
import torch

Tensor = torch.Tensor


@dataclass
class ClipBatch:
    """A collated batch of clips from any data source (B clips of T frames of H x W at data.fps)."""

    reference: Tensor                         # (B, 3, H, W) in [-1, 1]: the identity image (I2V frame 0)
    prompt: list[dict]                        # B structured prompts, JSON form (models/prompt)
    audio: Tensor | None = None               # (B, S) float waveform at data.sample_rate
    video: Tensor | None = None               # (B, T, 3, H, W) in [-1, 1]; None when only generating
    latents: Tensor | None = None             # (B, C, F, h, w) cached clean latents, used instead of video
    audio_features: Tensor | None = None      # (B, T, D) cached per-video-frame features, instead of audio
    text_conditions: Conditions | None = None  # cached text part of the conditions (frozen text encoder):
                                              # text (B, Lt, D), text_mask, text_phase, text_window, text_is_phase
    num_frames: int = 0                       # T; 0 = video.shape[1]
    region_masks: Tensor | None = None        # bool (B, T, R, H, W), region r named region_names[r]
    region_names: tuple[str, ...] = ()
    index: Tensor | None = None               # (B,) long: each clip's position in its split
    ground_truth: dict[str, Tensor] = field(default_factory=dict)  # evaluators only; the core never reads it

    def __post_init__(self):
        if self.num_frames == 0 and self.video is not None:
            self.num_frames = int(self.video.shape[1])
        if self.region_masks is not None and self.region_masks.shape[2] != len(self.region_names):
            raise ValueError(f"ClipBatch: region_masks has {self.region_masks.shape[2]} regions but "
                             f"region_names names {len(self.region_names)}: {self.region_names}")

    def __len__(self) -> int:
        return int(self.reference.shape[0])

    def replace(self, **changes) -> ClipBatch:
        return dataclasses.replace(self, **changes)


@dataclass
class Conditions:
    """The DiT's conditioning inputs (B clips; Lt text tokens; T video frames; L video tokens).

    Only `text` is required. Null conditions: a dropped text is zero text features (Wan's empty context);
    dropped audio / image zero that adapter's residual (keep_* False)."""

    text: Tensor                               # (B, Lt, text_dim) text-encoder features
    text_mask: Tensor | None = None            # (B, Lt) bool, True = a real token (False = padding)
    text_phase: Tensor | None = None           # (B, Lt) long: 0 = base block, k = phase block k (PACA)
    text_window: Tensor | None = None          # (B, Lt, 2) normalised window of each token's block
    text_is_phase: Tensor | None = None        # (B, Lt) bool
    audio: Tensor | None = None                # (B, T', D) per-video-frame audio features
    reference: Tensor | None = None            # (B, C, 1, h, w) clean reference latent (default: x[:, :, :1])
    reference_image: Tensor | None = None      # (B, 3, H, W) for a pretrained image encoder
    frame_time: Tensor | None = None           # (B, F) normalised time of each latent frame (default: codec rule)
    region_tokens: Tensor | None = None        # (B, L, R) bool: video token inside region r (SyncDreamer loss)
    keep_text: Tensor | None = None            # (B,) bool; None = all kept
    keep_audio: Tensor | None = None
    keep_image: Tensor | None = None
    record_text_attention: bool = False        # -> AuxOutputs.text_attention

    def replace(self, **changes) -> Conditions:
        return dataclasses.replace(self, **changes)

    def to(self, device) -> Conditions:
        """The same conditions with every tensor on `device` (dtypes kept: masks stay bool)."""
        return self.replace(**{f.name: v.to(device) for f in dataclasses.fields(self)
                               if isinstance(v := getattr(self, f.name), torch.Tensor)})

    @property
    def batch_size(self) -> int:
        return int(self.text.shape[0])


@dataclass
class AuxOutputs:
    """What one DiT forward reports besides the velocity (filled by the blocks, typed, never a global)."""

    text_attention: dict[int, Tensor] = field(default_factory=dict)  # layer -> (B, L, Lt) head-mean probs
    loc_losses: list[Tensor] = field(default_factory=list)            # per selected block, SyncDreamer L_loc

    @property
    def loc_loss(self) -> Tensor | None:
        """Mean localisation loss over the selected blocks (None when no block computed one)."""
        return torch.stack(self.loc_losses).mean() if self.loc_losses else None


class FitFrames(Protocol):
    """Training frames a data source offers a codec that must be fitted (models/codec_synth.py)."""

    fingerprint: dict      # what decides the frames (generation settings, source version, clips used)
    num_clips: int

    def videos(self) -> Iterator[np.ndarray]:
        """uint8 (T, H, W, 3) clips, num_clips of them."""
        ...
