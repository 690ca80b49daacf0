"""`main.py generate`: trained weights -> mp4 videos with their audio.

Three sources of requests (one per call):
    --reference IMG --audio WAV --prompt FILE    one request; writes <audio stem>.mp4
    --requests FILE.jsonl                        one request per line (inference/requests.py); <name>.mp4
    --split {train,val,test}                     a SynthAvatar split (default: test when nothing is given),
                                                 the first sample.num_clips clips (0 = all); clip_<index>.mp4,
                                                 scored directly by `main.py evaluate --videos DIR`
Output: --out DIR, default runs/<run.name>/generate/. Optional outputs (sample.side_by_side,
sample.attention_plot) are described in inference/outputs.py. Weights: --weights (run dir, .safetensors or
.ckpt), default runs/<run.name>/fit. Inputs and weights are checked before the model is built, so a bad
request line or a missing weights file fails in seconds with one line naming the file (exit status 2).
"""
from __future__ import annotations

from pathlib import Path

from tqdm import tqdm

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


def generate_requests(generator, requests, out_dir: Path, progress: bool = True) -> list[Path]:
    """Generate `requests` (inference/requests.py) into out_dir; returns the mp4 paths."""
    from common.errors import AudioError
    from inference.outputs import ClipWriter
    from inference.requests import batches

    s = generator.cfg.sample
    codec = generator.codec
    for request in requests:  # the codec needs at least one latent frame after the reference
        if codec.num_latent_frames(request.num_frames) < 2:
            where = f"{request.source}: " if request.source != "command line" else ""
            raise AudioError(f"{where}{request.audio_path}: audio gives {request.num_frames} frames, too short for "
                             f"the codec (at least {codec.num_video_frames(2)} frames = "
                             f"{codec.num_video_frames(2) / generator.cfg.data.fps:.2f} s)")
    if s.side_by_side:
        print("generate: sample.side_by_side needs ground truth; only --split writes side-by-side videos")
    writer = ClipWriter(generator, out_dir, side_by_side=False, attention_plot=s.attention_plot)
    written = []
    with tqdm(total=len(requests), desc="generating requests", unit="clip", disable=not progress) as bar:
        for positions, batch in batches(requests, s.batch_size):
            group = [requests[i] for i in positions]
            written += writer.write_batch([r.name for r in group], batch, group[0].num_frames,
                                          [s.seed * 100_003 + i for i in positions])
            bar.update(len(group))
    writer.finish()
    return written


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

    from inference.generate import Generator
    from inference.split import generate_split
    generator = Generator(cfg, weights, progress=True)
    if mode == "split":
        split = getattr(args, "split", None) or "test"
        written = generate_split(cfg, out_dir, split, weights, int(cfg.sample.num_clips), True, generator)
    else:
        written = generate_requests(generator, requests, out_dir)
    print(f"generate: wrote {len(written)} video{'s' if len(written) != 1 else ''} to {out_dir}")
    return 0
