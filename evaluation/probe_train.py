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
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from evaluation.probe import TARGETS, Probe, augment, to_probe_input
from synthavatar.dataset import atomic_write_bytes, ensure_split, gen_settings, load_clip
from synthavatar.identity import identity_vector

PROBE_VERSION = 1
WINDOW = 16  # frames per training sequence (the action head needs temporal context)


def targets_of(clip: dict, size: int) -> np.ndarray:
    """Ground-truth regression targets (T, TARGET_DIM), in the order of probe.TARGETS."""
    T = len(clip["mouth_open"])
    ident = identity_vector(clip["spec"]["identity"])
    parts = [clip["joints"].reshape(T, -1) / size, clip["mouth_open"][:, None], clip["gaze"],
             clip["head"], clip["blink"][:, None], np.broadcast_to(ident, (T, len(ident)))]
    return np.concatenate(parts, 1).astype(np.float32)


def load_probe_set(data_cfg, split: str, max_clips: int | None = None):
    """Clips of a split as tensors: frames float (N, T, 3, 64, 64), targets (N, T, D), labels (N, T)."""
    paths = ensure_split(data_cfg, split)[:max_clips]
    frames, targets, labels = [], [], []
    for path in paths:
        clip = load_clip(path)
        frames.append(to_probe_input(torch.from_numpy(clip["video"])).half())  # half: 2x less RAM
        targets.append(torch.from_numpy(targets_of(clip, data_cfg["resolution"])))
        labels.append(torch.from_numpy(clip["action_label"]))
    return torch.stack(frames), torch.stack(targets), torch.stack(labels)


def probe_key(cfg) -> str:
    payload = {"probe": {k: cfg.eval.probe[k] for k in ("seed", "num_frames", "steps", "batch_size", "lr", "width")},
               "data": gen_settings(cfg.data), "num_train": int(cfg.data.num_train), "version": PROBE_VERSION}
    return hashlib.sha1(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:12]


@dataclass
class ProbeBundle:
    model: Probe
    mean: torch.Tensor  # (D,) target normalisation
    std: torch.Tensor
    report: dict

    @torch.no_grad()
    def analyse(self, video: np.ndarray, chunk: int = 128) -> dict:
        """uint8 video (T, H, W, 3) -> per-frame predictions (numpy), joints in the video's pixels."""
        self.model.eval()
        T, H = video.shape[:2]
        x = to_probe_input(torch.from_numpy(np.ascontiguousarray(video)))[None]  # (1, T, 3, 64, 64)
        feats = torch.cat([self.model.encode(x[0, i:i + chunk]) for i in range(0, T, chunk)])[None]
        targets = self.model.regress(feats) * self.std + self.mean                  # (1, T, D)
        logits = self.model.temporal(feats.transpose(1, 2)).transpose(1, 2)
        out, start = {}, 0
        for name, width in TARGETS.items():
            out[name] = targets[0, :, start:start + width].numpy()
            start += width
        out["joints"] = out["joints"].reshape(T, -1, 2) * H
        out["identity_z"] = ((targets[0] - self.mean) / self.std)[:, -TARGETS["identity"]:].numpy()
        for key in ("mouth_open", "blink"):
            out[key] = out[key][:, 0]
        out["action_prob"] = logits[0].softmax(-1).numpy()
        out["action"] = out["action_prob"].argmax(-1)
        out["features"] = feats[0].numpy()
        return out


def _sample_batch(frames, targets, labels, batch, gen):
    """`batch` random windows of WINDOW frames from random clips."""
    n, T = labels.shape
    clips = torch.randint(n, (batch,), generator=gen)
    starts = torch.randint(T - WINDOW + 1, (batch,), generator=gen)
    idx = starts[:, None] + torch.arange(WINDOW)
    pick = lambda x: x[clips[:, None], idx]
    return pick(frames).float(), pick(targets), pick(labels)


def _loss(model, x, y, labels, mean, std):
    pred, logits, _ = model(x)
    err = (pred - (y - mean) / std) ** 2
    # Average within each target group, then across groups, so the 30-d identity does not dominate.
    groups, start = [], 0
    for width in TARGETS.values():
        groups.append(err[..., start:start + width].mean())
        start += width
    return torch.stack(groups).mean() + F.cross_entropy(logits.flatten(0, 1), labels.flatten())


def train_probe(cfg, progress: bool = True) -> ProbeBundle:
    pc = cfg.eval.probe
    torch.manual_seed(pc.seed)
    gen = torch.Generator().manual_seed(pc.seed)
    max_clips = max(1, int(pc.num_frames) // int(round(cfg.data.duration * cfg.data.fps)))
    frames, targets, labels = load_probe_set(cfg.data, "train", max_clips)
    flat = targets.flatten(0, 1)
    mean, std = flat.mean(0), flat.std(0).clamp_min(1e-3)
    model = Probe(width=pc.width)
    opt = torch.optim.AdamW(model.parameters(), lr=pc.lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=pc.lr, total_steps=max(1, pc.steps), pct_start=0.1)
    batch = max(1, pc.batch_size // WINDOW)
    start = time.time()
    bar = tqdm(range(pc.steps), desc="probe training", unit="step", disable=not progress)
    for _ in bar:
        x, y, lab = _sample_batch(frames, targets, labels, batch, gen)
        loss = _loss(model, augment(x, gen), y, lab, mean, std)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        bar.set_postfix(loss=f"{loss.item():.3f}")
    report = {"train_seconds": round(time.time() - start, 1), "train_clips": len(labels), "steps": pc.steps}
    return ProbeBundle(model.eval(), mean, std, report)


def save_bundle(bundle: ProbeBundle, path: Path) -> None:
    buf = io.BytesIO()
    torch.save({"model": bundle.model.state_dict(), "mean": bundle.mean, "std": bundle.std,
                "report": bundle.report, "width": bundle.model.encoder[2][0].out_channels}, buf)
    atomic_write_bytes(path, lambda f: f.write(buf.getvalue()))


def load_bundle(path: Path) -> ProbeBundle:
    state = torch.load(path, map_location="cpu", weights_only=True)
    model = Probe(width=state["width"])
    model.load_state_dict(state["model"])
    return ProbeBundle(model.eval(), state["mean"], state["std"], state["report"])


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
