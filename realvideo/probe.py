"""Prep stage 1, probe (issue 16): container metadata of each source video via PyAV, without decoding it.

For every manifest entry: does the file exist and open; its video stream's size, nominal frame rate and
display rotation; the presentation timestamps of every video packet (demuxed, not decoded: cheap), from
which the frame count, duration and constant-frame-rate check come; the audio (container track or the
entry's separate file): rate, channels, duration. The usable length is the shorter of video and audio.
Rejects: missing_file, unreadable, zero_length, no_audio, audio_unreadable, variable_frame_rate, rotated,
too_short (see realvideo/ledger.py REASONS).
Trade-off: variable frame rate and rotation are rejected rather than fixed, because silently retiming or
rotating frames is exactly the hidden change users of other tools could not find; the ledger says how
to fix the file (re-encode), and a clip is never trained on a timing it does not have.
"""
from __future__ import annotations

from pathlib import Path

import av
import numpy as np

from realvideo.ledger import kept, rejected
from realvideo.manifest import ManifestEntry

VFR_TOLERANCE = 0.1  # a frame interval more than 10 % off the median counts as irregular ...
VFR_FRACTION = 0.01  # ... and more than 1 % irregular intervals make the stream variable-rate


def _rotation(stream, container) -> int:
    """Display rotation in degrees (0 if none): the first frame's display matrix, else the 'rotate' tag."""
    tag = (stream.metadata or {}).get("rotate")
    try:
        for frame in container.decode(stream):
            return int(round(frame.rotation)) % 360 or (int(tag) % 360 if tag else 0)
    except av.FFmpegError:
        pass
    return int(tag) % 360 if tag else 0


def _video_info(path: Path) -> dict:
    with av.open(str(path)) as container:
        if not container.streams.video:
            return {"error": ("zero_length", "no video stream")}
        stream = container.streams.video[0]
        pts = np.array(sorted(p.pts for p in container.demux(stream) if p.pts is not None and p.size), float)
        if pts.size == 0:
            return {"error": ("zero_length", "no video packets")}
        tb = float(stream.time_base)
        fps = float(stream.average_rate or stream.guessed_rate or 0)
        container.seek(0)
        rotation = _rotation(stream, container)
        info = {"width": stream.width, "height": stream.height, "fps": fps, "frames": int(pts.size),
                "rotation": rotation, "has_audio_track": bool(container.streams.audio)}
        deltas = np.diff(pts) * tb
        if deltas.size >= 2:
            median = float(np.median(deltas))
            irregular = float(np.mean(np.abs(deltas - median) > VFR_TOLERANCE * median))
            info |= {"irregular_intervals": irregular, "median_interval": median}
            if median > 0:
                info["fps_measured"] = 1.0 / median
        interval = info.get("median_interval") or (1.0 / fps if fps else 0.0)
        info["duration"] = float(pts[-1] - pts[0]) * tb + interval
        return info


def _audio_info(path: Path, stream_index: int = 0) -> dict:
    with av.open(str(path)) as container:
        if not container.streams.audio:
            return {"error": ("no_audio", "no audio stream")}
        stream = container.streams.audio[stream_index]
        samples, rate = 0, stream.rate
        for frame in container.decode(stream):  # decoded: packet durations are unreliable for AAC priming
            samples += frame.samples
        if samples == 0:
            return {"error": ("audio_unreadable", "audio stream decodes to no samples")}
        return {"audio_rate": int(rate), "audio_channels": int(stream.channels), "audio_duration": samples / rate}


def probe_entry(entry: ManifestEntry, clip_seconds: float) -> dict:
    """The probe record of one entry: kept with its metadata, or rejected with a reason."""
    video = Path(entry.video)
    base = {"video": entry.video, "audio": entry.audio, "split": entry.split}
    if not video.is_file():
        return rejected(entry.name, "missing_file", f"{video} does not exist", **base)
    if video.stat().st_size == 0:
        return rejected(entry.name, "zero_length", f"{video} is empty (0 bytes)", **base)
    try:
        info = _video_info(video)
    except (av.FFmpegError, UnicodeDecodeError, ValueError) as error:
        return rejected(entry.name, "unreadable", f"{video}: {getattr(error, 'strerror', None) or error}", **base)
    if "error" in info:
        return rejected(entry.name, *info["error"], **base)
    base |= info
    if info["rotation"]:
        return rejected(entry.name, "rotated", f"display rotation {info['rotation']} degrees; re-encode with "
                        "the rotation applied (ffmpeg -i in.mp4 -metadata:s:v rotate=0 out.mp4 applies it)", **base)
    if info.get("irregular_intervals", 0.0) > VFR_FRACTION:
        return rejected(entry.name, "variable_frame_rate",
                        f"{100 * info['irregular_intervals']:.1f}% of frame intervals are more than "
                        f"{100 * VFR_TOLERANCE:.0f}% off the median; re-encode at a constant rate "
                        "(ffmpeg -i in.mp4 -vsync cfr -r 25 out.mp4)", **base)
    audio_path = Path(entry.audio) if entry.audio else video
    if entry.audio and not audio_path.is_file():
        return rejected(entry.name, "missing_file", f"audio file {audio_path} does not exist", **base)
    try:
        audio = _audio_info(audio_path)
    except (av.FFmpegError, UnicodeDecodeError, ValueError) as error:
        return rejected(entry.name, "audio_unreadable", f"{audio_path}: {getattr(error, 'strerror', None) or error}",
                        **base)
    if "error" in audio:
        reason, detail = audio["error"]
        if reason == "no_audio" and not entry.audio:
            detail = "the container has no audio track; add \"audio\": <file> to the manifest line"
        return rejected(entry.name, reason, f"{audio_path}: {detail}", **base)
    base |= audio
    usable = min(info["duration"], audio["audio_duration"])
    base["usable_duration"] = usable
    if usable + 1e-6 < clip_seconds:
        return rejected(entry.name, "too_short", f"{usable:.2f} s usable (video {info['duration']:.2f} s, audio "
                        f"{audio['audio_duration']:.2f} s) < one clip of {clip_seconds:.2f} s", **base)
    return kept(entry.name, **base)
