"""Training, caching and running the SynthAvatar probe (probe.py).

The probe is trained on train-split clips and cached by a content hash of everything that decides it
(probe settings, data generation settings, number of training clips, PROBE_VERSION), written atomically;
a second call with the same settings loads it in a second. `ProbeBundle.analyse` turns a uint8 video
into per-frame numpy predictions for the metrics. `held_out_report` measures the probe itself on the
test split (unseen identities, action combinations and wording): joint error in pixels, mouth-opening
R2, gaze error, per-frame action accuracy. Trade-off: a short schedule (minutes on 2 CPU cores) gives a
probe that is good, not perfect; its report is printed next to every evaluation so its error is known.
"""
from __future__ import annotations

import hashlib
import io
import json
import time
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from common.atomic import atomic_write_bytes
from evaluation.action_detector import ActionDetector, synthetic_tracks, track_features, train_detector
from evaluation.probe import TARGETS, Probe, augment, to_probe_input
from synthavatar.clip import render_clip, sample_clip_spec
from synthavatar.dataset import ensure_split, gen_settings, load_clip
from synthavatar.identity import identity_vector

PROBE_VERSION = 5  # 5: test split no longer depends on PYTHONHASHSEED (held-out report changes)
PROBE_CLIP_S = 1.0  # seconds per probe training clip (one identity each)


def targets_of(clip: dict, size: int) -> np.ndarray:
    """Ground-truth regression targets (T, TARGET_DIM), in the order of probe.TARGETS."""
    T = len(clip["mouth_open"])
    ident = identity_vector(clip["spec"]["identity"])
    parts = [clip["joints"].reshape(T, -1) / size, clip["mouth_open"][:, None], clip["gaze"],
             clip["head"], clip["blink"][:, None], np.broadcast_to(ident, (T, len(ident)))]
    return np.concatenate(parts, 1).astype(np.float32)


def _render_probe_clip(job) -> tuple[np.ndarray, np.ndarray]:
    seed, index, data = job
    spec = sample_clip_spec(np.random.SeedSequence([seed, 555, index]), "train", PROBE_CLIP_S, 1, 1)
    clip = render_clip(spec, data["resolution"], data["fps"], data["sample_rate"]) | {"spec": spec}
    return clip["video"], targets_of(clip, data["resolution"])


def render_probe_set(cfg, progress: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """Fresh 1 s train-rule clips, one identity each: frames half (N, 3, 64, 64), targets (N, D).

    Many short clips rather than the training split: the probe must generalise over identities, and
    1000 identities teach that far better than the split's 128.
    """
    data = {k: cfg.data[k] for k in ("resolution", "fps", "sample_rate")}
    count = max(1, int(cfg.eval.probe.num_frames) // int(round(PROBE_CLIP_S * data["fps"])))
    jobs = [(int(cfg.eval.probe.seed), i, data) for i in range(count)]
    bar = tqdm(total=count, desc="probe data", unit="clip", disable=not progress)
    frames, targets = [], []
    with get_context("fork").Pool(max(1, int(cfg.data.gen_workers))) as pool:  # workers use numpy only
        for video, target in pool.imap(_render_probe_clip, jobs, chunksize=8):
            frames.append(to_probe_input(torch.from_numpy(video)).half())  # half: 2x less RAM
            targets.append(torch.from_numpy(target))
            bar.update()
    bar.close()
    return torch.cat(frames), torch.cat(targets)


def probe_key(cfg) -> str:
    payload = {"probe": {k: v for k, v in cfg.eval.probe.items() if k != "cache_dir"},
               "data": gen_settings(cfg.data), "version": PROBE_VERSION}
    return hashlib.sha1(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:12]


@dataclass
class ProbeBundle:
    model: Probe
    mean: torch.Tensor  # (D,) target normalisation
    std: torch.Tensor
    report: dict
    detector: ActionDetector | None = None
    det_mean: torch.Tensor | None = None  # (TRACK_DIM,) track normalisation of the detector
    det_std: torch.Tensor | None = None

    @torch.no_grad()
    def analyse(self, video: np.ndarray, chunk: int = 128, with_actions: bool = True) -> dict:
        """uint8 video (T, H, W, 3) -> per-frame predictions (numpy), joints in the video's pixels."""
        self.model.eval()
        T, H = video.shape[:2]
        x = to_probe_input(torch.from_numpy(np.ascontiguousarray(video)))[None]  # (1, T, 3, 64, 64)
        parts = [self.model.per_frame(x[0, i:i + chunk]) for i in range(0, T, chunk)]
        norm, feats = (torch.cat(p)[None] for p in zip(*parts))                     # (1, T, D), (1, T, F)
        targets = norm * self.std + self.mean
        out, start = {}, 0
        for name, width in TARGETS.items():
            out[name] = targets[0, :, start:start + width].numpy()
            start += width
        out["joints"] = out["joints"].reshape(T, -1, 2) * H
        out["identity_z"] = norm[0, :, -TARGETS["identity"]:].numpy()
        for key in ("mouth_open", "blink"):
            out[key] = out[key][:, 0]
        out["features"] = feats[0].numpy()
        if with_actions:
            tracks = torch.from_numpy(track_features(out["joints"], out["head"], out["gaze"], H))[None]
            logits = self.detector((tracks - self.det_mean) / self.det_std)[0]        # (T, NUM_LABELS)
            out["action_prob"] = logits.softmax(-1).numpy()
            out["action"] = out["action_prob"].argmax(-1)
        return out


def _sample_batch(frames, targets, batch, gen):
    idx = torch.randint(len(frames), (batch,), generator=gen)
    return frames[idx].float(), targets[idx]


def _loss(model, x, y, mean, std):
    pred, _ = model.per_frame(x)
    err = (pred - (y - mean) / std) ** 2
    # Average within each target group, then across groups, so the 30-d identity does not dominate.
    groups, start = [], 0
    for width in TARGETS.values():
        groups.append(err[..., start:start + width].mean())
        start += width
    return torch.stack(groups).mean()


def train_probe(cfg, progress: bool = True) -> ProbeBundle:
    pc = cfg.eval.probe
    torch.manual_seed(pc.seed)
    gen = torch.Generator().manual_seed(pc.seed)
    frames, targets = render_probe_set(cfg, progress)
    mean, std = targets.mean(0), targets.std(0).clamp_min(1e-3)
    model = Probe(width=pc.width)
    opt = torch.optim.AdamW(model.parameters(), lr=pc.lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=pc.lr, total_steps=max(1, pc.steps), pct_start=0.1)
    start = time.time()
    bar = tqdm(range(pc.steps), desc="probe training", unit="step", disable=not progress)
    for _ in bar:
        x, y = _sample_batch(frames, targets, pc.batch_size, gen)
        loss = _loss(model, augment(x, gen), y, mean, std)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        bar.set_postfix(loss=f"{loss.item():.3f}")
    bundle = ProbeBundle(model.eval(), mean, std, {"probe_train_seconds": round(time.time() - start, 1),
                                                   "train_frames": len(targets), "steps": pc.steps})
    attach_detector(bundle, cfg, progress)
    return bundle


def attach_detector(bundle: ProbeBundle, cfg, progress: bool = True) -> None:
    """Train the action detector on synthetic tracks + noise of the probe's error on the val split."""
    start = time.time()
    pc, dc = cfg.eval.probe, cfg.data
    residuals = []
    for path in ensure_split(dc, "val", progress=False):
        clip = load_clip(path)
        out = bundle.analyse(clip["video"], with_actions=False)
        pred = track_features(out["joints"], out["head"], out["gaze"], dc.resolution)
        residuals.append(pred - track_features(clip["joints"], clip["head"], clip["gaze"], dc.resolution))
    noise_std = torch.from_numpy(np.concatenate(residuals).std(0))
    tracks, labels = synthetic_tracks(pc.seed, pc.detector_clips, dc.duration, dc.fps, dc.min_phases, dc.max_phases)
    bundle.detector, bundle.det_mean, bundle.det_std = train_detector(
        tracks, labels, noise_std, steps=pc.detector_steps, seed=pc.seed, progress=progress)
    bundle.report["detector_train_seconds"] = round(time.time() - start, 1)


def save_bundle(bundle: ProbeBundle, path: Path) -> None:
    buf = io.BytesIO()
    torch.save({"model": bundle.model.state_dict(), "mean": bundle.mean, "std": bundle.std,
                "report": bundle.report, "width": bundle.model.encoder[2][0].out_channels,
                "detector": bundle.detector.state_dict(), "det_mean": bundle.det_mean,
                "det_std": bundle.det_std}, buf)
    atomic_write_bytes(path, buf.getvalue())


def load_bundle(path: Path) -> ProbeBundle:
    state = torch.load(path, map_location="cpu", weights_only=True)
    model = Probe(width=state["width"])
    model.load_state_dict(state["model"])
    detector = ActionDetector()
    detector.load_state_dict(state["detector"])
    return ProbeBundle(model.eval(), state["mean"], state["std"], state["report"], detector.eval(),
                       state["det_mean"], state["det_std"])


def get_probe(cfg, progress: bool = True) -> ProbeBundle:
    """Load the cached probe for these settings, or train, evaluate and cache it."""
    path = Path(cfg.eval.probe.cache_dir) / f"probe-{probe_key(cfg)}.pt"
    if path.exists():
        return load_bundle(path)
    bundle = train_probe(cfg, progress)
    bundle.report.update(held_out_report(bundle, cfg.data))
    save_bundle(bundle, path)
    return bundle


def held_out_report(bundle: ProbeBundle, data_cfg, max_clips: int = 32) -> dict:
    """Probe accuracy on test clips (held-out identities): joint error (px), mouth R2, action accuracy."""
    joint_err, mouth_pred, mouth_true, correct, gaze_err = [], [], [], [], []
    for path in ensure_split(data_cfg, "test", progress=False)[:max_clips]:
        clip = load_clip(path)
        out = bundle.analyse(clip["video"])
        joint_err.append(np.linalg.norm(out["joints"] - clip["joints"], axis=-1).mean())
        mouth_pred.append(out["mouth_open"])
        mouth_true.append(clip["mouth_open"])
        gaze_err.append(np.abs(out["gaze"][:, 0] - clip["gaze"][:, 0]).mean())
        correct.append((out["action"] == clip["action_label"]).mean())
    mp, mt = np.concatenate(mouth_pred), np.concatenate(mouth_true)
    r2 = 1 - ((mp - mt) ** 2).sum() / max(((mt - mt.mean()) ** 2).sum(), 1e-9)
    return {"test_joint_error_px": round(float(np.mean(joint_err)), 3), "test_mouth_r2": round(float(r2), 4),
            "test_gaze_x_mae": round(float(np.mean(gaze_err)), 4),
            "test_action_frame_acc": round(float(np.mean(correct)), 4),
            "resolution": int(data_cfg["resolution"])}
