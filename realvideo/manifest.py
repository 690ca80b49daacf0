"""The real-video manifest (issue 16): one source video per JSONL line, and importers for the peers' layouts.

A line (relative paths are resolved against the manifest's folder):

    {"video": "videos/a.mp4", "name": "a", "audio": null, "speaker": "s01", "split": "train",
     "prompt": "prompts/a.json" | {inline structured-prompt JSON} | null, "caption": "a flat caption",
     "segments": [[12.0, 17.0], [17.0, 22.0]] | null}

Only `video` is required. `name` defaults to the video's file stem and must be unique (it names every file
prep writes); `audio` null = the container's own track; `split` is train | val | test (default train);
`prompt` is a structured prompt (docs/prompt_format.md) whose windows are seconds of the *source* video
(prep cuts them to each clip); `caption` a flat description used when there is no prompt; `segments`
restricts prep to these [start, end) second ranges (null = the whole video, cut at scene changes).
Importers: DiffSynth-Studio's metadata.csv (`video,prompt[,input_audio]`) and VideoX-Fun's metadata.json
(a list of `{file_path, text, type, audio_path}`).

Every fault is a DataError that starts with `<file> line <n>:` (or `<file>:` for the file itself), and the
whole manifest is read and checked before anything runs. Missing or broken *media* files are not manifest
errors: prep's probe stage records them in the reject ledger, so one bad video never stops a large set.
Trade-off: prompts are parsed here (syntax and window order), but checked against a duration only in
prep, once the video's length is known.
"""
from __future__ import annotations

import csv
import json
import re
from dataclasses import asdict, dataclass
from pathlib import Path

from common.atomic import atomic_write_bytes
from common.errors import DataError, PromptError
from models.prompt import from_json, load_prompt, to_json

FIELDS = ("video", "name", "audio", "speaker", "split", "prompt", "caption", "segments")
SPLITS = ("train", "val", "test")
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


@dataclass(frozen=True)
class ManifestEntry:
    """One source video. `prompt` is the structured prompt's JSON form (seconds of the source video)."""

    name: str
    video: str  # absolute path
    split: str = "train"
    audio: str | None = None  # absolute path; None = the container's audio track
    speaker: str | None = None
    prompt: dict | None = None
    caption: str | None = None
    segments: tuple[tuple[float, float], ...] | None = None
    line: int = 0  # 1-based line of the manifest (0 = built in code)

    def to_line(self, root: Path | None = None) -> dict:
        """The JSONL form; paths relative to `root` when they lie under it."""
        def rel(path):
            if path is None or root is None:
                return path
            try:
                return str(Path(path).relative_to(root))
            except ValueError:
                return path
        out = {k: v for k, v in asdict(self).items() if k != "line" and v is not None}
        out["video"], out["audio"] = rel(self.video), rel(self.audio)
        if self.segments is not None:
            out["segments"] = [list(s) for s in self.segments]
        return {k: v for k, v in out.items() if v is not None}


def _where(path: Path, line: int) -> str:
    return f"{path} line {line}"


def _path(value, key: str, root: Path, where: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise DataError(f"{where}: '{key}' must be a non-empty path string (got {value!r})")
    p = Path(value).expanduser()
    return str(p if p.is_absolute() else (root / p))


def _segments(value, where: str) -> tuple[tuple[float, float], ...]:
    if not isinstance(value, list) or not value:
        raise DataError(f"{where}: 'segments' must be a non-empty list of [start, end] seconds (got {value!r})")
    out = []
    for k, seg in enumerate(value):
        ok = (isinstance(seg, (list, tuple)) and len(seg) == 2
              and all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in seg))
        if not ok or not 0 <= seg[0] < seg[1]:
            raise DataError(f"{where}: segment {k + 1} must be [start, end] with 0 <= start < end (got {seg!r})")
        if out and seg[0] < out[-1][1]:
            raise DataError(f"{where}: segment {k + 1} {list(seg)} overlaps or precedes segment {k} "
                            f"{list(out[-1])}; list them in order without overlap")
        out.append((float(seg[0]), float(seg[1])))
    return tuple(out)


def _prompt(value, root: Path, where: str) -> dict:
    try:
        if isinstance(value, dict):
            return to_json(from_json(value, source=where))
        if isinstance(value, str):
            return to_json(load_prompt(_path(value, "prompt", root, where)))
    except PromptError as error:
        raise DataError(f"{where}: bad prompt: {error}") from None
    raise DataError(f"{where}: 'prompt' must be a file path or an inline JSON object (got {type(value).__name__})")


def parse_entry(obj, root: Path, where: str, line: int = 0) -> ManifestEntry:
    """One manifest object -> ManifestEntry (paths resolved against `root`)."""
    if not isinstance(obj, dict):
        raise DataError(f"{where}: expected a JSON object, got {type(obj).__name__}")
    unknown = sorted(set(obj) - set(FIELDS))
    if unknown:
        raise DataError(f"{where}: unknown field(s) {unknown}; valid fields: {list(FIELDS)}")
    if "video" not in obj:
        raise DataError(f"{where}: missing required field 'video'")
    video = _path(obj["video"], "video", root, where)
    name = obj.get("name") or Path(video).stem
    if not isinstance(name, str) or not NAME.match(name):
        raise DataError(f"{where}: name {name!r} must be letters, digits, '.', '_' or '-' (it names prep's files)")
    split = obj.get("split") or "train"
    if split not in SPLITS:
        raise DataError(f"{where}: split must be one of {list(SPLITS)} (got {split!r})")
    for key in ("speaker", "caption"):
        if obj.get(key) is not None and not isinstance(obj[key], str):
            raise DataError(f"{where}: '{key}' must be a string (got {type(obj[key]).__name__})")
    return ManifestEntry(
        name=name, video=video, split=split,
        audio=_path(obj["audio"], "audio", root, where) if obj.get("audio") is not None else None,
        speaker=obj.get("speaker"), caption=obj.get("caption") or None,
        prompt=_prompt(obj["prompt"], root, where) if obj.get("prompt") is not None else None,
        segments=_segments(obj["segments"], where) if obj.get("segments") is not None else None, line=line)


def _unique(entries: list[ManifestEntry], path: Path) -> list[ManifestEntry]:
    seen: dict[str, int] = {}
    for e in entries:
        if e.name in seen:
            raise DataError(f"{_where(path, e.line)}: name {e.name!r} is already used on line {seen[e.name]}; "
                            "names must be unique (set 'name' explicitly)")
        seen[e.name] = e.line
    return entries


def read_manifest(path: str | Path) -> list[ManifestEntry]:
    """Every entry of a JSONL manifest, checked; blank lines and lines starting with # are skipped."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: manifest does not exist" if not path.exists() else f"{path}: not a file")
    root = path.resolve().parent
    entries = []
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as error:
        raise DataError(f"{path}: not UTF-8 text ({error})") from None
    for number, text in enumerate(lines, start=1):
        if not text.strip() or text.lstrip().startswith("#"):
            continue
        try:
            obj = json.loads(text)
        except json.JSONDecodeError as error:
            raise DataError(f"{_where(path, number)}: invalid JSON ({error.msg} at column {error.colno})") from None
        entries.append(parse_entry(obj, root, _where(path, number), number))
    if not entries:
        raise DataError(f"{path}: manifest has no entries")
    return _unique(entries, path)


def write_manifest(path: str | Path, entries: list[ManifestEntry]) -> Path:
    """Atomically write `entries` as JSONL, paths relative to the manifest's folder where possible."""
    path = Path(path)
    root = path.resolve().parent
    text = "".join(json.dumps(e.to_line(root), ensure_ascii=False) + "\n" for e in entries)
    return atomic_write_bytes(path, text.encode("utf-8"))


# --------------------------------------------------------------------------- importers


def import_diffsynth(path: str | Path) -> list[ManifestEntry]:
    """DiffSynth-Studio metadata.csv: columns video (required), prompt (a flat caption), and the S2V
    audio column input_audio (or audio); paths relative to the csv's folder (its --dataset_base_path)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: metadata.csv does not exist")
    root = path.resolve().parent
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        columns = reader.fieldnames or []
        if "video" not in columns:
            raise DataError(f"{path}: DiffSynth metadata.csv needs a 'video' column (found {columns})")
        entries = []
        for number, row in enumerate(reader, start=2):  # line 1 is the header
            audio = row.get("input_audio") or row.get("audio") or None
            obj = {"video": row["video"], "caption": (row.get("prompt") or "").strip() or None, "audio": audio}
            entries.append(parse_entry({k: v for k, v in obj.items() if v is not None}, root,
                                       _where(path, number), number))
    if not entries:
        raise DataError(f"{path}: metadata.csv has no rows")
    return _unique(entries, path)


def import_videox(path: str | Path) -> tuple[list[ManifestEntry], int]:
    """VideoX-Fun metadata.json: a list of {file_path, text, type, audio_path}; image entries (type
    "image") are skipped and counted. Returns (entries, skipped images)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: metadata.json does not exist")
    try:
        items = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise DataError(f"{path}: invalid JSON ({error.msg} at line {error.lineno})") from None
    if not isinstance(items, list):
        raise DataError(f"{path}: VideoX-Fun metadata.json must be a list of objects")
    root, entries, images = path.resolve().parent, [], 0
    for k, item in enumerate(items, start=1):
        where = f"{path} item {k}"
        if not isinstance(item, dict) or "file_path" not in item:
            raise DataError(f"{where}: expected an object with 'file_path'")
        if item.get("type", "video") == "image":
            images += 1
            continue
        obj = {"video": item["file_path"], "caption": (item.get("text") or "").strip() or None,
               "audio": item.get("audio_path") or None}
        entries.append(parse_entry({k2: v for k2, v in obj.items() if v is not None}, root, where, k))
    if not entries:
        raise DataError(f"{path}: no video entries (skipped {images} images)")
    return _unique(entries, path), images
