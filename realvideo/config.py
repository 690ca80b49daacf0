"""The `prep` config section (issue 16): settings of `main.py prep`, the real-video preprocessing stages.

The data itself is named in `data` (data.kind=real, data.manifest = the JSONL manifest, data.root = where
prep writes clips, records and ledgers; data.fps / sample_rate / duration / resolution = the clips' rate,
length and pixel budget); this section holds how prep cuts and filters. Every threshold is recorded in the
stage records, so a ledger says which setting dropped a clip.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass
class PrepConfig:
    size_multiple: int = 32  # clip height / width are multiples of this (Wan VAE 16 x patch 2 = 32)
    crf: int = 12  # H.264 quality of the segmented clips (lower = larger, closer to the source)
    scene_threshold: float = 27.0  # PySceneDetect ContentDetector threshold (its default)
    min_scene_seconds: float = 0.5  # shortest scene the detector reports
    vad: bool = True  # speech activity from silero-vad (packaged weights) in the filter stage
    min_speech_ratio: float = 0.0  # filter: drop clips with less speech than this share (0 = keep all)
    min_motion: float = 0.0  # filter: mean absolute frame difference (0..1) below this -> too_static (0 = off)
    max_motion: float = 0.0  # filter: above this -> too_much_motion (0 = off)
    face_parser: str = ""  # analyse: local HF face-parsing model dir -> region masks + face track ('' = none)
    face_parser_size: int = 512  # analyse: the parser's input side (frames are resized to it)
    parse_every: int = 1  # analyse: parse every k-th frame and hold its masks (k times cheaper)
    min_face_frames: float = 0.5  # filter (with a face parser): drop clips with a face in fewer frames -> no_face
    min_face_size: float = 0.0  # filter: median face height / frame height below this -> face_too_small (0 = off)
    pose_model: str = ""  # analyse: local HF ViTPose dir -> keypoints, body motion, `hands` region ('' = none)
    min_pose_motion: float = 0.0  # filter (with a pose model): keypoint speed (frame heights / frame) below -> low_body_motion
    max_pose_motion: float = 0.0  # filter (with a pose model): above this -> high_body_motion (0 = off)
    syncnet: str = ""  # analyse: syncnet_python weights -> sync_c / offset per clip ('' = no SyncNet check)
    realign_audio: bool = True  # analyse (with syncnet): shift the clip's audio by offsets within max_sync_offset
    max_sync_offset: int = 3  # filter (with syncnet): |offset| above this many frames -> av_offset
    min_sync_conf: float = 0.0  # filter (with syncnet): Sync-C below this -> low_sync (0 = off)
    min_phase_seconds: float = 0.2  # annotate: phase pieces shorter than this after cutting are dropped
    video_llm: str = ""  # annotate: local HF image-text-to-text model asked for the clip's JSON prompt ('' = none)
    video_llm_frames: int = 8  # annotate: frames shown to the video LLM, spread over the clip
    vlm: str = ""  # annotate: local HF vision-language model describing clips without prompt or caption ('' = none)
    default_base: str = "A person talks to the camera."  # annotate: base block when a line has no prompt or caption

    def check(self) -> list[tuple[str, str]]:
        problems = []
        if self.size_multiple < 2 or self.size_multiple % 2:
            problems.append(("size_multiple", f"must be an even number >= 2 (got {self.size_multiple})"))
        if not 0 <= self.crf <= 51:
            problems.append(("crf", f"must be in [0, 51] (got {self.crf})"))
        for name in ("scene_threshold", "min_scene_seconds", "min_motion", "max_motion", "min_phase_seconds",
                     "max_sync_offset", "min_sync_conf", "min_pose_motion", "max_pose_motion"):
            if getattr(self, name) < 0:
                problems.append((name, f"must be >= 0 (got {getattr(self, name)})"))
        for name in ("face_parser_size", "parse_every", "video_llm_frames"):
            if getattr(self, name) < 1:
                problems.append((name, f"must be >= 1 (got {getattr(self, name)})"))
        for name in ("min_speech_ratio", "min_face_frames", "min_face_size"):
            if not 0 <= getattr(self, name) <= 1:
                problems.append((name, f"must be in [0, 1] (got {getattr(self, name)})"))
        if self.max_motion and self.max_motion < self.min_motion:
            problems.append(("max_motion", f"must be >= prep.min_motion or 0 (got {self.max_motion})"))
        if not self.default_base.strip():
            problems.append(("default_base", "must be a non-empty sentence"))
        return problems
