"""`main.py generate`: trained weights -> mp4 videos with their audio.

Three sources of requests (one per call):
    --reference IMG --audio WAV --prompt FILE    one request; writes <audio stem>.mp4
    --requests FILE.jsonl                        one request per line (inference/requests.py); <name>.mp4
    --split {train,val,test}                     a SynthAvatar split (default: test when nothing is given),
                                                 the first sample.num_clips clips (0 = all); clip_<index>.mp4,
                                                 scored directly by `main.py evaluate --videos DIR`
Output: --out DIR, default runs/<run.name>/generate/. A --requests batch keeps going past a request that
fails at generation time and writes results.jsonl (written / skipped / failed + reason per request; exit
status 1 if any failed); a rerun skips requests whose mp4 exists (--overwrite redoes them). Optional outputs (sample.side_by_side,
sample.attention_plot) are described in inference/outputs.py. Weights: --weights (run dir, .safetensors or
.ckpt), default runs/<run.name>/fit. Inputs and weights are checked before the model is built, so a bad
request line or a missing weights file fails in seconds with one line naming the file (exit status 2).
Audio longer than a window is chained (inference/windows.py); `--parallel` under torchrun splits the DiT over
the processes (inference/parallel.py); the batch loop itself is inference/batch.py.
"""
from __future__ import annotations

from pathlib import Path

from configs.loader import ConfigError
from system.weights import resolve_weights


def _mode(args) -> str:
    single = [name for name in ("reference", "audio", "prompt") if getattr(args, name, None) is not None]
    if getattr(args, "requests", None) is not None:
        if single:
            raise ConfigError(f"generate: --requests cannot be combined with --{single[0]} "
                              "(put reference, audio and prompt into the JSONL lines)")
        return "requests"
    if single:
        if getattr(args, "split", None):
            raise ConfigError(f"generate: --split cannot be combined with --{single[0]}")
        missing = [f"--{name}" for name in ("reference", "audio", "prompt") if getattr(args, name, None) is None]
        if missing:
            raise ConfigError(f"generate: one request needs --reference, --audio and --prompt "
                              f"(missing {', '.join(missing)})")
        return "single"
    return "split"


def cmd_generate(cfg, args) -> int:
    from inference.requests import read_requests, single_request

    mode = _mode(args)
    out_dir = Path(args.out) if getattr(args, "out", None) else Path(args.run_dir)
    requests = None
    if mode == "requests":
        requests = read_requests(args.requests, cfg.data)
    elif mode == "single":
        requests = [single_request(args.reference, args.audio, args.prompt, cfg.data)]
    weights = getattr(args, "weights", None) or str(Path(cfg.run.output_dir) / cfg.run.name / "fit")
    resolve_weights(weights)  # CheckpointError naming the path, before the (slow) model build

    if getattr(args, "parallel", False):
        from inference.parallel import run_parallel
        return run_parallel(cfg, args, mode, requests, out_dir, weights)
    from inference.batch import report, run_generation
    from inference.generate import Generator
    written, failed = run_generation(Generator(cfg, weights, progress=True), cfg, args, mode, requests, out_dir)
    return report(written, failed, out_dir)
