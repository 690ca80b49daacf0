"""`build_codec`: the codec of `model.codec.kind`, apart from the interface (models/codec.py) so the
backends can import the interface without the interface importing them (no cycle).

kind "wan" loads a local diffusers AutoencoderKLWan (imports diffusers only then); kind "synth" loads the
cached PCA SynthCodec or fits it on the frames the data source hands over (`DataSource.fit_frames`).
Trade-off: the caller passes the frames rather than a data config, so the core never learns where the
frames come from; for a cached codec only their fingerprint is read, never the frames themselves.
"""
from __future__ import annotations

import torch

from models.codec import CodecConfig, LatentCodec
from models.contracts import FitFrames


def build_codec(cfg: CodecConfig, frames: FitFrames | None = None, progress: bool = True) -> LatentCodec:
    """The codec of `cfg`: a local Wan VAE, or the SynthCodec loaded from cache / fitted on `frames`
    (required for kind 'synth')."""
    problems = cfg.check()
    if problems:
        raise ValueError("; ".join(f"codec.{name}: {problem}" for name, problem in problems))
    if cfg.kind == "wan":
        from models.codec_wan import WanVAECodec  # imports diffusers: only when asked for
        return WanVAECodec(cfg.path, dtype=getattr(torch, cfg.dtype), tile=cfg.tile)
    if frames is None:
        raise ValueError("build_codec: kind 'synth' is fitted on training frames; pass the data source's "
                         "fit_frames(model.codec.fit_clips)")
    from models.codec_synth import load_or_fit_synth_codec
    return load_or_fit_synth_codec(cfg, frames, progress=progress)
