"""Downstream check of the prompt enhancer: videos a trained generator makes from the user's raw short
prompt vs from the enhanced structured prompt, scored by the probe (H@S, AA, TC, Sync-C, CSIM, ...).

Clips are the first `rl.downstream_clips` held-out clips of the generator's own SynthAvatar test split,
so the reference image, the audio and the ground-truth timed actions (what H@S scores against) exist.
Each clip becomes an EnhancerExample (a short prompt in the held-out wording, ground-truth attributes,
the librosa timing of the clip's own audio), then one video per prompt condition, everything else equal
(same reference, audio, noise seeds):
- raw: the short prompt alone. The structured format needs one phase, so it is the base block and one
  phase over the whole clip: every frame sees only the user's words, as with a global prompt;
- every policy asked for (default: SFT + GRPO): its greedy completion, parsed by
  models.prompt.from_text; an invalid one falls back to raw (counted in the table);
- template: the rule-based enhancer (rl/examples.template_enhance);
- ground truth: the clip's own structured prompt, the ceiling of this generator.
compare/clip_<index>.mp4 tiles the first few clips' videos of every condition and the ground-truth video
side by side (a labelled header row per panel, the clip's audio), for looking rather than reading.
Trade-off: the numbers describe the generator as much as the enhancer; one that has not learned timed
actions cannot tell the prompts apart, and the table then says so rather than ranking the enhancers.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np

from common.atomic import atomic_write_text
from models.prompt import Phase, StructuredPrompt, to_json, validate
from rl.examples import EnhancerExample, spec_example, template_enhance
from rl.rewards import parse

RAW, TEMPLATE, TRUTH = "raw short prompt", "template (rule-based)", "ground-truth prompt"
# panel headers of the comparison videos (other conditions: their name without spaces)
LABELS = {RAW: "raw", TEMPLATE: "template", TRUTH: "GT prompt", "GT video": "GT video"}
COMPARE_CLIPS = 4
HEADER = 12  # pixel rows of a comparison panel's label
REPORTED = ("h_at_s", "aa", "tc", "sync_c", "csim", "psnr")


def clip_example(clip: dict, index: int, sample_rate: int, seed: int = 0) -> EnhancerExample:
    """The enhancer's input for clip `index` of a split, loaded by synthavatar.dataset.load_clip."""
    rng = np.random.default_rng([seed, 104_729, index])
    return spec_example(f"clip_{index:05d}", "test", clip["spec"], clip["audio"], sample_rate, rng)


def raw_prompt(short: str, duration: float) -> dict:
    """The short prompt as a structured prompt (JSON form): base block + one phase over the whole clip."""
    return to_json(validate(StructuredPrompt(short, (Phase(0.0, duration, short),)), duration=duration,
                            source="raw short prompt"))


def enhanced_prompt(completion: str, duration: float) -> dict | None:
    """A completion as a structured prompt (JSON form) valid for the clip, or None (the format reward's parse)."""
    prompt = parse(completion, duration)
    return None if prompt is None else to_json(prompt)


def condition_prompts(examples: list[EnhancerExample], completions: dict[str, list[str]],
                      truth: list[dict], duration: float) -> tuple[dict[str, list[dict]], dict[str, float]]:
    """{condition: one prompt (JSON form) per clip} and {condition: share of valid enhanced prompts}."""
    raw = [raw_prompt(e.short_prompt, duration) for e in examples]
    prompts, validity = {RAW: raw}, {RAW: 1.0}
    for name, texts in {**completions, TEMPLATE: [template_enhance(e) for e in examples]}.items():
        parsed = [enhanced_prompt(t, duration) for t in texts]
        prompts[name] = [p if p is not None else r for p, r in zip(parsed, raw)]
        validity[name] = sum(p is not None for p in parsed) / len(parsed)
    prompts[TRUTH], validity[TRUTH] = truth, 1.0
    return prompts, validity


def generator_config(generator: str | Path):
    """The typed config a generator's fit directory was trained with (its resolved_config.yaml)."""
    from configs.loader import ConfigError, load_config
    path = Path(generator) / "resolved_config.yaml"
    if not path.is_file():
        raise ConfigError(f"rl.generator: {generator} is not a fit directory (no resolved_config.yaml); "
                          "give runs/<run name>/fit of a trained generator")
    return load_config(path)


def downstream_table(rl, policies: dict[str, Path], out_dir: Path, progress: bool = True) -> str:
    """Generate the clips under every prompt condition with the generator in rl.generator, score them,
    write out_dir/downstream.{md,json} (+ prompts.jsonl and the videos per condition); returns the table."""
    from evaluation.tables import to_markdown
    from inference.generate import Generator
    from rl.evaluate import generate
    from synthavatar.dataset import ensure_split, load_clip

    cfg = generator_config(rl.generator)
    paths = ensure_split(cfg.data, "test", progress)[: rl.downstream_clips]
    clips = [load_clip(p) for p in paths]
    duration = len(clips[0]["video"]) / float(cfg.data.fps)
    examples = [clip_example(c, i, int(cfg.data.sample_rate), rl.seed) for i, c in enumerate(clips)]
    completions = {name: generate(d, examples, rl.eval_max_new_tokens, progress=progress)
                   for name, d in policies.items()}
    prompts, validity = condition_prompts(examples, completions, [c["prompt"] for c in clips], duration)
    summaries, rows = _generate_and_score(cfg, Generator(cfg, rl.generator, progress), prompts, out_dir, progress)
    for name in summaries:
        summaries[name]["valid prompts"] = validity[name]
    write_comparisons({name: Path(r["videos"]) for name, r in rows.items()}, clips[:COMPARE_CLIPS],
                      out_dir / "compare", float(cfg.data.fps), int(cfg.data.sample_rate))
    lines = [json.dumps({"clip": e.clip, "short_prompt": e.short_prompt} | {n: p[i] for n, p in prompts.items()})
             for i, e in enumerate(examples)]
    atomic_write_text(out_dir / "prompts.jsonl", "\n".join(lines) + "\n")
    title = (f"# Downstream: {len(clips)} held-out clips generated by {rl.generator} from each prompt\n\n"
             "mean ± std over clips; 'valid prompts' = share of the enhancer's outputs that parsed "
             "(invalid ones fall back to the raw short prompt)\n\n")
    text = title + to_markdown(summaries)
    report = {"generator": str(rl.generator), "conditions": rows, "validity": validity, "completions": completions}
    atomic_write_text(out_dir / "downstream.json", json.dumps(report, indent=1))
    atomic_write_text(out_dir / "downstream.md", text)
    return text


def _generate_and_score(cfg, generator, prompts: dict[str, list[dict]], out_dir: Path, progress: bool):
    """One video set per condition under out_dir/videos/<k>_<condition>/, scored by the probe.
    -> ({condition: the reported metrics}, {condition: videos dir, summary and per-clip rows})."""
    from evaluation.commands import evaluate
    from inference.split import generate_split
    summaries, rows = {}, {}
    for k, (name, per_clip) in enumerate(prompts.items()):
        videos = out_dir / "videos" / f"{k}_{re.sub(r'[^a-z0-9]+', '_', name.lower()).strip('_')}"
        generate_split(cfg, videos, "test", num_clips=len(per_clip), progress=progress, generator=generator,
                       prompts=per_clip, side_by_side=False, attention_plot=False)
        result = evaluate(cfg, "test", videos, progress=progress)
        summaries[name] = {m: result["summary"][m] for m in REPORTED}
        rows[name] = {"videos": str(videos), "summary": result["summary"], "rows": result["rows"]}
    return summaries, rows


def _label(name: str, width: int) -> np.ndarray:
    """A black header strip (HEADER, width, 3) uint8 with the condition's short name in white."""
    from PIL import Image, ImageDraw
    image = Image.new("RGB", (width, HEADER))
    ImageDraw.Draw(image).text((2, 1), LABELS.get(name, name.replace(" ", "")), fill=(255, 255, 255))
    return np.asarray(image)


def write_comparisons(videos: dict[str, Path], clips: list[dict], out_dir: Path, fps: float,
                      sample_rate: int) -> list[Path]:
    """compare/clip_<i>.mp4: each condition's clip_<i>.mp4 (read back) | the ground-truth video, with a
    labelled header row and the clip's audio. -> the written paths."""
    from common.video_io import read_video, write_video
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for i, clip in enumerate(clips):
        name = f"clip_{i:05d}.mp4"
        panels = {n: read_video(d / name, sample_rate=None).frames for n, d in videos.items()}
        panels["GT video"] = clip["video"]
        T, _, W = clip["video"].shape[:3]
        tiles = [np.concatenate([np.broadcast_to(_label(n, W), (T, HEADER, W, 3)), f[:T]], axis=1)
                 for n, f in panels.items()]  # each (T, HEADER + H, W, 3)
        path = out_dir / name
        write_video(path, np.concatenate(tiles, axis=2), fps=fps, audio=clip["audio"], sample_rate=sample_rate)
        written.append(path)
    return written
