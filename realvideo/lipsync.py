"""Prep's optional SyncNet check (issue 16, Deliver 2; LatentSync's filter): with prep.syncnet set, analyse
scores every clip with SyncNet (common/syncnet.py, the metric's own code and crop, along the face
parser's track when there is one) and, with prep.realign_audio, shifts the clip's wav by the measured offset
when it is within prep.max_sync_offset frames, so training pairs are in sync; the filter then drops clips
below prep.min_sync_conf (`low_sync`) or further off than prep.max_sync_offset (`av_offset`).
`wave` must be segment's audio (analyse reads `<clip>.orig.wav` when an earlier realignment kept it there),
so a redo measures the source, never an already-shifted track.
Trade-off: the shift pads the start (or end) with silence, up to max_sync_offset / fps seconds, rather than
reading audio from outside the clip's window (segment already cut it; the source may be gone by now).
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

VSHIFT = 15  # offsets searched, frames (syncnet_python's default)


class SyncCheck:
    def __init__(self, prep_cfg, fps: float, sample_rate: int):
        from common import syncnet
        syncnet.check_rates(fps, sample_rate, "prep.syncnet")
        self.model = syncnet.load_syncnet(prep_cfg.syncnet)
        self.cfg, self.sample_rate, self.fps = prep_cfg, sample_rate, fps

    def __call__(self, frames: np.ndarray, wave: np.ndarray, boxes: np.ndarray | None, wav_path: Path) -> dict:
        """Score one clip; realign its wav on disk when asked and the offset is small enough."""
        from common import syncnet
        from common.audio_io import save_wav

        if boxes is None:
            boxes = np.full((len(frames), 4), np.nan, np.float32)
        track = syncnet.smooth_track(boxes, frames.shape[2], frames.shape[1])
        scores = syncnet.sync_scores(self.model, syncnet.crop_faces(frames, track, 0.4), wave, VSHIFT)
        out = {"sync_c": round(scores["sync_c"], 4), "sync_d": round(scores["sync_d"], 4), "sync_offset": scores["offset"]}
        shift = scores["offset"]
        original = wav_path.with_suffix(".orig.wav")  # segment's audio, kept so a redo measures (and restores) it
        if self.cfg.realign_audio and 0 < abs(shift) <= self.cfg.max_sync_offset:
            if not original.is_file():
                os.replace(wav_path, original)
            save_wav(wav_path, shift_audio(wave, shift * syncnet.SAMPLES_PER_FRAME), self.sample_rate)
            out["audio_shift_frames"] = shift
        elif original.is_file():  # realigned before, not now (setting changed): the clip gets its own audio back
            os.replace(original, wav_path)
        return out


def shift_audio(wave: np.ndarray, samples: int) -> np.ndarray:
    """Delay (samples > 0) or advance (< 0) a wave, same length, silence filled in. A video that lags its
    audio by k frames (SyncNet offset +k) is in sync after delaying the audio by k frames."""
    if samples == 0:
        return wave
    out = np.zeros_like(wave)
    if samples > 0:
        out[samples:] = wave[:-samples]
    else:
        out[:samples] = wave[-samples:]
    return out
