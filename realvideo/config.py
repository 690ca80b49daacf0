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
    min_phase_seconds: float = 0.2  # annotate: phase pieces shorter than this after cutting are dropped
    default_base: str = "A person talks to the camera."  # annotate: base block when a line has no prompt or caption

    def check(self) -> list[tuple[str, str]]:
        problems = []
        if self.size_multiple < 2 or self.size_multiple % 2:
            problems.append(("size_multiple", f"must be an even number >= 2 (got {self.size_multiple})"))
        if not 0 <= self.crf <= 51:
            problems.append(("crf", f"must be in [0, 51] (got {self.crf})"))
        for name in ("scene_threshold", "min_scene_seconds", "min_motion", "max_motion", "min_phase_seconds"):
            if getattr(self, name) < 0:
                problems.append((name, f"must be >= 0 (got {getattr(self, name)})"))
        if not 0 <= self.min_speech_ratio <= 1:
            problems.append(("min_speech_ratio", f"must be in [0, 1] (got {self.min_speech_ratio})"))
        if self.max_motion and self.max_motion < self.min_motion:
            problems.append(("max_motion", f"must be >= prep.min_motion or 0 (got {self.max_motion})"))
        if not self.default_base.strip():
            problems.append(("default_base", "must be a non-empty sentence"))
        return problems
