"""Triton kernels for time-structured cross-attention (ActAvatar PACA text bias, frame-local audio).

Computes softmax(Q Kᵀ/√d + B) V where B is never stored: each program rebuilds its (BLOCK_M x BLOCK_N)
tile of B from per-query normalised frame times and per-key windows [start, end]:
  MODE_TEXT : + w_h where start <= t_q < end (non-phase tokens get an empty window, so no bias);
  MODE_AUDIO: -inf unless start - EPS <= t_q <= end + EPS (frame-local attention);
  MODE_NONE : no bias; in every mode invalid (padded) keys are -inf.
Flash-attention-2 structure (online softmax, base-2 exponent, one log-sum-exp per row saved for the
backward), a row-sum(dO*O) pre-pass, a dK/dV kernel that loops over queries (optionally split over Lq
into fp32 partials so short key sequences still fill the GPU) and a dQ kernel that loops over keys and
also reduces dL/dw_h per (batch, head, query block). Audio mode skips key tiles whose windows miss the
query tile's time range, so frame-local attention costs ~O(Lq x keys-per-frame), not O(Lq x Lk).
Trade-off: the tile mask is recomputed three times (fwd, dK/dV, dQ) instead of being read from memory:
a few compares per logit against Lq x Lk x H bytes of traffic and storage.

Rows whose every key is masked output 0 and get zero gradients (their LSE is stored as +inf).
Under TRITON_INTERPRET=1 (CPU) bf16 maths is broken, so UPCAST converts every load to fp32 there.
Use through kernels.time_attention, which holds the pure-torch reference and the autograd Function.
"""
from __future__ import annotations

import functools
import json
import os
from pathlib import Path
from typing import NamedTuple

import torch
import triton
import triton.language as tl

MODE_NONE, MODE_TEXT, MODE_AUDIO = 0, 1, 2
LOG2E = 1.4426950408889634
INTERPRET = os.environ.get("TRITON_INTERPRET", "0") == "1"


@triton.jit
def _inside(t, ks, ke, MODE: tl.constexpr):
    """(BLOCK_M, BLOCK_N) bool: query time t inside key window [ks, ke] (half-open for text)."""
    tq = t[:, None]
    if MODE == 2:
        return (tq >= ks[None, :] - 1e-6) & (tq <= ke[None, :] + 1e-6)
    return (tq >= ks[None, :]) & (tq < ke[None, :])


@triton.jit
def _tile_active(t, m_ok, ks, ke, valid, MODE: tl.constexpr):
    """Scalar: does any key of this tile receive probability from any query of the tile?"""
    if MODE == 2:
        tmin = tl.min(tl.where(m_ok, t, float("inf")), 0)
        tmax = tl.max(tl.where(m_ok, t, float("-inf")), 0)
        hit = valid & (ks - 1e-6 <= tmax) & (ke + 1e-6 >= tmin)
    else:
        hit = valid
    return tl.max(hit.to(tl.int32), 0) > 0


@triton.jit
def _logits(q, k, t, ks, ke, valid, w2, scale2, MODE: tl.constexpr, PREC: tl.constexpr):
    """Base-2 logits (BLOCK_M, BLOCK_N): log2(e) * (q·k/√d + bias), -inf where masked."""
    s = tl.dot(q, tl.trans(k), input_precision=PREC) * scale2
    if MODE == 1:
        s = s + tl.where(_inside(t, ks, ke, MODE), w2, 0.0)
    if MODE == 2:
        s = tl.where(_inside(t, ks, ke, MODE), s, float("-inf"))
    return tl.where(valid[None, :], s, float("-inf"))


@triton.jit
def _head_weight_log2(W, h, MODE: tl.constexpr):
    """log2(e) * w_h in text mode (logits are base 2), else 0."""
    w2 = 0.0
    if MODE == 1:
        w2 = tl.load(W + h).to(tl.float32) * 1.4426950408889634
    return w2


@triton.jit
def _query_tile(H, Lq, D, BLOCK_M: tl.constexpr, BLOCK_D: tl.constexpr):
    """A query-tile program's indices: grid (query tiles, B * H)."""
    pid_m, pid_bh = tl.program_id(0), tl.program_id(1)
    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_d = tl.arange(0, BLOCK_D)
    return pid_m, pid_bh, pid_bh // H, pid_bh % H, offs_m, offs_d, offs_m < Lq, offs_d < D


@triton.jit
def _load_rows(ptr, offs, ok, offs_d, d_ok, stride_l, stride_d, UPCAST: tl.constexpr):
    x = tl.load(ptr + offs[:, None] * stride_l + offs_d[None, :] * stride_d,
                mask=ok[:, None] & d_ok[None, :], other=0.0)
    if UPCAST:
        x = x.to(tl.float32)
    return x


@triton.jit
def _load_keys(KS, KE, KV, b, offs_n, Lk):
    n_ok = offs_n < Lk
    ks = tl.load(KS + b * Lk + offs_n, mask=n_ok, other=0.0)
    ke = tl.load(KE + b * Lk + offs_n, mask=n_ok, other=0.0)
    valid = tl.load(KV + b * Lk + offs_n, mask=n_ok, other=0) != 0
    return n_ok, ks, ke, valid


@triton.jit
def _fwd_kernel(Q, K, V, O, LSE, QT, KS, KE, KV, W,
                sqb, sqh, sqm, sqd, skb, skh, skn, skd, svb, svh, svn, svd, sob, soh, som, sod,
                H, Lq, Lk, D, scale2,
                MODE: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr,
                UPCAST: tl.constexpr, PREC: tl.constexpr):
    pid_m, pid_bh, b, h, offs_m, offs_d, m_ok, d_ok = _query_tile(H, Lq, D, BLOCK_M, BLOCK_D)
    q = _load_rows(Q + b * sqb + h * sqh, offs_m, m_ok, offs_d, d_ok, sqm, sqd, UPCAST)
    t = tl.load(QT + b * Lq + offs_m, mask=m_ok, other=0.0)
    w2 = _head_weight_log2(W, h, MODE)
    m_i = tl.full([BLOCK_M], float("-inf"), tl.float32)
    l_i = tl.zeros([BLOCK_M], tl.float32)
    acc = tl.zeros([BLOCK_M, BLOCK_D], tl.float32)
    for start_n in range(0, Lk, BLOCK_N):
        offs_n = start_n + tl.arange(0, BLOCK_N)
        n_ok, ks, ke, valid = _load_keys(KS, KE, KV, b, offs_n, Lk)
        if _tile_active(t, m_ok, ks, ke, valid, MODE):
            k = _load_rows(K + b * skb + h * skh, offs_n, n_ok, offs_d, d_ok, skn, skd, UPCAST)
            v = _load_rows(V + b * svb + h * svh, offs_n, n_ok, offs_d, d_ok, svn, svd, UPCAST)
            s = _logits(q, k, t, ks, ke, valid, w2, scale2, MODE, PREC)
            m_new = tl.maximum(m_i, tl.max(s, 1))
            m_safe = tl.where(m_new == float("-inf"), 0.0, m_new)  # all-masked so far: keep p = 0, no NaN
            p = tl.math.exp2(s - m_safe[:, None])
            alpha = tl.math.exp2(m_i - m_safe)
            l_i = l_i * alpha + tl.sum(p, 1)
            acc = acc * alpha[:, None] + tl.dot(p.to(v.dtype), v, input_precision=PREC)
            m_i = m_new
    empty = l_i == 0.0
    out = acc / tl.where(empty, 1.0, l_i)[:, None]
    tl.store(O + b * sob + h * soh + offs_m[:, None] * som + offs_d[None, :] * sod,
             out.to(O.dtype.element_ty), mask=m_ok[:, None] & d_ok[None, :])
    lse = tl.where(empty, float("inf"), m_i + tl.math.log2(tl.where(empty, 1.0, l_i)))
    tl.store(LSE + pid_bh * Lq + offs_m, lse, mask=m_ok)


@triton.jit
def _delta_kernel(O, DO, DELTA, sob, soh, som, sod, sdb, sdh, sdm, sdd, H, Lq, D,
                  BLOCK_M: tl.constexpr, BLOCK_D: tl.constexpr):
    """delta = rowsum(dO * O) in fp32: the softmax backward's per-row correction."""
    pid_m, pid_bh, b, h, offs_m, offs_d, m_ok, d_ok = _query_tile(H, Lq, D, BLOCK_M, BLOCK_D)
    o = _load_rows(O + b * sob + h * soh, offs_m, m_ok, offs_d, d_ok, som, sod, True)
    do = _load_rows(DO + b * sdb + h * sdh, offs_m, m_ok, offs_d, d_ok, sdm, sdd, True)
    tl.store(DELTA + pid_bh * Lq + offs_m, tl.sum(o * do, 1), mask=m_ok)


@triton.jit
def _dkdv_kernel(Q, K, V, DO, LSE, DELTA, QT, KS, KE, KV, W, DK, DV,
                 sqb, sqh, sqm, sqd, skb, skh, skn, skd, svb, svh, svn, svd, sdb, sdh, sdm, sdd,
                 H, Lq, Lk, D, scale, scale2, rows_per_split,
                 MODE: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr,
                 UPCAST: tl.constexpr, PREC: tl.constexpr):
    """One key tile: dV = Σ_q Pᵀ dO, dK = Σ_q dSᵀ Q · scale over its share of the queries.
    DK/DV are fp32 partials (SPLIT, B, H, Lk, D), contiguous, summed over SPLIT by the caller."""
    pid_n, pid_s, pid_bh = tl.program_id(0), tl.program_id(1), tl.program_id(2)
    b, h = pid_bh // H, pid_bh % H
    offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    offs_d = tl.arange(0, BLOCK_D)
    d_ok = offs_d < D
    n_ok, ks, ke, valid = _load_keys(KS, KE, KV, b, offs_n, Lk)
    k = _load_rows(K + b * skb + h * skh, offs_n, n_ok, offs_d, d_ok, skn, skd, UPCAST)
    v = _load_rows(V + b * svb + h * svh, offs_n, n_ok, offs_d, d_ok, svn, svd, UPCAST)
    w2 = _head_weight_log2(W, h, MODE)
    dk = tl.zeros([BLOCK_N, BLOCK_D], tl.float32)
    dv = tl.zeros([BLOCK_N, BLOCK_D], tl.float32)
    m_lo = pid_s * rows_per_split
    m_hi = tl.minimum(m_lo + rows_per_split, Lq)
    for start_m in range(m_lo, m_hi, BLOCK_M):
        offs_m = start_m + tl.arange(0, BLOCK_M)
        m_ok = offs_m < m_hi
        t = tl.load(QT + b * Lq + offs_m, mask=m_ok, other=0.0)
        if _tile_active(t, m_ok, ks, ke, valid, MODE):
            q = _load_rows(Q + b * sqb + h * sqh, offs_m, m_ok, offs_d, d_ok, sqm, sqd, UPCAST)
            do = _load_rows(DO + b * sdb + h * sdh, offs_m, m_ok, offs_d, d_ok, sdm, sdd, UPCAST)
            lse = tl.load(LSE + pid_bh * Lq + offs_m, mask=m_ok, other=float("inf"))
            delta = tl.load(DELTA + pid_bh * Lq + offs_m, mask=m_ok, other=0.0)
            s = _logits(q, k, t, ks, ke, valid, w2, scale2, MODE, PREC)
            p = tl.math.exp2(s - lse[:, None])                               # (BLOCK_M, BLOCK_N)
            dv += tl.dot(tl.trans(p.to(do.dtype)), do, input_precision=PREC)
            dp = tl.dot(do, tl.trans(v), input_precision=PREC)
            ds = p * (dp - delta[:, None])
            dk += tl.dot(tl.trans(ds.to(q.dtype)), q, input_precision=PREC)
    base = (pid_s * tl.num_programs(2) + pid_bh) * Lk * D  # partial [pid_s, b, h] of (SPLIT, B, H, Lk, D)
    ptrs = base + offs_n[:, None] * D + offs_d[None, :]
    ok = n_ok[:, None] & d_ok[None, :]
    tl.store(DK + ptrs, dk * scale, mask=ok)
    tl.store(DV + ptrs, dv, mask=ok)


@triton.jit
def _dq_kernel(Q, K, V, DO, LSE, DELTA, QT, KS, KE, KV, W, DQ, DW,
               sqb, sqh, sqm, sqd, skb, skh, skn, skd, svb, svh, svn, svd, sdb, sdh, sdm, sdd,
               sgb, sgh, sgm, sgd,
               H, Lq, Lk, D, scale, scale2,
               MODE: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr,
               UPCAST: tl.constexpr, PREC: tl.constexpr):
    """One query tile: dQ = Σ_k dS K · scale; in text mode also Σ dS over in-window logits -> DW[b, h, m]."""
    pid_m, pid_bh, b, h, offs_m, offs_d, m_ok, d_ok = _query_tile(H, Lq, D, BLOCK_M, BLOCK_D)
    q = _load_rows(Q + b * sqb + h * sqh, offs_m, m_ok, offs_d, d_ok, sqm, sqd, UPCAST)
    do = _load_rows(DO + b * sdb + h * sdh, offs_m, m_ok, offs_d, d_ok, sdm, sdd, UPCAST)
    t = tl.load(QT + b * Lq + offs_m, mask=m_ok, other=0.0)
    lse = tl.load(LSE + pid_bh * Lq + offs_m, mask=m_ok, other=float("inf"))
    delta = tl.load(DELTA + pid_bh * Lq + offs_m, mask=m_ok, other=0.0)
    w2 = _head_weight_log2(W, h, MODE)
    dq = tl.zeros([BLOCK_M, BLOCK_D], tl.float32)
    dw = tl.zeros([BLOCK_M], tl.float32)
    for start_n in range(0, Lk, BLOCK_N):
        offs_n = start_n + tl.arange(0, BLOCK_N)
        n_ok, ks, ke, valid = _load_keys(KS, KE, KV, b, offs_n, Lk)
        if _tile_active(t, m_ok, ks, ke, valid, MODE):
            k = _load_rows(K + b * skb + h * skh, offs_n, n_ok, offs_d, d_ok, skn, skd, UPCAST)
            v = _load_rows(V + b * svb + h * svh, offs_n, n_ok, offs_d, d_ok, svn, svd, UPCAST)
            s = _logits(q, k, t, ks, ke, valid, w2, scale2, MODE, PREC)
            p = tl.math.exp2(s - lse[:, None])
            dp = tl.dot(do, tl.trans(v), input_precision=PREC)
            ds = p * (dp - delta[:, None])                                  # dL/dlogit (natural units)
            dq += tl.dot(ds.to(k.dtype), k, input_precision=PREC)
            if MODE == 1:
                dw += tl.sum(tl.where(_inside(t, ks, ke, MODE), ds, 0.0), 1)
    tl.store(DQ + b * sgb + h * sgh + offs_m[:, None] * sgm + offs_d[None, :] * sgd,
             (dq * scale).to(DQ.dtype.element_ty), mask=m_ok[:, None] & d_ok[None, :])
    if MODE == 1:
        tl.store(DW + pid_bh * tl.num_programs(0) + pid_m, tl.sum(tl.where(m_ok, dw, 0.0), 0))


# ------------------------------------------------------------------------------------------ launchers

class Tiles(NamedTuple):
    """One launch configuration: tile sizes, warps, pipeline stages, and (backward) the dK/dV query split
    (None = chosen from the SM count)."""
    block_m: int
    block_n: int
    num_warps: int = 4
    num_stages: int = 2
    split: int | None = None


# Per-GPU-family winners of the GPU suite's tile search (bench/gpu_suite.py phase b; `--adopt` writes
# this file from a results directory): {"sm90": {"d128": {"fwd": [...], "bwd": [...], "source": ...}}}.
TUNED_TILES_FILE = Path(__file__).with_name("tuned_tiles.json")


def gpu_family(device=None) -> str:
    """'sm90' for an H100/H200, 'sm80' for an A100, ...: the key of TUNED_TILES_FILE."""
    major, minor = torch.cuda.get_device_capability(device)
    return f"sm{major}{minor}"


def head_dim_key(head_dim: int) -> str:
    return "d64" if head_dim <= 64 else "d128"


@functools.cache
def _tuned(family: str, dim_key: str, which: str) -> Tiles | None:
    try:
        entry = json.loads(TUNED_TILES_FILE.read_text()).get(family, {}).get(dim_key, {}).get(which)
    except (OSError, ValueError):
        return None
    return Tiles(*entry) if entry else None


def _tiles(q, blocks, which: str) -> Tiles:
    """The launch configuration: a caller's Tiles or (BLOCK_M, BLOCK_N[, SPLIT]) tuple wins (tests cross
    tile edges with it); then this GPU family's tuned entry; then the built-in defaults."""
    head_dim = q.shape[-1]
    if isinstance(blocks, Tiles):
        return blocks
    if blocks is not None:
        return Tiles(blocks[0], blocks[1], split=blocks[2] if len(blocks) > 2 else None)
    if INTERPRET:
        return Tiles(64, 32)   # few, large tiles: the interpreter's cost is per tile, not per flop
    tuned = _tuned(gpu_family(q.device), head_dim_key(head_dim), which) if q.is_cuda else None
    if tuned is not None:
        return tuned
    return Tiles(128, 64, 4, 2) if head_dim <= 64 else Tiles(64, 64, 8, 2)


def _launch_opts(tiles: Tiles):
    return {} if INTERPRET else {"num_warps": tiles.num_warps, "num_stages": tiles.num_stages}


def _common(q, mode):
    d = q.shape[-1]
    return dict(MODE=mode, BLOCK_D=max(16, triton.next_power_of_2(d)), UPCAST=INTERPRET or q.dtype == torch.float32,
                PREC="ieee" if q.dtype == torch.float32 else None)


def _strides(*tensors):
    return [s for x in tensors for s in x.stride()]


def forward(q, k, v, qt, ks, ke, kvalid, w, mode: int, blocks=None):
    """q (B, H, Lq, D), k/v (B, H, Lk, D); qt (B, Lq) fp32; ks/ke (B, Lk) fp32; kvalid (B, Lk) int8;
    w (H,) -> out (B, H, Lq, D) in q's dtype, lse (B, H, Lq) fp32 (base 2, +inf for empty rows)."""
    B, H, Lq, D = q.shape
    Lk = k.shape[2]
    tiles = _tiles(q, blocks, "fwd")
    bm, bn = tiles.block_m, tiles.block_n
    out = torch.empty_like(q)
    lse = torch.empty((B, H, Lq), dtype=torch.float32, device=q.device)
    grid = (triton.cdiv(Lq, bm), B * H)
    _fwd_kernel[grid](q, k, v, out, lse, qt, ks, ke, kvalid, w, *_strides(q, k, v, out), H, Lq, Lk, D,
                      LOG2E / D ** 0.5, BLOCK_M=bm, BLOCK_N=bn, **_common(q, mode), **_launch_opts(tiles))
    return out, lse


def _splits(q, num_key_tiles: int, num_query_tiles: int) -> int:
    """Split the query loop of the dK/dV kernel until there are ~4 programs per SM (short key sequences)."""
    if not q.is_cuda:
        return 1
    sms = torch.cuda.get_device_properties(q.device).multi_processor_count
    have = num_key_tiles * q.shape[0] * q.shape[1]
    return max(1, min(num_query_tiles, -(-4 * sms // have)))


def backward(do, q, k, v, out, lse, qt, ks, ke, kvalid, w, mode: int, blocks=None):
    """-> dq, dk, dv (input dtypes), dw (H,) fp32 (zeros unless text mode)."""
    B, H, Lq, D = q.shape
    Lk = k.shape[2]
    tiles = _tiles(q, blocks, "bwd")
    bm, bn = tiles.block_m, tiles.block_n
    common = _common(q, mode)
    delta = torch.empty((B, H, Lq), dtype=torch.float32, device=q.device)
    _delta_kernel[(triton.cdiv(Lq, bm), B * H)](out, do, delta, *_strides(out, do), H, Lq, D,
                                                BLOCK_M=bm, BLOCK_D=common["BLOCK_D"])
    n_q_tiles, n_k_tiles = triton.cdiv(Lq, bm), triton.cdiv(Lk, bn)
    split = tiles.split or _splits(q, n_k_tiles, n_q_tiles)
    rows = triton.cdiv(n_q_tiles, split) * bm
    split = triton.cdiv(Lq, rows)
    dk_part = torch.empty((split, B, H, Lk, D), dtype=torch.float32, device=q.device)
    dv_part = torch.empty_like(dk_part)
    scale = 1.0 / D ** 0.5
    _dkdv_kernel[(n_k_tiles, split, B * H)](q, k, v, do, lse, delta, qt, ks, ke, kvalid, w, dk_part, dv_part,
                                            *_strides(q, k, v, do), H, Lq, Lk, D, scale, scale * LOG2E, rows,
                                            BLOCK_M=bm, BLOCK_N=bn, **common, **_launch_opts(tiles))
    dq = torch.empty_like(q)
    dw_part = torch.zeros((B, H, n_q_tiles), dtype=torch.float32, device=q.device)
    _dq_kernel[(n_q_tiles, B * H)](q, k, v, do, lse, delta, qt, ks, ke, kvalid, w, dq, dw_part,
                                   *_strides(q, k, v, do, dq), H, Lq, Lk, D, scale, scale * LOG2E,
                                   BLOCK_M=bm, BLOCK_N=bn, **common, **_launch_opts(tiles))
    dk = dk_part.sum(0).to(k.dtype) if split > 1 else dk_part[0].to(k.dtype)
    dv = dv_part.sum(0).to(v.dtype) if split > 1 else dv_part[0].to(v.dtype)
    return dq, dk, dv, dw_part.sum((0, 2))
