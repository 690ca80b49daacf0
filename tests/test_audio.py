"""Tests for synthavatar.audio (schedule, synthesis, frame ground truth, features) and common.audio_io."""

import json
import os

import librosa
import numpy as np
import pytest
import soundfile as sf

from common.audio_io import SAMPLE_RATE, load_audio, save_wav, validate_waveform
from common.errors import AudioError
from synthavatar.audio import (
    VISEME_INDEX,
    VISEMES,
    AudioSchedule,
    Syllable,
    frame_envelope,
    frame_ground_truth,
    log_mel,
    sample_schedule,
    synthesize,
)

FPS = 25
SEEDS = range(6)


def _schedule(seed: int, duration: float = 4.0) -> AudioSchedule:
    return sample_schedule(np.random.default_rng(seed), duration)


def _frames(duration: float) -> int:
    return int(round(duration * FPS))


def _single_viseme(viseme: str, n: int = 8) -> AudioSchedule:
    """Hand-built schedule: n identical syllables of one viseme."""
    syls = [
        Syllable(0.1 + 0.3 * i, 0.35 + 0.3 * i, VISEME_INDEX[viseme], 0.5, 150.0, i, 0)
        for i in range(n)
    ]
    span = (syls[0].start, syls[-1].end)
    words = [(s.start, s.end) for s in syls]
    return AudioSchedule(span[1] + 0.1, syls, words, [span], [(0.0, 0.1)], [])


# --------------------------------------------------------------------------- schedule


def test_schedule_deterministic_and_well_formed():
    a, b = _schedule(3), _schedule(3)
    assert a == b
    assert a != _schedule(4)
    syls = a.syllables
    assert syls, "4 s should hold speech"
    for s in syls:
        assert 0.12 - 1e-9 <= s.end - s.start <= 0.30 + 1e-9
        assert 0.0 <= s.stress <= 1.0 and s.end <= a.duration
    assert all(x.end <= y.start for x, y in zip(syls, syls[1:]))  # ordered, no overlap
    for p in a.pauses:
        assert p[1] > p[0]
    inner = a.pauses[1:-1] if a.pauses[-1][1] == a.duration else a.pauses[1:]
    assert all(0.15 - 1e-9 <= e - s <= 0.6 + 1e-9 for s, e in inner)


def test_schedule_stress_and_grouping():
    for seed in SEEDS:
        s = _schedule(seed, 6.0)
        for p in range(len(s.phrases)):
            stressed = [x for x in s.syllables if x.phrase == p and x.stress >= 0.75]
            assert 1 <= len(stressed) <= 2
        centres = sorted(x.centre for x in s.syllables if x.stress >= 0.75)
        assert np.allclose(sorted(s.emphasis_peaks), centres)
        per_word = np.bincount([x.word for x in s.syllables])
        assert per_word.min() >= 1 and per_word.max() <= 3
        assert len(s.words) == len(per_word)


def test_speech_rate_changes_density():
    slow = sample_schedule(np.random.default_rng(0), 8.0, speech_rate=0.6)
    fast = sample_schedule(np.random.default_rng(0), 8.0, speech_rate=1.8)
    assert len(fast.syllables) > len(slow.syllables)
    with pytest.raises(ValueError):
        sample_schedule(np.random.default_rng(0), 4.0, speech_rate=0.0)


def test_schedule_json_round_trip():
    s = _schedule(1)
    again = AudioSchedule.from_dict(json.loads(json.dumps(s.to_dict())))
    assert again == s


def test_syllable_rejects_bad_values():
    with pytest.raises(ValueError, match="stress"):
        Syllable(0.0, 0.2, 1, 1.5, 120.0, 0, 0)
    with pytest.raises(ValueError, match="viseme"):
        Syllable(0.0, 0.2, len(VISEMES), 0.5, 120.0, 0, 0)


# --------------------------------------------------------------------------- synthesis


def test_synthesize_shape_range_determinism():
    s = _schedule(2, 3.3)
    y = synthesize(s)
    assert y.dtype == np.float32 and y.shape == (round(3.3 * SAMPLE_RATE),)
    assert np.all(np.isfinite(y))
    assert np.isclose(np.abs(y).max(), 0.9, atol=1e-4)
    assert np.array_equal(y, synthesize(s))
    assert not np.array_equal(y, synthesize(s, seed=1))  # seed changes micro detail only


def test_pauses_are_near_silent():
    s = _schedule(5)
    y = synthesize(s)
    for a, b in s.pauses:
        seg = y[int(a * SAMPLE_RATE) + 160 : int(b * SAMPLE_RATE) - 160]
        if seg.size:
            assert np.sqrt(np.mean(seg**2)) < 1e-3


def test_silent_schedule_gives_noise_floor():
    s = AudioSchedule(0.5, [], [], [], [(0.0, 0.5)], [])
    y = synthesize(s)
    assert y.shape == (8000,) and np.abs(y).max() < 1e-2
    gt = frame_ground_truth(s, FPS, 12)
    assert not gt["speaking"].any() and np.all(gt["viseme"] == VISEME_INDEX["closed"])


# --------------------------------------------------------------------------- ground truth


def test_frame_ground_truth_shapes_and_ranges():
    s = _schedule(0)
    T = _frames(s.duration)
    gt = frame_ground_truth(s, FPS, T)
    assert gt["mouth_open"].dtype == np.float32 and gt["mouth_open"].shape == (T,)
    assert gt["expressiveness"].dtype == np.float32 and gt["expressiveness"].shape == (T,)
    assert gt["viseme"].dtype == np.int64 and gt["speaking"].dtype == bool
    for key in ("mouth_open", "expressiveness"):
        assert gt[key].min() >= 0.0 and gt[key].max() <= 1.0
    assert set(np.unique(gt["viseme"])) <= set(range(len(VISEMES)))
    silent = ~gt["speaking"]
    assert np.all(gt["mouth_open"][silent] == 0)
    assert np.all(gt["viseme"][silent] == VISEME_INDEX["closed"])
    assert gt["speaking"].any() and silent.any()


def test_frame_ground_truth_samples_frame_centres():
    syl = Syllable(0.20, 0.40, VISEME_INDEX["open"], 1.0, 150.0, 0, 0)
    s = AudioSchedule(0.6, [syl], [(0.2, 0.4)], [(0.2, 0.4)], [], [0.3])
    gt = frame_ground_truth(s, 10.0, 6)  # frame centres 0.05, 0.15, ..., 0.55
    assert gt["speaking"].tolist() == [False, False, True, True, False, False]
    assert gt["mouth_open"][2] > 0.9  # mid-syllable, open, fully stressed


def test_envelope_tracks_mouth_open():
    for seed in SEEDS:
        s = _schedule(seed)
        T = _frames(s.duration)
        env = frame_envelope(synthesize(s, seed=seed), SAMPLE_RATE, FPS, T)
        mouth = frame_ground_truth(s, FPS, T)["mouth_open"]
        r = np.corrcoef(env, mouth)[0, 1]
        assert r > 0.8, (seed, r)
        # A 3-frame (120 ms) offset must be detectable: the lip-sync metric relies on it.
        assert np.corrcoef(env[3:], mouth[:-3])[0, 1] < r - 0.2
        assert np.corrcoef(env[:-3], mouth[3:])[0, 1] < r - 0.2


def test_expressiveness_peaks_at_emphasis():
    for seed in SEEDS:
        s = _schedule(seed, 6.0)
        T = _frames(s.duration)
        gt = frame_ground_truth(s, FPS, T)
        expr = gt["expressiveness"]
        median_speaking = np.median(expr[gt["speaking"]])
        for p in s.emphasis_peaks:
            f = int(p * FPS)
            assert expr[f] > median_speaking
            # A local maximum within 2 frames (neighbouring peaks may be higher still).
            padded = np.pad(expr, 1)
            local_max = [
                padded[g + 1] >= max(padded[g], padded[g + 2])
                for g in range(max(f - 2, 0), min(f + 3, T))
            ]
            assert any(local_max), (seed, p)


def test_visemes_audible_in_spectrum():
    def centroid(viseme):
        y = synthesize(_single_viseme(viseme))
        cent = librosa.feature.spectral_centroid(y=y, sr=SAMPLE_RATE, hop_length=640)[0]
        rms = librosa.feature.rms(y=y, hop_length=640)[0]
        return np.average(cent, weights=rms**2)  # loud (voiced) frames dominate

    assert centroid("wide") > 1.2 * centroid("round")
    assert centroid("open") > centroid("round")


# --------------------------------------------------------------------------- features


def test_feature_shapes_exact_length():
    y = synthesize(_schedule(1, 2.0))
    for fps, T in ((25, 50), (30, 60), (29.97, 61)):  # T may overshoot the clip
        env = frame_envelope(y, SAMPLE_RATE, fps, T)
        mel = log_mel(y, SAMPLE_RATE, fps, T)
        assert env.shape == (T,) and env.dtype == np.float32
        assert mel.shape == (T, 40) and mel.dtype == np.float32
        assert np.all(np.isfinite(mel)) and np.all(env >= 0)


def test_frame_envelope_of_constant_tone():
    t = np.arange(SAMPLE_RATE) / SAMPLE_RATE
    y = 0.5 * np.sin(2 * np.pi * 440 * t)
    env = frame_envelope(y, SAMPLE_RATE, FPS, 25)
    assert np.allclose(env[1:-1], 0.5 / np.sqrt(2), rtol=0.02)


# --------------------------------------------------------------------------- validation / I/O


def test_validate_accepts_mono_variants():
    x = np.zeros(100, dtype=np.float64)
    assert validate_waveform(x, SAMPLE_RATE).dtype == np.float32
    assert validate_waveform(x[:, None], SAMPLE_RATE).shape == (100,)
    assert validate_waveform(x[None, :], SAMPLE_RATE).shape == (100,)
    pcm = np.array([-32768, 0, 16384], dtype=np.int16)
    assert np.allclose(validate_waveform(pcm, SAMPLE_RATE), [-1.0, 0.0, 0.5])


def test_validate_wrong_sample_rate():
    with pytest.raises(AudioError) as e:
        validate_waveform(np.zeros(10), 44100, source="clip.wav")
    msg = str(e.value)
    assert "clip.wav" in msg and "44100" in msg and "16000" in msg
    assert "load_audio(path, resample=True)" in msg


def test_validate_stereo_reports_shape():
    with pytest.raises(AudioError, match=r"clip\.wav.*2 channels.*\(100, 2\)"):
        validate_waveform(np.zeros((100, 2)), SAMPLE_RATE, source="clip.wav")
    with pytest.raises(AudioError, match=r"shape \(2, 3, 4\)"):
        validate_waveform(np.zeros((2, 3, 4)), SAMPLE_RATE)


def test_validate_empty():
    with pytest.raises(AudioError, match=r"<array>.*empty"):
        validate_waveform(np.zeros(0), SAMPLE_RATE)


def test_validate_nan_inf_count_and_position():
    x = np.zeros(1000, dtype=np.float32)
    x[[120, 500]] = np.nan
    x[700] = np.inf
    with pytest.raises(AudioError) as e:
        validate_waveform(x, SAMPLE_RATE, source="mic")
    msg = str(e.value)
    assert "mic" in msg and "2 NaN" in msg and "1 Inf" in msg and "sample 120" in msg


def test_validate_non_numeric():
    with pytest.raises(AudioError, match="not numeric"):
        validate_waveform(np.array(["a", "b"]), SAMPLE_RATE)
    with pytest.raises(AudioError, match="not numeric"):
        validate_waveform(np.ones(4, dtype=np.complex64), SAMPLE_RATE)


def test_load_audio_unreadable_and_missing(tmp_path):
    bogus = tmp_path / "bogus.wav"
    bogus.write_bytes(b"this is not a wav file")
    with pytest.raises(AudioError, match="bogus.wav"):
        load_audio(bogus)
    with pytest.raises(AudioError, match=r"missing\.wav.*does not exist"):
        load_audio(tmp_path / "missing.wav")


def test_save_wav_atomic_and_round_trip(tmp_path):
    y = synthesize(_schedule(0, 1.5))
    out = save_wav(tmp_path / "clip.wav", y)
    assert os.listdir(tmp_path) == ["clip.wav"]  # no temporary file left behind
    assert sf.info(str(out)).subtype == "PCM_16"
    back = load_audio(out)
    assert back.shape == y.shape and np.allclose(back, y, atol=1.0 / 32768 + 1e-6)


def test_save_wav_rejects_nan_and_keeps_old_file(tmp_path):
    path = tmp_path / "clip.wav"
    save_wav(path, np.zeros(100))
    with pytest.raises(AudioError):
        save_wav(path, np.full(100, np.nan))
    assert os.listdir(tmp_path) == ["clip.wav"] and load_audio(path).shape == (100,)


def test_load_audio_resample_and_downmix(tmp_path):
    t = np.arange(22050) / 22050
    tone = 0.3 * np.sin(2 * np.pi * 300 * t)
    stereo = np.stack([tone, tone], axis=1)  # (N, 2)
    path = tmp_path / "stereo22k.flac"
    sf.write(str(path), stereo, 22050)
    with pytest.raises(AudioError, match="22050"):
        load_audio(path)
    y = load_audio(path, resample=True)
    assert y.shape == (SAMPLE_RATE,) and y.dtype == np.float32
    assert np.isclose(np.sqrt(np.mean(y[1000:-1000] ** 2)), 0.3 / np.sqrt(2), rtol=0.05)
    # Right rate but two channels: the channel error names the file.
    path16 = tmp_path / "stereo16k.wav"
    sf.write(str(path16), np.zeros((1600, 2)), SAMPLE_RATE)
    with pytest.raises(AudioError, match=r"stereo16k\.wav.*2 channels"):
        load_audio(path16)
