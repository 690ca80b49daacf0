"""Layers of the Wan2.2 DiT block (self-attention, text cross-attention, FFN, 6-way adaLN).

Wan2.2 `wan/modules/model.py` (WanAttentionBlock), parameter names kept verbatim so an original Wan
checkpoint loads without renaming: `self_attn.{q,k,v,o,norm_q,norm_k}`, `norm3` (affine LayerNorm before
cross-attention), `cross_attn.*`, `ffn.{0,2}`, `modulation` (1, 6, dim). Block order:
  x += gate1 * self_attn(adaLN(norm1(x)))      (3D RoPE, qk RMSNorm over the full width)
  x += cross_attn(norm3(x), text)              (ungated, unmodulated; PACA phase-window bias optional)
  x += visual_attn(x, identity tokens)         (SyncDreamer, zero-init output; absent in Wan)
  x += f(l) * audio_attn(x, audio tokens)      (ActAvatar progressive audio, zero-init; absent in Wan)
  x += gate2 * ffn(adaLN(norm2(x)))
Modulation maths and residual gates run in fp32 (as Wan). Timesteps come in *groups*: e0 has shape
(B, G, 6, dim) and every group covers L/G consecutive tokens, so per-token (G = L, Wan2.2 TI2V), per-frame
(G = F, what image-to-video needs: 1/(H*W) of the memory) and per-sample (G = 1) share one code path.
Trade-off: the extra adapters are optional sub-modules, so a Wan state dict loads strictly except for them.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn as nn
import torch.nn.functional as F

from models.attention import ProjectedAttention, TimeBias, attention, attention_probs, merge_heads
from models.contracts import AuxOutputs
from models.rope import apply_rope


class FP32LayerNorm(nn.LayerNorm):
    """LayerNorm computed in fp32 whatever the activation dtype (Wan's WanLayerNorm)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.weight.float() if self.weight is not None else None
        b = self.bias.float() if self.bias is not None else None
        return F.layer_norm(x.float(), self.normalized_shape, w, b, self.eps).type_as(x)


@dataclass
class BlockInputs:
    """Everything a block needs besides x and its timestep modulation; built once per forward."""
    rope: tuple                                     # (cos + i sin,) 1 x (L, head_dim/2) complex64
    text: torch.Tensor                              # (B, Lt, dim) embedded text (+ phase embeddings)
    text_mask: torch.Tensor | None = None           # (B, Lt) True = attend
    text_time: TimeBias | None = None               # PACA window bias description (head_weight per block)
    audio: object | None = None                     # models.audio.AudioTokens
    visual: object | None = None                    # models.visual.IdentityTokens
    query_time: torch.Tensor | None = None          # (B, L) normalised clip time of each video token
    keep_audio: torch.Tensor | None = None          # (B,) bool
    keep_image: torch.Tensor | None = None          # (B,) bool
    region_tokens: torch.Tensor | None = None       # (B, L, R) bool: token inside region r
    record_text_attention: bool = False
    backend: str = "sdpa"
    aux: AuxOutputs = field(default_factory=AuxOutputs)  # this forward's typed outputs (loc losses, maps)


class SelfAttention(ProjectedAttention):
    def forward(self, x: torch.Tensor, rope: tuple, backend: str) -> torch.Tensor:
        q, k, v = self.project(x, x)
        q, k = apply_rope(q, rope), apply_rope(k, rope)
        return self.o(merge_heads(attention(q, k, v, backend=backend)))


class TextCrossAttention(ProjectedAttention):
    """Wan cross-attention; with `window_bias` the PACA extension: w_h added to the logits of phase tokens
    whose window contains the query frame's time (zero-init, so a converted Wan model is unchanged)."""

    def __init__(self, dim: int, num_heads: int, eps: float, qk_norm: bool = True, window_bias: bool = False,
                 window_bias_init: float = 0.0):
        super().__init__(dim, num_heads, eps, qk_norm)
        self.window_bias = nn.Parameter(torch.full((num_heads,), float(window_bias_init))) if window_bias else None

    def forward(self, x: torch.Tensor, inp: BlockInputs, layer: int) -> torch.Tensor:
        q, k, v = self.project(x, inp.text)
        time_bias = None
        if self.window_bias is not None and inp.text_time is not None:
            tb = inp.text_time
            time_bias = TimeBias("text", tb.query_time, tb.key_window, tb.key_is_phase, self.window_bias)
        if inp.record_text_attention:
            inp.aux.text_attention[layer] = self._probs(q, k, inp.text_mask, time_bias)
        out = attention(q, k, v, key_mask=inp.text_mask, backend=inp.backend, time_bias=time_bias)
        return self.o(merge_heads(out))

    @staticmethod
    @torch.no_grad()
    def _probs(q, k, key_mask, time_bias) -> torch.Tensor:
        """Head-averaged attention probabilities (B, L, Lt), for ActAvatar Fig. 4-style plots."""
        bias = None if time_bias is None else time_bias.materialise()
        return attention_probs(q, k, bias, key_mask).mean(1)


class WanBlock(nn.Module):
    """One DiT block; `audio_attn` / `visual_attn` are attached by the model builder when enabled."""

    def __init__(self, dim: int, ffn_dim: int, num_heads: int, eps: float, layer: int,
                 qk_norm: bool = True, window_bias: bool = False, window_bias_init: float = 0.0):
        super().__init__()
        self.layer = layer  # 0-based
        self.norm1 = FP32LayerNorm(dim, eps, elementwise_affine=False)
        self.self_attn = SelfAttention(dim, num_heads, eps, qk_norm)
        self.norm3 = FP32LayerNorm(dim, eps, elementwise_affine=True)
        self.cross_attn = TextCrossAttention(dim, num_heads, eps, qk_norm, window_bias, window_bias_init)
        self.norm2 = FP32LayerNorm(dim, eps, elementwise_affine=False)
        self.ffn = nn.Sequential(nn.Linear(dim, ffn_dim), nn.GELU(approximate="tanh"), nn.Linear(ffn_dim, dim))
        self.modulation = nn.Parameter(torch.randn(1, 6, dim) / dim ** 0.5)
        self.audio_attn: nn.Module | None = None
        self.visual_attn: nn.Module | None = None
        self.compute_loc_loss = False  # set on the mid blocks by the builder (SyncDreamer)

    def forward(self, x: torch.Tensor, e0: torch.Tensor, inp: BlockInputs) -> torch.Tensor:
        """x (B, L, dim); e0 (B, G, 6, dim) fp32 timestep projection, G dividing L."""
        B, L, D = x.shape
        G = e0.shape[1]
        mod = (self.modulation[None].float() + e0.float()).unbind(2)  # 6 x (B, G, dim)
        shift1, scale1, gate1, shift2, scale2, gate2 = (m[:, :, None] for m in mod)  # (B, G, 1, dim)

        def modulate(norm, shift, scale):  # adaLN over token groups: (B, L, D) viewed as (B, G, L/G, D)
            h = norm(x.float()).view(B, G, L // G, D) * (1 + scale) + shift
            return h.view(B, L, D).type_as(x)

        def gated(residual, gate):
            return (x.float().view(B, G, L // G, D) + residual.float().view(B, G, L // G, D) * gate).view(B, L, D)

        x = gated(self.self_attn(modulate(self.norm1, shift1, scale1), inp.rope, inp.backend), gate1).type_as(x)
        x = x + self.cross_attn(self.norm3(x), inp, self.layer)
        if self.visual_attn is not None and inp.visual is not None:
            region = inp.region_tokens if self.compute_loc_loss else None
            residual, loc = self.visual_attn(x, inp.visual, keep=inp.keep_image, backend=inp.backend,
                                             query_region=region)
            x = x + residual
            if loc is not None:
                inp.aux.loc_losses.append(loc)
        if self.audio_attn is not None and inp.audio is not None:
            x = x + self.audio_attn(x, inp.audio, inp.query_time, keep=inp.keep_audio, backend=inp.backend)
        return gated(self.ffn(modulate(self.norm2, shift2, scale2)), gate2).type_as(x)


class Head(nn.Module):
    """Output head: adaLN (2-way, `modulation`) then a linear map to patch pixels; `head` zero-init."""

    def __init__(self, dim: int, out_features: int, eps: float):
        super().__init__()
        self.norm = FP32LayerNorm(dim, eps, elementwise_affine=False)
        self.head = nn.Linear(dim, out_features)
        self.modulation = nn.Parameter(torch.randn(1, 2, dim) / dim ** 0.5)

    def forward(self, x: torch.Tensor, e: torch.Tensor) -> torch.Tensor:
        """x (B, L, dim), e (B, G, dim) fp32 -> (B, L, out_features)."""
        B, L, D = x.shape
        G = e.shape[1]
        shift, scale = (self.modulation[None].float() + e[:, :, None].float()).unbind(2)  # (B, G, dim) each
        h = self.norm(x.float()).view(B, G, L // G, D) * (1 + scale[:, :, None]) + shift[:, :, None]
        return self.head(h.view(B, L, D).type_as(x))
