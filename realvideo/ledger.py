"""Prep's per-item records and the reject ledger (issue 16): every stage explains every clip it drops.

Each stage of `main.py prep` writes one small JSON record per item it handled to `<prep_root>/<stage>/
<name>.json` (atomically), `{"name", "kept": bool, "reason", "detail", ...stage fields}`. A record on disk
means the item is finished, so an interrupted or sharded run resumes by skipping those names, and shards
never write the same file. `collect` rebuilds the stage's two summaries from the records: `<stage>.jsonl`
(kept items, what the next stage reads) and `<stage>.ledger.jsonl` (dropped items with their reason).
Trade-off: one file per item costs inodes on million-clip sets, but needs no lock between shards and
leaves nothing half-written when a process is killed.
"""
from __future__ import annotations

import hashlib
import json
import os
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path

from common.atomic import atomic_write_bytes
from common.errors import DataError

# reason -> what it means (README "Train on your own videos" lists these; `prep --inspect` counts them)
REASONS: dict[str, str] = {
    "missing_file": "the video (or its separate audio) file does not exist",
    "unreadable": "FFmpeg cannot open or decode the file (corrupt, truncated or not a video)",
    "zero_length": "the file is empty or has no decodable video frames",
    "no_audio": "no audio track in the container and no separate audio file",
    "audio_unreadable": "the audio track or separate audio file cannot be decoded",
    "variable_frame_rate": "frame timestamps are not evenly spaced (re-encode at a constant rate first)",
    "rotated": "the stream carries a display rotation (re-encode with the rotation applied)",
    "too_short": "shorter (after trimming to the audio) than one clip of data.duration seconds",
    "no_clip_fits": "no scene or manifest segment is long enough for one clip",
    "bad_prompt": "the manifest prompt does not fit the clip (a window outside it, or no phase left)",
    "no_face": "the face parser found a face in fewer frames than prep.min_face_frames",
    "face_too_small": "the median face height is below prep.min_face_size of the frame height",
    "low_body_motion": "the pose model's keypoints move less than prep.min_pose_motion (a still body)",
    "high_body_motion": "the keypoints move more than prep.max_pose_motion (shake, fast camera, a cut)",
    "low_sync": "SyncNet confidence (Sync-C) below prep.min_sync_conf: lips and audio do not match",
    "av_offset": "audio and video are further apart than prep.max_sync_offset frames (SyncNet offset)",
    "low_speech": "speech covers less of the clip than prep.min_speech_ratio",
    "too_static": "less motion than prep.min_motion",
    "too_much_motion": "more motion than prep.max_motion (camera shake, cuts the scene detector missed)",
    "error": "an unexpected error while processing (the detail holds it); rerun the stage to retry",
}


def record_dir(prep_root: str | Path, stage: str) -> Path:
    return Path(prep_root) / stage


def record_path(prep_root: str | Path, stage: str, name: str) -> Path:
    return record_dir(prep_root, stage) / f"{name}.json"


def is_done(prep_root, stage: str, name: str, inputs: str | None = None) -> bool:
    """A record exists (and, given `inputs`, was made from the same inputs: else the item is redone)."""
    path = record_path(prep_root, stage, name)
    if not path.is_file():
        return False
    return inputs is None or read_record(path).get("inputs") == inputs


def fingerprint(*parts) -> str:
    """A short hash of JSON-able parts (an item, the settings its stage reads)."""
    text = json.dumps(parts, sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def sweep_stale(prep_root, stage: str, current: set[str]) -> int:
    """Move records of items no longer in the stage's input (a manifest line removed, a clip dropped
    upstream) to `<stage>.stale/`, so collect() leaves them out; returns how many."""
    folder, moved = record_dir(prep_root, stage), 0
    for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        if path.stem not in current:
            target = Path(prep_root) / f"{stage}.stale" / path.name
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(path, target)
            moved += 1
    return moved


def kept(name: str, **fields) -> dict:
    return {"name": name, "kept": True} | fields


def rejected(name: str, reason: str, detail: str = "", **fields) -> dict:
    if reason not in REASONS:
        raise ValueError(f"unknown reject reason {reason!r}; add it to realvideo.ledger.REASONS")
    return {"name": name, "kept": False, "reason": reason, "detail": detail} | fields


def write_record(prep_root, stage: str, record: dict) -> Path:
    text = json.dumps(record, ensure_ascii=False, indent=1)
    return atomic_write_bytes(record_path(prep_root, stage, record["name"]), text.encode("utf-8"))


def read_record(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as error:
        raise DataError(f"{path}: unreadable prep record ({error}); delete it to redo this item") from None


def records(prep_root, stage: str) -> list[dict]:
    """Every record of a stage, sorted by name."""
    folder = record_dir(prep_root, stage)
    return [read_record(p) for p in sorted(folder.glob("*.json"))] if folder.is_dir() else []


def _write_jsonl(path: Path, rows: Iterable[dict]) -> None:
    atomic_write_bytes(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows).encode("utf-8"))


def collect(prep_root, stage: str) -> tuple[list[dict], list[dict]]:
    """Write `<stage>.jsonl` (kept) and `<stage>.ledger.jsonl` (dropped) from the records."""
    rows = records(prep_root, stage)
    keep = [r for r in rows if r["kept"]]
    drop = [r for r in rows if not r["kept"]]
    # a stage that drops parts of an item (a too-short scene) lists them under "rejects"
    drop_parts = [x for r in keep for x in r.get("rejects", [])]
    _write_jsonl(Path(prep_root) / f"{stage}.jsonl", keep)
    _write_jsonl(Path(prep_root) / f"{stage}.ledger.jsonl", drop + drop_parts)
    return keep, drop + drop_parts


def read_kept(prep_root, stage: str, needed_by: str) -> list[dict]:
    path = Path(prep_root) / f"{stage}.jsonl"
    if not path.is_file():
        raise DataError(f"{path}: missing; run `main.py prep --stage {stage}` before --stage {needed_by}")
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def reason_counts(prep_root, stages: Sequence[str]) -> dict[str, Counter]:
    """stage -> Counter of reject reasons (from the ledgers written so far)."""
    out = {}
    for stage in stages:
        path = Path(prep_root) / f"{stage}.ledger.jsonl"
        if path.is_file():
            rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
            out[stage] = Counter(r["reason"] for r in rows)
    return out


def shard(items: Sequence, spec: str) -> list:
    """Items of shard `i/n` (0-based i): every n-th item starting at i."""
    try:
        i, n = (int(x) for x in spec.split("/"))
    except ValueError:
        raise DataError(f"--shard {spec!r}: expected i/n with 0 <= i < n, e.g. 0/4") from None
    if not 0 <= i < n:
        raise DataError(f"--shard {spec!r}: expected i/n with 0 <= i < n, e.g. 0/4")
    return list(items[i::n])
