"""One attention entry point with selectable backends, and the time-structured biases of ActAvatar.

`attention(q, k, v, bias=..., key_mask=..., backend=...)` is the only way model code calls attention,
so a fused kernel (kernels/, issue 5) plugs in by registering a backend, without touching the model.
Backends: "sdpa" (torch's fused scaled_dot_product_attention with a materialised additive mask),
"reference" (explicit fp32 softmax, the ground truth for tests and kernels) and "triton" (the fused kernel
of kernels/time_attention.py, which computes a TimeBias in-kernel). Convention: a query whose
keys are all masked gets a zero output (not NaN), so padded text or empty audio windows are harmless.

Biases (built here, consumed as an additive (B, H, Lq, Lk) tensor by the stock backends):
- phase-window bias (our PACA extension, off by default): w_h added where the query's normalised
  frame time lies inside the key token's phase window; base tokens are never biased;
- frame-local mask (audio cross-attention): a query frame may only attend to audio tokens within
  `radius` of its own time.
Model code passes these biases as a `TimeBias` *description* (query times, key windows, per-head
weights, mode), not as a tensor: the stock backends materialise it, a fused kernel computes it in-loop.
Trade-off: materialising the bias costs Lq x Lk x H memory; the fused 'triton' backend avoids it.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F

AttentionFn = Callable[..., torch.Tensor]
BACKENDS: dict[str, AttentionFn] = {}


def register_backend(name: str):
    def wrap(fn: AttentionFn) -> AttentionFn:
        BACKENDS[name] = fn
        return fn
    return wrap


def _additive_mask(bias, key_mask, dtype):
    """Combine an additive bias (B|1, H|1, Lq, Lk) and a key mask (B, Lk; True = attend) into one."""
    mask = None if bias is None else bias.to(dtype)
    if key_mask is not None:
        neg = torch.zeros(key_mask.shape, dtype=dtype, device=key_mask.device).masked_fill(~key_mask, float("-inf"))[:, None, None, :]
        mask = neg if mask is None else mask + neg
    return mask


def _zero_empty_rows(out, mask):
    """Rows whose every key is masked: 0 instead of NaN (out (B, H, Lq, D), mask additive)."""
    if mask is None:
        return out
    empty = torch.isinf(mask).all(-1, keepdim=True) & (mask < 0).all(-1, keepdim=True)  # (B|1, H|1, Lq, 1)
    return out.masked_fill(empty, 0.0) if empty.any() else out


def attention_probs(q, k, bias=None, key_mask=None, compute_dtype=None) -> torch.Tensor:
    """softmax(q k^T / sqrt(d) + bias) in fp32 (fp64 for fp64 inputs, or `compute_dtype`): (B, H, Lq, Lk);
    rows without a valid key are 0. For the few places that need the probabilities themselves (losses,
    attention maps, the kernels' reference)."""
    dtype = compute_dtype or torch.promote_types(q.dtype, torch.float32)
    mask = _additive_mask(bias, key_mask, dtype)
    logits = q.to(dtype) @ k.to(dtype).transpose(-1, -2) / q.shape[-1] ** 0.5  # (B, H, Lq, Lk)
    if mask is None:
        return torch.softmax(logits, -1)
    logits = logits + mask
    # Rows with no valid key: softmax would give NaN, and its backward NaN gradients even when the row is
    # zeroed afterwards (nan_to_num does not stop them). Give those rows finite logits, then zero them.
    empty = torch.isneginf(logits).all(-1, keepdim=True)  # (B, H, Lq, 1)
    return torch.softmax(logits.masked_fill(empty, 0.0), -1).masked_fill(empty, 0.0)


@register_backend("reference")
def reference_attention(q, k, v, bias=None, key_mask=None):
    """softmax(q k^T / sqrt(d) + bias) v in fp32 (or fp64 for fp64 inputs). q (B, H, Lq, D), k/v (B, H, Lk, D)."""
    probs = attention_probs(q, k, bias, key_mask)
    return (probs @ v.to(probs.dtype)).to(q.dtype)  # masked-out rows are already 0 in probs


@register_backend("sdpa")
def sdpa_attention(q, k, v, bias=None, key_mask=None):
    mask = _additive_mask(bias, key_mask, q.dtype)
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    return _zero_empty_rows(out.nan_to_num(0.0), mask)


@dataclass
class TimeBias:
    """A time-structured bias described by its ingredients (never by an Lq x Lk tensor).

    mode "text": + head_weight[h] where key_window[0] <= query_time < key_window[1] and key_is_phase;
    mode "audio": -inf unless key_window[0] <= query_time <= key_window[1] (frame-local attention).
    query_time (B, Lq) and key_window (B, Lk, 2) are normalised clip times; head_weight (H,)."""
    mode: str
    query_time: torch.Tensor
    key_window: torch.Tensor
    key_is_phase: torch.Tensor | None = None
    head_weight: torch.Tensor | None = None

    def materialise(self, dtype=torch.float32) -> torch.Tensor:
        """(B, H|1, Lq, Lk) additive bias, for backends that take a dense mask."""
        if self.mode == "text":
            return phase_window_bias(self.query_time, self.key_window, self.key_is_phase, self.head_weight).to(dtype)
        if self.mode == "audio":
            t = self.query_time[:, :, None]
            inside = (t >= self.key_window[:, None, :, 0] - 1e-6) & (t <= self.key_window[:, None, :, 1] + 1e-6)
            return torch.zeros(inside.shape, dtype=dtype, device=inside.device).masked_fill(~inside, float("-inf"))[:, None]
        raise ValueError(f"unknown TimeBias mode {self.mode!r}; use 'text' or 'audio'")


# Backends that compute a TimeBias themselves (fused kernels) register here; others get it materialised.
STRUCTURED_BACKENDS: set[str] = {"triton"}


@register_backend("triton")
def triton_attention(q, k, v, bias=None, key_mask=None, time_bias: TimeBias | None = None):
    """The fused Triton kernel of kernels/time_attention.py (bias built in-kernel from `time_bias`). Runs on
    CUDA, or on CPU under TRITON_INTERPRET=1; elsewhere it falls back to that module's torch reference."""
    if bias is not None:
        raise ValueError("the 'triton' backend builds its bias in-kernel from a TimeBias and takes no dense "
                         "bias; use backend 'sdpa' for arbitrary additive biases")
    from kernels.time_attention import time_structured_attention  # lazy: kernels imports this module
    return time_structured_attention(q, k, v, time_bias=time_bias, key_mask=key_mask)


def attention(q, k, v, bias=None, key_mask=None, backend: str = "sdpa",
              time_bias: TimeBias | None = None) -> torch.Tensor:
    """The attention entry point: q (B, H, Lq, D), k/v (B, H, Lk, D) -> (B, H, Lq, D).

    bias: optional dense additive (B|1, H|1, Lq, Lk); time_bias: a TimeBias description (added to it)."""
    if backend not in BACKENDS:
        raise ValueError(f"unknown attention backend {backend!r}; registered: {sorted(BACKENDS)}")
    if time_bias is not None and backend in STRUCTURED_BACKENDS:
        return BACKENDS[backend](q, k, v, bias=bias, key_mask=key_mask, time_bias=time_bias)
    if time_bias is not None:
        dense = time_bias.materialise(torch.promote_types(q.dtype, torch.float32))
        bias = dense if bias is None else bias + dense
    return BACKENDS[backend](q, k, v, bias=bias, key_mask=key_mask)


def split_heads(x: torch.Tensor, heads: int) -> torch.Tensor:
    """(B, L, H*D) -> (B, H, L, D)."""
    return x.unflatten(-1, (heads, -1)).transpose(1, 2)


def merge_heads(x: torch.Tensor) -> torch.Tensor:
    """(B, H, L, D) -> (B, L, H*D)."""
    return x.transpose(1, 2).flatten(2)


class ProjectedAttention(nn.Module):
    """Wan's attention parameter layout, shared by every DiT attention layer: `q`, `k`, `v`, `o` linears
    over the full width and optional RMSNorm qk-norm over the full width (`norm_q`, `norm_k`).
    `zero_output` zero-initialises `o`, so a new residual branch starts as an exact no-op."""

    def __init__(self, dim: int, num_heads: int, eps: float = 1e-6, qk_norm: bool = True,
                 zero_output: bool = False):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"{type(self).__name__}: dim {dim} is not divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        self.q, self.k, self.v, self.o = (nn.Linear(dim, dim) for _ in range(4))
        self.norm_q = nn.RMSNorm(dim, eps=eps) if qk_norm else nn.Identity()
        self.norm_k = nn.RMSNorm(dim, eps=eps) if qk_norm else nn.Identity()
        if zero_output:
            nn.init.zeros_(self.o.weight)
            nn.init.zeros_(self.o.bias)

    def project(self, x: torch.Tensor, context: torch.Tensor):
        """Queries from x (B, L, dim), keys/values from context (B, Lk, dim) -> 3 x (B, H, L|Lk, dim/H)."""
        q = split_heads(self.norm_q(self.q(x)), self.num_heads)
        k = split_heads(self.norm_k(self.k(context)), self.num_heads)
        return q, k, split_heads(self.v(context), self.num_heads)


def phase_window_bias(query_time, key_window, key_is_phase, head_weight):
    """w_h where start <= t_q < end for phase tokens, else 0.

    query_time (B, Lq) normalised in [0, 1]; key_window (B, Lk, 2); key_is_phase (B, Lk) bool;
    head_weight (H,) -> bias (B, H, Lq, Lk)."""
    t = query_time[:, :, None]                                                   # (B, Lq, 1)
    inside = (t >= key_window[:, None, :, 0]) & (t < key_window[:, None, :, 1])  # (B, Lq, Lk)
    inside = inside & key_is_phase[:, None, :]
    return head_weight[None, :, None, None] * inside[:, None].to(head_weight.dtype)


def frame_local_bias(query_time, key_time, radius: float, dtype=torch.float32):
    """0 where |t_q - t_k| <= radius, -inf elsewhere: (B, Lq) and (B, Lk) -> (B, 1, Lq, Lk)."""
    far = (query_time[:, :, None] - key_time[:, None, :]).abs() > radius + 1e-6
    return torch.zeros(far.shape, dtype=dtype, device=far.device).masked_fill(far, float("-inf"))[:, None]
