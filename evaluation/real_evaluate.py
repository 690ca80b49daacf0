"""`main.py evaluate` on real video (data.kind=real; issue 16, Deliver 4): generated videos scored against the
prepared clips they were asked to reproduce, with models the user supplies as local files (eval.real).

Per video (clip_<index>.mp4 = clip `index` of the split in the real source's order, as `generate --split`
names them): Sync-C / Sync-D / |offset| (SyncNet, common/syncnet.py) on face crops along the clip's
face track, CSIM (ArcFace cosine of the ground-truth first frame's face and every eval.real.frame_step-th
generated frame's), PSNR / SSIM against the ground-truth clip (8-bit RGB, full frame; not on the ground-truth
row, where they are trivially 100 / 1). Per set: FID
(Inception features of every frame_step-th frame, generated vs ground truth) and FVD (I3D features of
non-overlapping eval.real.fvd_frames windows), through evaluation.metrics.frechet_distance. The ground
truth itself is scored in the same table (its own row, FID / FVD not applicable), and every preprocessing
parameter (rates, MFCC, crop geometry, model files with their SHA-256) is written next to the numbers.
A metric whose model file is not given is left out of the table and listed as skipped.
Trade-off: the generated video is cropped with the *ground-truth* clip's face track (prep's face parser):
a model whose face drifts from the reference's place is scored on the wrong crop, which lowers its Sync-C
and CSIM rather than hiding the drift.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
from tqdm import tqdm

from common.errors import DataError
from common.video_io import VideoError, read_video
from evaluation import metrics
from evaluation.tables import summarize, to_markdown
from evaluation.video_files import find_videos

METRIC_MODELS = {"syncnet": "sync_c, sync_d, abs_offset", "arcface": "csim", "inception": "fid", "i3d": "fvd"}


def _sha(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()[:16]


class RealMetrics:
    """The metric models of eval.real (those given), loaded once, and the parameters they run with."""

    def __init__(self, real_cfg, fps: float, sample_rate: int):
        from common import syncnet
        from evaluation import real_models
        syncnet.check_rates(fps, sample_rate, "eval.real")
        self.cfg = real_cfg
        self.syncnet = syncnet.load_syncnet(real_cfg.syncnet) if real_cfg.syncnet else None
        self.arcface = real_models.ArcFace(real_cfg.arcface) if real_cfg.arcface else None
        self.inception = real_models.Inception(real_cfg.inception) if real_cfg.inception else None
        self.i3d = real_models.I3D(real_cfg.i3d) if real_cfg.i3d else None
        files = {k: getattr(real_cfg, k) for k in METRIC_MODELS if getattr(real_cfg, k)}
        self.parameters = {
            "fps": fps, "sample_rate": sample_rate,
            "models": {k: {"file": str(Path(v).resolve()), "sha256": _sha(Path(v))} for k, v in files.items()},
            "skipped": {k: f"{m}: eval.real.{k} not set" for k, m in METRIC_MODELS.items() if k not in files},
            "syncnet": {"vshift": real_cfg.vshift, "crop_scale": real_cfg.crop_scale, "crop": "syncnet_python crop_video, "
                        "224 px, BGR 0..255", "mfcc": "python_speech_features.mfcc defaults on int16-scaled 16 kHz audio",
                        "track_smoothing": "median over 13 frames"},
            "arcface": {"crop": f"square {real_models.ARCFACE_MARGIN}x the face box, {real_models.ARCFACE_SIZE} px, "
                        "RGB (x - 127.5) / 127.5, no landmark alignment", "frame_step": real_cfg.frame_step},
            "fid": {"frame_step": real_cfg.frame_step, "input": "full frames, float 0..255"},
            "fvd": {"frames": real_cfg.fvd_frames, "input": "shorter side 224, centre crop, [-1, 1]"},
            "psnr_ssim": "8-bit RGB, full frame, against the prepared ground-truth clip"}

    def clip_row(self, frames: np.ndarray, wave: np.ndarray, truth: np.ndarray, boxes: np.ndarray,
                 reference_embedding: np.ndarray | None, name: str = "") -> dict:
        from common import syncnet
        row = {}
        if self.syncnet is not None:
            track = syncnet.smooth_track(boxes, frames.shape[2], frames.shape[1])
            crops = syncnet.crop_faces(frames, track, self.cfg.crop_scale)
            try:
                sync = syncnet.sync_scores(self.syncnet, crops, wave, self.cfg.vshift)
            except ValueError as error:
                raise VideoError(f"{name}: {error}") from error
            row |= {"sync_c": sync["sync_c"], "sync_d": sync["sync_d"], "abs_offset": abs(sync["offset"])}
        if self.arcface is not None:
            step = self.cfg.frame_step
            embeddings = self.arcface.embed(frames[::step], boxes[::step])
            row["csim"] = float(np.mean(embeddings @ reference_embedding))
        if truth is not frames and truth.shape == frames.shape:  # not on the ground truth itself (100 / 1)
            row |= {"psnr": metrics.psnr(frames, truth), "ssim": metrics.ssim(frames, truth)}
        return row

    def set_features(self, frames: np.ndarray) -> dict:
        out = {}
        if self.inception is not None:
            out["fid"] = self.inception.features(frames[::self.cfg.frame_step])
        if self.i3d is not None:
            n = self.cfg.fvd_frames
            windows = [frames[s:s + n] for s in range(0, len(frames) - n + 1, n)]
            if windows:
                out["fvd"] = self.i3d.features(windows)
        return out


def _clip_boxes(root: Path, name: str, frames: int) -> np.ndarray:
    path = root / "clips" / f"{name}.regions.npz"
    if not path.is_file():  # no face parser in prep: the whole frame is the "face"
        return np.full((frames, 4), np.nan, np.float32)
    from realvideo.faces import read_boxes
    return read_boxes(path)  # the track only: the masks would be T x R x H x W booleans


def _score(models: RealMetrics, items, bar) -> tuple[list[dict], dict]:
    rows, feats = [], {}
    for name, frames, wave, truth, boxes in items:
        ref = models.arcface.embed(truth[:1], boxes[:1])[0] if models.arcface is not None else None
        rows.append({"clip": name} | models.clip_row(frames, wave, truth, boxes, ref, name))
        for key, f in models.set_features(frames).items():
            feats.setdefault(key, []).append(f)
        bar.update()
    return rows, {k: np.concatenate(v) for k, v in feats.items()}


def evaluate_real(cfg, split: str, videos: Path | None, progress: bool = True) -> dict:
    """Score `videos` (a directory of clip_<index>.mp4; None = only the ground truth) on a prepared split."""
    from datamodules.real_video import RealVideoSource

    source = RealVideoSource(cfg.data)
    dataset = source.dataset(split)
    if not len(dataset):
        raise DataError(f"{source.root / 'annotate.jsonl'}: no {split} clips to evaluate against")
    found = None if videos is None else find_videos(Path(videos), len(dataset))
    models = RealMetrics(cfg.eval.real, float(cfg.data.fps), int(cfg.data.sample_rate))
    picked = [i for i, _ in found] if found is not None else list(range(len(dataset)))

    def ground_truth(i):  # read per use, not held: a real clip is hundreds of MB decoded
        frames = dataset.frames(i)
        return frames, _gt_wave(source, dataset, i), _clip_boxes(source.root, dataset.rows[i]["name"], len(frames))

    def truth_items():
        for i in picked:
            frames, wave, boxes = ground_truth(i)
            yield dataset.rows[i]["name"], frames, wave, frames, boxes

    def generated():
        for i, path in found:
            video = read_video(path, sample_rate=int(cfg.data.sample_rate))
            gt, gt_wave, boxes = ground_truth(i)
            if video.frames.shape != gt.shape or abs(video.fps - float(cfg.data.fps)) > 1e-3:
                raise VideoError(f"{path}: {video.frames.shape} at {video.fps} fps does not match clip "
                                 f"{dataset.rows[i]['name']} ({gt.shape} at {cfg.data.fps} fps)")
            wave = video.audio if video.audio is not None and len(video.audio) else gt_wave
            yield path.name, video.frames, wave, gt, boxes

    total = len(picked) * (2 if found is not None else 1)
    with tqdm(total=total, desc="evaluating real clips", unit="video", disable=not progress) as bar:
        gt_rows, gt_feats = _score(models, truth_items(), bar)
        table = {"ground truth": summarize(gt_rows)}
        result = {"split": split, "parameters": models.parameters, "ground_truth_rows": gt_rows}
        if found is not None:
            rows, feats = _score(models, generated(), bar)
            summary = summarize(rows)
            for key, f in feats.items():
                summary[key] = metrics.frechet_distance(f, gt_feats[key]) if min(len(f), len(gt_feats[key])) > 1 \
                    else float("nan")
            table = {str(videos): summary} | table
            result |= {"rows": rows, "label": str(videos)}
    return result | {"table": table, "summary": next(iter(table.values()))}


def _gt_wave(source, dataset, index: int) -> np.ndarray:
    from common.audio_io import load_audio
    return load_audio(source.root / "clips" / f"{dataset.rows[index]['name']}.wav", int(source.cfg["sample_rate"]))


KNOWN_DIFFERENCES = ("face track = prep's face-parser box (syncnet_python runs S3FD); ArcFace crops are not "
                     "landmark-aligned; generated videos are cropped along the ground-truth clip's track")


def real_report(result: dict) -> str:
    p = result["parameters"]
    lines = [to_markdown(result["table"]), "Parameters:"]
    lines += [f"- {k}: {v}" for k, v in p.items() if k not in ("models", "skipped")]
    lines += [f"- model {k}: {m['file']} (sha256 {m['sha256']})" for k, m in p["models"].items()]
    lines += [f"- skipped {v}" for v in p["skipped"].values()]
    lines.append(f"- known differences from published pipelines: {KNOWN_DIFFERENCES}")
    return "\n".join(lines) + "\n"
