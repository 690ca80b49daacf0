"""`main.py data export` (issue 16): SynthAvatar clips as ordinary videos plus a manifest, and a set of odd
and broken files, so the real-video path can be run end to end (and tested) without any real data.

Every exported clip is an H.264 + AAC mp4 with its structured prompt inline in `manifest.jsonl` (windows
in seconds of that video, phase actions kept as the dataset's action vocabulary). With `odd=True` the
export adds the inputs real sets contain, each with the reject reason (or none) prep must give it,
written to `expected.json`:
- kept: a non-square 64x48 crop, a 30 fps resample (sample and hold), two clips joined into one 8 s video
  with a scene cut between them, a video whose audio is a separate wav file;
- rejected: a 0-byte file (zero_length), a truncated mp4 (unreadable), a video without audio (no_audio),
  a rotated stream (rotated), irregular frame timestamps (variable_frame_rate), a 1 s clip (too_short),
  a manifest line whose file does not exist (missing_file).
Trade-off: the odd files are made from the same procedural clips, so they test the plumbing and the
ledger, not how robust a face parser is on real faces.
"""
from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from tqdm import tqdm

from common.atomic import atomic_write, atomic_write_bytes
from common.audio_io import save_wav
from common.video_io import write_video
from realvideo.manifest import ManifestEntry, write_manifest


def _entry(out: Path, name: str, video: str, split: str, prompt: dict | None, audio: str | None = None,
           caption: str | None = None) -> ManifestEntry:
    return ManifestEntry(name=name, video=str(out / video), split=split, speaker=name, prompt=prompt,
                         audio=str(out / audio) if audio else None, caption=caption)


def _write_custom(path: Path, frames: np.ndarray, pts_ms: list[int], rotation: int = 0) -> None:
    """mp4 with explicit frame timestamps (ms) and an optional display rotation; no audio."""
    def write(tmp: str) -> None:
        with av.open(tmp, "w") as container:
            stream = container.add_stream("libx264", rate=25)
            stream.width, stream.height, stream.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
            stream.codec_context.time_base = Fraction(1, 1000)
            if rotation:
                stream.set_display_rotation(rotation)
            for frame_array, pts in zip(frames, pts_ms):
                frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame_array), format="rgb24")
                frame.pts, frame.time_base = pts, Fraction(1, 1000)
                for packet in stream.encode(frame):
                    container.mux(packet)
            for packet in stream.encode():
                container.mux(packet)
    atomic_write(path, write)


def _shift_prompt(prompt: dict, offset: float, duration: float) -> dict:
    phases = [dict(p, start=round(p["start"] + offset, 4), end=round(p["end"] + offset, 4)) for p in prompt["phases"]]
    return dict(prompt, duration=duration, phases=phases)


def export_odd(out: Path, clips: list[dict], fps: float, sample_rate: int) -> tuple[list[ManifestEntry], dict]:
    """The odd and broken files from the first clips; returns (entries, name -> expected reason or None)."""
    a, b = clips[0], clips[1 % len(clips)]
    v, audio, prompt = a["video"], a["audio"], a["prompt"]
    entries, expected = [], {}

    def add(name, reason, video, prompt_=prompt, **kw):
        entries.append(_entry(out, name, video, "train", prompt_, **kw))
        expected[name] = reason

    crop = v[:, 8:56, :, :]  # 64 wide x 48 high (even sizes for H.264)
    write_video(out / "odd/nonsquare.mp4", crop, fps, audio, sample_rate)
    add("odd_nonsquare", None, "odd/nonsquare.mp4")
    idx = np.floor(np.arange(int(round(len(v) * 30 / fps))) * fps / 30 + 1e-9).astype(int)  # 25 -> 30 fps
    write_video(out / "odd/fps30.mp4", v[idx], 30.0, audio, sample_rate)
    add("odd_fps30", None, "odd/fps30.mp4")
    seconds = len(v) / fps
    joined = np.concatenate([v, b["video"]])
    write_video(out / "odd/two_scenes.mp4", joined, fps, np.concatenate([audio, b["audio"]]), sample_rate)
    two = dict(prompt, duration=2 * seconds,
               phases=prompt["phases"] + _shift_prompt(b["prompt"], seconds, 2 * seconds)["phases"])
    add("odd_two_scenes", None, "odd/two_scenes.mp4", two)
    write_video(out / "odd/separate_audio.mp4", v, fps)
    save_wav(out / "odd/separate_audio.wav", audio, sample_rate)
    add("odd_separate_audio", None, "odd/separate_audio.mp4", audio="odd/separate_audio.wav")

    atomic_write_bytes(out / "odd/empty.mp4", b"")
    add("odd_empty", "zero_length", "odd/empty.mp4")
    write_video(out / "odd/full.mp4", v, fps, audio, sample_rate)
    data = (out / "odd/full.mp4").read_bytes()
    atomic_write_bytes(out / "odd/truncated.mp4", data[: len(data) // 3])
    (out / "odd/full.mp4").unlink()
    add("odd_truncated", "unreadable", "odd/truncated.mp4")
    write_video(out / "odd/no_audio.mp4", v, fps)
    add("odd_no_audio", "no_audio", "odd/no_audio.mp4")
    _write_custom(out / "odd/rotated.mp4", v, [int(round(1000 * i / fps)) for i in range(len(v))], rotation=90)
    add("odd_rotated", "rotated", "odd/rotated.mp4")
    jitter = np.cumsum([40 if i % 3 else 75 for i in range(len(v))]).tolist()
    _write_custom(out / "odd/vfr.mp4", v, jitter)
    add("odd_vfr", "variable_frame_rate", "odd/vfr.mp4")
    short = int(fps)  # 1 s
    write_video(out / "odd/short.mp4", v[:short], fps, audio[: int(sample_rate * short / fps)], sample_rate)
    add("odd_short", "too_short", "odd/short.mp4", caption="A person talks.", prompt_=None)
    add("odd_missing", "missing_file", "odd/does_not_exist.mp4")
    return entries, expected


def export_synthavatar(data_cfg, out: str | Path, splits=("train", "val", "test"), max_clips: int = 0,
                       odd: bool = False, progress: bool = True) -> dict:
    """Write SynthAvatar clips as mp4 + manifest.jsonl (+ odd files and expected.json). Returns a summary."""
    import json

    from synthavatar.dataset import ensure_split, load_clip

    out = Path(out).resolve()
    fps, rate = float(data_cfg["fps"]), int(data_cfg["sample_rate"])
    entries, expected, first = [], {}, []
    for split in splits:
        paths = ensure_split(data_cfg, split, progress)
        paths = paths[:max_clips] if max_clips else paths
        for i, path in enumerate(tqdm(paths, desc=f"export {split}", disable=not progress)):
            clip = load_clip(path)
            name = f"{split}_{i:05d}"
            write_video(out / "videos" / f"{name}.mp4", clip["video"], fps, clip["audio"], rate)
            entries.append(_entry(out, name, f"videos/{name}.mp4", split, clip["prompt"]))
            expected[name] = None
            if split == "train" and len(first) < 2:
                first.append(clip)
    if odd:
        if not first:
            raise ValueError("data export --odd needs the train split")
        odd_entries, odd_expected = export_odd(out, first, fps, rate)
        entries, expected = entries + odd_entries, expected | odd_expected
    manifest = write_manifest(out / "manifest.jsonl", entries)
    atomic_write_bytes(out / "expected.json", json.dumps(expected, indent=1).encode())
    return {"manifest": str(manifest), "videos": len(entries), "odd": sum(1 for e in entries if e.name.startswith("odd_"))}
