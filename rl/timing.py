"""Audio timing summary for the prompt enhancer: duration, speech segments, pauses, emphasis peaks.

The enhancer (rl/) must place phase windows on the speech, so it is shown where speech starts and stops
and where the stressed syllables fall. Computed with librosa from the waveform alone (no transcript):
speech = frames within `top_db` of the loudest frame (librosa.effects.split), gaps shorter than
`min_pause` merged; emphasis = the strongest local maxima of the RMS envelope inside speech.
Trade-off: an energy detector, not a voice-activity model: robust on SynthAvatar and clean speech,
fooled by loud music or noise (a VAD would slot in behind `audio_timing`).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class AudioTiming:
    duration: float
    segments: list[tuple[float, float]]
    pauses: list[tuple[float, float]] = field(default_factory=list)
    peaks: list[float] = field(default_factory=list)

    def anchors(self) -> list[float]:
        """Times a phase boundary may sensibly sit on: clip ends, segment ends, pause centres, peaks."""
        points = {0.0, round(self.duration, 2)}
        for start, end in self.segments:
            points.update((start, end))
        points.update(round((a + b) / 2, 2) for a, b in self.pauses)
        points.update(self.peaks)
        return sorted(points)

    def describe(self) -> str:
        """One line for the policy's prompt, e.g. 'duration 4.0 s; speech 0.3-1.5, 1.9-3.7; ...'."""
        span = lambda xs: ", ".join(f"{a:.1f}-{b:.1f}" for a, b in xs) or "none"
        return (f"duration {self.duration:.1f} s; speech {span(self.segments)}; pauses {span(self.pauses)}; "
                f"emphasis at {', '.join(f'{t:.1f}' for t in self.peaks) or 'none'}")

    def to_dict(self) -> dict:
        return {"duration": self.duration, "segments": self.segments, "pauses": self.pauses, "peaks": self.peaks}

    @classmethod
    def from_dict(cls, d: dict) -> AudioTiming:
        return cls(float(d["duration"]), [tuple(s) for s in d["segments"]], [tuple(p) for p in d["pauses"]],
                   [float(t) for t in d["peaks"]])


def audio_timing(wave: np.ndarray, sample_rate: int, top_db: float = 30.0, min_pause: float = 0.15,
                 max_peaks: int = 4, hop: int = 160) -> AudioTiming:
    """wave (N,) mono float -> AudioTiming with times in seconds rounded to 0.01 s."""
    import librosa
    wave = np.asarray(wave, dtype=np.float32)
    if wave.ndim != 1 or wave.size == 0:
        raise ValueError(f"audio_timing: expected a non-empty mono waveform, got shape {wave.shape}")
    duration = wave.size / sample_rate
    intervals = librosa.effects.split(wave, top_db=top_db, frame_length=4 * hop, hop_length=hop)
    segments: list[list[float]] = []
    for start, end in intervals / sample_rate:
        if segments and start - segments[-1][1] < min_pause:
            segments[-1][1] = end
        else:
            segments.append([start, end])
    segments = [(round(s, 2), round(e, 2)) for s, e in segments if e - s >= 0.05]
    edges = [0.0] + [t for seg in segments for t in seg] + [round(duration, 2)]
    pauses = [(a, b) for a, b in zip(edges[::2], edges[1::2]) if b - a >= min_pause]
    return AudioTiming(round(duration, 2), segments, pauses, _emphasis(wave, sample_rate, segments, max_peaks, hop))


def _emphasis(wave, sample_rate, segments, max_peaks, hop) -> list[float]:
    """Times of the `max_peaks` strongest RMS maxima inside speech, at least 0.4 s apart."""
    import librosa
    from scipy.signal import find_peaks
    rms = librosa.feature.rms(y=wave, frame_length=4 * hop, hop_length=hop)[0]
    times = librosa.frames_to_time(np.arange(rms.size), sr=sample_rate, hop_length=hop)
    inside = np.zeros(rms.size, dtype=bool)
    for start, end in segments:
        inside |= (times >= start) & (times <= end)
    idx, props = find_peaks(np.where(inside, rms, 0.0), distance=max(1, int(0.4 * sample_rate / hop)),
                            prominence=0.1 * float(rms.max() or 1.0))
    strongest = idx[np.argsort(props["prominences"])[::-1][:max_peaks]]
    return sorted(round(float(times[i]), 2) for i in strongest)
