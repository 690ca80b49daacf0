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

from collections.abc import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F

from kernels.attention_math import (  # noqa: F401
    TimeBias,
    _additive_mask,
    _zero_empty_rows,
    attention_probs,
    frame_local_bias,
    phase_window_bias,
)
from kernels.time_attention import time_structured_attention

AttentionFn = Callable[..., torch.Tensor]
BACKENDS: dict[str, AttentionFn] = {}


def register_backend(name: str):
    def wrap(fn: AttentionFn) -> AttentionFn:
        BACKENDS[name] = fn
        return fn
    return wrap


@register_backend("reference")
def reference_attention(q, k, v, bias=None, key_mask=None):
    """softmax(q k^T / sqrt(d) + bias) v in fp32 (or fp64 for fp64 inputs). q (B, H, Lq, D), k/v (B, H, Lk, D)."""
    probs = attention_probs(q, k, bias, key_mask)
    return (probs @ v.to(probs.dtype)).to(q.dtype)  # masked-out rows are already 0 in probs


@register_backend("sdpa")
def sdpa_attention(q, k, v, bias=None, key_mask=None):
    mask = _additive_mask(bias, key_mask, q.dtype)
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    if mask is None:  # no key is masked, so no row is empty: skip two passes over the output (and their grads)
        return out
    return _zero_empty_rows(out.nan_to_num(0.0), mask)


# Backends that compute a TimeBias themselves (fused kernels) register here; others get it materialised.
STRUCTURED_BACKENDS: set[str] = {"triton"}


@register_backend("triton")
def triton_attention(q, k, v, bias=None, key_mask=None, time_bias: TimeBias | None = None):
    """The fused Triton kernel of kernels/time_attention.py (bias built in-kernel from `time_bias`). Runs on
    CUDA, or on CPU under TRITON_INTERPRET=1; elsewhere it falls back to that module's torch reference."""
    if bias is not None:
        raise ValueError("the 'triton' backend builds its bias in-kernel from a TimeBias and takes no dense "
                         "bias; use backend 'sdpa' for arbitrary additive biases")
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
