"""Behavioural tests for evaluation.metrics (fast: numpy/scipy only)."""

import math

import numpy as np
import pytest
from scipy.ndimage import gaussian_filter, gaussian_filter1d

from evaluation import metrics as M
from evaluation import tables as T

# --------------------------------------------------------------------------- sync


def _smooth_noise(n, seed, sigma=2.0):
    """(n,) band-limited noise, a plausible mouth-opening / loudness track."""
    return gaussian_filter1d(np.random.default_rng(seed).standard_normal(n), sigma)


T_SYNC = 200
PAD = 10


@pytest.fixture(scope="module")
def base():
    return _smooth_noise(T_SYNC + 2 * PAD, seed=0)


def test_sync_self_is_offset_zero_high_confidence(base):
    x = base[PAD : PAD + T_SYNC]
    s = M.sync_scores(x, x)
    assert s["offset"] == 0
    assert s["sync_d"] == pytest.approx(0.0, abs=1e-12)
    assert s["sync_c"] > 1.0


@pytest.mark.parametrize("k", [1, 2, 3, 4, 5])
def test_sync_recovers_shift_with_sign(base, k):
    mouth = base[PAD : PAD + T_SYNC]
    # audio[t + k] == mouth[t]: the sound comes k frames after the mouth -> audio lags -> +k.
    lagging = base[PAD - k : PAD - k + T_SYNC]
    leading = base[PAD + k : PAD + k + T_SYNC]
    assert M.sync_scores(mouth, lagging)["offset"] == k
    assert M.sync_scores(mouth, leading)["offset"] == -k


def test_sync_shift_beyond_max_offset_is_not_found(base):
    mouth = base[PAD : PAD + T_SYNC]
    audio = base[PAD - 8 : PAD - 8 + T_SYNC]
    assert M.sync_scores(mouth, audio, max_offset=5)["offset"] != 8
    assert M.sync_scores(mouth, audio, max_offset=10)["offset"] == 8


def test_sync_unrelated_noise_has_lower_confidence(base):
    mouth = base[PAD : PAD + T_SYNC]
    matched = M.sync_scores(mouth, mouth + 0.1 * _smooth_noise(T_SYNC, seed=5))
    unrelated = [M.sync_scores(mouth, _smooth_noise(T_SYNC, seed=s)) for s in range(1, 5)]
    for u in unrelated:
        assert u["sync_c"] < 0.5 * matched["sync_c"]
        assert u["sync_d"] > matched["sync_d"]


def test_sync_is_scale_and_offset_invariant(base):
    x = base[PAD : PAD + T_SYNC]
    a = M.sync_scores(x, x + 0.3 * _smooth_noise(T_SYNC, seed=9))
    b = M.sync_scores(5.0 * x + 3.0, 0.01 * (x + 0.3 * _smooth_noise(T_SYNC, seed=9)))
    assert a["offset"] == b["offset"]
    assert a["sync_c"] == pytest.approx(b["sync_c"])


def test_sync_constant_mouth_has_no_confidence(base):
    audio = base[PAD : PAD + T_SYNC]
    s = M.sync_scores(np.full(T_SYNC, 0.4), audio)
    assert abs(s["sync_c"]) < 0.05
    both_const = M.sync_scores(np.zeros(50), np.ones(50))
    assert both_const["sync_c"] == 0.0 and both_const["offset"] == 0


def test_sync_short_or_mismatched_input_raises():
    with pytest.raises(ValueError):
        M.sync_scores(np.zeros(3), np.zeros(3), window=5)
    with pytest.raises(ValueError):
        M.sync_scores(np.zeros(30), np.zeros(31))


def test_sync_short_clip_uses_only_valid_offsets():
    x = _smooth_noise(12, seed=3, sigma=1.0)
    s = M.sync_scores(x, x, max_offset=15, window=5)  # most offsets have no valid frame
    assert s["offset"] == 0 and math.isfinite(s["sync_c"])


# --------------------------------------------------------------------------- segments / IoU


def test_temporal_iou():
    assert M.temporal_iou((0, 10), (0, 10)) == 1.0
    assert M.temporal_iou((0, 10), (5, 15)) == pytest.approx(5 / 15)
    assert M.temporal_iou((0, 10), (10, 20)) == 0.0
    assert M.temporal_iou((0, 10), (2, 4)) == pytest.approx(0.2)
    assert M.temporal_iou((3, 3), (3, 3)) == 0.0


def test_label_segments():
    labels = np.array([0, 1, 1, 0, 2, 1, 1, 1])
    assert M.label_segments(labels, 1) == [(1, 3), (5, 8)]
    assert M.label_segments(labels, 2) == [(4, 5)]
    assert M.label_segments(labels, 7) == []
    assert M.label_segments(np.ones(4, int), 1) == [(0, 4)]


# --------------------------------------------------------------------------- actions

FPS = 25.0
T_ACT = 250
PHASES = [(1.0, 3.0, 1), (4.0, 6.0, 2), (7.0, 9.0, 3)]


def _labels_for(phases, shift=0, n=T_ACT, fps=FPS):
    """Perfect per-frame labels for ``phases`` (frame t at time (t + 0.5) / fps), shifted by frames."""
    labels = np.zeros(n, dtype=int)
    t = (np.arange(n) + 0.5) / fps
    for s, e, a in phases:
        labels[(t >= s) & (t < e)] = a
    return np.roll(labels, shift)


def test_action_perfect_labels():
    r = M.action_metrics(_labels_for(PHASES), PHASES, FPS)
    assert (r["h_at_s"], r["aa"], r["tc"]) == (1.0, 1.0, 1.0)
    assert len(r["per_phase"]) == 3
    assert r["per_phase"][0]["start_frame"] == 25 and r["per_phase"][0]["end_frame"] == 75


@pytest.mark.parametrize("fps", [24.0, 25.0, 29.97, 30.0])
def test_action_perfect_labels_at_awkward_boundaries(fps):
    phases = [(0.013, 1.234, 4), (1.234, 2.5, 5), (3.3333, 4.7, 1)]
    r = M.action_metrics(_labels_for(phases, n=200, fps=fps), phases, fps)
    assert (r["h_at_s"], r["aa"], r["tc"]) == (1.0, 1.0, 1.0)


def test_action_tc_decreases_with_shift():
    tcs = [M.action_metrics(_labels_for(PHASES, shift=d), PHASES, FPS)["tc"] for d in (0, 2, 5, 10, 20, 35)]
    assert all(a > b for a, b in zip(tcs, tcs[1:])), tcs
    # Negative shifts (early actions) are penalised symmetrically.
    early = M.action_metrics(_labels_for(PHASES, shift=-10), PHASES, FPS)["tc"]
    assert early == pytest.approx(tcs[3])
    # IoU of two 50-frame windows offset by d is (50 - d) / (50 + d).
    assert tcs[3] == pytest.approx(40 / 60)


def test_action_wrong_action_scores_zero():
    wrong = [(s, e, a % 3 + 1) for s, e, a in PHASES]  # 1->2, 2->3, 3->1
    r = M.action_metrics(_labels_for(wrong), PHASES, FPS)
    assert (r["h_at_s"], r["aa"], r["tc"]) == (0.0, 0.0, 0.0)


def test_action_idle_only_window_fails_aa():
    r = M.action_metrics(np.zeros(T_ACT, dtype=int), PHASES, FPS)
    assert (r["h_at_s"], r["aa"], r["tc"]) == (0.0, 0.0, 0.0)
    assert r["per_phase"][0]["predicted"] == 0


def test_action_partial_credit():
    labels = _labels_for(PHASES[:2])  # third phase never performed
    r = M.action_metrics(labels, PHASES, FPS)
    assert r["h_at_s"] == pytest.approx(2 / 3)
    assert r["aa"] == pytest.approx(2 / 3)
    assert r["tc"] == pytest.approx(2 / 3)


def test_action_half_window_hit_depends_on_fraction():
    phases = [(2.0, 4.0, 1)]  # frames [50, 100)
    labels = np.zeros(T_ACT, dtype=int)
    labels[50:75] = 1  # first half only
    lo = M.action_metrics(labels, phases, FPS, hit_fraction=0.3)
    hi = M.action_metrics(labels, phases, FPS, hit_fraction=0.6)
    assert lo["h_at_s"] == 1.0 and hi["h_at_s"] == 0.0
    assert lo["aa"] == 1.0  # idle frames do not count against the plurality
    assert lo["tc"] == pytest.approx(0.5)
    assert lo["per_phase"][0]["hit_ratio"] == pytest.approx(0.5)


def test_action_plurality_and_detected_span():
    phases = [(2.0, 4.0, 1)]  # frames [50, 100)
    labels = np.zeros(T_ACT, dtype=int)
    labels[50:60] = 1
    labels[60:90] = 2  # another action dominates the window
    labels[90:110] = 1  # second run of the requested action, overshooting the window
    r = M.action_metrics(labels, phases, FPS)
    p = r["per_phase"][0]
    assert p["predicted"] == 2 and r["aa"] == 0.0
    assert p["detected"] == (50, 110)  # union span of both runs, whole runs kept
    assert r["tc"] == pytest.approx(50 / 60)
    # 20 of 50 frames show the requested action: a hit at 0.3, not at 0.5.
    assert p["hit_ratio"] == pytest.approx(0.4) and r["h_at_s"] == 1.0
    assert M.action_metrics(labels, phases, FPS, hit_fraction=0.5)["h_at_s"] == 0.0


def test_action_tie_is_not_correct():
    phases = [(2.0, 4.0, 1)]
    labels = np.zeros(T_ACT, dtype=int)
    labels[50:75], labels[75:100] = 1, 2
    assert M.action_metrics(labels, phases, FPS)["aa"] == 0.0


def test_action_phase_outside_clip_and_no_phases():
    r = M.action_metrics(_labels_for(PHASES), PHASES + [(20.0, 22.0, 1)], FPS)
    assert r["h_at_s"] == pytest.approx(0.75) and r["tc"] == pytest.approx(0.75)
    empty = M.action_metrics(np.zeros(10, int), [], FPS)
    assert math.isnan(empty["h_at_s"]) and empty["per_phase"] == []


# --------------------------------------------------------------------------- pixels


@pytest.fixture(scope="module")
def video():
    """(10, 64, 64, 3) smooth uint8 video."""
    rng = np.random.default_rng(0)
    v = gaussian_filter(rng.uniform(0, 255, (10, 64, 64, 3)), sigma=(0, 4, 4, 0))
    v = (v - v.min()) / (v.max() - v.min()) * 200 + 20
    return v.astype(np.uint8)


def _noisy(v, level, seed=1):
    noise = np.random.default_rng(seed).normal(0, level, v.shape)
    return np.clip(v + noise, 0, 255).astype(np.uint8)


def test_psnr_ssim_identity(video):
    assert M.psnr(video, video) == 100.0
    assert M.psnr(video, video, cap=60.0) == 60.0
    assert M.ssim(video, video) == pytest.approx(1.0)


def test_psnr_known_value(video):
    a = np.full((2, 4, 4, 3), 100.0)
    assert M.psnr(a, a + 1.0) == pytest.approx(20 * math.log10(255.0))
    assert M.psnr(a / 255.0, (a + 1.0) / 255.0, max_value=1.0) == pytest.approx(20 * math.log10(255.0))


def test_psnr_ssim_decrease_with_noise(video):
    levels = [1, 3, 8, 20, 50]
    psnrs = [M.psnr(video, _noisy(video, s)) for s in levels]
    ssims = [M.ssim(video, _noisy(video, s)) for s in levels]
    assert all(a > b for a, b in zip(psnrs, psnrs[1:])), psnrs
    assert all(a > b for a, b in zip(ssims, ssims[1:])), ssims
    assert ssims[0] > 0.9 and ssims[-1] < 0.5


def test_ssim_uint8_and_float_agree_and_grayscale(video):
    noisy = _noisy(video, 10)
    assert M.ssim(video, noisy) == pytest.approx(M.ssim(video.astype(np.float32), noisy.astype(np.float32)))
    assert M.ssim(video[..., 0], noisy[..., 0]) == pytest.approx(M.ssim(video[..., :1], noisy[..., :1]))


def test_pixel_shape_mismatch_raises(video):
    with pytest.raises(ValueError):
        M.psnr(video, video[:5])
    with pytest.raises(ValueError):
        M.ssim(video, video[:, :32])


# --------------------------------------------------------------------------- frechet


@pytest.fixture(scope="module")
def feats():
    return np.random.default_rng(0).standard_normal((400, 8))


def test_frechet_identical_is_zero(feats):
    assert M.frechet_distance(feats, feats) == pytest.approx(0.0, abs=1e-6)


def test_frechet_grows_with_square_of_mean_shift(feats):
    u = np.ones(8) / math.sqrt(8)  # unit direction
    fds = [M.frechet_distance(feats, feats + s * u) for s in (1.0, 2.0, 4.0)]
    # Same covariance, so FD is exactly the squared mean shift.
    assert fds == pytest.approx([1.0, 4.0, 16.0], rel=1e-4)


def test_frechet_detects_scale_change_and_handles_singular(feats):
    assert M.frechet_distance(feats, 3.0 * feats) > 1.0
    few = np.random.default_rng(1).standard_normal((5, 8))  # N < D: singular covariance
    fd = M.frechet_distance(few, few + 0.5)
    assert math.isfinite(fd) and fd == pytest.approx(8 * 0.25, rel=1e-3)


def test_frechet_bad_input(feats):
    with pytest.raises(ValueError):
        M.frechet_distance(feats, feats[:, :4])
    with pytest.raises(ValueError):
        M.frechet_distance(feats[:1], feats)


# --------------------------------------------------------------------------- motion / correlation / identity


def test_motion_energy():
    static = np.tile(np.arange(6.0), (20, 1))
    assert np.allclose(M.motion_energy(static), 0.0)
    # Constant velocity of 2 units/frame along one of 3 coordinates.
    moving = np.zeros((20, 3))
    moving[:, 0] = 2.0 * np.arange(20)
    e = M.motion_energy(moving)
    assert e.shape == (20,) and np.allclose(e, 2.0)
    # (T, J, 2) tracks are flattened per frame.
    assert M.motion_energy(moving.reshape(20, 3, 1)).shape == (20,)
    assert M.motion_energy(np.zeros((1, 4))).shape == (1,)


def test_motion_energy_localises_a_burst():
    tracks = np.zeros((40, 2))
    tracks[20:, 0] = 5.0  # a single jump between frames 19 and 20
    e = M.motion_energy(tracks)
    assert e.argmax() in (19, 20, 21) and e[:15].max() == 0 and e[25:].max() == 0


def test_pearson():
    x = np.sin(np.linspace(0, 6, 50))
    assert M.pearson(x, 2 * x + 1) == pytest.approx(1.0)
    assert M.pearson(x, -x) == pytest.approx(-1.0)
    assert M.pearson(x, np.full(50, 3.0)) == 0.0
    assert M.pearson(np.zeros(50), np.zeros(50)) == 0.0
    assert M.pearson([1.0], [2.0]) == 0.0
    assert M.pearson(1e-9 * x, x) == pytest.approx(1.0)  # tiny scale is not "constant"
    with pytest.raises(ValueError):
        M.pearson(x, x[:10])


def test_expressiveness_corr():
    emphasis = _smooth_noise(200, seed=2, sigma=4)
    emphasis /= emphasis.std()
    motion = emphasis + np.random.default_rng(3).standard_normal(200)  # frame-level jitter
    r = M.expressiveness_corr(motion, emphasis)
    assert r > 0.8 and r > M.pearson(motion, emphasis)  # the 5-frame box removes jitter
    assert M.expressiveness_corr(-emphasis, emphasis) < -0.9
    assert M.expressiveness_corr(np.ones(200), emphasis) == 0.0


def test_identity_similarity():
    ref = np.array([1.0, 2.0, 3.0])
    assert M.identity_similarity(ref, np.tile(ref * 5, (4, 1))) == pytest.approx(1.0)
    assert M.identity_similarity(ref, -ref[None]) == pytest.approx(-1.0)
    orth = np.array([[3.0, 0.0, -1.0]])
    assert M.identity_similarity(ref, orth) == pytest.approx(0.0)
    assert M.identity_similarity(np.zeros(3), np.tile(ref, (3, 1))) == 0.0
    half_zero = np.stack([ref, np.zeros(3)])  # a zero frame scores 0
    assert M.identity_similarity(ref, half_zero) == pytest.approx(0.5)
    with pytest.raises(ValueError):
        M.identity_similarity(ref, np.zeros((2, 4)))


# --------------------------------------------------------------------------- reporting


def test_summarize():
    rows = [
        {"sync_c": 1.0, "psnr": 30.0, "name": "a", "per_phase": [1, 2], "ok": True},
        {"sync_c": 2.0, "psnr": float("nan"), "name": "b"},
        {"sync_c": 3.0, "fvd": np.float32(10.0)},
    ]
    s = T.summarize(rows)
    assert list(s) == ["sync_c", "psnr", "fvd"]
    assert s["sync_c"] == pytest.approx((2.0, np.std([1.0, 2.0, 3.0])))
    assert s["psnr"] == (30.0, 0.0)  # NaN ignored
    assert s["fvd"] == (10.0, 0.0)


def test_to_markdown():
    table = {
        "baseline": T.summarize([{"sync_c": 1.0, "fvd": 100.0}, {"sync_c": 2.0, "fvd": 110.0}]),
        "ours|v2": {"sync_c": (2.5, 0.25), "custom": (0.1, 0.0)},
    }
    md = T.to_markdown(table)
    lines = md.strip().splitlines()
    assert lines[0] == "| run | sync_c ↑ | fvd ↓ | custom |"
    assert lines[1].count("---") == 4
    assert "| baseline | 1.500 ± 0.500 | 105.000 ± 5.000 | – |" in lines
    assert "| ours\\|v2 | 2.500 ± 0.250 | – | 0.100 ± 0.000 |" in lines
    for name, up in T.METRIC_DIRECTIONS.items():
        header = T.to_markdown({"r": {name: (0.0, 0.0)}}).splitlines()[0]
        assert (f"{name} ↑" if up else f"{name} ↓") in header
