"""SyncNet lip-sync scores for real videos (issue 16, Deliver 4): Sync-C, Sync-D and the audio/video offset
exactly as syncnet_python (Chung & Zisserman 2016; the code LatentSync, Hallo and most talking-head papers
quote) computes them, from weights the user supplies as a local file.

What is fixed by SyncNet's definition and reproduced here:
- the network: syncnet_python's `S` module (netcnnaud / netfcaud on a 13 x 20 MFCC window, netcnnlip /
  netfclip on 5 frames of a 224 x 224 face crop), state-dict names unchanged, so `syncnet_v2.model` loads
  as is; the channel widths are read from the state dict (so tests run a narrow random-weight copy);
- the inputs: 25 fps video, 16 kHz mono audio, MFCC from python_speech_features.mfcc with its defaults
  (13 coefficients, 25 ms windows every 10 ms, so 4 MFCC steps per video frame) on int16-scaled samples
  (what scipy's wavfile gives syncnet_python), frames in BGR order with raw 0..255 values;
- the face crop: syncnet_python's crop_video (box size s = max(w, h) / 2 and centre, median-filtered over
  13 frames; crop rows y - s .. y + s(1 + 2c), columns x - s(1 + c) .. x + s(1 + c), c = crop_scale 0.4, the
  frame padded with grey 110);
- the score: mean over windows of the feature distance at each shift in [-vshift, vshift]; Sync-D = its
  minimum, Sync-C = median - minimum, offset = vshift - argmin (frames).
What differs, and is written next to every number: the face track comes from prep's face parser (the box
of the face region) where syncnet_python runs S3FD, so crops are close to, not identical with, published
pipelines'. In common/ because prep's filter (realvideo/lipsync.py) and evaluate both use it.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from common.errors import DataError

FPS, SAMPLE_RATE, CROP_SIZE, WINDOW = 25, 16000, 224, 5
SAMPLES_PER_FRAME = SAMPLE_RATE // FPS  # 640
# (index, kind, stride, padding) of each Sequential; kernel sizes and widths come from the weights
AUDIO_CNN = [(0, "conv", 1, 1), (1, "bn"), (2, "relu"), (3, "pool", (1, 1), (1, 1), 0),
             (4, "conv", 1, 1), (5, "bn"), (6, "relu"), (7, "pool", (3, 3), (1, 2), 0),
             (8, "conv", 1, 1), (9, "bn"), (10, "relu"), (11, "conv", 1, 1), (12, "bn"), (13, "relu"),
             (14, "conv", 1, 1), (15, "bn"), (16, "relu"), (17, "pool", (3, 3), (2, 2), 0),
             (18, "conv", 1, 0), (19, "bn"), (20, "relu")]
LIP_CNN = [(0, "conv", (1, 2, 2), 0), (1, "bn"), (2, "relu"), (3, "pool", (1, 3, 3), (1, 2, 2), 0),
           (4, "conv", (1, 2, 2), (0, 1, 1)), (5, "bn"), (6, "relu"), (7, "pool", (1, 3, 3), (1, 2, 2), (0, 1, 1)),
           (8, "conv", 1, (0, 1, 1)), (9, "bn"), (10, "relu"), (11, "conv", 1, (0, 1, 1)), (12, "bn"), (13, "relu"),
           (14, "conv", 1, (0, 1, 1)), (15, "bn"), (16, "relu"), (17, "pool", (1, 3, 3), (1, 2, 2), 0),
           (18, "conv", 1, 0), (19, "bn"), (20, "relu")]


def check_rates(fps: float, sample_rate: int, key: str) -> None:
    """SyncNet is defined at 25 fps / 16 kHz; data at other rates fails at start-up naming the setting."""
    if abs(fps - FPS) > 1e-3 or sample_rate != SAMPLE_RATE:
        raise DataError(f"{key}: SyncNet is defined at {FPS} fps and {SAMPLE_RATE} Hz; the data is {fps} fps, "
                        f"{sample_rate} Hz (prep with data.fps=25 data.sample_rate=16000)")


def _cnn(layout, state: dict, prefix: str, dims: int) -> nn.Sequential:
    conv, bn, pool = (nn.Conv2d, nn.BatchNorm2d, nn.MaxPool2d) if dims == 2 else (nn.Conv3d, nn.BatchNorm3d, nn.MaxPool3d)
    layers = []
    for spec in layout:
        index, kind = spec[0], spec[1]
        if kind == "conv":
            weight = state[f"{prefix}.{index}.weight"]  # (out, in, *kernel)
            layers.append(conv(weight.shape[1], weight.shape[0], tuple(weight.shape[2:]), stride=spec[2], padding=spec[3]))
        elif kind == "bn":
            layers.append(bn(state[f"{prefix}.{index}.weight"].shape[0]))
        elif kind == "relu":
            layers.append(nn.ReLU())
        else:
            layers.append(pool(spec[2], stride=spec[3], padding=spec[4]))
    return nn.Sequential(*layers)


def _fc(state: dict, prefix: str) -> nn.Sequential:
    first, last = state[f"{prefix}.0.weight"], state[f"{prefix}.3.weight"]  # (hidden, in), (out, hidden)
    return nn.Sequential(nn.Linear(first.shape[1], first.shape[0]), nn.BatchNorm1d(first.shape[0]), nn.ReLU(),
                         nn.Linear(last.shape[1], last.shape[0]))


class SyncNet(nn.Module):
    """syncnet_python's `S`, built to the shapes of a state dict."""

    def __init__(self, state: dict):
        super().__init__()
        self.netcnnaud, self.netfcaud = _cnn(AUDIO_CNN, state, "netcnnaud", 2), _fc(state, "netfcaud")
        self.netcnnlip, self.netfclip = _cnn(LIP_CNN, state, "netcnnlip", 3), _fc(state, "netfclip")

    def forward_aud(self, x: torch.Tensor) -> torch.Tensor:  # (N, 1, 13, 20) -> (N, D)
        return self.netfcaud(self.netcnnaud(x).flatten(1))

    def forward_lip(self, x: torch.Tensor) -> torch.Tensor:  # (N, 3, 5, 224, 224) -> (N, D)
        return self.netfclip(self.netcnnlip(x).flatten(1))


def load_syncnet(path: str | Path) -> SyncNet:
    """A SyncNet from a local syncnet_python state dict (e.g. syncnet_v2.model); one error naming the file."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"eval.real.syncnet: {path} does not exist (give syncnet_python's syncnet_v2.model; "
                        "nothing is downloaded)")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        state = state.get("state_dict", state) if isinstance(state, dict) else state
        model = SyncNet(state)
        model.load_state_dict(state)
    except Exception as error:  # any load fault is the same fault for the user: a wrong file
        raise DataError(f"{path}: not a syncnet_python state dict ({type(error).__name__}: {error})") from error
    return model.eval()


def mfcc(wave: np.ndarray) -> np.ndarray:
    """16 kHz mono float wave in [-1, 1] -> SyncNet's MFCC (13, steps), 100 steps per second."""
    import python_speech_features
    samples = np.clip(np.asarray(wave, np.float64) * 32768.0, -32768, 32767).astype(np.int16)
    return python_speech_features.mfcc(samples, SAMPLE_RATE).T.astype(np.float32)


def smooth_track(boxes: np.ndarray, width: int, height: int) -> np.ndarray:
    """Face boxes (T, 4) x0, y0, x1, y1 (NaN = none) -> (T, 3) centre x, centre y, half size s, gaps filled
    by interpolation and median-filtered over 13 frames as syncnet_python does; no face at all -> the frame."""
    from scipy.signal import medfilt

    found = ~np.isnan(boxes[:, 0])
    if not found.any():
        return np.tile([width / 2, height / 2, max(width, height) / 2], (len(boxes), 1))
    t = np.arange(len(boxes))
    cx, cy = (boxes[:, 0] + boxes[:, 2]) / 2, (boxes[:, 1] + boxes[:, 3]) / 2
    s = np.maximum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]) / 2
    track = np.stack([np.interp(t, t[found], v[found]) for v in (cx, cy, s)], 1)
    kernel = min(13, len(boxes) - (1 - len(boxes) % 2))  # medfilt needs an odd kernel <= length
    return np.stack([medfilt(track[:, i], kernel) for i in range(3)], 1) if kernel >= 3 else track


def crop_faces(frames: np.ndarray, track: np.ndarray, crop_scale: float = 0.4, size: int = CROP_SIZE) -> np.ndarray:
    """RGB uint8 frames (T, H, W, 3) + smoothed track (T, 3) -> face crops (T, size, size, 3), syncnet_python's
    crop_video geometry."""
    import cv2
    crops = np.empty((len(frames), size, size, 3), np.uint8)
    for i, (frame, (x, y, s)) in enumerate(zip(frames, track)):
        pad = int(s * (1 + 2 * crop_scale))
        padded = np.pad(frame, ((pad, pad), (pad, pad), (0, 0)), constant_values=110)
        my, mx = y + pad, x + pad
        face = padded[int(my - s):int(my + s * (1 + 2 * crop_scale)),
                      int(mx - s * (1 + crop_scale)):int(mx + s * (1 + crop_scale))]
        crops[i] = cv2.resize(face, (size, size))
    return crops


@torch.no_grad()
def sync_scores(model: SyncNet, crops: np.ndarray, wave: np.ndarray, vshift: int = 15, batch: int = 20) -> dict:
    """SyncNet's Sync-C / Sync-D / offset of face crops (T, 224, 224, 3) RGB uint8 with 16 kHz audio."""
    video = torch.from_numpy(crops[..., ::-1].copy()).permute(3, 0, 1, 2).float()[None]  # (1, 3, T, 224, 224) BGR
    cc = torch.from_numpy(mfcc(wave))[None, None]  # (1, 1, 13, steps)
    length = min(len(crops), len(wave) // SAMPLES_PER_FRAME)
    last = length - WINDOW
    if last < 1:
        raise ValueError(f"SyncNet needs more than {WINDOW} frames with audio (got {length})")
    lip, aud = [], []
    for start in range(0, last, batch):
        frames = range(start, min(last, start + batch))
        lip.append(model.forward_lip(torch.cat([video[:, :, v:v + WINDOW] for v in frames])))
        aud.append(model.forward_aud(torch.cat([cc[..., 4 * v:4 * v + 20] for v in frames])))
    lip, aud = torch.cat(lip), torch.cat(aud)  # (N, D) each
    padded = torch.nn.functional.pad(aud, (0, 0, vshift, vshift))
    shifts = 2 * vshift + 1
    dists = torch.stack([torch.nn.functional.pairwise_distance(lip[[i]].repeat(shifts, 1), padded[i:i + shifts])
                         for i in range(len(lip))], 1)  # (shifts, N)
    mean = dists.mean(1)
    low, at = torch.min(mean, 0)
    return {"sync_c": float(torch.median(mean) - low), "sync_d": float(low), "offset": int(vshift - at)}
