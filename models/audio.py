"""Audio conditioning of the DiT: per-frame features -> audio tokens -> depth-weighted cross-attention.

Pipeline (shapes for B clips, T video frames, F latent frames, N_a tokens per latent frame):
  waveform (B, S) --encoder (models.audio_encoders, frozen)--> features (B, T, D)
  --AudioDynamicsEncoder (SyncDreamer Sec. "Audio Dynamics Encoder", switchable)--> w_t * A_t
  --AudioAdapter (shared by all blocks)--> tokens (B, F * N_a, dim), each tied to one latent frame
  --AudioCrossAttention (one per DiT block, ActAvatar Sec. "Audio injection")--> residual
     x_l <- x_l + f(l) * r_l,  f(l) = (l / L)^gamma  (gamma = 1.5; gamma = 0 is the uniform ablation).
SyncDreamer: a temporal MLP looks at a +-k window of features and outputs w_t in [0, 1] that re-weights
A_t, so silent / static stretches can be turned down. ActAvatar: shallow blocks lay out structure and
deep blocks refine detail, so audio (lip detail) enters mostly at depth.
Frame locality: each token's key window is its latent frame's time, and the query of a video token is
its latent frame's time, so TimeBias("audio") lets a latent frame hear only its own audio span (+ context).
Trade-off: the adapter flattens a fixed window of stride + 2w video frames, so its MLP is built for one
latent temporal stride (the codec's); a different stride needs a new adapter.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn

from models.attention import ProjectedAttention, TimeBias, attention, merge_heads
from models.audio_config import AudioConfig
from models.audio_encoders import LogMelEnergyEncoder, Wav2Vec2Encoder, build_audio_encoder
from models.frames import latent_frame_spans

__all__ = ["AudioConfig", "LogMelEnergyEncoder", "Wav2Vec2Encoder", "build_audio_encoder",
           "AudioDynamicsEncoder", "latent_frame_spans", "AudioTokens", "AudioAdapter",
           "depth_scale", "AudioCrossAttention"]


def _edge_windows(x: torch.Tensor, k: int) -> torch.Tensor:
    """(B, T, D) -> (B, T, (2k+1)·D): frames t-k..t+k of each t, edges replicated."""
    B, T, D = x.shape
    idx = (torch.arange(T, device=x.device)[:, None] + torch.arange(-k, k + 1, device=x.device)).clamp(0, T - 1)
    return x[:, idx].reshape(B, T, (2 * k + 1) * D)  # gather (B, T, 2k+1, D), then flatten the window


class AudioDynamicsEncoder(nn.Module):
    """SyncDreamer: w_t = sigmoid(MLP(A_{t-k..t+k})) in [0, 1]; returns (w_t·A_t (B, T, D), w (B, T)).

    The last layer is zero-initialised, so w_t = 0.5 for every frame at the start: a constant scale
    the adapter absorbs, i.e. no frame is favoured before training says which ones matter."""

    def __init__(self, feature_dim: int, k: int = 3, hidden: int = 128):
        super().__init__()
        self.k = k
        self.mlp = nn.Sequential(nn.Linear((2 * k + 1) * feature_dim, hidden), nn.SiLU(), nn.Linear(hidden, 1))
        nn.init.zeros_(self.mlp[-1].weight)
        nn.init.zeros_(self.mlp[-1].bias)

    def forward(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        weights = torch.sigmoid(self.mlp(_edge_windows(features, self.k))).squeeze(-1)  # (B, T)
        return features * weights[..., None], weights


@dataclass
class AudioTokens:
    """Audio tokens of a batch, with what attention needs to keep them frame-local."""
    tokens: torch.Tensor  # (B, F·N_a, dim)
    key_window: torch.Tensor  # (B, F·N_a, 2): both ends = the owning latent frame's normalised time
    dynamics_weights: torch.Tensor | None  # (B, T_video) SyncDreamer w_t, None when dynamics is off


class AudioAdapter(nn.Module):
    """Per-video-frame features (B, T, D) -> N_a tokens of width dim per latent frame (shared by all blocks).

    Latent frame f reads the fixed window last_f - s + 1 - w .. last_f + w (s + 2w video frames): its own
    span plus w context frames each side; for Wan's lone causal first latent frame the window reaches
    before frame 0 and is filled by replicating frame 0, as the causal VAE pads it. Indices outside the
    feature sequence are clamped: a shorter sequence repeats its last frame (pad), a longer one has its
    tail ignored (crop)."""

    def __init__(self, cfg: AudioConfig, dim: int, stride: int = 4):
        super().__init__()
        self.stride, self.context, self.num_tokens, self.dim = stride, cfg.context_frames, cfg.tokens_per_frame, dim
        self.dynamics = AudioDynamicsEncoder(cfg.feature_dim, cfg.dynamics_k, cfg.dynamics_hidden) if cfg.dynamics else None
        window = stride + 2 * cfg.context_frames
        self.mlp = nn.Sequential(nn.Linear(window * cfg.feature_dim, cfg.adapter_hidden), nn.SiLU(),
                                 nn.Linear(cfg.adapter_hidden, cfg.tokens_per_frame * dim))
        self.norm = nn.LayerNorm(dim)

    def window_indices(self, num_latent_frames: int, causal_first: bool, num_video_frames: int) -> torch.Tensor:
        """(F, s + 2w) video-frame indices each latent frame reads, clamped to the feature sequence."""
        last = latent_frame_spans(num_latent_frames, self.stride, causal_first)[:, 1]
        offsets = torch.arange(-(self.stride - 1) - self.context, self.context + 1)
        return (last[:, None] + offsets).clamp(0, num_video_frames - 1)

    def forward(self, features: torch.Tensor, num_latent_frames: int, stride: int, causal_first: bool,
                latent_frame_time: torch.Tensor) -> AudioTokens:
        B, T, D = features.shape
        F_ = num_latent_frames
        if stride != self.stride:
            raise ValueError(f"AudioAdapter was built for latent stride {self.stride}, called with {stride}")
        if T == 0:
            raise ValueError("AudioAdapter: empty feature sequence (0 video frames)")
        if latent_frame_time.shape != (B, F_):
            raise ValueError(f"latent_frame_time must be (B, F) = {(B, F_)}, got {tuple(latent_frame_time.shape)}")
        weights = None
        if self.dynamics is not None:
            features, weights = self.dynamics(features)
        idx = self.window_indices(F_, causal_first, T).to(features.device)  # (F, s + 2w)
        windows = features[:, idx].reshape(B, F_, -1)  # (B, F, s + 2w, D) -> (B, F, (s + 2w)·D)
        tokens = self.norm(self.mlp(windows).reshape(B, F_, self.num_tokens, self.dim))  # (B, F, N_a, dim)
        times = latent_frame_time[:, :, None, None].expand(B, F_, self.num_tokens, 2)  # (B, F, N_a, 2)
        return AudioTokens(tokens.reshape(B, F_ * self.num_tokens, self.dim),
                           times.reshape(B, F_ * self.num_tokens, 2).to(tokens.dtype), weights)


def depth_scale(layer_index: int, num_layers: int, gamma: float) -> float:
    """ActAvatar f(l) = (l / L)^gamma for 1-based block l of L; gamma = 0 gives 1 for every block."""
    if not 1 <= layer_index <= num_layers:
        raise ValueError(f"layer_index must be in 1..{num_layers} (1-based), got {layer_index}")
    if gamma < 0:
        raise ValueError(f"gamma must be >= 0, got {gamma}")
    return float((layer_index / num_layers) ** gamma)


class AudioCrossAttention(ProjectedAttention):
    """One DiT block's audio cross-attention; forward returns the residual f(l)·o(attn), caller adds it.

    Pre-norm LayerNorm on x; q from x, k/v from the audio tokens; optional RMSNorm over the full width on
    q and k (Wan). The output projection is zero-initialised, so a pretrained DiT is unchanged at init."""

    def __init__(self, dim: int, num_heads: int, layer_index: int, num_layers: int, gamma: float = 1.5,
                 eps: float = 1e-6, qk_norm: bool = True):
        super().__init__(dim, num_heads, eps, qk_norm, zero_output=True)
        self.scale = depth_scale(layer_index, num_layers, gamma)  # python float: exact, not trained
        self.norm = nn.LayerNorm(dim, eps=eps, elementwise_affine=True)

    def forward(self, x: torch.Tensor, tokens: AudioTokens, query_time: torch.Tensor,
                keep: torch.Tensor | None = None, backend: str = "sdpa") -> torch.Tensor:
        B, L, C = x.shape
        audio = tokens.tokens
        if audio.shape[0] != B or query_time.shape != (B, L):
            raise ValueError(f"batch mismatch: x {tuple(x.shape)}, audio tokens {tuple(audio.shape)}, "
                             f"query_time {tuple(query_time.shape)} (expected (B, L) = {(B, L)})")
        q, k, v = self.project(self.norm(x), audio)  # (B, H, L|Lk, C/H)
        key_mask = None if keep is None else keep[:, None].expand(B, audio.shape[1])  # (B, Lk)
        out = attention(q, k, v, key_mask=key_mask, backend=backend,
                        time_bias=TimeBias("audio", query_time, tokens.key_window))  # (B, H, L, C/H)
        residual = self.o(merge_heads(out)) * self.scale
        if keep is not None:  # dropped audio: exactly zero, o's bias included
            residual = residual * keep[:, None, None].to(residual.dtype)
        return residual
