"""Body keypoints for prep's analyse stage (issue 16, Deliver 2): a local HF pose model (ViTPose,
`VitPoseForPoseEstimation`, e.g. usyd-community/vitpose-base-simple saved to a folder) gives per-frame
keypoints, from which analyse measures body motion (for the filter: talking-head sets want gesture, not
camera shake) and, with a face parser, draws the `hands` region (discs around the wrists) so the fifth
SynthAvatar region exists on real clips too.

ViTPose is top-down: it expects one person's box. Talking-head clips hold one centred person, so the whole
frame is that box (padded to the model's aspect with edge pixels, resized to its input size). Keypoints are
found by name (config.id2label: "L_Wrist", "left_wrist", ...); a model whose labels are unnamed but count 17
is read in COCO order (recorded as `keypoint_names: coco17-by-position`), anything else is refused.
Trade-off: argmax on the heatmaps (no sub-pixel refinement, no flip test): a 64 x 48 heatmap gives
keypoints to 1/64 of the frame height, enough for motion and hand discs, not for pose metrics.
"""
from __future__ import annotations

import numpy as np
import torch

from common.errors import DataError
from common.local_models import image_normalisation, load_local, local_model_dir

COCO17 = ("nose", "l_eye", "r_eye", "l_ear", "r_ear", "l_shoulder", "r_shoulder", "l_elbow", "r_elbow", "l_wrist",
          "r_wrist", "l_hip", "r_hip", "l_knee", "r_knee", "l_ankle", "r_ankle")
MIN_SCORE = 0.3  # heatmap peak below this: the keypoint is not seen


def wrist_ids(id2label: dict) -> tuple[list[int], str]:
    """The wrist keypoints' channels, and how they were found."""
    names = {int(i): str(n).strip().lower().replace(" ", "_").replace("-", "_") for i, n in id2label.items()}
    wrists = sorted(i for i, n in names.items() if "wrist" in n)
    if wrists:
        return wrists, "by name"
    if len(names) == len(COCO17):
        return [COCO17.index("l_wrist"), COCO17.index("r_wrist")], "coco17-by-position"
    raise DataError(f"prep.pose_model: its {len(names)} keypoints {sorted(names.values())[:6]}... name no wrist and "
                    "are not the 17 COCO keypoints; give a model whose config.id2label names its keypoints")


def pose_motion(keypoints: np.ndarray, height: int) -> float:
    """Mean per-frame speed of the confidently seen keypoints (T, K, 3) in frame heights per frame."""
    if len(keypoints) < 2:
        return 0.0
    seen = (keypoints[1:, :, 2] >= MIN_SCORE) & (keypoints[:-1, :, 2] >= MIN_SCORE)  # (T-1, K)
    step = np.linalg.norm(np.diff(keypoints[..., :2], axis=0), axis=-1) / height     # (T-1, K)
    return float(step[seen].mean()) if seen.any() else 0.0


def hand_masks(keypoints: np.ndarray, wrists: list[int], height: int, width: int, radius: float) -> np.ndarray:
    """Discs of `radius` pixels around the seen wrists -> (T, H, W) bool."""
    yy, xx = np.mgrid[:height, :width]
    out = np.zeros((len(keypoints), height, width), bool)
    for t, points in enumerate(keypoints):
        for k in wrists:
            x, y, score = points[k]
            if score >= MIN_SCORE:
                out[t] |= (xx - x) ** 2 + (yy - y) ** 2 <= radius ** 2
    return out


class PoseEstimator:
    """A local ViTPose directory as frames -> keypoints (T, K, 3) = x, y (pixels), score."""

    def __init__(self, path: str, every: int = 1, device: str = "cpu"):
        from transformers import VitPoseForPoseEstimation
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
        directory = local_model_dir(path, "pose model", "prep.pose_model")
        self.model = load_local(directory, "pose model", VitPoseForPoseEstimation.from_pretrained).eval().to(device)
        self.wrists, self.names = wrist_ids(self.model.config.id2label)
        size = self.model.config.backbone_config.image_size
        self.size = (int(size[0]), int(size[1])) if isinstance(size, (list, tuple)) else (int(size), int(size))
        self.mean, self.std = image_normalisation(directory)  # as it was trained
        self.every, self.device = max(1, int(every)), device
        self.digest = {"pose_model": str(directory.resolve()), "keypoint_names": self.names}

    def _box(self, frames: np.ndarray) -> tuple[torch.Tensor, float, int, int]:
        """Whole frames padded (edge) to the model's aspect -> (B, 3, h, w) input, scale, left, top pads."""
        H, W = frames.shape[1:3]
        h, w = self.size
        scale = max(H / h, W / w)  # pixels of the frame per model pixel
        ph, pw = int(round(h * scale)), int(round(w * scale))
        top, left = (ph - H) // 2, (pw - W) // 2
        padded = np.pad(frames, ((0, 0), (top, ph - H - top), (left, pw - W - left), (0, 0)), mode="edge")
        x = torch.from_numpy(padded).permute(0, 3, 1, 2).float().div(255)
        x = torch.nn.functional.interpolate(x, size=(h, w), mode="bilinear", antialias=True, align_corners=False)
        return (x - self.mean) / self.std, scale, left, top

    @torch.no_grad()
    def keypoints(self, frames: np.ndarray, batch: int = 8) -> np.ndarray:
        T = len(frames)
        picked = np.arange(0, T, self.every)
        out = []
        for start in range(0, len(picked), batch):
            x, scale, left, top = self._box(frames[picked[start:start + batch]])
            heat = self.model(pixel_values=x.to(self.device)).heatmaps.float().cpu()  # (b, K, h/4, w/4)
            b, K, hh, ww = heat.shape
            score, at = heat.flatten(2).max(-1)                                      # (b, K)
            ys, xs = (at // ww).float(), (at % ww).float()
            stride = self.size[0] / hh  # model pixels per heatmap cell
            xs = (xs + 0.5) * stride * scale - left
            ys = (ys + 0.5) * stride * scale - top
            out.append(torch.stack([xs, ys, score], -1).numpy())
        points = np.concatenate(out)
        return points[np.minimum(np.arange(T) // self.every, len(picked) - 1)].astype(np.float32)
