"""Per-video-frame audio features from a waveform: RMS envelope and log-mel spectrum, one row per video
frame, windows at exact frame centres (non-integer sr/fps does not drift).

Shared by SynthAvatar (its ground truth and evaluation) and the DiT's log-mel audio encoder
(models/audio_encoders.py), so it sits below both: numpy only at import, librosa (the mel filterbank and dB
conversion) only inside log_mel.
"""
from __future__ import annotations

import numpy as np

__all__ = ["frame_envelope", "log_mel"]


def _frame_bounds(sr: int, fps: float, num_frames: int, win: int) -> np.ndarray:
    """First sample of a ``win``-long window centred on each video frame. (T,) int."""
    centres = (np.arange(num_frames) + 0.5) * sr / fps  # exact, no hop rounding drift
    return np.round(centres - 0.5 * win).astype(np.int64)


def frame_envelope(wave: np.ndarray, sr: int, fps: float, num_frames: int) -> np.ndarray:
    """RMS over one video frame (sr/fps samples) centred on each frame; (N,) -> (T,) float32.

    Windows are placed at exact frame centres (non-integer sr/fps does not drift);
    samples outside the clip count as zeros.
    """
    y = np.asarray(wave, dtype=np.float64).reshape(-1)
    win = max(1, int(round(sr / fps)))
    pad = win + 1
    c = np.concatenate([[0.0], np.cumsum(np.pad(y, pad) ** 2)])  # (N + 2*pad + 1,)
    lo = np.clip(_frame_bounds(sr, fps, num_frames, win) + pad, 0, len(c) - 1)
    hi = np.clip(lo + win, 0, len(c) - 1)
    energy = np.maximum(c[hi] - c[lo], 0.0) / win  # cumsum rounding can dip below 0
    return np.sqrt(energy).astype(np.float32)


def log_mel(
    wave: np.ndarray, sr: int, fps: float, num_frames: int, n_mels: int = 40
) -> np.ndarray:
    """Log-power mel spectrum (dB re 1.0) per video frame; (N,) -> (T, n_mels) float32.

    Hann window of two frames (50% overlap) centred on each frame centre; the mel
    filterbank and dB conversion come from librosa (imported here: the DiT's modules import this
    file, and a bare GPU machine running the kernel and 5B benchmarks has no librosa). Fixed reference (no per-clip
    max) keeps levels comparable across clips.
    """
    import librosa

    y = np.asarray(wave, dtype=np.float32).reshape(-1)
    win = max(2, int(round(2 * sr / fps)))
    n_fft = 1 << (win - 1).bit_length()
    mel_fb = librosa.filters.mel(sr=sr, n_fft=n_fft, n_mels=n_mels)  # (M, F)
    window = np.hanning(win).astype(np.float32)
    padded = np.pad(y, win)
    starts = _frame_bounds(sr, fps, num_frames, win) + win
    out = np.empty((num_frames, n_mels), dtype=np.float32)
    for c0 in range(0, num_frames, 1024):  # chunks bound memory on long clips
        s = np.clip(starts[c0 : c0 + 1024], 0, len(padded) - win)
        frames = padded[s[:, None] + np.arange(win)[None, :]] * window  # (t, win)
        power = np.abs(np.fft.rfft(frames, n=n_fft, axis=1)) ** 2  # (t, F)
        mel = power @ mel_fb.T  # (t, M)
        out[c0 : c0 + 1024] = librosa.power_to_db(mel, ref=1.0, amin=1e-10, top_db=None)
    return out
