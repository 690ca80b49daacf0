"""Long audio as chained windows (issue 17, Deliver 1): continuity at the window boundaries and the phases
that cross them, on SynthAvatar requests of 12-20 s made by the data generator (held-out test looks).

For each request the generator's ground truth is rendered at the same length, the request is generated
by the trained weights (`--weights`) under each arm (an arm = config overrides: chained windows as
configured, with 1 motion frame, with 1 motion frame and the motion frame as reference, and the whole
request as one long window), and scored:

- frame difference d_t = mean |f_t - f_{t-1}| (uint8 pixels); boundary ratio = mean d at the first frame
  each window k > 0 contributes / median d elsewhere (target <= 1.5); the same ratio on the ground truth
  at the same frames is what the clip's own motion gives there;
- probe pose jump: the probe's joints (pixels), mean per-joint displacement, the same two statistics;
- H@S / TC of the phases that cross a boundary vs the phases inside one window (the probe's action labels),
  next to the ground truth's; and the clip-level H@S, Sync-C, CSIM, PSNR of evaluation/evaluator.py.

`--sixty` also runs one 60 s request through `main.py generate` as a user would (png + wav + prompt json)
and checks the mp4 it writes: frames, audio length, where the phases land (H@S).

    python bench/long_audio.py -e demo --weights runs/curves/motion/fit --clips 6 --out bench/results/long_audio_cpu
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.bench_synthavatar import machine, print_and_write
from configs.loader import load_config
from evaluation import metrics
from evaluation.evaluator import requested_phases, score_video
from evaluation.probe_train import get_probe
from models.contracts import ClipBatch
from synthavatar.clip import render_clip, sample_clip_spec

ARMS = {"default": [],  # chained windows as configured (base.yaml: reference = image, 5 motion frames)
        "m1_image": ["sample.motion_frames=1", "sample.window_reference=image"],  # 1 motion frame
        "m1_motion": ["sample.motion_frames=1", "sample.window_reference=motion"],  # + the window's first frame as reference
        "one_window": ["sample.window_frames=100000", "model.text.max_tokens=384"]}  # one long window (a long prompt needs the tokens)


def make_request(seed: int, index: int, seconds: float, cfg) -> dict:
    spec = sample_clip_spec(np.random.SeedSequence([seed, 17, index]), "test", seconds,
                            min_phases=min(8, max(2, int(seconds / 3))), max_phases=8)
    return render_clip(spec, cfg.data.resolution, cfg.data.fps, cfg.data.sample_rate)


def _ratio(values: np.ndarray, at: list[int], matched: list[int]) -> dict:
    """values (T-1,) per transition t-1 -> t (index t-1); `at`: the boundary frames t; `matched`: the other
    frames that start a latent frame (the codec decodes 4 near-identical frames per latent, so the steps of
    a video sit at latent starts: the boundary, a latent start itself, is compared with them too)."""
    boundary = np.array([values[t - 1] for t in at])
    inside = np.delete(values, [t - 1 for t in at])
    same = np.array([values[t - 1] for t in matched])
    median, same_median = float(np.median(inside)), float(np.median(same))
    return {"boundary_mean": float(boundary.mean()), "boundary_max": float(boundary.max()),
            "within_median": median, "ratio": float(boundary.mean() / median) if median > 0 else float("inf"),
            "latent_start_median": same_median,
            "matched_ratio": float(boundary.mean() / same_median) if same_median > 0 else float("inf")}


def latent_starts(spans: list[tuple[int, int, int]], stride: int, boundaries: list[int]) -> list[int]:
    """Frames t > 0 that start a latent frame of their window (start s: t - s = 1 mod stride for a causal
    codec), boundaries excluded; spans: (window start, first, end) of each window's contribution."""
    out = [t for s, a, b in spans for t in range(max(a, 1), b) if (t - s) % stride == 1 % stride]
    return [t for t in out if t not in set(boundaries)]


def continuity(video: np.ndarray, probe, boundaries: list[int], matched: list[int]) -> dict:
    frames = video.astype(np.float32)
    diff = np.abs(frames[1:] - frames[:-1]).mean(axis=(1, 2, 3))  # (T-1,)
    joints = probe.analyse(video, with_actions=False)["joints"]  # (T, J, 2) pixels
    jump = np.linalg.norm(joints[1:] - joints[:-1], axis=-1).mean(-1)  # (T-1,)
    return {"frame_diff": _ratio(diff, boundaries, matched), "pose_jump": _ratio(jump, boundaries, matched)}


def phase_scores(probe, video: np.ndarray, clip: dict, boundaries: list[int], cfg) -> dict:
    fps = cfg.data.fps
    phases = requested_phases(clip)
    cuts = [b / fps for b in boundaries]
    crossing = [any(s < c < e for c in cuts) for s, e, _ in phases]
    labels = probe.analyse(video)["action"]
    per = metrics.action_metrics(labels, phases, fps, cfg.eval.hit_fraction)["per_phase"]
    out = {}
    for name, keep in (("crossing", True), ("inside", False)):
        chosen = [p for p, c in zip(per, crossing) if c == keep]
        out[name] = {"phases": len(chosen), "hits": int(sum(p["hit"] for p in chosen)),
                     "tc_sum": float(sum(p["tc"] for p in chosen))}
    return out


def _pool(rows: list[dict], key: str) -> dict:
    phases = sum(r["phases"][key]["phases"] for r in rows)
    hits, tc = (sum(r["phases"][key][k] for r in rows) for k in ("hits", "tc_sum"))
    return {"phases": phases, "h_at_s": hits / phases if phases else None, "tc": tc / phases if phases else None}


def run_arm(name: str, overrides: list[str], base_cfg_args, clips: list[dict], probe, seed: int) -> dict:
    from inference.generate import Generator
    from inference.windows import plan_windows, window_length
    cfg = load_config(base_cfg_args[0], base_cfg_args[1] + overrides)
    generator = Generator(cfg, base_cfg_args[2], progress=False)
    length, motion = window_length(load_config(base_cfg_args[0], base_cfg_args[1]), generator.codec)
    rows, started = [], time.perf_counter()
    for i, clip in enumerate(clips):
        N = clip["video"].shape[0]
        batch = ClipBatch(reference=torch.from_numpy(clip["video"][0]).permute(2, 0, 1).float().div(127.5).sub(1)[None],
                          prompt=[clip["prompt"]], audio=torch.from_numpy(clip["audio"])[None], num_frames=N)
        result = generator.generate(batch, N, [seed + i])
        video = result.frames[0]
        own = getattr(result, "plan", None)  # None: the one-window arm (one window from frame 0)
        # a chained arm is scored at its own seams; the one-window arm at the default plan's, for reference
        plan = own or plan_windows(N, length, motion)
        spans = [(0, 0, N)] if own is None else [(s, *own.span(k)) for k, s in enumerate(own.starts)]
        matched = latent_starts(spans, generator.codec.temporal_stride, plan.boundaries)
        score = score_video(probe, video, clip["audio"], clip, cfg)
        score.pop("_features")
        rows.append({"clip": i, "seconds": N / cfg.data.fps, "windows": len(plan.starts),
                     "boundaries": plan.boundaries, "matched": matched, "score": score,
                     "continuity": continuity(video, probe, plan.boundaries, matched),
                     "phases": phase_scores(probe, video, clip, plan.boundaries, cfg)})
        c = rows[-1]["continuity"]["frame_diff"]
        print(f"{name} clip {i}: {N / cfg.data.fps:.1f} s, frame-diff ratio {c['ratio']:.2f} (latent starts "
              f"{c['matched_ratio']:.2f}), H@S {score['h_at_s']:.2f}", flush=True)
    return {"overrides": overrides, "seconds": time.perf_counter() - started, "clips": rows,
            "summary": summarise(rows)}


def summarise(rows: list[dict]) -> dict:
    out = {k: float(np.mean([r["score"][k] for r in rows])) for k in ("h_at_s", "tc", "sync_c", "csim", "psnr")}
    for kind in ("frame_diff", "pose_jump"):
        for ratio in ("ratio", "matched_ratio"):
            out[f"{kind}_{ratio}"] = float(np.mean([r["continuity"][kind][ratio] for r in rows]))
    out["crossing"], out["inside"] = _pool(rows, "crossing"), _pool(rows, "inside")
    return out


def ground_truth(clips, probe, chained_rows, cfg) -> dict:
    """The rendered ground truth scored at the chained arm's seams and latent starts."""
    rows = []
    for i, clip in enumerate(clips):
        score = score_video(probe, clip["video"], clip["audio"], clip, cfg)
        score.pop("_features")
        b = chained_rows[i]["boundaries"]
        rows.append({"clip": i, "score": score,
                     "continuity": continuity(clip["video"], probe, b, chained_rows[i]["matched"]),
                     "phases": phase_scores(probe, clip["video"], clip, b, cfg)})
    return {"clips": rows, "summary": summarise(rows)}


def sixty_seconds(cfg_args, probe, cfg, seed: int) -> dict:
    """One 60 s request through `main.py generate` (files in, mp4 out), read back and scored."""
    import soundfile as sf
    from PIL import Image

    import main
    from common.video_io import read_video
    clip = make_request(seed, 999, 60.0, cfg)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        Image.fromarray(clip["video"][0]).save(tmp / "ref.png")
        sf.write(tmp / "sixty.wav", clip["audio"], cfg.data.sample_rate, subtype="FLOAT")
        (tmp / "sixty.json").write_text(json.dumps(clip["prompt"]))
        started = time.perf_counter()
        code = main.main(["generate", *[arg for e in cfg_args[0] for arg in ("-e", e)], "--weights", cfg_args[2],
                          "--reference", str(tmp / "ref.png"), "--audio", str(tmp / "sixty.wav"), "--prompt",
                          str(tmp / "sixty.json"), "--out", str(tmp / "out"), *cfg_args[1],
                          "sample.attention_plot=false"])
        seconds = time.perf_counter() - started
        video = read_video(tmp / "out" / "sixty.mp4", sample_rate=cfg.data.sample_rate)
    score = score_video(probe, video.frames[:len(clip["video"])], clip["audio"], clip, cfg)
    score.pop("_features")
    truth = score_video(probe, clip["video"], clip["audio"], clip, cfg)
    return {"exit": code, "wall_s": seconds, "frames": int(video.frames.shape[0]), "fps": video.fps,
            "video_seconds": video.frames.shape[0] / video.fps,
            "audio_seconds": len(video.audio) / cfg.data.sample_rate, "phases": len(clip["prompt"]["phases"]),
            "h_at_s": score["h_at_s"], "tc": score["tc"], "ground_truth_h_at_s": truth["h_at_s"]}


def to_markdown(result: dict) -> str:
    lines = ["| arm | frame-diff ratio (all / latent starts) | pose-jump ratio (all / latent starts) | "
             "H@S crossing (n) | H@S inside (n) | TC crossing | H@S | TC | Sync-C | CSIM | PSNR | wall s |",
             "|" + "---|" * 12]
    for name, arm in result["arms"].items():
        s = arm["summary"]
        lines.append(f"| {name} | {s['frame_diff_ratio']:.2f} / {s['frame_diff_matched_ratio']:.2f} | "
                     f"{s['pose_jump_ratio']:.2f} / {s['pose_jump_matched_ratio']:.2f} | "
                     f"{_fmt(s['crossing']['h_at_s'])} ({s['crossing']['phases']}) | "
                     f"{_fmt(s['inside']['h_at_s'])} ({s['inside']['phases']}) | {_fmt(s['crossing']['tc'])} | "
                     f"{s['h_at_s']:.3f} | {s['tc']:.3f} | {s['sync_c']:.3f} | {s['csim']:.3f} | "
                     f"{s['psnr']:.1f} | {arm.get('seconds', 0):.0f} |")
    return "\n".join(lines)


def _fmt(v) -> str:
    return "n/a" if v is None else f"{v:.3f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-e", "--experiment", action="append", default=None)
    parser.add_argument("--weights", required=True, help="run dir / .safetensors of the trained generator")
    parser.add_argument("--clips", type=int, default=6)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--arms", default=",".join(ARMS), help="comma-separated arm names (default: all)")
    parser.add_argument("--sixty", action="store_true", help="also one 60 s request through main.py generate")
    parser.add_argument("--out", type=Path)
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args()
    experiments = args.experiment or ["demo"]
    cfg = load_config(experiments, args.overrides)
    probe = get_probe(cfg, progress=True)
    rng = np.random.default_rng(args.seed)
    clips = [make_request(args.seed, i, float(np.round(rng.uniform(12, 20), 1)), cfg) for i in range(args.clips)]
    result = {"machine": machine(), "command": "python bench/long_audio.py " + " ".join(sys.argv[1:]),
              "weights": args.weights, "arms": {}}
    cfg_args = (experiments, args.overrides, args.weights)
    for name in args.arms.split(","):
        result["arms"][name] = run_arm(name, ARMS[name], cfg_args, clips, probe, args.seed)
    first = next(iter(result["arms"].values()))
    result["arms"]["ground truth"] = ground_truth(clips, probe, first["clips"], cfg)
    if args.sixty:
        result["sixty"] = sixty_seconds(cfg_args, probe, cfg, args.seed)
    text = (f"# Long audio as chained windows ({args.clips} SynthAvatar test-look requests of 12-20 s, "
            f"{result['machine']})\n\nCommand: `{result['command']}`\n\n" + to_markdown(result))
    if "sixty" in result:
        text += "\n\n60 s request through `main.py generate`: " + json.dumps(result["sixty"])
    print_and_write(text, result, args.out)


if __name__ == "__main__":
    main()
