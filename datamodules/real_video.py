"""Prepared real-video clips as a data source (data.kind = real; issue 16): what `main.py prep` left in
data.root behind the core's `ClipBatch` contract.

Reads `<data.root>/annotate.jsonl` (the clips that passed every prep stage) and, per clip, `clips/<clip>.mp4`
and `.wav`. A split's clips are ordered by (bucket, name), bucket = (height, width, frames), and the dataset
exposes `buckets` so the DataModule's BucketStepSampler batches one bucket at a time (deterministic and
exactly resumable, like StepSampler). Samples: video (T, 3, H, W) in [-1, 1], reference = frame 0, audio,
the clip-time structured prompt; ground truth only `phase_windows` / `phase_actions` from the prompt, the
action ids mapped through this dataset's own vocabulary (every phase `action` seen in the split, sorted;
-1 = none), never SynthAvatar's labels. Region masks (eyes, mouth, hair, face) ride in the batch when prep
ran a face parser on every clip (`clips/<clip>.regions.npz`, realvideo/faces.py); else the source has none.
Trade-off: clips are decoded at each read (no in-memory cache), which is what keeps the source usable on
sets larger than memory; train.condition_cache removes the encoders' share of that cost.
"""
from __future__ import annotations

import functools
import json
from pathlib import Path

import torch
from torch.utils.data import Dataset

from common.errors import DataError
from datamodules.sources import DataSource, phase_table
from models.contracts import ClipBatch
from models.prompt import from_json, to_brief, to_global, to_text


def _rows(root: Path) -> list[dict]:
    path = root / "annotate.jsonl"
    if not path.is_file():
        raise DataError(f"{path}: missing; run `main.py prep data.manifest=... data.root={root}` first "
                        "(data.kind=real reads what prep's annotate stage kept)")
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def action_vocabulary(rows: list[dict]) -> dict[str, int]:
    names = sorted({p["action"] for r in rows for p in r["prompt"]["phases"] if p.get("action")})
    return {name: i for i, name in enumerate(names)}


class RealVideoDataset(Dataset):
    def __init__(self, root: Path, rows: list[dict], sample_rate: int, fps: float, regions: bool = False):
        self.root, self.sample_rate, self.fps, self.regions = root, sample_rate, fps, regions
        self.rows = sorted(rows, key=lambda r: (r["height"], r["width"], r["frames"], r["name"]))
        self.buckets = [(r["height"], r["width"], r["frames"]) for r in self.rows]
        # what each clip is, for the condition cache: its name and prep's input fingerprint (upstream included)
        self.clip_keys = [f"{r['name']}:{r.get('inputs', '')}" for r in self.rows]

    def __len__(self) -> int:
        return len(self.rows)

    def frames(self, index: int):
        from common.video_io import read_video
        clip = read_video(self.root / "clips" / f"{self.rows[index]['name']}.mp4", sample_rate=None)
        if abs(clip.fps - self.fps) > 1e-3:
            raise DataError(f"{self.root / 'clips'}: clip {self.rows[index]['name']} is {clip.fps} fps but data.fps "
                            f"is {self.fps}; prep this root again with the run's data.fps")
        return clip.frames

    def __getitem__(self, index: int) -> dict:
        from common.audio_io import load_audio
        row = self.rows[index]
        video = torch.from_numpy(self.frames(index)).permute(0, 3, 1, 2).float().div(127.5).sub(1)  # (T, 3, H, W)
        audio = load_audio(self.root / "clips" / f"{row['name']}.wav", self.sample_rate)
        sample = {"index": index, "video": video, "reference": video[0].clone(), "audio": torch.from_numpy(audio),
                  "prompt": row["prompt"]}
        if self.regions:
            from realvideo.faces import read_regions
            masks, _ = read_regions(self.root / "clips" / f"{row['name']}.regions.npz")  # (T, R, H, W)
            sample["masks"] = torch.from_numpy(masks)
        return sample


class RealFitFrames:
    """The first `num_clips` train clips (bucket order) for a codec that must be fitted (the PCA SynthCodec)."""

    def __init__(self, dataset: RealVideoDataset, num_clips: int):
        self.dataset, self.num_clips = dataset, num_clips
        self.fingerprint = {"source": "real", "root": str(dataset.root.resolve()),
                            "clips": [r["name"] for r in dataset.rows[:num_clips]]}

    def videos(self):
        return (self.dataset.frames(i) for i in range(self.num_clips))


class RealVideoSource(DataSource):
    kind = "real"
    cacheable = True  # clip i of a split is the same file on every read

    def __init__(self, data_cfg):
        super().__init__(data_cfg)
        self.root = Path(data_cfg["root"])
        self._rows: list[dict] | None = None

    @functools.cached_property
    def vocabulary(self) -> dict[str, int]:
        """This dataset's action ids (every phase action of every prepared clip), computed once."""
        return action_vocabulary(self.rows())

    @functools.cached_property
    def region_names(self) -> tuple[str, ...]:
        """The face parser's regions when prep parsed every clip, else none (computed once: collate reads it)."""
        names = {tuple(r.get("regions") or ()) for r in self.rows()}
        return next(iter(names)) if len(names) == 1 else ()

    def rows(self) -> list[dict]:
        if self._rows is None:
            self._rows = _rows(self.root)
        return self._rows

    def prepare(self, split: str, progress: bool = True) -> None:
        if split == "train" and not any(r["split"] == "train" for r in self.rows()):
            raise DataError(f"{self.root / 'annotate.jsonl'}: no train clips (see `main.py prep --inspect`)")

    def dataset(self, split: str) -> RealVideoDataset:
        rows = [r for r in self.rows() if r["split"] == split]
        return RealVideoDataset(self.root, rows, int(self.cfg["sample_rate"]), float(self.cfg["fps"]),
                                regions=bool(self.region_names))

    def collate(self, samples: list[dict]) -> ClipBatch:
        shapes = {tuple(s["video"].shape) for s in samples}
        if len(shapes) > 1:
            raise DataError(f"a batch mixes clip sizes {sorted(shapes)}; batch real clips by bucket "
                            "(the DataModule's BucketStepSampler does) or use batch_size 1")
        truth = phase_table([s["prompt"] for s in samples], lambda name: self.vocabulary.get(name, -1))
        stack = lambda key: torch.stack([s[key] for s in samples])
        masks = dict(region_masks=stack("masks"), region_names=self.region_names) if "masks" in samples[0] else {}
        return ClipBatch(reference=stack("reference"), prompt=[s["prompt"] for s in samples], audio=stack("audio"),
                         video=stack("video"), index=torch.tensor([s["index"] for s in samples]), ground_truth=truth,
                         **masks)

    def fit_frames(self, max_clips: int = 0, progress: bool = True) -> RealFitFrames:
        dataset = self.dataset("train")
        return RealFitFrames(dataset, len(dataset) if max_clips == 0 else min(max_clips, len(dataset)))

    def prompt_texts(self, split: str = "train", progress: bool = True) -> list[str]:
        texts = []
        for r in self.rows():
            if r["split"] == split:
                prompt = from_json(r["prompt"])
                texts += [to_text(prompt), to_global(prompt), to_brief(prompt)]
        return texts
