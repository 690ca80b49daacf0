"""Frozen audio encoders: raw waveform (B, S) -> one feature vector per VIDEO frame (B, T_video, D).

ActAvatar and SyncDreamer both condition on Wav2Vec2 features resampled to the video frame rate
(ActAvatar Sec. "Audio injection", SyncDreamer Sec. "Audio Dynamics Encoder"; peers MultiTalk and
OmniAvatar linearly interpolate Wav2Vec2's 50 Hz sequence to 25 fps). Two encoders share that contract:

- `LogMelEnergyEncoder`: librosa log-mel spectrum + frame energy, one vector per video frame, for
  SynthAvatar, whose toy speech carries no phonetic content a pretrained speech model would add.
  No parameters, deterministic, no download.
- `Wav2Vec2Encoder`: a local `transformers` Wav2Vec2 checkpoint (never the network), backbone frozen.

Trade-off: both encoders run on every training step (no feature cache); for the frozen Wav2Vec2 this
costs a forward pass per batch but keeps dropout/augmentation of the waveform possible later.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from common.audio_features import frame_envelope, log_mel
from common.local_models import load_local, local_model_dir
from models.audio_config import AudioConfig

# Fixed dB normalisation (not per clip, so loudness stays comparable across clips): speech frames of
# SynthAvatar span about -75..+25 dB, mapped to roughly [-1.5, 2.5]; digital silence (-100 dB) -> -2.4.
DB_CENTRE = -40.0
DB_SCALE = 25.0
ENERGY_FLOOR = 1e-5  # RMS floor (-100 dB), matches log_mel's amin=1e-10 on power


def video_frame_count(num_samples: int, sample_rate: int, fps: float) -> int:
    """Number of video frames a waveform of `num_samples` covers (4 s at 16 kHz, 25 fps -> 100)."""
    return int(round(num_samples * fps / sample_rate))


def _check_waveform(wave: torch.Tensor, who: str) -> None:
    if wave.ndim != 2 or wave.shape[1] == 0:
        raise ValueError(f"{who}: expected a batch of mono waveforms (B, S) with S > 0, got shape "
                         f"{tuple(wave.shape)}")


class LogMelEnergyEncoder(nn.Module):
    """(B, S) waveform -> (B, T_video, n_mels + 1): normalised log-mel (dB) and log frame energy.

    Each video frame gets the spectrum of a two-frame Hann window centred on it (common.audio_features.log_mel)
    and the RMS over one frame (frame_envelope), both in dB and mapped by the fixed affine
    (dB - DB_CENTRE) / DB_SCALE. Runs in numpy on the CPU: not differentiable, and needs none to be."""

    def __init__(self, n_mels: int = 80, sample_rate: int = 16000, fps: float = 25.0):
        super().__init__()
        self.n_mels, self.sample_rate, self.fps = n_mels, sample_rate, fps
        self.feature_dim = n_mels + 1

    @torch.no_grad()
    def forward(self, wave: torch.Tensor, num_frames: int | None = None) -> torch.Tensor:
        _check_waveform(wave, type(self).__name__)
        T = num_frames if num_frames is not None else video_frame_count(wave.shape[1], self.sample_rate, self.fps)
        per_clip = [self._clip_features(w, T) for w in wave.detach().float().cpu().numpy()]
        return torch.from_numpy(np.stack(per_clip)).to(wave.device)  # (B, T, n_mels + 1)

    def _clip_features(self, wave: np.ndarray, num_frames: int) -> np.ndarray:
        mel_db = log_mel(wave, self.sample_rate, self.fps, num_frames, n_mels=self.n_mels)  # (T, n_mels)
        rms = frame_envelope(wave, self.sample_rate, self.fps, num_frames)  # (T,)
        energy_db = 20.0 * np.log10(np.maximum(rms, ENERGY_FLOOR))
        feats = np.concatenate([mel_db, energy_db[:, None]], axis=1)  # (T, n_mels + 1)
        return ((feats - DB_CENTRE) / DB_SCALE).astype(np.float32)


def _reads_normalised_input(directory: Path) -> bool:
    """Whether the checkpoint expects zero-mean unit-variance audio (preprocessor_config do_normalize)."""
    prep = directory / "preprocessor_config.json"
    if not prep.is_file():
        return True  # large/robust checkpoints need it and it is harmless for the others
    return bool(json.loads(prep.read_text()).get("do_normalize", True))


class Wav2Vec2Encoder(nn.Module):
    """(B, S) waveform -> (B, T_video, C): frozen Wav2Vec2, layers mixed, interpolated to the video fps.

    layers="all": every hidden state (the CNN projection + each transformer layer, n = L + 1) is combined
    by a learnable softmax weighting (SUPERB-style, zero-init = plain average). Chosen over concatenation
    (MultiTalk stacks 12 x 768): D stays C (768, not ~10k), so the adapter's flattened window stays small,
    and the learned weights show which depth carries lip-sync information. Cost: n trainable scalars
    live next to the frozen backbone. layers="last" or an index "k" picks one hidden state (no params).
    Time: the 50 Hz sequence is linearly interpolated (centre-aligned) to T_video frames."""

    def __init__(self, path: str, layers: str = "all", sample_rate: int = 16000, fps: float = 25.0):
        super().__init__()
        directory = local_model_dir(path, "wav2vec2 audio encoder", "audio.encoder_path")
        from transformers import Wav2Vec2Model  # deferred: importing transformers costs seconds

        self.backbone = load_local(directory, "wav2vec2 audio encoder", Wav2Vec2Model.from_pretrained)
        self.backbone.requires_grad_(False).eval()
        self.normalise_input = _reads_normalised_input(directory)
        self.sample_rate, self.fps, self.layers = sample_rate, fps, layers
        self.feature_dim = self.backbone.config.hidden_size
        num_states = self.backbone.config.num_hidden_layers + 1
        self.layer_index = _parse_layer_choice(layers, num_states, directory)
        self.layer_logits = nn.Parameter(torch.zeros(num_states)) if self.layer_index is None else None

    def train(self, mode: bool = True) -> Wav2Vec2Encoder:
        super().train(mode)
        self.backbone.eval()  # frozen: dropout stays off even while the rest of the model trains
        return self

    def forward(self, wave: torch.Tensor, num_frames: int | None = None) -> torch.Tensor:
        _check_waveform(wave, type(self).__name__)
        T = num_frames if num_frames is not None else video_frame_count(wave.shape[1], self.sample_rate, self.fps)
        with torch.no_grad():
            states = self._hidden_states(wave.float())  # (B, T_50, n, C)
        if self.layer_logits is None:
            feats = states[:, :, 0]
        else:
            weights = torch.softmax(self.layer_logits, 0).to(states.dtype)  # (n,)
            feats = torch.einsum("btnc,n->btc", states, weights)  # (B, T_50, C)
        # (B, C, T_50) -> (B, C, T_video): linear, frame centres aligned (align_corners=False)
        return F.interpolate(feats.transpose(1, 2), size=T, mode="linear", align_corners=False).transpose(1, 2)

    def _hidden_states(self, wave: torch.Tensor) -> torch.Tensor:
        if self.normalise_input:
            wave = (wave - wave.mean(1, keepdim=True)) / torch.sqrt(wave.var(1, keepdim=True) + 1e-7)
        out = self.backbone(wave, output_hidden_states=True)
        picked = out.hidden_states if self.layer_index is None else (out.hidden_states[self.layer_index],)
        return torch.stack(picked, dim=2)  # (B, T_50, n, C)


def _parse_layer_choice(layers: str, num_states: int, directory: Path) -> int | None:
    """"all" -> None (mix every state); "last" -> num_states - 1; "k" -> k (0 = CNN projection)."""
    if layers == "all":
        return None
    if layers == "last":
        return num_states - 1
    if layers.isdigit() and int(layers) < num_states:
        return int(layers)
    raise ValueError(f"audio.wav2vec2_layers={layers!r} is not 'all', 'last' or a hidden-state index "
                     f"0..{num_states - 1} of the model at {directory}")


def build_audio_encoder(cfg: AudioConfig) -> nn.Module:
    """The encoder `cfg.encoder` names; its output width must equal cfg.feature_dim (checked here)."""
    if cfg.encoder == "logmel":
        encoder = LogMelEnergyEncoder(n_mels=cfg.feature_dim - 1, sample_rate=cfg.sample_rate, fps=cfg.fps)
    elif cfg.encoder == "wav2vec2":
        encoder = Wav2Vec2Encoder(cfg.encoder_path, cfg.wav2vec2_layers, cfg.sample_rate, cfg.fps)
    else:
        raise ValueError(f"unknown audio.encoder {cfg.encoder!r}; use 'logmel' or 'wav2vec2'")
    if encoder.feature_dim != cfg.feature_dim:
        raise ValueError(f"audio.feature_dim={cfg.feature_dim} but the {cfg.encoder} encoder at "
                         f"{cfg.encoder_path or '<builtin>'} outputs {encoder.feature_dim}; "
                         f"set audio.feature_dim={encoder.feature_dim}")
    return encoder
