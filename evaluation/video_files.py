"""How `main.py evaluate --videos DIR` matches videos to requested clips: `clip_00003.mp4` (or .npz / .webm /
.mkv / .mov) is the video generated for clip 3 of the split, the name `main.py generate --split` writes
(inference/split.py); shared by the SynthAvatar and the real-video evaluators.
"""
from __future__ import annotations

import re
from pathlib import Path

from common.video_io import VideoError

VIDEO_NAME = re.compile(r"^clip_(\d+)\.(mp4|npz|webm|mkv|mov)$")


def find_videos(directory: Path, num_clips: int) -> list[tuple[int, Path]]:
    """(clip index, path) for every clip_<index>.<ext> in `directory`; clear errors otherwise."""
    if not directory.is_dir():
        raise VideoError(f"{directory}: not a directory of videos")
    found = []
    for path in sorted(directory.iterdir()):
        match = VIDEO_NAME.match(path.name)
        if match:
            index = int(match.group(1))
            if index >= num_clips:
                raise VideoError(f"{path}: clip index {index} is outside the split ({num_clips} clips)")
            twin = next((p for i, p in found if i == index), None)
            if twin is not None:  # clip_3.mp4 and clip_00003.npz: one clip scored twice would skew the set metrics
                raise VideoError(f"{path}: clip index {index} again (also {twin.name}); keep one video per clip")
            found.append((index, path))
    if not found:
        raise VideoError(f"{directory}: no videos named clip_<index>.mp4/.npz/.webm")
    return found
