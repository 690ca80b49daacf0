"""The feature models of the real-video metrics (issue 16, Deliver 4), each from a local file the user gives
(eval.real.*; nothing is downloaded), each with the input convention of the public file it is meant for:

- ArcFace (CSIM), an ONNX model run by onnxruntime, e.g. insightface's w600k_r50.onnx: input (N, 3, 112, 112)
  RGB, (x - 127.5) / 127.5, output (N, 512) embeddings (compared by cosine). The face is cropped square
  around prep's face box (1.2x its size) and resized; insightface aligns on 5 landmarks instead, which we
  do not have, so CSIM is close to, not identical with, published numbers (written next to them).
- Inception (FID), TorchScript, StyleGAN2-ADA's inception-2015-12-05.pt: called model(x, return_features=True)
  on float 0..255 (N, 3, H, W); it resizes to 299 inside; (N, 2048) pool features.
- I3D (FVD), TorchScript, StyleGAN-V's i3d_torchscript.pt: called model(x, rescale=False, resize=False,
  return_features=True) on (N, 3, T, 224, 224) in [-1, 1] (shorter side scaled to 224, centre crop, as
  StyleGAN-V's preprocessing); (N, 400) logits-layer features.
Trade-off: a file that loads but has another convention is not detectable; each loader checks the output
shape on one dummy input and names the file when it is not (N, D).
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch

from common.errors import DataError

ARCFACE_SIZE, ARCFACE_MARGIN, I3D_SIZE = 112, 1.2, 224


def _file(path: str, key: str, what: str) -> Path:
    p = Path(path)
    if not p.is_file():
        raise DataError(f"eval.real.{key}: {p} does not exist ({what}; nothing is downloaded)")
    return p


def square_crops(frames: np.ndarray, boxes: np.ndarray, size: int, margin: float) -> np.ndarray:
    """uint8 (T, H, W, 3) + face boxes (T, 4) (NaN = none: the frame's centre square) -> (T, size, size, 3)."""
    import cv2
    T, H, W = frames.shape[:3]
    out = np.empty((T, size, size, 3), np.uint8)
    for t in range(T):
        x0, y0, x1, y1 = boxes[t]
        if np.isnan(x0):
            side, cx, cy = min(H, W), W / 2, H / 2
        else:
            side, cx, cy = max(x1 - x0, y1 - y0) * margin, (x0 + x1) / 2, (y0 + y1) / 2
        half = max(1, int(round(side / 2)))
        padded = np.pad(frames[t], ((half, half), (half, half), (0, 0)), mode="edge")
        cy, cx = int(round(cy)) + half, int(round(cx)) + half
        out[t] = cv2.resize(padded[cy - half:cy + half, cx - half:cx + half], (size, size), interpolation=cv2.INTER_AREA)
    return out


class ArcFace:
    def __init__(self, path: str):
        import onnxruntime
        file = _file(path, "arcface", "an ArcFace ONNX model, e.g. insightface's w600k_r50.onnx")
        try:
            self.session = onnxruntime.InferenceSession(str(file), providers=["CPUExecutionProvider"])
            self.input = self.session.get_inputs()[0].name
            probe = self._run(np.zeros((1, ARCFACE_SIZE, ARCFACE_SIZE, 3), np.uint8))
        except Exception as error:  # onnxruntime raises its own types for every bad file
            raise DataError(f"{file}: not a usable ArcFace ONNX model ({type(error).__name__}: {error})") from error
        if probe.ndim != 2:
            raise DataError(f"{file}: outputs {probe.shape} for one 112x112 face; expected (1, D) embeddings")
        self.file = file

    def _run(self, faces: np.ndarray) -> np.ndarray:
        x = (faces.astype(np.float32) - 127.5) / 127.5  # (N, 112, 112, 3) RGB
        return self.session.run(None, {self.input: np.ascontiguousarray(x.transpose(0, 3, 1, 2))})[0]

    def embed(self, frames: np.ndarray, boxes: np.ndarray) -> np.ndarray:
        """uint8 frames (T, H, W, 3) + face boxes -> unit embeddings (T, D)."""
        e = self._run(square_crops(frames, boxes, ARCFACE_SIZE, ARCFACE_MARGIN))
        return e / np.maximum(np.linalg.norm(e, axis=1, keepdims=True), 1e-12)


class _TorchScript:
    key, what = "", ""
    kwargs: ClassVar[dict] = {}

    def __init__(self, path: str):
        file = _file(path, self.key, self.what)
        try:
            self.model = torch.jit.load(str(file), map_location="cpu").eval()
            probe = self._call(self.dummy())
        except Exception as error:  # any load/call fault means: not the file we expect
            raise DataError(f"{file}: not a usable {self.what} ({type(error).__name__}: {error})") from error
        if probe.dim() != 2:
            raise DataError(f"{file}: outputs {tuple(probe.shape)} for one input; expected (N, D) features")
        self.file = file

    @torch.no_grad()
    def _call(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x, **self.kwargs)


class Inception(_TorchScript):
    key, what = "inception", "Inception TorchScript (inception-2015-12-05.pt)"
    kwargs: ClassVar[dict] = {"return_features": True}

    def dummy(self):
        return torch.zeros(1, 3, 64, 64)

    def features(self, frames: np.ndarray, batch: int = 16) -> np.ndarray:
        """uint8 (N, H, W, 3) -> (N, D)."""
        x = torch.from_numpy(frames).permute(0, 3, 1, 2).float()  # 0..255, as the StyleGAN file expects
        return torch.cat([self._call(x[i:i + batch]) for i in range(0, len(x), batch)]).numpy()


class I3D(_TorchScript):
    key, what = "i3d", "I3D TorchScript (i3d_torchscript.pt)"
    kwargs: ClassVar[dict] = {"rescale": False, "resize": False, "return_features": True}

    def dummy(self):
        return torch.zeros(1, 3, 16, I3D_SIZE, I3D_SIZE)

    @staticmethod
    def preprocess(window: np.ndarray) -> torch.Tensor:
        """uint8 (T, H, W, 3) -> (3, T, 224, 224) in [-1, 1]: shorter side to 224, centre crop."""
        x = torch.from_numpy(window).permute(3, 0, 1, 2).float().div(255)  # (3, T, H, W)
        H, W = x.shape[2:]
        scale = I3D_SIZE / min(H, W)
        size = (I3D_SIZE, math.ceil(W * scale)) if H < W else (math.ceil(H * scale), I3D_SIZE)
        x = torch.nn.functional.interpolate(x, size=size, mode="bilinear", align_corners=False)
        top, left = (x.shape[2] - I3D_SIZE) // 2, (x.shape[3] - I3D_SIZE) // 2
        return (x[:, :, top:top + I3D_SIZE, left:left + I3D_SIZE] - 0.5) * 2

    def features(self, windows: list[np.ndarray], batch: int = 4) -> np.ndarray:
        x = [self.preprocess(w) for w in windows]
        return torch.cat([self._call(torch.stack(x[i:i + batch])) for i in range(0, len(x), batch)]).numpy()
