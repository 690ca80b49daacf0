"""Prep stage 2, segment (issue 16): scene cuts, then fixed-length clips at the run's frame rate and size.

Per probed source video: scene cuts by PySceneDetect's ContentDetector (PyAV backend); the ranges to cut
are the scenes, intersected with the manifest's `segments` when given and with the usable length (video
and audio both present). Each range gives back-to-back clips of T = 4n+1 frames (the largest such T with
T <= data.duration * data.fps, Wan's causal-VAE geometry: 4 s at 25 fps -> 97 frames), leftovers dropped.
Resampling is exact and visible: output frame k of a clip starting at s shows the source frame on screen at
time s + k / fps (sample and hold), so 30 -> 25 fps drops frames and 24 -> 25 repeats one, never blends;
the source frame index of every output frame is stored in the record. Frames are resized to cover the
bucket (h, w) - multiples of prep.size_multiple with h * w <= data.resolution^2, the aspect ratio closest to
the source's - and centre-cropped. Audio: mono, data.sample_rate, cut to exactly T / fps seconds.
Output per clip: `clips/<clip>.mp4` (H.264, video only) and `clips/<clip>.wav`; the record lists the clips.
Trade-off: clips are re-encoded once (crf prep.crf) rather than kept as frames: 97 frames at 512 px are
~1 MB instead of ~75 MB, at the cost of one more lossy generation before the codec sees them.
"""
from __future__ import annotations

import math
from pathlib import Path

import av
import numpy as np

from common.audio_io import save_wav
from common.video_io import read_audio_track, write_video
from realvideo.ledger import kept, rejected


def clip_frames(duration: float, fps: float, stride: int = 4) -> int:
    """Largest T = stride * n + 1 with T <= round(duration * fps)."""
    total = int(round(duration * fps))
    if total < stride + 1:
        raise ValueError(f"data.duration {duration} s at {fps} fps is under {stride + 1} frames")
    return stride * ((total - 1) // stride) + 1


def bucket_size(height: int, width: int, resolution: int, multiple: int) -> tuple[int, int]:
    """(h, w): multiples of `multiple`, h * w <= resolution^2, aspect closest to height / width (then the
    larger area)."""
    budget, aspect = resolution * resolution, height / width
    best = None
    for h in range(multiple, budget // multiple + 1, multiple):
        for w in range(multiple, budget // h + 1, multiple):
            key = (abs(math.log((h / w) / aspect)), -h * w)
            if best is None or key < best[0]:
                best = (key, (h, w))
    return best[1]


def scene_ranges(path: str, threshold: float, min_scene_seconds: float) -> list[tuple[float, float]]:
    """Scenes as [start, end) seconds (one range when no cut is found)."""
    from scenedetect import ContentDetector, SceneManager, open_video

    video = open_video(path, backend="pyav")
    manager = SceneManager()
    min_len = max(1, int(round(min_scene_seconds * float(video.frame_rate))))
    manager.add_detector(ContentDetector(threshold=threshold, min_scene_len=min_len))
    manager.detect_scenes(video, show_progress=False)
    scenes = [(s.seconds, e.seconds) for s, e in manager.get_scene_list()]
    return scenes or [(0.0, float("inf"))]


def _intersect(a: list[tuple[float, float]], b: list[tuple[float, float]]) -> list[tuple[float, float]]:
    out = []
    for s1, e1 in a:
        for s2, e2 in b:
            s, e = max(s1, s2), min(e1, e2)
            if e > s:
                out.append((s, e))
    return sorted(out)


def plan_clips(ranges, usable: float, seconds: float) -> tuple[list[float], list[tuple[float, float]]]:
    """Clip start times (back to back inside each range) and the ranges too short for one clip."""
    starts, short = [], []
    for s, e in _intersect(ranges, [(0.0, usable)]):
        n = int((e - s + 1e-6) // seconds)
        if n == 0:
            short.append((s, e))
        starts += [s + i * seconds for i in range(n)]
    return starts, short


def _resize_crop(frame: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    from PIL import Image

    h, w = size
    H, W = frame.shape[:2]
    scale = max(h / H, w / W)
    rh, rw = max(h, round(H * scale)), max(w, round(W * scale))
    img = Image.fromarray(frame).resize((rw, rh), Image.BICUBIC)
    top, left = (rh - h) // 2, (rw - w) // 2
    return np.asarray(img.crop((left, top, left + w, top + h)))


def _clip_frames_from(path: str, starts: list[float], num: int, fps: float, size):
    """Yield (clip index, frames (T, h, w, 3) uint8, source indices) for clips starting at `starts`."""
    targets = [(c, k, s + k / fps) for c, s in enumerate(starts) for k in range(num)]
    pos, buf, src = 0, [], []

    def hold(frame, index, until):
        """The held frame fills every target time before `until` (sample and hold); full clips come out."""
        nonlocal pos, buf, src
        while pos < len(targets) and targets[pos][2] < until - 1e-9:
            c, k, _ = targets[pos]
            buf.append(frame)
            src.append(index)
            pos += 1
            if k == num - 1:
                yield c, np.stack(buf), src
                buf, src = [], []

    with av.open(path) as container:
        stream = container.streams.video[0]
        prev, prev_index, t0, t = None, -1, None, 0.0
        for index, frame in enumerate(container.decode(stream)):
            t = float(frame.pts * stream.time_base) if frame.pts is not None else index / fps
            t0 = t if t0 is None else t0
            t -= t0  # times relative to the first frame, as the probe measured them
            if prev is not None:  # the previous frame is on screen until this one starts
                yield from hold(prev, prev_index, t)
            if pos >= len(targets):
                return
            prev, prev_index = _resize_crop(frame.to_ndarray(format="rgb24"), size), index
        if prev is not None:  # the last frame holds for one interval
            yield from hold(prev, prev_index, t + 1.0 / fps)


def segment_video(probe: dict, entry_segments, out_dir: Path, settings: dict) -> dict:
    """Cut one probed source video into clips; its record (kept with the clip list, or rejected)."""
    name, path = probe["name"], probe["video"]
    fps, rate, num = settings["fps"], settings["sample_rate"], settings["clip_frames"]
    seconds = num / fps
    ranges = scene_ranges(path, settings["scene_threshold"], settings["min_scene_seconds"])
    if entry_segments:
        ranges = _intersect(ranges, [tuple(s) for s in entry_segments])
    starts, short = plan_clips(ranges, probe["usable_duration"], seconds)
    rejects = [rejected(f"{name}@{s:.2f}-{e:.2f}", "no_clip_fits", f"range {s:.2f}-{e:.2f} s is shorter than "
                        f"one clip ({seconds:.2f} s)", source=name) for s, e in short]
    if not starts:
        return rejected(name, "no_clip_fits", f"no scene or segment of at least {seconds:.2f} s "
                        f"(ranges: {[(round(s, 2), round(e, 2)) for s, e in ranges]})", rejects=rejects)
    size = bucket_size(probe["height"], probe["width"], settings["resolution"], settings["size_multiple"])
    audio = read_audio_track(probe["audio"] or path, rate)
    clips = []
    for c, frames, src in _clip_frames_from(path, starts, num, fps, size):
        clip = f"{name}__{c:04d}"
        a0 = int(round(starts[c] * rate))
        wave = audio[a0: a0 + int(round(seconds * rate))]
        wave = np.pad(wave, (0, int(round(seconds * rate)) - wave.size))  # < 1 frame of rounding at the end
        write_video(out_dir / f"{clip}.mp4", frames, fps, crf=settings["crf"])
        save_wav(out_dir / f"{clip}.wav", wave, rate)
        (out_dir / f"{clip}.orig.wav").unlink(missing_ok=True)  # a realignment of the previous cut is void
        clips.append({"clip": clip, "start": starts[c], "end": starts[c] + seconds, "frames": num,
                      "height": size[0], "width": size[1], "source_frames": [src[0], src[-1]],
                      "repeated": int(num - len(set(src)))})
    made = {c["start"] for c in clips}
    rejects += [rejected(f"{name}@{s:.2f}", "too_short", f"the video's frames end before the clip at {s:.2f} s "
                         "(the container's timestamps promised more)", source=name) for s in starts if s not in made]
    if not clips:
        return rejected(name, "too_short", "no clip could be decoded", rejects=rejects)
    return kept(name, split=probe["split"], fps=fps, source_fps=probe["fps"], clips=clips, rejects=rejects,
                scenes=[[round(s, 3), round(e, 3) if math.isfinite(e) else None] for s, e in ranges])
