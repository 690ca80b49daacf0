"""Fused time-structured cross-attention: the pure-torch reference, the autograd Function over the Triton
kernels (kernels/time_attention_triton.py), and the functional entry point the "triton" attention backend
calls (models/attention.py).

ActAvatar §3.2 binds text phase tokens to time windows, and audio tokens to latent frames. As a dense bias
that is a (B, H, Lq, Lk) tensor per layer: at the 5B model's 720p/5 s shape 28,160 x 512 x 24 values,
written in the forward and re-read in the backward. The kernel rebuilds each tile of the bias from a
TimeBias description (per-query frame time, per-key window, per-head weight) and never stores it; the only
saved extras are one fp32 log-sum-exp per query row.

`time_structured_attention` runs the kernel on CUDA tensors, or on CPU tensors under TRITON_INTERPRET=1
(tests), and otherwise falls back to `reference_time_attention` (same maths, materialised bias). Setting
ACTSYNC_TRITON=0 disables the kernel everywhere (for A/B checks).
Trade-off: the kernel takes fp32/fp16/bf16 and any head_dim (padded to a power of two >= 16 inside);
fp64 inputs go to the reference.
"""
from __future__ import annotations

import os

import torch

from kernels.attention_math import TimeBias, attention_probs

KERNEL_DTYPES = (torch.float32, torch.float16, torch.bfloat16)
_MODES = {None: 0, "text": 1, "audio": 2}


def reference_time_attention(q, k, v, time_bias: TimeBias | None = None, key_mask=None, compute_dtype=None):
    """softmax(q kᵀ/√d + B) v with B = time_bias.materialise(); rows without a valid key -> 0.

    q (B, H, Lq, D), k/v (B, H, Lk, D), key_mask (B, Lk) bool (True = attend). compute_dtype defaults to
    fp32 (fp64 for fp64 inputs); pass q.dtype to measure what plain torch maths loses in that dtype."""
    dtype = compute_dtype or torch.promote_types(q.dtype, torch.float32)
    bias = None if time_bias is None else time_bias.materialise(dtype)
    probs = attention_probs(q, k, bias, key_mask, compute_dtype=dtype)             # (B, H, Lq, Lk)
    return (probs @ v.to(dtype)).to(q.dtype)


def kernel_available(q: torch.Tensor) -> bool:
    """True when the Triton kernel can run on q: CUDA, or CPU under the Triton interpreter."""
    if os.environ.get("ACTSYNC_TRITON", "1") == "0" or q.dtype not in KERNEL_DTYPES:
        return False
    if not (q.is_cuda or (q.device.type == "cpu" and os.environ.get("TRITON_INTERPRET") == "1")):
        return False
    try:
        import triton  # noqa: F401
    except ImportError:
        return False
    return True


def kernel_inputs(q, k, time_bias: TimeBias | None, key_mask):
    """The kernel's flat description: qt (B, Lq), ks/ke (B, Lk) fp32 windows, kvalid (B, Lk) int8, mode.

    Text mode gives non-phase (base) tokens the empty window [+inf, -inf], so 'inside' is never true for
    them and they are never biased; padding is carried by kvalid alone."""
    B, _, Lq, _ = q.shape
    Lk = k.shape[2]
    dev = q.device
    kvalid = (torch.ones((B, Lk), dtype=torch.int8, device=dev) if key_mask is None
              else key_mask.to(device=dev, dtype=torch.int8).expand(B, Lk).contiguous())
    if time_bias is None:
        zeros_k = torch.zeros((B, Lk), dtype=torch.float32, device=dev)
        return torch.zeros((B, Lq), dtype=torch.float32, device=dev), zeros_k, zeros_k, kvalid, 0
    if time_bias.mode not in ("text", "audio"):
        raise ValueError(f"unknown TimeBias mode {time_bias.mode!r}; use 'text' or 'audio'")
    qt = time_bias.query_time.to(device=dev, dtype=torch.float32).expand(B, Lq).contiguous()
    win = time_bias.key_window.to(device=dev, dtype=torch.float32).expand(B, Lk, 2)
    ks, ke = win[..., 0], win[..., 1]
    if time_bias.mode == "text":
        if time_bias.key_is_phase is None or time_bias.head_weight is None:
            raise ValueError("TimeBias('text') needs key_is_phase (B, Lk) and head_weight (H,)")
        phase = time_bias.key_is_phase.to(dev, torch.bool).expand(B, Lk)
        ks = torch.where(phase, ks, torch.full_like(ks, float("inf")))
        ke = torch.where(phase, ke, torch.full_like(ke, float("-inf")))
    return qt, ks.contiguous(), ke.contiguous(), kvalid, _MODES[time_bias.mode]


class TimeStructuredAttention(torch.autograd.Function):
    """Triton forward/backward; gradients for q, k, v and (text mode) the per-head weight w_h."""

    @staticmethod
    def forward(ctx, q, k, v, head_weight, qt, ks, ke, kvalid, mode: int, blocks):
        from kernels import time_attention_triton as impl
        out, lse = impl.forward(q, k, v, qt, ks, ke, kvalid, head_weight, mode, blocks)
        ctx.save_for_backward(q, k, v, out, lse, qt, ks, ke, kvalid, head_weight)
        ctx.mode, ctx.blocks = mode, blocks
        return out

    @staticmethod
    def backward(ctx, grad_out):
        from kernels import time_attention_triton as impl
        q, k, v, out, lse, qt, ks, ke, kvalid, head_weight = ctx.saved_tensors
        dq, dk, dv, dw = impl.backward(grad_out, q, k, v, out, lse, qt, ks, ke, kvalid, head_weight,
                                       ctx.mode, ctx.blocks)
        dw = dw.to(head_weight.dtype) if ctx.needs_input_grad[3] else None
        return dq, dk, dv, dw, None, None, None, None, None, None


def time_structured_attention(q, k, v, time_bias: TimeBias | None = None, key_mask=None,
                              use_kernel: bool | None = None, blocks: tuple | None = None):
    """q (B, H, Lq, D), k/v (B, H, Lk, D) -> (B, H, Lq, D) in q's dtype.

    use_kernel None = kernel when available, else the reference; True = kernel or a clear error; False =
    reference. blocks (BLOCK_M, BLOCK_N[, SPLIT]) or a kernels.time_attention_triton.Tiles overrides the
    launch configuration (tests use small tiles to cross tile edges; the GPU suite's tile search tries
    several); None = this GPU family's tuned entry (kernels/tuned_tiles.json) or the built-in defaults."""
    if q.dim() != 4 or k.shape[:2] != q.shape[:2] or v.shape != k.shape or k.shape[-1] != q.shape[-1]:
        raise ValueError(f"expected q (B, H, Lq, D), k/v (B, H, Lk, D); got {tuple(q.shape)}, "
                         f"{tuple(k.shape)}, {tuple(v.shape)}")
    available = kernel_available(q)
    if use_kernel and not available:
        raise RuntimeError(f"Triton kernel unavailable for a {q.dtype} tensor on {q.device}: it needs CUDA or "
                           "TRITON_INTERPRET=1 set before import, the triton package, ACTSYNC_TRITON != 0, "
                           f"and a dtype in {KERNEL_DTYPES}")
    if not (available if use_kernel is None else use_kernel):
        return reference_time_attention(q, k, v, time_bias, key_mask)
    qt, ks, ke, kvalid, mode = kernel_inputs(q, k, time_bias, key_mask)
    weight = time_bias.head_weight if mode == 1 else torch.zeros(q.shape[1], device=q.device)
    if weight.shape != (q.shape[1],):
        raise ValueError(f"head_weight must be (H,) = ({q.shape[1]},), got {tuple(weight.shape)}")
    return TimeStructuredAttention.apply(q, k, v, weight, qt, ks, ke, kvalid, mode, blocks)
