"""Evaluation metrics for ActSync on SynthAvatar.

These are *analogues* of the metrics reported by the talking-avatar papers,
computed from the outputs of a small probe network (per-frame joints, mouth
opening, gaze, action label and identity embedding) and from the procedural
ground truth of the SynthAvatar world, instead of the large pretrained judges
the papers use:

* ``sync_scores``   -> SyncNet Sync-C / Sync-D (lip sync).  We compare the
  probe's mouth-opening track with the audio loudness envelope instead of
  SyncNet's learned audio/visual embeddings, but keep SyncNet's sliding-offset
  distance and its confidence (median minus minimum distance).
* ``action_metrics`` -> ActAvatar's Gemini-judged H@S (hit at step), AA
  (action accuracy) and TC (temporal consistency).  The judge is replaced by
  the probe's per-frame action labels compared with the scripted phases; our
  AA and TC lie in [0, 1], unlike the paper's 0-10 Gemini scores.
* ``identity_similarity`` -> ArcFace CSIM, with the probe's identity embedding
  standing in for ArcFace features.
* ``frechet_distance`` -> FVD when fed clip-level probe features (the formula
  is the Frechet distance used by FID/FVD; only the feature extractor differs).
* ``psnr`` / ``ssim`` -> the usual reconstruction metrics, unchanged.
* ``expressiveness_corr`` -> correlation between body motion energy and the
  speech emphasis track (no paper equivalent: SynthAvatar knows the emphasis).

Aggregation over clips/seeds and the markdown tables live in evaluation/tables.py.
Everything here is pure numpy/scipy so the metrics can be computed and unit
tested without torch or a GPU.  ``docs/metrics.md`` lists formulas, ranges and
best values.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import scipy.linalg
from numpy.lib.stride_tricks import sliding_window_view
from scipy.ndimage import gaussian_filter, uniform_filter1d

__all__ = [
    "sync_scores",
    "temporal_iou",
    "label_segments",
    "action_metrics",
    "psnr",
    "ssim",
    "frechet_distance",
    "motion_energy",
    "pearson",
    "expressiveness_corr",
    "identity_similarity",
]



# --------------------------------------------------------------------------
# Lip sync (SyncNet analogue)
# --------------------------------------------------------------------------


def _zscore(x: np.ndarray) -> np.ndarray:
    """(T,) -> (T,) zero mean, unit std; a constant signal becomes zeros."""
    x = np.asarray(x, dtype=np.float64)
    std = x.std()
    # A constant track carries no timing information: zeros make every
    # offset equally (un)likely instead of dividing by zero.
    if std < 1e-12:
        return np.zeros_like(x)
    return (x - x.mean()) / std


def _offset_distance(m_win: np.ndarray, a_win: np.ndarray, o: int) -> float:
    """Mean normalised distance between mouth windows at t and audio windows at t+o.

    m_win, a_win: (T - window + 1, window) windows indexed by their first frame,
    so window i is centred at frame i + window // 2 for both signals.
    """
    n = m_win.shape[0]
    # Keep only t whose mouth window *and* shifted audio window are inside.
    lo, hi = max(0, -o), min(n, n - o)
    if hi <= lo:
        return math.nan
    diff = m_win[lo:hi] - a_win[lo + o : hi + o]  # (n_valid, window)
    return float(np.linalg.norm(diff, axis=1).mean() / math.sqrt(m_win.shape[1]))


def sync_scores(
    mouth: np.ndarray, audio_env: np.ndarray, max_offset: int = 15, window: int = 5
) -> dict:
    """SyncNet-style lip-sync scores from a mouth-opening track and an audio envelope.

    Both (T,) signals are z-scored (constant -> zeros).  With ``w = window`` and
    ``W_x(t)`` the w-frame window of x centred at frame t, for every offset
    ``o in [-max_offset, max_offset]``::

        dist(o) = mean_t ||W_mouth(t) - W_audio(t + o)||_2 / sqrt(w)

    over the frames t for which both windows lie inside the clip.  Then::

        sync_d = min_o dist(o)                      (lower is better)
        sync_c = median_o dist(o) - sync_d          (SyncNet confidence, higher is better)
        offset = argmin_o dist(o)

    Sign convention: ``offset > 0`` means the audio lags the video (the mouth
    moves ``offset`` frames before the matching sound); ``offset < 0`` means the
    audio leads.  Ties are broken towards the smallest ``|o|``.  Offsets with no
    valid frame (very short clips) are ignored.

    Returns dict(sync_c=float, sync_d=float, offset=int).
    """
    mouth = _zscore(np.ravel(mouth))
    audio = _zscore(np.ravel(audio_env))
    if mouth.shape != audio.shape:
        raise ValueError(f"mouth {mouth.shape} and audio_env {audio.shape} must have the same length")
    if window < 1 or mouth.shape[0] < window:
        raise ValueError(f"need at least window={window} frames, got {mouth.shape[0]}")

    m_win = sliding_window_view(mouth, window)  # (T - w + 1, w)
    a_win = sliding_window_view(audio, window)  # (T - w + 1, w)
    # Visit offsets by increasing |o| so argmin breaks ties towards 0.
    offsets = sorted(range(-max_offset, max_offset + 1), key=lambda o: (abs(o), o))
    dists = np.array([_offset_distance(m_win, a_win, o) for o in offsets])
    valid = ~np.isnan(dists)
    best = int(np.nanargmin(dists))
    sync_d = float(dists[best])
    sync_c = float(np.median(dists[valid]) - sync_d)
    return {"sync_c": sync_c, "sync_d": sync_d, "offset": int(offsets[best])}


# --------------------------------------------------------------------------
# Actions (ActAvatar H@S / AA / TC analogues)
# --------------------------------------------------------------------------


def temporal_iou(a: Sequence[float], b: Sequence[float]) -> float:
    """IoU of two half-open intervals ``[start, end)``.

    IoU = max(0, min(e_a, e_b) - max(s_a, s_b)) / (max(e_a, e_b) - min(s_a, s_b)),
    in [0, 1]; 0 when the union is empty.
    """
    (s_a, e_a), (s_b, e_b) = a, b
    inter = max(0.0, min(e_a, e_b) - max(s_a, s_b))
    union = (e_a - s_a) + (e_b - s_b) - inter
    return float(inter / union) if union > 0 else 0.0


def label_segments(labels: np.ndarray, value: int) -> list[tuple[int, int]]:
    """Contiguous runs of ``labels == value`` as ``(start_frame, end_frame_exclusive)``."""
    mask = np.asarray(labels).ravel() == value  # (T,)
    # Pad with False so every run has a rising and a falling edge.
    edges = np.diff(np.concatenate([[False], mask, [False]]).astype(np.int8))
    starts = np.flatnonzero(edges == 1)
    ends = np.flatnonzero(edges == -1)
    return [(int(s), int(e)) for s, e in zip(starts, ends)]


def _phase_frames(start_s: float, end_s: float, fps: float, n_frames: int) -> tuple[int, int]:
    """Frame range [f0, f1) whose centres (t + 0.5) / fps fall in [start_s, end_s)."""
    # Same float expression as synthavatar.motion.action_labels, so boundary
    # frames agree exactly with the ground-truth labels.
    centres = (np.arange(n_frames) + 0.5) / fps  # (T,)
    inside = np.flatnonzero((centres >= start_s) & (centres < end_s))
    if inside.size == 0:
        return 0, 0
    return int(inside[0]), int(inside[-1]) + 1


def _plurality_non_idle(window_labels: np.ndarray, idle_label: int) -> int | None:
    """Most frequent non-idle label in a window; ``idle_label`` if the window is all
    idle; None if it is empty or the top count is tied."""
    if window_labels.size == 0:
        return None
    labels = window_labels[window_labels != idle_label]
    if labels.size == 0:
        return idle_label
    values, counts = np.unique(labels, return_counts=True)
    # A tie is not a clear decision, so it never counts as a correct action.
    if (counts == counts.max()).sum() > 1:
        return None
    return int(values[counts.argmax()])


def _detected_window(labels: np.ndarray, action: int, f0: int, f1: int) -> tuple[int, int] | None:
    """Union span of the runs of ``action`` that overlap [f0, f1); None if none do."""
    runs = [(s, e) for s, e in label_segments(labels, action) if s < f1 and e > f0]
    if not runs:
        return None
    return runs[0][0], runs[-1][1]


def _score_phase(labels: np.ndarray, phase, fps: float, hit_fraction: float, idle_label: int) -> dict:
    """Per-phase hit / action-accuracy / temporal-IoU record."""
    start_s, end_s, action = phase
    action = int(action)
    f0, f1 = _phase_frames(float(start_s), float(end_s), fps, labels.shape[0])
    inside = labels[f0:f1]  # (n_frames_in_window,)
    hit_ratio = float((inside == action).mean()) if inside.size else 0.0
    # All-idle windows yield idle_label, which only matches an idle request.
    predicted = _plurality_non_idle(inside, idle_label)
    detected = _detected_window(labels, action, f0, f1) if inside.size else None
    tc = temporal_iou((f0, f1), detected) if detected is not None else 0.0
    return {
        "start_s": float(start_s),
        "end_s": float(end_s),
        "action": action,
        "start_frame": f0,
        "end_frame": f1,
        "hit_ratio": hit_ratio,
        "hit": bool(inside.size > 0 and hit_ratio >= hit_fraction),
        "predicted": predicted,
        "aa_correct": predicted == action,
        "detected": detected,
        "tc": float(tc),
    }


def action_metrics(
    pred_labels: np.ndarray,
    phases: Sequence[tuple[float, float, int]],
    fps: float,
    hit_fraction: float = 0.3,
    idle_label: int = 0,
) -> dict:
    """Action-following scores of per-frame predicted labels against scripted phases.

    ``phases`` are ``(start_s, end_s, action_id)``; frame t (time (t + 0.5) / fps)
    belongs to a phase when start_s <= (t + 0.5) / fps < end_s.  Per phase p with
    requested action a_p and frame window F_p = [f0, f1):

    * hit_p = |{t in F_p : pred_t = a_p}| / |F_p| >= hit_fraction
    * aa_p  = (plurality of the non-idle labels in F_p) == a_p; 0 when F_p is
      all idle (unless a_p is idle itself) or the plurality is tied
    * tc_p  = IoU(F_p, D_p) where D_p is the span from the first to the last
      predicted run of a_p that overlaps F_p (whole runs, so actions that start
      early or end late are penalised); 0 when no run overlaps.

    H@S = mean_p hit_p, AA = mean_p aa_p, TC = mean_p tc_p, all in [0, 1]
    (the paper's Gemini AA/TC are 0-10 scores; ours are fractions/IoUs).
    Phases with no frame inside the clip count as misses.  With no phases the
    three scores are NaN.

    Returns dict(h_at_s, aa, tc, per_phase), per_phase holding one dict per
    phase: start_s, end_s, action, start_frame, end_frame, hit_ratio, hit,
    predicted (plurality label, idle_label if all idle, None if tied/empty),
    aa_correct, detected ((start, end) frames or None) and tc.
    """
    labels = np.asarray(pred_labels).ravel()  # (T,)
    per_phase = [_score_phase(labels, p, float(fps), hit_fraction, idle_label) for p in phases]
    if not per_phase:
        return {"h_at_s": math.nan, "aa": math.nan, "tc": math.nan, "per_phase": []}
    return {
        "h_at_s": float(np.mean([p["hit"] for p in per_phase])),
        "aa": float(np.mean([p["aa_correct"] for p in per_phase])),
        "tc": float(np.mean([p["tc"] for p in per_phase])),
        "per_phase": per_phase,
    }


# --------------------------------------------------------------------------
# Pixel metrics
# --------------------------------------------------------------------------


def _pair_as_float(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"shape mismatch: {a.shape} vs {b.shape}")
    return a, b


def psnr(a: np.ndarray, b: np.ndarray, max_value: float = 255.0, cap: float = 100.0) -> float:
    """Peak signal-to-noise ratio over a whole video (any shape, e.g. (T, H, W, C)).

    PSNR = 10 * log10(max_value^2 / MSE), MSE over every pixel of every frame;
    identical inputs (MSE = 0) and anything above ``cap`` return ``cap``.
    """
    a, b = _pair_as_float(a, b)
    mse = float(np.mean((a - b) ** 2))
    if mse == 0.0:
        return float(cap)
    return float(min(cap, 10.0 * math.log10(max_value**2 / mse)))


def ssim(a: np.ndarray, b: np.ndarray, max_value: float = 255.0) -> float:
    """Mean structural similarity of two videos (T, H, W, C) or grayscale (T, H, W).

    Per frame and channel, with Gaussian-weighted local statistics (11x11
    window, sigma 1.5), C1 = (0.01 L)^2, C2 = (0.03 L)^2, L = max_value::

        SSIM = (2 mu_a mu_b + C1)(2 cov_ab + C2) / ((mu_a^2 + mu_b^2 + C1)(var_a + var_b + C2))

    averaged over the pixels whose window lies fully inside the frame (as in
    Wang et al. / scikit-image), then over channels, then over frames.
    Range [-1, 1], identical videos give 1.
    """
    a, b = _pair_as_float(a, b)
    if a.ndim == 3:  # grayscale (T, H, W) -> (T, H, W, 1)
        a, b = a[..., None], b[..., None]
    if a.ndim != 4:
        raise ValueError(f"expected (T, H, W, C) or (T, H, W), got {a.shape}")
    c1 = (0.01 * max_value) ** 2
    c2 = (0.03 * max_value) ** 2
    sigma, radius = 1.5, 5  # 11-tap Gaussian window
    # Blur only over H and W; truncate so the kernel is exactly 2 * radius + 1 wide.
    blur = lambda x: gaussian_filter(x, sigma=(0, sigma, sigma, 0), truncate=radius / sigma)
    mu_a, mu_b = blur(a), blur(b)
    var_a = blur(a * a) - mu_a**2
    var_b = blur(b * b) - mu_b**2
    cov = blur(a * b) - mu_a * mu_b
    num = (2 * mu_a * mu_b + c1) * (2 * cov + c2)
    den = (mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2)
    smap = num / den  # (T, H, W, C)
    # Drop the border where the window hangs outside the frame (when possible).
    h, w = smap.shape[1:3]
    if h > 2 * radius and w > 2 * radius:
        smap = smap[:, radius : h - radius, radius : w - radius]
    return float(smap.mean(axis=(1, 2, 3)).mean())


# --------------------------------------------------------------------------
# Distribution distance (FVD analogue)
# --------------------------------------------------------------------------


def _gaussian_stats(feats: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(N, D) features -> mean (D,), covariance (D, D)."""
    feats = np.asarray(feats, dtype=np.float64)
    if feats.ndim == 1:
        feats = feats[:, None]
    if feats.shape[0] < 2:
        raise ValueError(f"need at least 2 feature vectors, got {feats.shape[0]}")
    return feats.mean(axis=0), np.atleast_2d(np.cov(feats, rowvar=False))


def frechet_distance(feats_a: np.ndarray, feats_b: np.ndarray, eps: float = 1e-6) -> float:
    """Frechet distance between Gaussians fitted to two feature sets (N, D) and (M, D).

    FD = ||mu_a - mu_b||^2 + Tr(S_a + S_b - 2 (S_a S_b)^(1/2)), the formula of
    FID/FVD.  If the product of covariances is singular (non-finite square
    root), eps * I is added to both covariances.  Tiny imaginary parts from
    scipy.linalg.sqrtm are discarded.  Range [0, inf); identical sets give ~0.
    """
    mu_a, cov_a = _gaussian_stats(feats_a)
    mu_b, cov_b = _gaussian_stats(feats_b)
    if mu_a.shape != mu_b.shape:
        raise ValueError(f"feature dims differ: {mu_a.shape[0]} vs {mu_b.shape[0]}")
    covmean = scipy.linalg.sqrtm(cov_a @ cov_b)
    if not np.isfinite(covmean).all():
        offset = eps * np.eye(cov_a.shape[0])
        covmean = scipy.linalg.sqrtm((cov_a + offset) @ (cov_b + offset))
    if np.iscomplexobj(covmean):
        # Numerical noise from near-singular covariances; a large imaginary
        # part would mean a genuinely broken input.
        if not np.allclose(np.diagonal(covmean).imag, 0.0, atol=1e-3):
            raise ValueError(f"sqrtm has a large imaginary component {np.abs(covmean.imag).max():.3g}")
        covmean = covmean.real
    diff = mu_a - mu_b
    fd = diff @ diff + np.trace(cov_a) + np.trace(cov_b) - 2.0 * np.trace(covmean)
    return float(max(fd, 0.0))  # clamp round-off below zero


# --------------------------------------------------------------------------
# Motion, correlation, identity
# --------------------------------------------------------------------------


def motion_energy(tracks: np.ndarray) -> np.ndarray:
    """Per-frame speed of keypoint tracks (T, K) (or (T, J, 2), flattened per frame).

    speed_t = ||x_t - x_{t-1}||_2 for t >= 1, speed_0 = speed_1 (so the first
    frame is not artificially still), then a 3-frame box filter (edges
    replicated).  Returns (T,); zeros for a single frame.
    """
    x = np.asarray(tracks, dtype=np.float64)
    x = x.reshape(x.shape[0], -1)  # (T, K)
    if x.shape[0] < 2:
        return np.zeros(x.shape[0])
    speed = np.linalg.norm(np.diff(x, axis=0), axis=1)  # (T - 1,)
    speed = np.concatenate([speed[:1], speed])  # (T,)
    return uniform_filter1d(speed, size=3, mode="nearest")


def _is_constant(x: np.ndarray) -> bool:
    # Relative tolerance: smoothing a constant can leave ~1e-16 round-off wiggle.
    return x.size < 2 or np.ptp(x) <= 1e-12 * np.abs(x).max()


def pearson(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson correlation r = cov(a, b) / (std(a) std(b)) in [-1, 1]; 0.0 if either
    is constant (or has fewer than 2 samples)."""
    a = np.asarray(a, dtype=np.float64).ravel()
    b = np.asarray(b, dtype=np.float64).ravel()
    if a.shape != b.shape:
        raise ValueError(f"length mismatch: {a.shape[0]} vs {b.shape[0]}")
    if _is_constant(a) or _is_constant(b):
        return 0.0
    a, b = a - a.mean(), b - b.mean()
    return float(np.clip((a @ b) / math.sqrt(float(a @ a) * float(b @ b)), -1.0, 1.0))


def expressiveness_corr(motion: np.ndarray, emphasis: np.ndarray) -> float:
    """Pearson correlation of motion energy and speech emphasis, both (T,),
    after a 5-frame box filter on each (the probe's frame-level jitter and the
    gesture/emphasis lag of a frame or two should not dominate).  In [-1, 1], higher is better.
    """
    smooth = lambda x: uniform_filter1d(np.asarray(x, dtype=np.float64).ravel(), size=5, mode="nearest")
    return pearson(smooth(motion), smooth(emphasis))


def identity_similarity(ref_emb: np.ndarray, frame_embs: np.ndarray) -> float:
    """Mean cosine similarity between a reference embedding (D,) and per-frame embeddings (T, D).

    CSIM = mean_t <r, e_t> / (||r|| ||e_t||); a zero vector has similarity 0.
    Range [-1, 1], 1 = same identity direction in every frame.
    """
    ref = np.asarray(ref_emb, dtype=np.float64).ravel()  # (D,)
    embs = np.atleast_2d(np.asarray(frame_embs, dtype=np.float64))  # (T, D)
    if embs.shape[1] != ref.shape[0]:
        raise ValueError(f"embedding dims differ: {ref.shape[0]} vs {embs.shape[1]}")
    if embs.shape[0] == 0:
        raise ValueError("no frame embeddings")
    norms = np.linalg.norm(embs, axis=1) * np.linalg.norm(ref)  # (T,)
    dots = embs @ ref  # (T,)
    cos = np.divide(dots, norms, out=np.zeros_like(dots), where=norms > 0)
    return float(cos.mean())
