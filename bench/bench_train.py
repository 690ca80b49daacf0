"""Training-throughput benchmark: full training steps (data loading excluded, condition encoders and
codec included, forward + backward + AdamW) of an experiment config, as samples/s and video tokens/s.
Not a test: run it on an idle machine and commit the results file with the machine named.

    python bench/bench_train.py [-e demo] [--steps 12] [--warmup 3] [--device cpu|cuda]
        [--condition-cache cache/conditions] [--out bench/results/train_cpu.json] [key=value ...]

With --condition-cache each config is also timed on batches that carry the cached encoder outputs
(train.condition_cache, issue 15 Deliver 2b): the training step is then the DiT (+ AdamW) alone.

On a GPU (`--device cuda -e demo model.preset=synth-wide train.strategy.precision=bf16-mixed`) it also
reports peak GPU memory. The ZeRO-3 5B step needs several GPUs and DeepSpeed (configs/experiment/
zero3_5b.yaml, scripts/); it is not measured by this script.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lightning.fabric.utilities.apply_func import move_data_to_device

from bench.bench_synthavatar import machine
from common.atomic import atomic_write_text
from configs.loader import load_config
from datamodules.condition_cache import CachedConditions
from lightning_modules.flow_module import AvatarFlowModule, step_generator
from system.build import build_system


def measure(cfg, steps: int, warmup: int, device: str, cache_root: Path | None = None) -> dict:
    system = build_system(cfg, progress=False, load_init=False)
    module = AvatarFlowModule(system.cfg, system.model, system.encoder).to(device)
    module.encoder.to(device)
    optimizer = module.configure_optimizers()["optimizer"]
    source = system.source  # data.kind's source (the data split exists after build_system)
    if cache_root is not None:  # as fit does with train.condition_cache: the encoders ran once, before timing
        source = CachedConditions(source, system.encoder, cache_root)
        source.prepare("train", progress=False)
    dataset = source.dataset("train")
    size = cfg.data.batch_size
    batches = [move_data_to_device(source.collate([dataset[(i * size + j) % len(dataset)] for j in range(size)]),
                                   device)
               for i in range(steps + warmup)]
    times, tokens = [], 0
    # bf16-mixed as Lightning runs it: weights fp32, the forward under bf16 autocast.
    bf16 = cfg.train.strategy.precision == "bf16-mixed"
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    for step, batch in enumerate(batches):
        if device == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        with torch.autocast(device, dtype=torch.bfloat16, enabled=bf16):
            loss, logs = module.shared_step(batch, step_generator(0, step, 0), training=True)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if device == "cuda":
            torch.cuda.synchronize()
        if step >= warmup:
            times.append(time.perf_counter() - start)
            tokens = logs["tokens"]
    seconds = sorted(times)[len(times) // 2]  # median step
    result = {"step_s_median": seconds, "step_s_min": min(times), "batch_size": size,
              "video_tokens_per_clip": tokens, "samples_per_s": size / seconds,
              "tokens_per_s": size * tokens / seconds,
              "dit_params": sum(p.numel() for p in system.model.parameters()),
              "trained_params": sum(p.numel() for p in system.model.parameters() if p.requires_grad)}
    if device == "cuda":
        result["peak_memory_gib"] = torch.cuda.max_memory_allocated() / 2**30
    return result


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-e", "--experiment", default="demo")
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", type=Path, default=Path("bench/results/train_cpu.json"))
    parser.add_argument("--condition-cache", type=Path, metavar="DIR",
                        help="also time each config on batches from train.condition_cache=DIR (built if missing): "
                             "the step without the frozen encoders")
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args(argv)
    rows = {}
    for label, extra in (("demo config (ActAvatar one stage)", []),
                         ("demo + visual adapter + loc loss (SyncDreamer stage 2)", ["-e", "syncdreamer_stage2"])):
        experiment = extra[1] if extra else args.experiment
        cfg = load_config(experiment, args.overrides)
        for cache, suffix in ((None, ""), (args.condition_cache, ", condition cache")):
            if suffix and cache is None:
                continue
            rows[label + suffix] = measure(cfg, args.steps, args.warmup, args.device, cache)
            print(label + suffix, json.dumps(rows[label + suffix], indent=1), flush=True)
    report = {"machine": machine(), "device": args.device, "torch_threads": torch.get_num_threads(),
              "overrides": args.overrides, "results": rows}
    atomic_write_text(args.out, json.dumps(report, indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
