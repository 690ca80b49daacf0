"""The audio section of the model config (ActAvatar's progressive audio cross-attention, SyncDreamer's audio
dynamics encoder, and the audio feature encoder in front of both).

A plain dataclass with its own `check`, apart from the modules, so the encoders (models/audio_encoders.py)
and the adapter (models/audio.py) can both read it without importing each other. `fps` and `sample_rate`
are not knobs: configs/loader.py copies them from the data section (data.fps, data.sample_rate), so the
audio the model is built for is always the audio the data source yields.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass
class AudioConfig:
    enabled: bool = True  # audio cross-attention in every block (off: text/image-only models)
    encoder: str = "logmel"  # "logmel" (SynthAvatar) or "wav2vec2" (real speech, local checkpoint)
    encoder_path: str = ""  # local save_pretrained directory for wav2vec2; never downloaded
    wav2vec2_layers: str = "all"  # "all" = softmax-weighted mix of every hidden state, "last", or "k"
    feature_dim: int = 81  # encoder output width D: logmel = n_mels + 1 (energy); wav2vec2 = hidden size
    tokens_per_frame: int = 4  # N_a audio tokens per latent frame
    context_frames: int = 2  # w: video frames of audio context on each side of a latent frame's span
    adapter_hidden: int = 512  # hidden width of the adapter MLP (MultiTalk uses 512)
    dynamics: bool = True  # SyncDreamer audio dynamics re-weighting on/off
    dynamics_k: int = 3  # half window of the dynamics MLP (frames t-k .. t+k)
    dynamics_hidden: int = 128
    gamma: float = 1.5  # depth exponent of the residual scale (l/L)^gamma; 0 = uniform
    qk_norm: bool = True  # RMSNorm on q and k (Wan)
    fps: int = 25
    sample_rate: int = 16000

    def check(self) -> list[tuple[str, str]]:
        problems = []
        if self.encoder not in ("logmel", "wav2vec2"):
            problems.append(("encoder", f"must be 'logmel' or 'wav2vec2' (got {self.encoder!r})"))
        if self.encoder == "wav2vec2" and not self.encoder_path:
            problems.append(("encoder_path", "must name a local wav2vec2 directory when encoder is 'wav2vec2'"))
        if not (self.wav2vec2_layers in ("all", "last") or self.wav2vec2_layers.isdigit()):
            problems.append(("wav2vec2_layers", f"must be 'all', 'last' or a layer index "
                             f"(got {self.wav2vec2_layers!r})"))
        minimum_dim = 2 if self.encoder == "logmel" else 1  # logmel needs >= 1 mel band + energy
        for name, minimum in (("feature_dim", minimum_dim), ("tokens_per_frame", 1), ("adapter_hidden", 1),
                              ("dynamics_hidden", 1), ("context_frames", 0), ("dynamics_k", 0),
                              ("fps", 1), ("sample_rate", 1)):
            if getattr(self, name) < minimum:
                problems.append((name, f"must be >= {minimum} (got {getattr(self, name)})"))
        if not self.gamma >= 0:
            problems.append(("gamma", f"must be >= 0 (got {self.gamma}); 0 = uniform depth weighting"))
        return problems
