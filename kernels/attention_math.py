"""The maths under the attention entry point: additive masks, fp32 probabilities and time-structured biases.

Pure torch and free of backends, so both models/attention.py (the entry point and its backends) and the
fused kernel's reference (kernels/time_attention.py) build on it without importing each other; it sits in
kernels/ because kernels/ is the lower layer (models/ imports kernels/, never the reverse).
ActAvatar §3.2: `TimeBias` describes the phase-window bias of text cross-attention and the frame-local
mask of audio cross-attention by their ingredients (query times, key windows, per-head weights); stock
backends materialise it, the fused kernel rebuilds it per tile. Trade-off: `materialise` costs
Lq x Lk x H memory, which is exactly what the fused 'triton' backend avoids.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch


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
