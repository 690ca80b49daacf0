"""Face parsing for prep's analyse stage (issue 16, Deliver 2): region masks and a face track per clip from
a face-parsing segmentation model the user supplies in Hugging Face format (e.g. a SegFormer trained on
CelebAMask-HQ), loaded from a local directory only.

Labels are mapped to our regions by *name* (the model's config.id2label), never by index, so any parser
whose labels use the CelebAMask-HQ names (skin, l_eye, u_lip, hair, ...) or the common synonyms below
works, and one whose labels cover none of a region fails at load with the labels it does have.
Per clip we write `clips/<clip>.regions.npz`: `masks` (T, R, H, W) bool bit-packed along W, R over
REGION_NAMES (the SynthAvatar names, so SyncDreamer's model.visual.regions works unchanged), and `boxes`
(T, 4) float pixel boxes x0, y0, x1, y1 of the face region (NaN where no face pixel was found): the face
track the real-video metrics crop SyncNet / ArcFace inputs from.
Trade-off: every frame is parsed (prep.parse_every = 1); a larger step parses every k-th frame and holds
its masks (sample-and-hold, as segment resamples), which is k times cheaper and blurs fast mouth motion.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from common.errors import DataError
from common.local_models import image_normalisation, load_local, local_model_dir

REGION_NAMES = ("eyes", "mouth", "hair", "face")  # + "hands" when prep also runs a pose model (realvideo/pose.py)
# our region -> the label names (lower case) that belong to it
REGION_LABELS = {
    "eyes": {"l_eye", "r_eye", "left_eye", "right_eye", "eye", "eyes"},
    "mouth": {"mouth", "u_lip", "l_lip", "upper_lip", "lower_lip", "inner_mouth", "lips", "lip"},
    "hair": {"hair"},
    "face": {"skin", "face", "nose", "l_eye", "r_eye", "left_eye", "right_eye", "eye", "eyes", "l_brow", "r_brow",
             "left_eyebrow", "right_eyebrow", "eyebrow", "eye_g", "eyeglass", "glasses", "mouth", "u_lip", "l_lip",
             "upper_lip", "lower_lip", "inner_mouth", "lips", "lip"},
}


def region_label_ids(id2label: dict) -> dict[str, list[int]]:
    """Our region -> the parser's label ids, by name; DataError when a region has none."""
    names = {int(i): str(n).strip().lower().replace(" ", "_").replace("-", "_") for i, n in id2label.items()}
    ids = {region: sorted(i for i, n in names.items() if n in REGION_LABELS[region]) for region in REGION_NAMES}
    missing = [r for r, found in ids.items() if not found]
    if missing:
        raise DataError(f"prep.face_parser: its labels {sorted(names.values())} name none of region(s) {missing} "
                        f"(accepted names: {', '.join(f'{r}: {sorted(REGION_LABELS[r])}' for r in missing)})")
    return ids


def masks_from_labels(labels: np.ndarray, ids: dict[str, list[int]]) -> np.ndarray:
    """Label maps (T, H, W) int -> region masks (T, R, H, W) bool over REGION_NAMES."""
    return np.stack([np.isin(labels, ids[r]) for r in REGION_NAMES], 1)


def face_boxes(face: np.ndarray) -> np.ndarray:
    """Face masks (T, H, W) bool -> (T, 4) boxes x0, y0, x1, y1 (pixel edges), NaN rows where empty."""
    boxes = np.full((len(face), 4), np.nan, np.float32)
    for t, mask in enumerate(face):
        rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
        if rows.size:
            boxes[t] = (cols[0], rows[0], cols[-1] + 1, rows[-1] + 1)
    return boxes


def face_summary(boxes: np.ndarray, height: int) -> dict:
    """What the filter reads: the share of frames with a face and the median face height / frame height."""
    found = ~np.isnan(boxes[:, 0])
    size = float(np.median((boxes[found, 3] - boxes[found, 1]) / height)) if found.any() else 0.0
    return {"face_frames": float(found.mean()) if len(boxes) else 0.0, "face_size": round(size, 4)}


class FaceParser:
    """A local HF semantic-segmentation model (AutoModelForSemanticSegmentation) as frames -> label maps."""

    def __init__(self, path: str, size: int = 512, every: int = 1, device: str = "cpu"):
        from transformers import AutoModelForSemanticSegmentation
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()  # prep has its own bar; the loader's per-shard bars are noise
        directory = local_model_dir(path, "face parser", "prep.face_parser")
        self.model = load_local(directory, "face parser", AutoModelForSemanticSegmentation.from_pretrained)
        self.model.eval().to(device)
        self.ids = region_label_ids(self.model.config.id2label)
        self.mean, self.std = image_normalisation(directory)  # as it was trained
        self.size, self.every, self.device = int(size), max(1, int(every)), device
        self.digest = {"face_parser": str(directory.resolve()), "face_parser_size": self.size,
                       "parse_every": self.every}

    @torch.no_grad()
    def labels(self, frames: np.ndarray, batch: int = 8) -> np.ndarray:
        """uint8 (T, H, W, 3) -> label ids (T, H, W), every `every`-th frame parsed and held."""
        T, H, W = frames.shape[:3]
        picked = np.arange(0, T, self.every)
        out = np.empty((len(picked), H, W), np.int16)
        for start in range(0, len(picked), batch):
            x = torch.from_numpy(frames[picked[start:start + batch]]).permute(0, 3, 1, 2).float().div(255)
            x = torch.nn.functional.interpolate(x, size=(self.size, self.size), mode="bilinear", antialias=True,
                                                align_corners=False)  # (b, 3, S, S)
            x = ((x - self.mean) / self.std).to(self.device)
            logits = self.model(pixel_values=x).logits  # (b, labels, S/4, S/4)
            logits = torch.nn.functional.interpolate(logits.float(), size=(H, W), mode="bilinear", align_corners=False)
            out[start:start + len(x)] = logits.argmax(1).cpu().numpy()
        return out[np.minimum(np.arange(T) // self.every, len(picked) - 1)]

    def analyse(self, frames: np.ndarray, out: Path, hands_radius=None) -> tuple[dict, np.ndarray]:
        """Parse one clip, write its masks + face track to `out` (.regions.npz, atomically); returns the
        summary for the record and the face boxes (T, 4). `hands_radius`: a function face-size -> hand
        masks (T, H, W) (the pose model's wrists), added as a fifth region `hands`."""
        from common.atomic import atomic_write

        masks = masks_from_labels(self.labels(frames), self.ids)  # (T, R, H, W)
        boxes = face_boxes(masks[:, REGION_NAMES.index("face")])
        summary = face_summary(boxes, frames.shape[1])
        names = list(REGION_NAMES)
        if hands_radius is not None:
            masks = np.concatenate([masks, hands_radius(summary["face_size"] * frames.shape[1])[:, None]], 1)
            names.append("hands")
        atomic_write(out, lambda tmp: np.savez_compressed(tmp, masks=np.packbits(masks, axis=-1), boxes=boxes,
                                                          width=np.int32(frames.shape[2])))  # .npz kept
        return summary | {"regions": names} | self.digest, boxes


def read_regions(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """A clip's `.regions.npz` -> (masks (T, R, H, W) bool, boxes (T, 4)); DataError naming a broken file."""
    try:
        with np.load(path) as data:
            width = int(data["width"])
            return np.unpackbits(data["masks"], axis=-1, count=width).astype(bool), data["boxes"]
    except (OSError, KeyError, ValueError) as error:
        raise DataError(f"{path}: unreadable region masks ({error}); rerun `main.py prep --stage analyse --redo`") from error


def read_boxes(path: Path) -> np.ndarray:
    """Only the face track (T, 4) of a clip's `.regions.npz` (the masks stay packed on disk)."""
    try:
        with np.load(path) as data:
            return data["boxes"]
    except (OSError, KeyError, ValueError) as error:
        raise DataError(f"{path}: unreadable face track ({error}); rerun `main.py prep --stage analyse --redo`") from error
