"""The Wan2.2-TI2V-5B DiT (random weights, bf16) at the real 720p / 5 s shape: denoising forward with the
`sdpa` and `triton` attention backends, one forward+backward with activation checkpointing, and the
projected time of a 40-step clip with ActAvatar's three guidance passes, sequential and batched.

Shape: 704 x 1280 x 121 frames -> Wan2.2 VAE latents 48 x 31 x 44 x 80 -> patch (1, 2, 2) -> 31 x 22 x 40
= 27,280 tokens; 512 text tokens (umT5 width 4096; 64 base + 4 phase blocks, PACA phase embeddings and
window bias on); audio adapter on (wav2vec2-base width 768 per video frame, dynamics on). The visual
adapter is off (SyncDreamer's; ActAvatar's clip time is what the 2-min goal is about).
Weights bf16 under bf16 autocast (the residual stream stays fp32, as in Wan). FLOPs are counted with
torch.utils.flop_counter on one `sdpa` forward (matmuls + attention), forward+backward = 3x forward
(the recompute of checkpointing is not counted as useful work). The VAE decode is not included.

Phase c of bench/gpu_suite.py; alone: python bench/bench_dit_5b.py --out DIR [--smoke]
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

from bench.gpu_env import cuda_sync, write_phase
from models.audio_config import AudioConfig
from models.contracts import Conditions
from models.dit import WanDiT
from models.dit_config import preset_config
from models.frames import num_video_frames
from models.parallel import apply_activation_checkpointing

REAL = dict(preset="wan2.2-ti2v-5b", channels=48, frames=31, height=44, width=80, text_len=512, text_dim=4096,
            audio_dim=768, dtype="bf16")
SMOKE = dict(preset="tiny", channels=4, frames=3, height=4, width=4, text_len=24, text_dim=32, audio_dim=16,
             dtype="fp32")
STEPS, PASSES = 40, 3
GOAL_S = 120.0


def build(shape: dict, device) -> WanDiT:
    cfg = preset_config(shape["preset"], in_channels=shape["channels"], out_channels=shape["channels"],
                        text_dim=shape["text_dim"], phase_embedding=True, phase_window_bias=True)
    audio = AudioConfig(feature_dim=shape["audio_dim"])
    torch.manual_seed(0)
    with torch.device(device):
        model = WanDiT(cfg, audio)
    # Wan's zero-init head would make the output (and so the backward through it) trivially zero.
    torch.nn.init.normal_(model.head.head.weight, std=0.02)
    return model.to(torch.bfloat16 if shape["dtype"] == "bf16" else torch.float32).eval()


def inputs(shape: dict, batch: int, device) -> tuple:
    F, H, W, Lt = shape["frames"], shape["height"], shape["width"], shape["text_len"]
    g = torch.Generator().manual_seed(1)
    x = torch.randn(batch, shape["channels"], F, H, W, generator=g)
    t = torch.full((batch, F), 0.7)
    t[:, 0] = 0.0                                   # TI2V: the clean first frame
    base = Lt // 8
    phase = ((torch.arange(Lt) - base).clamp(min=0) * 4 // max(Lt - base, 1) + 1) * (torch.arange(Lt) >= base)
    start = (phase - 1).clamp(min=0) / 4.0
    cond = Conditions(text=torch.randn(batch, Lt, shape["text_dim"], generator=g),
                      text_mask=torch.ones(batch, Lt, dtype=torch.bool),
                      text_phase=phase.expand(batch, Lt).clone(),
                      text_window=torch.stack([start, start + 0.25], -1).expand(batch, Lt, 2).clone(),
                      text_is_phase=(phase > 0).expand(batch, Lt).clone(),
                      audio=torch.randn(batch, num_video_frames(F, 4, True), shape["audio_dim"], generator=g))
    return x.to(device), t.to(device), cond.to(device)


def timed(fn, device, repeats: int) -> float:
    fn()                                            # warm-up (Triton compiles, cuDNN picks kernels)
    times = []
    for _ in range(repeats):
        cuda_sync()
        start = time.perf_counter()
        fn()
        cuda_sync()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def peak_gib(fn) -> float | None:
    if not torch.cuda.is_available():
        return None
    cuda_sync()
    torch.cuda.reset_peak_memory_stats()
    fn()
    cuda_sync()
    return round(torch.cuda.max_memory_allocated() / 2 ** 30, 2)


def forward_flops(model, x, t, cond, autocast) -> int:
    from torch.utils.flop_counter import FlopCounterMode
    model.cfg.attention_backend = "sdpa"
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), autocast(), counter:
        model(x, t, cond)
    return counter.get_total_flops()


LINK_GBPS = 450.0  # assumed all-to-all bandwidth per GPU (NVLink 4 on H100/H200 SXM), not measured here


def multi_gpu_projection(model, tokens: int, forward_s: float, dtype) -> dict:
    """A projection, not a measurement: a 40-step, 3-pass clip on G x S GPUs (guidance x Ulysses sequence
    parallel) from the measured 1-GPU forward, assuming the DiT's compute splits ideally over S (Ulysses
    splits matmuls by tokens and attention by heads) and each self-attention layer's 4 all-to-alls
    (q, k, v, out: tokens x dim each, (S-1)/S of it leaving the GPU) run at LINK_GBPS."""
    bytes_per = 2 if dtype == torch.bfloat16 else 4
    layers, dim = len(model.blocks), model.cfg.dim
    rows = []
    for guidance, sequence in ((1, 1), (1, 2), (1, 4), (1, 8), (3, 1), (2, 4)):
        comm = 0.0 if sequence == 1 else (layers * 4 * tokens * dim * bytes_per * (sequence - 1) / sequence
                                          / (LINK_GBPS * 1e9))
        passes = -(-PASSES // guidance)  # ceil: passes run one after another on a guidance rank
        clip = STEPS * passes * (forward_s / sequence + comm)
        rows.append({"gpus": guidance * sequence, "guidance": guidance, "sequence": sequence,
                     "comm_s_per_forward": round(comm, 4), "clip_s": round(clip, 1)})
    return {"assumption": f"ideal compute split, {LINK_GBPS:.0f} GB/s all-to-all per GPU, DiT only", "rows": rows}


def verdict(met: bool | None) -> str:
    return "smoke run, not a measurement" if met is None else ("met" if met else "NOT met")


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, required=True, help="results directory (c_dit_5b.json/.md)")
    p.add_argument("--smoke", action="store_true", help="tiny preset and shape on CPU: script check only")
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args(argv)
    began = time.perf_counter()
    shape = SMOKE if args.smoke else REAL
    device = "cpu" if args.smoke else "cuda"
    if device == "cuda" and not torch.cuda.is_available():
        sys.exit("bench_dit_5b: needs a CUDA GPU (use --smoke on CPU to check the script)")
    repeats = 1 if args.smoke else args.repeats
    dtype = torch.bfloat16 if shape["dtype"] == "bf16" else torch.float32

    def autocast():
        return torch.autocast(device, dtype=torch.bfloat16, enabled=dtype == torch.bfloat16)

    model = build(shape, device)
    params = sum(p.numel() for p in model.parameters())
    x, t, cond = inputs(shape, 1, device)
    tokens = shape["frames"] * (shape["height"] // 2) * (shape["width"] // 2)
    flops = forward_flops(model, x, t, cond, autocast)
    rows = {}
    for backend in ("sdpa", "triton"):
        model.cfg.attention_backend = backend

        def forward(batch_inputs=(x, t, cond)):
            with torch.no_grad(), autocast():
                return model(*batch_inputs)
        seconds = timed(forward, device, repeats)
        rows[f"forward_{backend}"] = {"s": round(seconds, 4), "tflops": round(flops / seconds / 1e12, 1),
                                      "peak_gib": peak_gib(forward)}
    best = min(("sdpa", "triton"), key=lambda b: rows[f"forward_{b}"]["s"])
    model.cfg.attention_backend = best
    x3, t3, cond3 = inputs(shape, PASSES, device)

    def forward_batched():
        with torch.no_grad(), autocast():
            return model(x3, t3, cond3)
    batched = timed(forward_batched, device, repeats)
    rows["forward_batched_3"] = {"s": round(batched, 4), "tflops": round(PASSES * flops / batched / 1e12, 1),
                                 "peak_gib": peak_gib(forward_batched), "backend": best}

    apply_activation_checkpointing(model)
    model.train()

    def train_step():
        with autocast():
            loss = model(x, t, cond).float().square().mean()
        loss.backward()
        model.zero_grad(set_to_none=True)
    step = timed(train_step, device, repeats)
    rows["forward_backward_checkpointed"] = {"s": round(step, 4), "tflops": round(3 * flops / step / 1e12, 1),
                                             "peak_gib": peak_gib(train_step), "backend": best}
    one = rows[f"forward_{best}"]["s"]
    projection = {"steps": STEPS, "passes": PASSES, "backend": best,
                  "sequential_s": round(STEPS * PASSES * one, 1), "batched_s": round(STEPS * batched, 1),
                  "goal_s": GOAL_S}
    projection["meets_goal"] = None if args.smoke else min(projection["sequential_s"], projection["batched_s"]) <= GOAL_S
    projection["multi_gpu"] = multi_gpu_projection(model, tokens, one, dtype)
    result = {"shape": shape, "tokens": tokens, "params": params, "forward_gflop": round(flops / 1e9, 1),
              "rows": rows, "clip_projection": projection, "wall_s": round(time.perf_counter() - began, 1)}
    md = [f"{shape['preset']} DiT, {params / 1e9:.2f} B parameters (audio adapter, PACA on), {shape['dtype']}; "
          f"{tokens:,} video tokens, {shape['text_len']} text tokens; one forward = {flops / 1e12:.1f} TFLOP "
          f"(counted). Median of {repeats}.", "",
          "| run | s | TFLOP/s | peak GiB |", "|---|---|---|---|"]
    md += [f"| {name} | {r['s']} | {r['tflops']} | {r['peak_gib']} |" for name, r in rows.items()]
    md += ["", f"Projected {STEPS}-step clip with {PASSES} guidance passes ({best} backend, DiT only): "
           f"{projection['sequential_s']} s sequential, {projection['batched_s']} s with the passes batched; "
           f"goal <= {GOAL_S:.0f} s: {verdict(projection['meets_goal'])}.", "",
           f"Projected on more GPUs (`generate --parallel`; {projection['multi_gpu']['assumption']}): "
           + "; ".join(f"{r['gpus']} GPUs (guidance x{r['guidance']}, sequence x{r['sequence']}) {r['clip_s']} s"
                       for r in projection["multi_gpu"]["rows"]) + "."]
    args.out.mkdir(parents=True, exist_ok=True)
    write_phase(args.out, "c_dit_5b", result, "\n".join(md))
    print(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    main()
