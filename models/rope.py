"""3D rotary position embedding of Wan2.1/2.2 self-attention (t, h, w axes).

Each head's channels are split into three groups rotated by the token's frame, row and column index:
for head_dim d the split is (d - 4*(d//6), 2*(d//6), 2*(d//6)), i.e. 44/42/42 at d = 128, each axis with
its own frequency ladder theta^(-2i/d_axis). Pairs are interleaved (x[2i], x[2i+1]) as in the original
complex-number code and diffusers' `repeat_interleave_real`. Angles are computed in float64 (as Wan does)
then turned once per forward into one complex64 table (cos + i sin) applied in the activations' precision
promoted to fp32.
Trade-off: tables are rebuilt per forward from the grid size (cheap next to attention) instead of cached,
so any (F, H, W) works without a max-size buffer in the state dict.
"""
from __future__ import annotations

import torch


def rope_axis_dims(head_dim: int) -> tuple[int, int, int]:
    if head_dim % 2:
        raise ValueError(f"RoPE needs an even head_dim (got {head_dim})")
    hw = 2 * (head_dim // 6)
    return head_dim - 2 * hw, hw, hw


def _axis_angles(positions: torch.Tensor, dim: int, theta: float) -> torch.Tensor:
    """positions (N,) -> angles (N, dim/2) in float64."""
    freqs = 1.0 / theta ** (torch.arange(0, dim, 2, dtype=torch.float64) / dim)
    return positions.to(torch.float64)[:, None] * freqs[None]


def rope_angles(grid: tuple[int, int, int], head_dim: int, theta: float = 10000.0,
                device=None) -> torch.Tensor:
    """Angles for every token of an (F, H, W) token grid in (f, h, w) order: (F*H*W, head_dim/2) float64."""
    F, H, W = grid
    d_t, d_h, d_w = rope_axis_dims(head_dim)
    a_t = _axis_angles(torch.arange(F, device=device), d_t, theta)[:, None, None].expand(F, H, W, -1)
    a_h = _axis_angles(torch.arange(H, device=device), d_h, theta)[None, :, None].expand(F, H, W, -1)
    a_w = _axis_angles(torch.arange(W, device=device), d_w, theta)[None, None, :].expand(F, H, W, -1)
    return torch.cat([a_t, a_h, a_w], -1).reshape(F * H * W, head_dim // 2)


def rope_tables(angles: torch.Tensor) -> tuple[torch.Tensor]:
    """(cos + i sin,) as complex64 (L, D/2), computed once per forward and shared by every block. A 1-tuple of
    row-indexed tables, so a sequence-parallel shard slices its rows like any other per-token table."""
    return (torch.complex(angles.cos().float(), angles.sin().float()),)


def apply_rope(x: torch.Tensor, tables: tuple[torch.Tensor]) -> torch.Tensor:
    """Rotate interleaved channel pairs: x (B, H, L, D), tables 1 x (L, D/2) complex -> same shape and dtype.

    The pair (x[2i], x[2i+1]) read as one complex number times cos + i sin (Wan's own formulation): one
    complex multiply instead of six real element-wise ops and a stack, forward and backward (the DiT step's
    element-wise share, issue 15 Deliver 2a); equal to the real-arithmetic rotation to fp32 rounding."""
    dtype = torch.promote_types(x.dtype, torch.float32)
    (rot,) = tables
    pairs = x.to(dtype).unflatten(-1, (-1, 2))                     # (B, H, L, D/2, 2)
    # view_as_complex needs unit-stride pairs, every other stride and the offset even (a strided q / k view,
    # as split_heads gives, qualifies: no copy); anything else is copied once.
    if pairs.stride(-1) != 1 or any(s % 2 for s in pairs.stride()[:-1]) or pairs.storage_offset() % 2:
        pairs = pairs.contiguous()
    out = torch.view_as_real(torch.view_as_complex(pairs) * rot)  # (B, H, L, D/2, 2)
    return out.flatten(-2).to(x.dtype)
