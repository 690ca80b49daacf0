"""Audio files and waveforms in, validated: mono float32 at the expected rate, or one AudioError naming
the file and the fault (channels, rate, dtype, empty, NaN/Inf with the first bad sample's time).

Shared by every data source (SynthAvatar writes its tracks with save_wav; real videos and inference
requests read theirs with load_audio / validate_waveform). Trade-off: a wrong rate or channel count is an
error unless the caller asks for resample=True, so nothing is retimed or mixed down silently.
"""
from __future__ import annotations

from pathlib import Path

import librosa
import numpy as np
import soundfile as sf

from common.atomic import atomic_write
from common.errors import AudioError

SAMPLE_RATE = 16000  # Hz, mono: what the audio encoders (wav2vec2, Whisper) and SyncNet expect


def _as_mono(x: np.ndarray, source: str) -> np.ndarray:
    """Accept (N,), (N, 1) and (1, N); anything else is a channel/shape error."""
    if x.ndim == 1:
        return x
    if x.ndim == 2 and 1 in x.shape:
        return x.reshape(-1)
    if x.ndim == 2:
        raise AudioError(
            f"{source}: expected mono audio, got {min(x.shape)} channels (shape {x.shape}); "
            "mix down with librosa.to_mono or load_audio(path, resample=True)"
        )
    raise AudioError(f"{source}: expected a 1-D mono waveform, got shape {x.shape}")


def _check_finite(x: np.ndarray, sr: int, source: str) -> None:
    bad = ~np.isfinite(x)
    if bad.any():
        first = int(np.argmax(bad))
        raise AudioError(
            f"{source}: waveform has {int(np.isnan(x).sum())} NaN and {int(np.isinf(x).sum())} "
            f"Inf samples; first non-finite value at sample {first} (t={first / sr:.4f} s)"
        )


def validate_waveform(
    wave, sample_rate: int, expected_sr: int = SAMPLE_RATE, source: str = "<array>"
) -> np.ndarray:
    """Check a waveform and return it as contiguous float32 (N,); raises AudioError.

    Integer PCM is scaled to [-1, 1) by its dtype range.
    """
    x = np.asarray(wave)
    if x.dtype.kind not in "iuf":
        raise AudioError(
            f"{source}: waveform dtype {x.dtype} is not numeric audio "
            "(expected float or integer PCM samples)"
        )
    if sample_rate != expected_sr:
        raise AudioError(
            f"{source}: sample rate is {sample_rate} Hz, expected {expected_sr} Hz; "
            f"resample with load_audio(path, resample=True) or "
            f"librosa.resample(wave, orig_sr={sample_rate}, target_sr={expected_sr})"
        )
    x = _as_mono(x, source)
    if x.size == 0:
        raise AudioError(f"{source}: waveform is empty (zero samples)")
    if x.dtype.kind in "iu":
        info = np.iinfo(x.dtype)
        x = (x.astype(np.float64) - (info.max + 1 + info.min) / 2) / ((info.max - info.min + 1) / 2)
    _check_finite(x, sample_rate, source)
    return np.ascontiguousarray(x, dtype=np.float32)


def load_audio(path, expected_sr: int = SAMPLE_RATE, resample: bool = False) -> np.ndarray:
    """Read wav/flac with soundfile and validate; returns float32 (N,) at expected_sr.

    With ``resample=True`` multi-channel audio is mixed to mono (librosa.to_mono) and
    other rates are converted with librosa.resample; otherwise both are errors.
    """
    path = Path(path)
    if not path.is_file():
        raise AudioError(f"{path}: cannot read audio, file does not exist")
    try:
        data, sr = sf.read(str(path), dtype="float32", always_2d=True)  # (N, C)
    except (sf.LibsndfileError, RuntimeError, OSError) as exc:
        raise AudioError(f"{path}: cannot read audio ({exc})") from exc
    if resample:
        y = librosa.to_mono(data.T) if data.shape[1] > 1 else data[:, 0]
        if sr != expected_sr and y.size:
            y = librosa.resample(y, orig_sr=sr, target_sr=expected_sr)
        return validate_waveform(y, expected_sr, expected_sr, source=str(path))
    return validate_waveform(data, sr, expected_sr, source=str(path))


def save_wav(path, wave: np.ndarray, sr: int = SAMPLE_RATE) -> Path:
    """Write 16-bit PCM wav atomically (temp file in the same directory, then os.replace)."""
    path = Path(path)
    y = np.clip(validate_waveform(wave, sr, sr, source=str(path)), -1.0, 1.0)
    return atomic_write(path, lambda tmp: sf.write(tmp, y, sr, format="WAV", subtype="PCM_16"))
