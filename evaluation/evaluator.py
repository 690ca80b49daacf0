"""Scores videos against the SynthAvatar ground truth of the clips they were asked to reproduce.

For each video: the probe reads mouth opening, joints, head pose, gaze, identity and per-frame actions;
these are compared with the request (structured prompt, audio, reference image = ground-truth first
frame) by the formulas in metrics.py: Sync-C/Sync-D/offset (mouth vs audio envelope), H@S/AA/TC
(detected vs requested phases), CSIM (probe identity vs the reference image's), PSNR/SSIM (vs the
ground-truth video), expressiveness (motion energy vs the audio emphasis ground truth). FVD-style
distance is a set metric: Frechet distance between probe-feature statistics of 16-frame windows of the
evaluated videos and of the ground-truth videos. Trade-off: everything goes through one small probe,
so absolute numbers carry its error (reported alongside); comparisons between variants do not.
"""
from __future__ import annotations

import numpy as np

from evaluation import metrics
from evaluation.tables import summarize
from synthavatar import audio
from synthavatar.actions import ACTION_LABEL

FVD_WINDOW, FVD_STRIDE = 16, 8


def _tracks(out: dict, size: int) -> np.ndarray:
    """Probe motion channels (T, K): joints in canvas units, mouth, gaze, head pose."""
    T = len(out["mouth_open"])
    return np.concatenate([out["joints"].reshape(T, -1) / size, out["mouth_open"][:, None],
                           out["gaze"], out["head"]], 1)


def window_features(out: dict, size: int) -> np.ndarray:
    """FVD-style features: [mean, std, mean |diff|] of the probe tracks per 16-frame window, (N, 3K)."""
    tracks = _tracks(out, size)
    feats = []
    for s in range(0, max(1, len(tracks) - FVD_WINDOW + 1), FVD_STRIDE):
        w = tracks[s:s + FVD_WINDOW]
        feats.append(np.concatenate([w.mean(0), w.std(0), np.abs(np.diff(w, axis=0)).mean(0)]))
    return np.stack(feats)


def requested_phases(clip: dict) -> list[tuple[float, float, int]]:
    return [(p["start"], p["end"], ACTION_LABEL[p["action"]]) for p in clip["prompt"]["phases"]]


def score_video(probe, video: np.ndarray, wave: np.ndarray, clip: dict, cfg, ref_identity=None) -> dict:
    """Metrics of one video (T, H, W, 3) with its audio `wave`, requested as ground-truth `clip`."""
    fps, sr = cfg.data.fps, cfg.data.sample_rate
    T, size = video.shape[0], video.shape[1]
    out = probe.analyse(video)
    if ref_identity is None:
        ref_identity = probe.analyse(clip["video"][:1])["identity_z"][0]
    env = audio.frame_envelope(wave, sr, fps, T)
    sync = metrics.sync_scores(out["mouth_open"], env, max_offset=cfg.eval.sync_max_offset)
    acts = metrics.action_metrics(out["action"], requested_phases(clip), fps, cfg.eval.hit_fraction)
    motion = metrics.motion_energy(np.concatenate([out["joints"].reshape(T, -1) / size, out["head"]], 1))
    row = {"sync_c": sync["sync_c"], "sync_d": sync["sync_d"], "abs_offset": abs(sync["offset"]),
           "h_at_s": acts["h_at_s"], "aa": acts["aa"], "tc": acts["tc"],
           "csim": metrics.identity_similarity(ref_identity, out["identity_z"]),
           "expressiveness": metrics.expressiveness_corr(motion, clip["expressiveness"][:T])}
    if clip["video"].shape == video.shape:
        row["psnr"] = metrics.psnr(video, clip["video"])
        row["ssim"] = metrics.ssim(video, clip["video"])
    return row | {"_features": window_features(out, size)}


def score_set(probe, items, cfg, gt_features=None, progress=None) -> dict:
    """items: iterable of (name, video, wave, clip). Returns per-video rows, mean ± std and FVD.

    gt_features: window features of the reference set (ground_truth_features); None means the
    scored videos are the ground truth themselves, so their own features are the reference."""
    rows, feats = [], []
    for name, video, wave, clip in items:
        row = score_video(probe, video, wave, clip, cfg)
        feats.append(row.pop("_features"))
        rows.append({"clip": name} | row)
        if progress is not None:
            progress.update()
    summary = summarize(rows)
    if feats:
        feats = np.concatenate(feats)
        reference = feats if gt_features is None else gt_features()
        summary["fvd"] = (metrics.frechet_distance(feats, reference), 0.0)
    return {"rows": rows, "summary": summary}
