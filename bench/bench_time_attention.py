"""Benchmark of the fused time-structured attention kernel (kernels/) against torch SDPA.

At the Wan2.2-TI2V-5B 720p / 5 s shape (B=1, 24 heads, head_dim 128, Lq = 32 latent frames x 880 tokens
= 28,160): text cross-attention with the PACA window bias (Lk = 512: 64 base + 4 phases x 112 tokens,
w_h trained, so the bias needs a gradient) and frame-local audio cross-attention (32 latent frames x 4
audio tokens). Three ways, forward and forward+backward:
  fused       kernels.time_attention (bias built in-kernel, never stored)
  sdpa+bias   what the "sdpa" backend does: TimeBias.materialise() then F.scaled_dot_product_attention
  sdpa        no bias at all: the floor a fused kernel can hope to reach
Reported: median time (CUDA events), achieved TFLOP/s (4·B·H·Lq·Lk·D forward, x3.5 for forward+backward,
flash-attention's convention; dense FLOPs even where the audio kernel skips tiles) and peak memory above
the inputs. A second table varies Lk at fixed Lq to show whether extra memory scales with Lq x Lk.
`--tile-search` also times a handful of launch configurations (tile sizes, warps, stages) of the fused
kernel at the real text shape, forward and backward apart; the winners become this GPU family's defaults
once adopted (`bench/gpu_suite.py --adopt`, kernels/tuned_tiles.json).
Not a test. Needs a CUDA GPU; it is phase b of bench/gpu_suite.py, whose results are committed:

    python bench/bench_time_attention.py [--dtype bf16] [--repeats 20] [--tile-search] [--out DIR/b.json]
    TRITON_INTERPRET=1 python bench/bench_time_attention.py --smoke     # CPU: tiny shapes, checks the script only
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.gpu_env import environment
from common.atomic import atomic_write_text
from kernels.time_attention import time_structured_attention
from kernels.time_attention_triton import Tiles
from models.attention import TimeBias

DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}


def problem(mode: str, Lq: int, Lk: int, frames: int, heads: int, head_dim: int, dtype, device):
    """Inputs of one attention call and its TimeBias; the head weight w_h requires grad in text mode."""
    g = torch.Generator(device="cpu").manual_seed(0)
    q, k, v = (torch.randn(1, heads, L, head_dim, generator=g).to(device, dtype) for L in (Lq, Lk, Lk))
    query_time = (torch.arange(Lq) * frames // Lq / max(frames - 1, 1)).to(device)[None]   # (1, Lq)
    if mode == "text":
        base = min(64, Lk // 8)
        phase = (torch.arange(Lk) - base).clamp(min=0) * 4 // max(Lk - base, 1)          # 4 phases
        start = torch.where(torch.arange(Lk) < base, 0.0, phase / 4.0)
        window = torch.stack([start, start + 0.25], -1)[None].to(device)
        is_phase = (torch.arange(Lk) >= base)[None].to(device)
        weight = torch.full((heads,), 0.5, device=device, requires_grad=True)
        bias = TimeBias("text", query_time, window, is_phase, weight)
    else:
        frame = (torch.arange(Lk) * frames // Lk / max(frames - 1, 1)).to(device)
        bias = TimeBias("audio", query_time, torch.stack([frame, frame], -1)[None])
    return q, k, v, bias


# Candidate launch configurations for head_dim 128 (the 5B model's); the built-in default is the first.
TILE_CANDIDATES = [Tiles(64, 64, 8, 2), Tiles(128, 64, 8, 2), Tiles(128, 64, 8, 3), Tiles(64, 128, 8, 2),
                   Tiles(128, 32, 4, 3), Tiles(64, 32, 4, 2)]


def run_method(method: str, q, k, v, bias: TimeBias, tiles: Tiles | None = None):
    if method == "fused":
        return time_structured_attention(q, k, v, bias, use_kernel=True, blocks=tiles)
    if method == "sdpa+bias":
        return F.scaled_dot_product_attention(q, k, v, attn_mask=bias.materialise(q.dtype))
    return F.scaled_dot_product_attention(q, k, v)


def _sync(device):
    if device == "cuda":
        torch.cuda.synchronize()


def time_call(fn, device: str, repeats: int, warmup: int = 3) -> float:
    """Median seconds of fn() (CUDA events on GPU, wall clock on CPU)."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        if device == "cuda":
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            torch.cuda.synchronize()
            times.append(start.elapsed_time(end) / 1e3)
        else:
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
    return statistics.median(times)


def peak_extra_bytes(fn, device: str) -> int | None:
    """Peak allocated bytes during fn() above what was allocated before it (inputs excluded)."""
    if device != "cuda":
        return None
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    before = torch.cuda.memory_allocated()
    fn()
    torch.cuda.synchronize()
    return torch.cuda.max_memory_allocated() - before


def measure(method, mode, shape, dtype, device, repeats, warmup=3, tiles=None) -> dict:
    q, k, v, bias = problem(mode, **shape, dtype=dtype, device=device)
    leaves = [x.requires_grad_() for x in (q, k, v)]
    grad = torch.randn_like(q)

    def forward():
        with torch.no_grad():
            return run_method(method, *leaves, bias, tiles)

    def forward_backward():
        out = run_method(method, *leaves, bias, tiles)
        out.backward(grad)
        for x in leaves + [bias.head_weight]:
            if x is not None:
                x.grad = None

    flops = 4 * q.shape[0] * q.shape[1] * q.shape[2] * k.shape[2] * q.shape[3]
    row = {"method": method, "mode": mode, **shape}
    for name, fn, mult in (("fwd", forward, 1.0), ("fwd_bwd", forward_backward, 3.5)):
        seconds = time_call(fn, device, repeats, warmup)
        row[f"{name}_ms"] = round(seconds * 1e3, 3)
        row[f"{name}_tflops"] = round(flops * mult / seconds / 1e12, 2)
        mem = peak_extra_bytes(fn, device)
        row[f"{name}_peak_extra_mib"] = None if mem is None else round(mem / 2 ** 20, 1)
    if tiles is not None:
        row["tiles"] = list(tiles)
        row["output"] = forward().float()
    return row


def tile_search(shape: dict, dtype, device, repeats, warmup, candidates) -> dict:
    """Time each candidate (text mode, the real shape); forward and backward winners chosen apart
    (backward = fwd+bwd - fwd). A candidate whose output differs from the first's by more than the
    dtype's tolerance is reported and never chosen; one that fails to compile or launch is skipped."""
    rows, reference = [], None
    for tiles in candidates:
        try:
            row = measure("fused", "text", shape, dtype, device, repeats, warmup, tiles)
        except Exception as error:
            rows.append({"tiles": list(tiles), "error": f"{type(error).__name__}: {str(error)[:200]}"})
            continue
        out = row.pop("output")
        reference = out if reference is None else reference
        row["max_abs_diff_vs_first"] = float((out - reference).abs().max())
        row["ok"] = row["max_abs_diff_vs_first"] <= (2e-2 if dtype == torch.bfloat16 else 2e-3) * max(1.0, float(reference.abs().max()))
        row["bwd_ms"] = round(row["fwd_bwd_ms"] - row["fwd_ms"], 3)
        rows.append(row)
    good = [r for r in rows if r.get("ok")]
    if not good:
        return {"rows": rows, "winner": None}
    fwd, bwd = min(good, key=lambda r: r["fwd_ms"]), min(good, key=lambda r: r["bwd_ms"])
    first = good[0]
    return {"rows": rows, "winner": {"fwd": fwd["tiles"], "bwd": bwd["tiles"], "head_dim": shape["head_dim"],
                                     "fwd_speedup_vs_default": round(first["fwd_ms"] / fwd["fwd_ms"], 3),
                                     "bwd_speedup_vs_default": round(first["bwd_ms"] / bwd["bwd_ms"], 3)}}

def device_name(device: str) -> str:
    if device == "cuda":
        return torch.cuda.get_device_name()
    return f"{platform.processor() or platform.machine()} CPU (Triton interpreter: times are not kernel speed)"


def markdown(result: dict) -> str:
    lines = [f"# Fused time-structured attention vs SDPA — {result['device']}", "",
             f"dtype {result['dtype']}, torch {result['torch']}, triton {result['triton']}, commit "
             f"{result['environment']['commit']}, driver {result['environment'].get('driver')}; median of "
             f"{result['repeats']} runs; wall {result['wall_s']} s.", "",
             "| mode | Lq | Lk | method | fwd ms | fwd TFLOP/s | fwd+bwd ms | fwd+bwd TFLOP/s | peak extra MiB (fwd+bwd) |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in result["rows"]:
        lines.append(f"| {r['mode']} | {r['Lq']} | {r['Lk']} | {r['method']} | {r['fwd_ms']} | {r['fwd_tflops']} | "
                     f"{r['fwd_bwd_ms']} | {r['fwd_bwd_tflops']} | {r['fwd_bwd_peak_extra_mib']} |")
    lines += ["", "Ratios at the real shape (fwd+bwd time):"]
    for mode, ratios in result["ratios"].items():
        lines.append(f"- {mode}: sdpa+bias / fused = {ratios['speedup_vs_sdpa_bias']}x (target >= 1.5), "
                     f"fused / sdpa = {ratios['fused_over_sdpa']}x (target <= 1.3)")
    search = result.get("tile_search")
    if search:
        lines += ["", "Tile search (text mode, real shape; tiles = BLOCK_M, BLOCK_N, warps, stages):", "",
                  "| tiles | fwd ms | bwd ms | fwd+bwd ms | max diff vs first | ok |", "|---|---|---|---|---|---|"]
        for r in search["rows"]:
            if "error" in r:
                lines.append(f"| {r['tiles']} | failed: {r['error']} | | | | no |")
            else:
                lines.append(f"| {r['tiles']} | {r['fwd_ms']} | {r['bwd_ms']} | {r['fwd_bwd_ms']} | "
                             f"{r['max_abs_diff_vs_first']:.2e} | {'yes' if r['ok'] else 'NO'} |")
        w = search["winner"]
        lines += ["", "Winner: none (no candidate ran correctly)" if w is None else
                  f"Winner: forward {w['fwd']} ({w['fwd_speedup_vs_default']}x the default), "
                  f"backward {w['bwd']} ({w['bwd_speedup_vs_default']}x the default)"]
    return "\n".join(lines) + "\n"


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--dtype", choices=sorted(DTYPES), default="bf16")
    p.add_argument("--repeats", type=int, default=20)
    p.add_argument("--smoke", action="store_true", help="tiny shapes on CPU (Triton interpreter): script check only")
    p.add_argument("--tile-search", action="store_true", help="also time the TILE_CANDIDATES launch configurations")
    p.add_argument("--out", default=None, help="results JSON (a .md is written beside it)")
    args = p.parse_args(argv)
    began = time.perf_counter()
    device = "cpu" if args.smoke else "cuda"
    if device == "cuda" and not torch.cuda.is_available():
        sys.exit("bench_time_attention: needs a CUDA GPU (use --smoke on CPU to check the script)")
    dtype = torch.float32 if args.smoke else DTYPES[args.dtype]
    if args.smoke:
        real = {"text": dict(Lq=96, Lk=40, frames=4, heads=2, head_dim=32),
                "audio": dict(Lq=96, Lk=16, frames=4, heads=2, head_dim=32)}
        scaling = [dict(real["text"], Lk=lk) for lk in (24, 64)]
    else:
        real = {"text": dict(Lq=28160, Lk=512, frames=32, heads=24, head_dim=128),
                "audio": dict(Lq=28160, Lk=128, frames=32, heads=24, head_dim=128)}
        scaling = [dict(real["text"], Lk=lk) for lk in (128, 1024, 2048)]
    repeats, warmup = (1, 0) if args.smoke else (args.repeats, 3)
    rows, ratios = [], {}
    for mode, shape in real.items():
        by_method = {m: measure(m, mode, shape, dtype, device, repeats, warmup) for m in ("fused", "sdpa+bias", "sdpa")}
        rows += by_method.values()
        ratios[mode] = {"speedup_vs_sdpa_bias": round(by_method["sdpa+bias"]["fwd_bwd_ms"] / by_method["fused"]["fwd_bwd_ms"], 2),
                        "fused_over_sdpa": round(by_method["fused"]["fwd_bwd_ms"] / by_method["sdpa"]["fwd_bwd_ms"], 2)}
        print(json.dumps(list(by_method.values())), flush=True)
    for shape in scaling:
        rows += [measure(m, "text", shape, dtype, device, repeats, warmup) for m in ("fused", "sdpa+bias")]
    import triton
    result = {"device": device_name(device), "dtype": str(dtype), "torch": torch.__version__,
              "triton": triton.__version__, "repeats": repeats, "rows": rows, "ratios": ratios}
    if args.tile_search:
        candidates = [Tiles(32, 16), Tiles(16, 16)] if args.smoke else TILE_CANDIDATES
        result["tile_search"] = tile_search(real["text"], dtype, device, repeats, warmup, candidates)
    result.update(environment=environment(), wall_s=round(time.perf_counter() - began, 1))
    text = markdown(result)  # rendered before either file is written, so a rendering error leaves no half pair
    if args.out:
        out = Path(args.out)
        atomic_write_text(out, json.dumps(result, indent=1))
        atomic_write_text(out.with_suffix(".md"), text)
    print(text)
    return result


if __name__ == "__main__":
    main()
