"""`main.py prep` (issue 16): the real-video preprocessing stages, each sharded, resumable and ledgered.

Stages, in order (each reads the previous stage's `<stage>.jsonl` under data.root):
probe (manifest -> container metadata), segment (scene cuts -> fixed clips), analyse (speech, motion),
filter (thresholds), annotate (structured prompts in clip time). Every item gets one record file
(realvideo/ledger.py); `--shard i/n` takes every n-th item, finished items are skipped, and after the
items the stage's kept list and reject ledger are rebuilt from all records (so run `--stage X` once more
without --shard after the shards finish). `--inspect` prints clips per bucket, seconds kept and rejects by
reason. The per-clip encoder cache is train.condition_cache (datamodules/condition_cache.py), filled at fit.
Trade-off: stages are separate commands rather than one pass per video, so a threshold change reruns
only `filter`, at the price of reading each clip once per stage that needs pixels.
"""
from __future__ import annotations

import functools
import json
import traceback
from collections import Counter
from pathlib import Path

import numpy as np
from tqdm import tqdm

from common.errors import DataError
from realvideo import ledger
from realvideo.manifest import read_manifest

STAGES = ("probe", "segment", "analyse", "filter", "annotate")
CLIP_DIR = "clips"


def _settings(cfg) -> dict:
    from realvideo.segment import clip_frames
    d, p = cfg.data, cfg.prep
    return {"fps": float(d.fps), "sample_rate": int(d.sample_rate), "resolution": int(d.resolution),
            "clip_frames": clip_frames(float(d.duration), float(d.fps)), "size_multiple": int(p.size_multiple),
            "crf": int(p.crf), "scene_threshold": float(p.scene_threshold),
            "min_scene_seconds": float(p.min_scene_seconds)}


# the prep settings each stage's output depends on (a change redoes that stage's items, not the others')
STAGE_KEYS = {"probe": (), "segment": ("size_multiple", "crf", "scene_threshold", "min_scene_seconds"),
              "analyse": ("vad", "face_parser", "face_parser_size", "parse_every", "pose_model", "syncnet",
                          "realign_audio", "max_sync_offset"),
              "filter": ("min_face_frames", "min_face_size", "max_sync_offset", "min_sync_conf", "min_speech_ratio",
                         "min_motion", "max_motion", "min_pose_motion", "max_pose_motion"),
              "annotate": ("min_phase_seconds", "default_base", "vlm", "video_llm", "video_llm_frames")}


def _stage_settings(cfg, stage: str) -> dict:
    data = _settings(cfg) if stage in ("probe", "segment", "analyse") else {}
    return data | {k: cfg.prep[k] for k in STAGE_KEYS.get(stage, ())}


def _item_state(item) -> dict:
    """What an item is, for its input fingerprint: a manifest entry with its files' size and time, or the
    upstream record (whose own `inputs` carry everything before it)."""
    if isinstance(item, dict):
        return item
    files = {}
    for path in (item.video, item.audio):
        if path:
            try:
                stat = Path(path).stat()
                files[path] = [stat.st_size, stat.st_mtime_ns]
            except OSError:
                files[path] = None
    # prompt / caption are read by annotate straight from the manifest (its own fingerprint holds them)
    return {k: v for k, v in item.__dict__.items() if k not in ("line", "prompt", "caption")} | {"files": files}


def _pose(pose, frames, out: Path) -> tuple[dict, np.ndarray]:
    """Keypoints of one clip to `out` (.pose.npz, atomically); returns what the filter reads, and them."""
    from common.atomic import atomic_write
    from realvideo.pose import MIN_SCORE, pose_motion
    points = pose.keypoints(frames)  # (T, K, 3)
    atomic_write(out, lambda tmp: np.savez_compressed(tmp, keypoints=points))
    hands = (points[:, pose.wrists, 2] >= MIN_SCORE).any(1).mean()
    summary = {"pose_motion": round(pose_motion(points, frames.shape[1]), 5), "hands_frames": round(float(hands), 3)}
    return summary | pose.digest, points


def _entries(cfg) -> dict:
    if not cfg.data.manifest:
        raise DataError("data.manifest: not set; give the JSONL manifest of your videos (data.manifest=FILE)")
    return {e.name: e for e in read_manifest(cfg.data.manifest)}


def _clips(root: Path, stage_needed: str, needed_by: str) -> list[dict]:
    """Kept clips of the segment stage, each with its source's split (flattened)."""
    rows = ledger.read_kept(root, stage_needed, needed_by)
    if stage_needed != "segment":
        return rows
    # each clip carries its segment record's input fingerprint, so a re-encoded clip redoes what follows
    return [c | {"name": c["clip"], "source": r["name"], "split": r["split"], "upstream": r.get("inputs")}
            for r in rows for c in r["clips"]]


def _analyse(c: dict, *, cfg, clips: Path, rate: int, parser, pose, sync) -> dict:
    """The analyse record of one clip: speech and motion, then (each if its model is set) pose, face parsing
    (with the pose's hands region) and the SyncNet check."""
    from common.audio_io import load_audio
    from common.video_io import read_video
    from realvideo.annotate import analyse_clip

    frames = read_video(clips / f"{c['name']}.mp4", sample_rate=None).frames
    original = clips / f"{c['name']}.orig.wav"  # kept by a realignment: measure the source audio
    wave = load_audio(original if original.is_file() else clips / f"{c['name']}.wav", rate)
    measured = analyse_clip(frames, wave, rate, cfg.prep.vad)
    boxes, hands = None, None
    if pose is not None:
        from realvideo.pose import hand_masks
        summary, points = _pose(pose, frames, clips / f"{c['name']}.pose.npz")
        measured |= summary

        def hands(face_px):  # wrist discs 0.4 face heights wide (0.08 frame heights when no face was found)
            radius = 0.4 * face_px if face_px else 0.08 * frames.shape[1]
            return hand_masks(points, pose.wrists, frames.shape[1], frames.shape[2], radius)
    if parser is not None:
        faces, boxes = parser.analyse(frames, clips / f"{c['name']}.regions.npz", hands)
        measured |= faces
    if sync is not None:  # last: it may rewrite the wav (realign), after speech was measured
        measured |= sync(frames, wave, boxes, clips / f"{c['name']}.wav")
    keep = ("source", "split", "start", "end", "frames", "height", "width")
    return ledger.kept(c["name"], **({k: c[k] for k in keep} | measured))


def _annotate(c: dict, *, cfg, clips: Path, entries: dict, vlm, llm) -> dict:
    """The annotate record of one clip (realvideo/annotate.annotate_clip), asking the VLM / video LLM if set."""
    from common.video_io import read_video
    from realvideo.annotate import VIDEO_LLM_QUESTION, annotate_clip

    entry = entries[c["source"]]
    fields = {k: v for k, v in c.items() if k not in ("name", "kept")}
    frames = lambda: read_video(clips / f"{c['name']}.mp4", sample_rate=None).frames
    describe = (lambda: vlm(frames()[0])) if vlm is not None else None

    def ask_video(duration):  # prep.video_llm_frames frames spread over the clip, in order
        f = frames()
        picks = np.linspace(0, len(f) - 1, cfg.prep.video_llm_frames).round().astype(int)
        return llm.ask(list(f[picks]), VIDEO_LLM_QUESTION.format(n=len(picks), duration=duration))
    return ledger.kept(c["name"], **fields, **annotate_clip(entry.prompt, entry.caption, c, c["speech"], cfg.prep,
                                                            describe, ask_video if llm is not None else None))


def _work(cfg, stage: str, root: Path, entries: dict):
    """(items, make) of a stage: make() -> the function item -> record. Models (face parser, pose, SyncNet,
    VLMs) load inside make(), which run_stage calls before the first item that is not skipped, outside the
    per-item error handling: a resumed stage with nothing to do loads nothing, a bad model path still stops
    the stage with one error."""
    settings = _settings(cfg)
    if stage == "probe":
        from realvideo.probe import probe_entry
        seconds = settings["clip_frames"] / settings["fps"]
        return list(entries.values()), lambda: lambda e: probe_entry(e, seconds)
    if stage == "segment":
        from realvideo.segment import segment_video
        probes = ledger.read_kept(root, "probe", "segment")
        return probes, lambda: lambda r: segment_video(r, entries[r["name"]].segments, root / CLIP_DIR, settings)
    if stage == "analyse":
        def make():
            parser = pose = sync = None
            if cfg.prep.face_parser:
                from realvideo.faces import FaceParser
                parser = FaceParser(cfg.prep.face_parser, cfg.prep.face_parser_size, cfg.prep.parse_every)
            if cfg.prep.pose_model:
                from realvideo.pose import PoseEstimator
                pose = PoseEstimator(cfg.prep.pose_model, cfg.prep.parse_every)
            if cfg.prep.syncnet:
                from realvideo.lipsync import SyncCheck
                sync = SyncCheck(cfg.prep, settings["fps"], settings["sample_rate"])
            return functools.partial(_analyse, cfg=cfg, clips=root / CLIP_DIR, rate=settings["sample_rate"],
                                     parser=parser, pose=pose, sync=sync)
        return _clips(root, "segment", "analyse"), make
    if stage == "filter":
        from realvideo.annotate import filter_reason

        def check(c):
            fields = {k: v for k, v in c.items() if k not in ("name", "kept")}
            fault = filter_reason(c, cfg.prep)
            return ledger.rejected(c["name"], *fault, **fields) if fault else ledger.kept(c["name"], **fields)
        return ledger.read_kept(root, "analyse", "filter"), lambda: check
    if stage == "annotate":
        def make():
            vlm = llm = None
            if cfg.prep.vlm:
                from common.vlm import VisionLanguageAttributes
                vlm = VisionLanguageAttributes(cfg.prep.vlm, setting="prep.vlm")
            if cfg.prep.video_llm:
                from common.vlm import VisionLanguageModel
                llm = VisionLanguageModel(cfg.prep.video_llm, 512, "prep.video_llm", "video LLM")
            return functools.partial(_annotate, cfg=cfg, clips=root / CLIP_DIR, entries=entries, vlm=vlm, llm=llm)
        return ledger.read_kept(root, "filter", "annotate"), make
    raise DataError(f"--stage {stage!r}: unknown; stages: {list(STAGES)}")


def run_stage(cfg, stage: str, shard: str = "0/1", progress: bool = True, redo: bool = False) -> dict:
    """Run one stage over its (shard of) items; returns {"done", "skipped", "kept", "rejected", "errors", "stale"}.
    An item is skipped when its record was made from the same inputs (the item itself or its upstream record,
    and the settings of STAGE_KEYS); else redone. Unsharded runs move records of items that left the input
    (a manifest line removed, a clip dropped upstream) to `<stage>.stale/`."""
    import av
    av.logging.set_level(None)  # FFmpeg's per-file chatter (faults go to the ledger instead)
    root = Path(cfg.data.root)
    entries = _entries(cfg)
    items, make = _work(cfg, stage, root, entries)
    fn = None
    todo = ledger.shard(items, shard)
    name_of = (lambda x: x.name) if stage == "probe" else (lambda x: x["name"])
    settings = _stage_settings(cfg, stage)
    counts = Counter()
    for item in tqdm(todo, desc=f"prep {stage}", unit="item", disable=not progress):
        name = name_of(item)
        entry = entries.get(item["source"]) if stage == "annotate" else None  # its prompt / caption, as edited
        inputs = ledger.fingerprint(_item_state(item), settings, entry and [entry.prompt, entry.caption])
        if not redo and ledger.is_done(root, stage, name, inputs):
            counts["skipped"] += 1
            continue
        fn = fn or make()
        try:
            record = fn(item)
        except (DataError, ValueError, OSError) as error:  # one bad item never stops the set
            record = ledger.rejected(name, "error", f"{type(error).__name__}: {error}",
                                     trace=traceback.format_exc(limit=3))
            counts["errors"] += 1
        ledger.write_record(root, stage, record | {"inputs": inputs})
        counts["done"] += 1
    if shard == "0/1":  # the whole input is known: records of items no longer in it are stale
        counts["stale"] = ledger.sweep_stale(root, stage, {name_of(x) for x in items})
    keep, drop = ledger.collect(root, stage)
    return {"stage": stage, **counts, "kept": len(keep), "rejected": len(drop)}


def inspect(cfg) -> str:
    """Clips per bucket and split, seconds kept, rejects by reason and prompt sources, as text."""
    root = Path(cfg.data.root)
    lines = [f"prep root: {root}"]
    for stage, counts in ledger.reason_counts(root, STAGES).items():
        if counts:
            lines.append(f"  {stage:9s} rejects: " + ", ".join(f"{r} {n}" for r, n in counts.most_common()))
    final = next((s for s in reversed(STAGES) if (root / f"{s}.jsonl").is_file()), None)
    if final is None:
        return "\n".join(lines + ["  nothing prepared yet: run `main.py prep --stage probe`"])
    rows = _clips(root, final, "inspect") if final == "segment" else ledger.read_kept(root, final, "inspect")
    if final == "probe":
        seconds = sum(r["usable_duration"] for r in rows)
        return "\n".join(lines + [f"  probe: {len(rows)} videos kept, {seconds:.1f} s usable; run --stage segment"])
    buckets = Counter((r["split"], r["height"], r["width"], r["frames"]) for r in rows)
    seconds = sum(r["end"] - r["start"] for r in rows)
    lines.append(f"  after {final}: {len(rows)} clips, {seconds:.1f} s")
    for (split, h, w, f), n in sorted(buckets.items()):
        lines.append(f"    {split:5s} {h}x{w} x {f} frames: {n} clips")
    sources = Counter(r.get("prompt_source") for r in rows if r.get("prompt_source"))
    if sources:
        lines.append("  prompts: " + ", ".join(f"{s} {n}" for s, n in sources.most_common()))
    return "\n".join(lines)


def cmd_prep(cfg, args) -> int:
    if args.inspect:
        print(inspect(cfg))
        return 0
    stages = STAGES if args.stage == "all" else (args.stage,)
    for stage in stages:
        if stage != "cache":  # the encoder cache is system/condition_cache.py's (main.py runs it after these)
            print(json.dumps(run_stage(cfg, stage, args.shard, progress=not args.quiet, redo=args.redo)))
    return 0
