"""SynthAvatar audio: speech-like sound from a syllable schedule, with exact ground truth.

What
    A random *schedule* (syllables grouped into words and phrases, pauses, stressed
    syllables) is sampled first; the waveform and the per-video-frame targets
    (mouth opening, viseme, expressiveness, speaking) are then both derived from
    that one schedule, so they agree by construction.

Why it exists
    Lip-sync and expressiveness models (e.g. SyncDreamer's audio dynamics encoder)
    are normally judged against noisy proxies such as a pretrained SyncNet. A
    procedural world with full ground truth lets us test whether a model recovers
    *when* the mouth opens, *how far*, with *which shape*, and *where* the emphasis
    lies, and lets the lip-sync metric be validated against known answers.

Trade-off
    This is a source-filter toy, not real speech: a harmonic source on an F0
    contour weighted by three fixed vowel formants per viseme, short noise bursts for
    consonants, and an amplitude envelope that *is* the mouth-opening curve. It is
    fast (a 4 s clip synthesises in a few tens of milliseconds) and perfectly
    labelled, but it has no coarticulation, no real phonemes and no speaker
    identity, so anything learned here must be re-checked on real recordings.
    One deliberate simplification: loudness is proportional to lip opening, so
    bilabial ("closed") syllables are quiet; the lip-sync metric relies on this.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np
from scipy.ndimage import gaussian_filter1d

from common.audio_features import frame_envelope, log_mel
from common.audio_io import SAMPLE_RATE

__all__ = [
    "SAMPLE_RATE",
    "VISEMES",
    "VISEME_INDEX",
    "VOWEL_FORMANTS",
    "VISEME_OPENNESS",
    "Syllable",
    "AudioSchedule",
    "sample_schedule",
    "synthesize",
    "frame_ground_truth",
    "frame_envelope",
    "log_mel",
]


# closed = M/B/P (lips together), open = /a/, wide = /e, i/, round = /o, u/.
VISEMES = ("closed", "open", "wide", "round")
VISEME_INDEX = {name: i for i, name in enumerate(VISEMES)}
CLOSED = VISEME_INDEX["closed"]

# (F1, F2, F3) in Hz, indexed like VISEMES. "closed" is a nasal-murmur-like reduced
# vowel (low F1, weak F2) because the lips barely part after the closure.
VOWEL_FORMANTS = (
    (250.0, 1100.0, 2400.0),  # closed: murmur / reduced vowel after M/B/P
    (750.0, 1200.0, 2600.0),  # open:   /a/
    (320.0, 2250.0, 3000.0),  # wide:   /i/-/e/
    (400.0, 800.0, 2450.0),  # round:  /u/-/o/
)
FORMANT_BANDWIDTHS = (90.0, 110.0, 160.0)  # Hz, typical adult values
FORMANT_AMPS = (1.0, 0.5, 0.25)  # relative peak heights: the spectrum falls ~6 dB per formant
# Peak lip opening per viseme in [0, 1], indexed like VISEMES.
VISEME_OPENNESS = (0.08, 1.0, 0.6, 0.5)

# Schedule constants (seconds, at speech_rate = 1).
SYLLABLE_DUR = (0.12, 0.30)
WORD_GAP = (0.02, 0.08)
PAUSE_DUR = (0.15, 0.6)
WORDS_PER_PHRASE = (2, 6)
SYLLABLES_PER_WORD = (1, 3)
VISEME_PROBS = (0.2, 0.3, 0.25, 0.25)
CLOSURE_FRAC = 0.35  # fraction of a "closed" syllable spent with lips sealed

NOISE_FLOOR = 2e-4  # pause noise, relative to the speech peak
PEAK = 0.9


# --------------------------------------------------------------------------- schedule


@dataclass(frozen=True)
class Syllable:
    start: float  # s
    end: float  # s
    viseme: int  # index into VISEMES
    stress: float  # [0, 1]; >= 0.75 for the 1-2 emphasised syllables of a phrase
    f0: float  # Hz, pitch target at the syllable centre (declination + stress bump)
    word: int  # global word index
    phrase: int  # global phrase index

    def __post_init__(self):
        # Fail at construction (e.g. from_dict on hand-edited JSON), not deep in synthesis.
        if not self.end > self.start:
            raise ValueError(f"Syllable end {self.end} must be after start {self.start}")
        if not 0 <= self.viseme < len(VISEMES):
            raise ValueError(f"Syllable viseme {self.viseme} not in 0..{len(VISEMES) - 1}")
        if not 0.0 <= self.stress <= 1.0:
            raise ValueError(f"Syllable stress {self.stress} not in [0, 1]")
        if not self.f0 > 0:
            raise ValueError(f"Syllable f0 {self.f0} must be positive")

    @property
    def centre(self) -> float:
        return 0.5 * (self.start + self.end)


Interval = tuple[float, float]


@dataclass
class AudioSchedule:
    duration: float  # s, whole clip (speech may stop earlier)
    syllables: list[Syllable]
    words: list[Interval]  # (start, end) per word
    phrases: list[Interval]  # (start, end) per phrase
    pauses: list[Interval]  # silent gaps outside phrases: lead-in, between phrases, trailing
    emphasis_peaks: list[float] = field(default_factory=list)  # centre times of stressed syllables

    def to_dict(self) -> dict:
        """Plain JSON-serialisable dict (floats, ints, lists)."""
        return {
            "duration": float(self.duration),
            "syllables": [asdict(s) for s in self.syllables],
            "words": [list(w) for w in self.words],
            "phrases": [list(p) for p in self.phrases],
            "pauses": [list(p) for p in self.pauses],
            "emphasis_peaks": [float(p) for p in self.emphasis_peaks],
        }

    @classmethod
    def from_dict(cls, d: dict) -> AudioSchedule:
        def intervals(key):  # JSON turns tuples into lists; restore them for equality
            return [(float(a), float(b)) for a, b in d[key]]

        return cls(
            duration=float(d["duration"]),
            syllables=[Syllable(**s) for s in d["syllables"]],
            words=intervals("words"),
            phrases=intervals("phrases"),
            pauses=intervals("pauses"),
            emphasis_peaks=[float(p) for p in d["emphasis_peaks"]],
        )


def _uniform(rng: np.random.Generator, lo_hi, rate: float = 1.0) -> float:
    """Duration drawn at speech_rate 1, scaled by the rate, kept inside the nominal range."""
    lo, hi = lo_hi
    return float(np.clip(rng.uniform(lo, hi) / rate, lo, hi))


def _stress_phrase(rng, syls: list[dict], base_f0: float) -> list[float]:
    """Pick 1-2 stressed syllables, set stress and f0 in place; return their centre times."""
    n_stressed = min(len(syls), int(rng.integers(1, 3)))
    stressed = set(rng.choice(len(syls), size=n_stressed, replace=False).tolist())
    peaks = []
    for i, s in enumerate(syls):
        hi = i in stressed
        s["stress"] = float(rng.uniform(0.75, 1.0) if hi else rng.uniform(0.0, 0.35))
        decl = 1.0 - 0.15 * i / max(len(syls) - 1, 1)  # pitch falls ~15% over a phrase
        s["f0"] = float(base_f0 * decl * (1.0 + 0.18 * s["stress"] ** 2))  # stress bump
        if hi:
            peaks.append(0.5 * (s["start"] + s["end"]))
    return peaks


def _silences(duration: float, phrases: list[Interval]) -> list[Interval]:
    """Gaps not covered by phrases, including lead-in and trailing silence."""
    out, t = [], 0.0
    for a, b in phrases + [(duration, duration)]:
        if a - t > 1e-9:
            out.append((t, a))
        t = b
    return out


def sample_schedule(
    rng: np.random.Generator,
    duration: float,
    speech_rate: float = 1.0,
    lead_in=(0.05, 0.3),
) -> AudioSchedule:
    """Random syllable/word/phrase timing for a clip; deterministic given ``rng``.

    Durations are drawn at rate 1 and divided by ``speech_rate`` but clipped to the
    nominal ranges (syllables 0.12-0.30 s, pauses 0.15-0.6 s). Speech stops at the
    last syllable that fits, so trailing silence is normal.
    """
    if duration <= 0 or speech_rate <= 0:
        raise ValueError(f"duration ({duration}) and speech_rate ({speech_rate}) must be > 0")
    base_f0 = float(rng.uniform(95.0, 220.0))  # speaker pitch: low male .. high female
    t = float(rng.uniform(*lead_in))
    syl_dicts, words, phrases, peaks = [], [], [], []
    full = False
    while not full:
        phrase_syls = []
        for _ in range(int(rng.integers(WORDS_PER_PHRASE[0], WORDS_PER_PHRASE[1] + 1))):
            word_syls = []
            for _ in range(int(rng.integers(SYLLABLES_PER_WORD[0], SYLLABLES_PER_WORD[1] + 1))):
                dur = _uniform(rng, SYLLABLE_DUR, speech_rate)
                vis = int(rng.choice(len(VISEMES), p=VISEME_PROBS))
                if t + dur > duration:
                    full = True
                    break
                word_syls.append(
                    dict(start=t, end=t + dur, viseme=vis, word=len(words), phrase=len(phrases))
                )
                t += dur
            if word_syls:
                words.append((word_syls[0]["start"], word_syls[-1]["end"]))
                phrase_syls += word_syls
            if full:
                break
            t += _uniform(rng, WORD_GAP, speech_rate)
        if phrase_syls:
            peaks += _stress_phrase(rng, phrase_syls, base_f0)
            phrases.append((phrase_syls[0]["start"], phrase_syls[-1]["end"]))
            syl_dicts += phrase_syls
        t = (phrases[-1][1] if phrases else t) + _uniform(rng, PAUSE_DUR, speech_rate)
        full = full or t >= duration
    return AudioSchedule(
        duration=float(duration),
        syllables=[Syllable(**s) for s in syl_dicts],
        words=words,
        phrases=phrases,
        pauses=_silences(float(duration), phrases),
        emphasis_peaks=peaks,
    )


# --------------------------------------------------------------------------- shared envelope


def _ramp(x: np.ndarray) -> np.ndarray:
    """Raised-cosine 0 -> 1 on x in [0, 1] (clipped outside): smooth onset/offset."""
    return 0.5 - 0.5 * np.cos(np.pi * np.clip(x, 0.0, 1.0))


def _syllable_shape(syl: Syllable, t: np.ndarray) -> np.ndarray:
    """Unit-peak envelope of one syllable at times t (s) inside [start, end); (n,) -> (n,).

    Closed syllables stay at 0 during the bilabial closure, then open into the vowel.
    """
    start = syl.start + (CLOSURE_FRAC * (syl.end - syl.start) if syl.viseme == CLOSED else 0.0)
    dur = syl.end - start
    attack = min(0.3 * dur, 0.06)  # fast rise, slower decay, like a spoken syllable
    decay = min(0.45 * dur, 0.10)
    return _ramp((t - start) / attack) * _ramp((syl.end - t) / decay)


def _syllable_gain(syl: Syllable) -> float:
    """Peak lip opening (and peak audio amplitude) of a syllable."""
    return VISEME_OPENNESS[syl.viseme] * (0.7 + 0.3 * syl.stress)


def _syllable_spans(schedule: AudioSchedule, t: np.ndarray):
    """Yield (syllable, slice of t inside it); t must be sorted."""
    for syl in schedule.syllables:
        i0, i1 = np.searchsorted(t, [syl.start, syl.end], side="left")
        if i1 > i0:
            yield syl, slice(int(i0), int(i1))


def _mouth_curve(schedule: AudioSchedule, t: np.ndarray) -> np.ndarray:
    """Lip opening at sorted times t; also the audio amplitude envelope. (n,) -> (n,)."""
    out = np.zeros(len(t), dtype=np.float64)
    for syl, sl in _syllable_spans(schedule, t):
        out[sl] = _syllable_shape(syl, t[sl]) * _syllable_gain(syl)
    return out


# --------------------------------------------------------------------------- synthesis


def _f0_contour(schedule: AudioSchedule, t: np.ndarray, rng) -> np.ndarray:
    """Pitch (Hz) per sample: syllable targets interpolated + ~1% slow jitter. (N,) -> (N,)."""
    centres = np.array([s.centre for s in schedule.syllables])
    f0 = np.interp(t, centres, [s.f0 for s in schedule.syllables])
    # Jitter: white noise at 100 Hz, smoothed and interpolated so it stays band-limited.
    n_ctrl = int(np.ceil(schedule.duration * 100)) + 2
    jit = gaussian_filter1d(rng.standard_normal(n_ctrl), 1.5)
    jit *= 0.01 / (jit.std() + 1e-12)
    return f0 * (1.0 + np.interp(t, np.arange(n_ctrl) / 100.0, jit))


def _formant_weights(freqs: np.ndarray, viseme: int) -> np.ndarray:
    """Harmonic amplitudes from a parallel bank of 3 formant resonators. (K,) -> (K,)."""
    gain = np.zeros_like(freqs)
    for fc, bw, amp in zip(VOWEL_FORMANTS[viseme], FORMANT_BANDWIDTHS, FORMANT_AMPS):
        # |H| of a second-order resonator scaled to peak `amp` (falls ~12 dB/oct above
        # fc). Parallel (Klatt-style) rather than cascade: in a cascade F1 swamps F2
        # and /i/ vs /u/ barely differ in spectral centroid, i.e. the viseme is inaudible.
        gain += amp * (bw / fc) / np.sqrt((1 - (freqs / fc) ** 2) ** 2 + (freqs * bw / fc**2) ** 2)
    # Unit power (sum of a_k^2 / 2 = 1) so the envelope alone sets loudness; this is
    # what makes frame RMS track mouth_open regardless of vowel colour.
    return gain / np.sqrt(0.5 * np.sum(gain**2))


def _voiced(phase: np.ndarray, f0_seg: np.ndarray, viseme: int, sr: int) -> np.ndarray:
    """Sum of harmonics below ~5.5 kHz (and Nyquist) with formant weights. (n,) -> (n,)."""
    n_harm = max(1, int(min(5500.0, 0.45 * sr) // f0_seg.max()))
    k = np.arange(1, n_harm + 1, dtype=np.float64)  # (K,)
    w = _formant_weights(k * float(np.mean(f0_seg)), viseme)  # (K,)
    return np.sin(phase[:, None] * k[None, :]) @ w  # (n, K) @ (K,) -> (n,)


def _burst(rng, n: int, sr: int) -> np.ndarray:
    """Decaying high-passed noise: a plosive/fricative onset. (n,) -> (n,)."""
    noise = np.diff(rng.standard_normal(n + 1))  # first difference ~ +6 dB/oct tilt
    return noise / np.sqrt(2.0) * np.exp(-np.arange(n) / (0.3 * n))


def _add_consonant(y, syl: Syllable, sl: slice, sr: int, rng) -> None:
    """Noise burst at the onset (or at the lip release for closed syllables), in place."""
    amp = 0.15 * _syllable_gain(syl)  # quiet, so frame energy still follows mouth_open
    if syl.viseme == CLOSED:
        at = sl.start + int(CLOSURE_FRAC * (sl.stop - sl.start))  # lip release "b/p"
    elif rng.random() < 0.6:  # not every syllable starts with an obstruent
        at = sl.start
    else:
        return
    n = min(int(rng.uniform(0.008, 0.02) * sr), len(y) - at)
    if n > 0:
        y[at : at + n] += amp * _burst(rng, n, sr)


def synthesize(schedule: AudioSchedule, sample_rate: int = SAMPLE_RATE, seed: int = 0) -> np.ndarray:
    """Render the schedule to a mono float32 waveform (N,), N = round(duration * sr), peak 0.9.

    ``seed`` only drives micro detail (jitter, bursts, noise floor); the ground truth
    depends on the schedule alone.
    """
    rng = np.random.default_rng(seed)
    n = int(round(schedule.duration * sample_rate))
    t = np.arange(n) / sample_rate  # (N,)
    y = np.zeros(n, dtype=np.float64)
    if schedule.syllables and n:
        f0 = _f0_contour(schedule, t, rng)  # (N,)
        phase = 2.0 * np.pi * np.cumsum(f0) / sample_rate  # continuous across syllables
        for syl, sl in _syllable_spans(schedule, t):
            env = _syllable_shape(syl, t[sl]) * _syllable_gain(syl)
            y[sl] = env * _voiced(phase[sl], f0[sl], syl.viseme, sample_rate)
            _add_consonant(y, syl, sl, sample_rate, rng)
    peak = float(np.max(np.abs(y))) if n else 0.0
    # Tiny noise floor so pauses are near-silent, not digital zero (like a real room).
    y += NOISE_FLOOR * (peak if peak > 0 else 1.0) * rng.standard_normal(n)
    if peak > 0:  # a clip without speech stays at noise-floor level
        y *= PEAK / np.max(np.abs(y))
    return y.astype(np.float32)


# --------------------------------------------------------------------------- ground truth


def _active_syllable(schedule: AudioSchedule, t: np.ndarray) -> np.ndarray:
    """Index of the syllable containing each time, -1 when silent. (T,) -> (T,) int."""
    if not schedule.syllables:
        return np.full(len(t), -1, dtype=np.int64)
    starts = np.array([s.start for s in schedule.syllables])
    ends = np.array([s.end for s in schedule.syllables])
    idx = np.searchsorted(starts, t, side="right") - 1
    inside = (idx >= 0) & (t < ends[np.clip(idx, 0, None)])
    return np.where(inside, idx, -1)


def _expressiveness(schedule: AudioSchedule, t: np.ndarray, fps: float) -> np.ndarray:
    """Prosodic prominence in [0, 1]: smoothed stress-weighted energy + bumps at peaks."""
    energy = np.zeros(len(t))
    for syl, sl in _syllable_spans(schedule, t):
        # Stress dominates; lip opening modulates (open vowels carry more energy).
        weight = (0.3 + 0.7 * syl.stress) * (0.5 + 0.5 * VISEME_OPENNESS[syl.viseme])
        energy[sl] = _syllable_shape(syl, t[sl]) * weight
    energy = gaussian_filter1d(energy, sigma=max(0.05 * fps, 1e-3), mode="constant")
    bumps = np.zeros(len(t))
    peaks = np.asarray(schedule.emphasis_peaks, dtype=np.float64)
    owners = _active_syllable(schedule, peaks)  # stressed syllable under each peak
    for p, i in zip(peaks, owners):
        height = schedule.syllables[i].stress if i >= 0 else 1.0
        bumps = np.maximum(bumps, height * np.exp(-0.5 * ((t - p) / 0.12) ** 2))
    return np.clip(0.45 * energy + 0.55 * bumps, 0.0, 1.0)


def frame_ground_truth(schedule: AudioSchedule, fps: float, num_frames: int) -> dict[str, np.ndarray]:
    """Per-video-frame targets sampled at frame centres t = (i + 0.5) / fps.

    Returns mouth_open float32 (T,) in [0,1], viseme int64 (T,) (closed when silent),
    expressiveness float32 (T,) in [0,1], speaking bool (T,).
    """
    if fps <= 0 or num_frames < 0:
        raise ValueError(f"fps ({fps}) must be > 0 and num_frames ({num_frames}) >= 0")
    t = (np.arange(num_frames) + 0.5) / fps  # (T,)
    active = _active_syllable(schedule, t)  # (T,)
    visemes = np.array([s.viseme for s in schedule.syllables] + [CLOSED], dtype=np.int64)
    return {
        "mouth_open": np.clip(_mouth_curve(schedule, t), 0.0, 1.0).astype(np.float32),
        "viseme": visemes[active],  # index -1 picks the trailing CLOSED entry
        "expressiveness": _expressiveness(schedule, t, fps).astype(np.float32),
        "speaking": active >= 0,
    }
