"""Our DiT against diffusers' WanTransformer3DModel on the same weights and shapes (issue 15, Deliver 2a).

Both models are built in one process with identical weights (diffusers' random init converted by
models/convert.py, checked to give the same output first), then timed forward+backward interleaved —
ours, theirs, ours, theirs, ... — so a slow-down of the machine hits both sides alike; the median of
each side and their ratio are reported. With --compile, `torch.compile(ours)` (inductor, CPU C++) is
timed in the same rounds and checked against eager. Plain Wan blocks (no adapters): that is what both
implement. Run it alone on an idle machine:

    python bench/bench_dit_vs_diffusers.py [--presets demo synth] [--batch 8] [--rounds 7] [--compile]
        [--profile] [--out bench/results/dit_vs_diffusers_cpu.json]

With --profile each side's step is split (torch.profiler) into the matmul + attention kernels both share
and everything else; `ceiling_vs_diffusers` is the speed-up ours would reach if everything else were free.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.bench_synthavatar import machine
from common.atomic import atomic_write_text
from models.contracts import Conditions
from models.convert import to_wan_keys
from models.dit import WanDiT
from models.dit_config import preset_config

TEXT_DIM, TEXT_LEN = 384, 100  # MiniLM width, a typical SynthAvatar structured prompt


def build_pair(preset: str, channels: int) -> tuple[WanDiT, torch.nn.Module]:
    from diffusers import WanTransformer3DModel

    cfg = preset_config(preset, in_channels=channels, out_channels=channels, text_dim=TEXT_DIM,
                        phase_embedding=False, mask_text_padding=False)
    torch.manual_seed(0)
    theirs = WanTransformer3DModel(
        patch_size=tuple(cfg.patch_size), num_attention_heads=cfg.num_heads, attention_head_dim=cfg.head_dim,
        in_channels=channels, out_channels=channels, text_dim=TEXT_DIM, freq_dim=cfg.freq_dim,
        ffn_dim=cfg.ffn_dim, num_layers=cfg.num_layers, cross_attn_norm=True, qk_norm="rms_norm_across_heads",
        eps=cfg.eps)
    with torch.no_grad():  # diffusers zero-inits nothing we rely on, but randomise so no term hides
        for p in theirs.parameters():
            p.normal_(0, 0.02)
    ours = WanDiT(cfg)
    missing, unexpected = ours.load_state_dict(to_wan_keys(theirs.state_dict()), strict=False)
    if missing or unexpected:
        raise RuntimeError(f"weight conversion failed: missing {missing[:5]}, unexpected {unexpected[:5]}")
    return ours.train(), theirs.train()


def make_inputs(batch: int, channels: int, frames: int, size: int) -> tuple:
    g = torch.Generator().manual_seed(1)
    x = torch.randn(batch, channels, frames, size, size, generator=g)
    t = torch.rand(batch, 1, generator=g).expand(batch, frames).clone()
    t[:, 0] = 0  # TI2V: the clean first frame
    tokens_per_frame = (size // 2) ** 2
    t_tokens = t.repeat_interleave(tokens_per_frame, dim=1)  # (B, F*h*w): diffusers' per-token timesteps
    text = torch.randn(batch, TEXT_LEN, TEXT_DIM, generator=g)
    return x, t, t_tokens, text


def step_fns(ours, theirs, compiled, inputs) -> dict:
    x, t, t_tokens, text = inputs
    cond = Conditions(text=text)

    def ours_step(model=ours):
        model.zero_grad(set_to_none=True)
        model(x, t, cond).square().mean().backward()

    def theirs_step():
        theirs.zero_grad(set_to_none=True)
        theirs(x, t_tokens * 1000, text, return_dict=False)[0].square().mean().backward()

    fns = {"ours": ours_step, "diffusers": theirs_step}
    if compiled is not None:
        fns["ours_compiled"] = lambda: ours_step(compiled)
    return fns


GEMM_ATTENTION = ("aten::mm", "aten::addmm", "aten::bmm", "aten::baddbmm", "aten::_scaled_dot_product")


def profile_split(fn, steps: int = 3) -> dict:
    """Self CPU time of one step split into matmul + attention kernels (the same MKL / flash kernels in both
    implementations) and everything else (element-wise, norms, copies, autograd bookkeeping), in seconds.
    The profiler's overhead inflates both parts a little, so only their ratio is used."""
    from torch.profiler import ProfilerActivity, profile
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(steps):
            fn()
    gemm = other = 0.0
    for event in prof.key_averages():
        seconds = event.self_cpu_time_total / 1e6 / steps
        if event.key.startswith(GEMM_ATTENTION):
            gemm += seconds
        else:
            other += seconds
    return {"gemm_attention_s": round(gemm, 4), "other_s": round(other, 4)}


def bench(preset: str, args) -> dict:
    ours, theirs = build_pair(preset, args.channels)
    inputs = make_inputs(args.batch, args.channels, args.frames, args.size)
    x, t, t_tokens, text = inputs
    with torch.no_grad():
        a = ours(x, t, Conditions(text=text))
        b = theirs(x, t_tokens * 1000, text, return_dict=False)[0]
    max_diff = (a - b).abs().max().item()
    if max_diff > 1e-3 * max(1.0, b.abs().max().item()):
        raise RuntimeError(f"{preset}: outputs differ by {max_diff:.2e}; the comparison would be meaningless")
    compiled, compile_s, compile_diff = None, None, None
    if args.compile:
        compiled = torch.compile(ours)
        start = time.perf_counter()
        compiled.zero_grad(set_to_none=True)
        compiled(x, t, Conditions(text=text)).square().mean().backward()
        compile_s = time.perf_counter() - start
        with torch.no_grad():
            compile_diff = (compiled(x, t, Conditions(text=text)) - a).abs().max().item()
    fns = step_fns(ours, theirs, compiled, inputs)
    times = {name: [] for name in fns}
    for fn in fns.values():
        fn()  # warm-up
    for _ in range(args.rounds):  # interleaved: ours, diffusers, (compiled), ours, ...
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    med = {name: statistics.median(v) for name, v in times.items()}
    row = {"preset": preset, "params": sum(p.numel() for p in ours.parameters()),
           "tokens": args.batch * args.frames * (args.size // 2) ** 2, "output_max_abs_diff": max_diff,
           "median_s": {k: round(v, 4) for k, v in med.items()},
           "speed_vs_diffusers": {k: round(med["diffusers"] / v, 3) for k, v in med.items() if k != "diffusers"}}
    if compiled is not None:
        row |= {"compile_first_step_s": round(compile_s, 1), "compiled_max_abs_diff": compile_diff}
    if args.profile:
        split = {name: profile_split(fns[name]) for name in ("ours", "diffusers")}
        # If everything but the matmul / attention kernels cost nothing, ours would take split["ours"]
        # ["gemm_attention_s"] (as a share of its measured median): the speed-up no element-wise work can pass.
        share = split["ours"]["gemm_attention_s"] / sum(split["ours"].values())
        row |= {"profile_split": split,
                "ceiling_vs_diffusers": round(med["diffusers"] / (med["ours"] * share), 3)}
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presets", nargs="+", default=["demo", "synth"])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--frames", type=int, default=25)
    parser.add_argument("--size", type=int, default=8)
    parser.add_argument("--channels", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch's default)")
    parser.add_argument("--compile", action="store_true", help="also time torch.compile(ours)")
    parser.add_argument("--profile", action="store_true",
                        help="also split each side's step into matmul + attention kernels vs the rest (profiler)")
    parser.add_argument("--out", default="")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    rows = []
    for preset in args.presets:
        rows.append(bench(preset, args))
        print(json.dumps(rows[-1]))
    result = {"machine": machine(), "torch": torch.__version__, "threads": torch.get_num_threads(),
              "shape": {"batch": args.batch, "latent_frames": args.frames, "latent_size": args.size,
                        "channels": args.channels, "text_tokens": TEXT_LEN},
              "method": "forward+backward of a squared-output loss, same weights, interleaved rounds, medians",
              "rows": rows}
    if args.out:
        atomic_write_text(Path(args.out), json.dumps(result, indent=1) + "\n")
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
