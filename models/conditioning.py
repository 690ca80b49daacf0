"""Frozen condition encoders and the model builder: a ClipBatch -> (clean latents, DiT Conditions).

`ConditionEncoder` bundles what turns raw inputs into DiT inputs and is not trained by the flow-matching
loss: the latent codec (pixels <-> latents), the text encoder (+ PACA block tokenisation), the audio
encoder, and the region-mask downsampling for SyncDreamer's localisation loss. `build_model` builds the
WanDiT from the typed model config, filling the "auto" fields (latent channels, text width, latent
geometry) from these encoders, and loads Wan weights when `model.init_from` names a checkpoint.
Trade-off: the encoders run inside the training step (simple, always consistent with the config) rather
than as an offline feature cache; on SynthAvatar they cost little next to the DiT (text outputs are cached).
"""
from __future__ import annotations

from dataclasses import replace

import torch
import torch.nn as nn

from models.audio_encoders import build_audio_encoder
from models.contracts import ClipBatch, Conditions
from models.convert import load_wan_weights
from models.dit import WanDiT
from models.prompt_tokens import encode_prompts, structured_prompts
from models.text_encoders import build_text_encoder
from models.visual import region_masks_to_tokens, select_region_masks


class ConditionEncoder(nn.Module):
    """codec + text encoder + audio encoder; `prepare(batch)` -> (x0 (B, C, F, h, w), Conditions)."""

    def __init__(self, model_cfg, codec, text_vocab=None):
        super().__init__()
        self.cfg = model_cfg
        self.codec = codec
        self.text_encoder = build_text_encoder(model_cfg.text, vocab=text_vocab)
        self.audio_encoder = build_audio_encoder(model_cfg.audio) if model_cfg.audio.enabled else None
        self.need_regions = model_cfg.visual.enabled and model_cfg.visual.loc_weight > 0

    def prepare(self, batch: ClipBatch) -> tuple[torch.Tensor, Conditions]:
        """A training batch (video frames, or cached latents) -> clean latents and conditions."""
        T = self.codec.valid_num_frames(batch.num_frames)         # e.g. 100 -> 97 = 4*24 + 1
        x0 = batch.latents if batch.latents is not None else self.encode_video(batch)  # cached or (B, C, F, h, w)
        cond = self.conditions(batch, batch.num_frames, T)
        if self.need_regions:
            if batch.region_masks is None:
                raise ValueError("the localisation loss (model.visual.loc_weight > 0) needs region masks; "
                                 "this batch has none")
            masks = select_region_masks(batch.region_masks[:, :T], batch.region_names, self.cfg.visual.regions)
            cond.region_tokens = self.region_tokens(masks, x0.shape[2])
        return x0, cond

    def prepare_inference(self, batch: ClipBatch, num_frames: int) -> tuple[torch.Tensor, Conditions, int]:
        """Generation inputs (no video): batch.reference (B, 3, H, W), batch.audio (B, S), batch.prompt.

        Returns the clean first-frame latent (B, C, 1, h, w), the conditions and T', the number of
        video frames the latents decode to (num_frames rounded down to what the codec accepts)."""
        T = self.codec.valid_num_frames(num_frames)
        with torch.no_grad():
            first = self.codec.encode(batch.reference[:, :, None])  # (B, 3, 1, H, W) -> (B, C, 1, h, w)
        return first, self.conditions(batch, num_frames, T), T

    def conditions(self, batch: ClipBatch, num_frames: int, kept_frames: int) -> Conditions:
        """Text (+ audio) conditions for a clip of `num_frames` frames of which the first `kept_frames` are modelled."""
        if batch.text_conditions is not None:  # cached by a frozen encoder (datamodules/condition_cache.py)
            cond = batch.text_conditions.replace()  # a copy: the window is rescaled below
        else:
            cond = self.encode_text(structured_prompts(batch.prompt))
        # Prompt windows are normalised by the whole clip (T frames); latent times by the T' kept frames.
        cond.text_window = cond.text_window * (num_frames / kept_frames)
        if self.audio_encoder is not None:
            features = batch.audio_features
            if features is None:
                features = self.encode_audio(batch.audio, num_frames)
            cond.audio = features[:, :kept_frames]
        return cond

    @torch.no_grad()
    def encode_video(self, batch: ClipBatch) -> torch.Tensor:
        """The clip's frames the codec accepts (T = 4n + 1) -> clean latents (B, C, F, h, w)."""
        T = self.codec.valid_num_frames(batch.num_frames)
        return self.codec.encode(batch.video[:, :T].transpose(1, 2))  # (B, T, 3, H, W) -> (B, 3, T, H, W)

    def encode_text(self, prompts) -> Conditions:
        text = encode_prompts(prompts, self.text_encoder, mode=self.cfg.text.prompt_mode)
        return text.to_cond()

    def encode_audio(self, wave: torch.Tensor, num_video_frames: int) -> torch.Tensor:
        """wave (B, S) -> per-video-frame features (B, num_video_frames, D) for the whole clip."""
        return self.audio_encoder(wave, num_frames=num_video_frames)

    def region_tokens(self, regions: torch.Tensor, num_latent_frames: int) -> torch.Tensor:
        """Region masks (B, R, T, H, W) in model.visual.regions order -> per-token (B, L, R), DiT token order."""
        patch = self.cfg.dit_config().patch_size
        stride = (self.codec.spatial_stride * patch[1], self.codec.spatial_stride * patch[2])
        return region_masks_to_tokens(regions, num_latent_frames, self.codec.temporal_stride,
                                      self.codec.causal_first, stride, self.cfg.visual.region_fraction)


def build_model(model_cfg, codec, text_dim: int) -> WanDiT:
    """The WanDiT of `model_cfg` (typed ModelConfig), auto fields filled from the codec and text encoder."""
    dit = model_cfg.dit_config()
    dit = replace(dit, in_channels=dit.in_channels or codec.latent_channels,
                  out_channels=dit.out_channels or dit.in_channels or codec.latent_channels,
                  text_dim=dit.text_dim or text_dim,
                  temporal_stride=codec.temporal_stride if model_cfg.dit.temporal_stride is None
                  else dit.temporal_stride,
                  causal_first=codec.causal_first if model_cfg.dit.causal_first is None else dit.causal_first)
    audio = model_cfg.audio if model_cfg.audio.enabled else None
    model = WanDiT(dit, audio, model_cfg.visual)
    if model_cfg.init_from:
        load_wan_weights(model, model_cfg.init_from)
    return model
