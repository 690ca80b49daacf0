"""Conditions computed once per clip (issue 15, Deliver 2b): an on-disk cache of what the frozen encoders
make of each training clip (codec latents, per-frame audio features, and the frozen text encoder's token
states with their phase ids and windows), so a training step runs the DiT and not the encoders again.

`CachedConditions` wraps any DataSource (SynthAvatar today, real video next): `prepare("train")` encodes
every clip once (progress bar) into `<root>/<fingerprint>/train.safetensors`, and its batches carry
`ClipBatch.latents` / `audio_features` / `text_conditions`, which models/conditioning.py uses instead of
the video / waveform / prompt (a trained text encoder, the learned ablation, is never cached).
The fingerprint is a hash of everything that decides the tensors: the data settings (source kind and its
`data` section without loader knobs), the codec's config and fitted weights, the audio and text
encoders' settings and weights; the file stores those parts and is refused if they differ from the
running config (a cache copied or edited by hand), naming the file and the first differing part.
A split of several size buckets (real video) gets one file per bucket, `train.<h>x<w>x<frames>.safetensors`.
Trade-offs: only the train split is cached (validation and generation read the source as is); a source
with random augmentation per read must not be cached (its clips would freeze at their first draw), which
is why a source opts in with `cacheable = True`; the video is still read for the batch (the reference
frame, region masks and ground truth come with it), so the saving is the encoders, not the decoding.
"""
from __future__ import annotations

import bisect
import dataclasses
import hashlib
import json
from pathlib import Path

import torch
from omegaconf import OmegaConf
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from torch.utils.data import Dataset
from tqdm import tqdm

from common.atomic import atomic_write
from common.digest import module_digest
from common.errors import DataError
from datamodules.sources import DataSource
from models.contracts import ClipBatch, Conditions
from models.prompt_tokens import structured_prompts

CACHE_VERSION = 2
TEXT_FIELDS = ("text", "text_mask", "text_phase", "text_window", "text_is_phase")
LOADER_KEYS = {"batch_size", "loader_workers", "gen_workers", "preview_clips"}  # do not change a clip
CACHED_SPLITS = ("train",)


def fingerprint_parts(source: DataSource, encoder) -> dict:
    """What decides the cached tensors, as a JSON-able dict (its hash names the cache directory)."""
    cfg = source.cfg
    cfg = dataclasses.asdict(cfg) if dataclasses.is_dataclass(cfg) else OmegaConf.to_container(cfg, resolve=True)
    data = {k: v for k, v in cfg.items() if k not in LOADER_KEYS}
    audio = encoder.cfg.audio if encoder.audio_encoder is not None else None
    text = encoder.text_encoder if caches_text(encoder) else None
    return {"version": CACHE_VERSION, "source": source.kind, "data": json.loads(json.dumps(data, default=str)),
            "codec": repr(encoder.cfg.codec), "codec_weights": module_digest(encoder.codec),
            "audio": repr(audio), "audio_weights": module_digest(encoder.audio_encoder),
            "text": repr(encoder.cfg.text) if text is not None else None, "text_weights": module_digest(text)}


def caches_text(encoder) -> bool:
    """Only a frozen text encoder's output is a pure function of the prompt (the learned one trains)."""
    return bool(getattr(encoder.text_encoder, "frozen", False))


def _pad_text(conds: list, length: int) -> dict[str, torch.Tensor]:
    """Per-batch text conditions -> one tensor per field, padded along the token axis to `length`."""
    def pad(x):  # (B, L, ...) -> (B, length, ...); padding is what the encoder pads with (zeros / False)
        return torch.nn.functional.pad(x, (0, 0) * (x.dim() - 2) + (0, length - x.shape[1]))
    return {f"text/{name}": torch.cat([pad(getattr(c, name)) for c in conds]) for name in TEXT_FIELDS}


class _CachedDataset(Dataset):
    """The base dataset's samples, each paired with its row of the cached tensors (one group per size bucket)."""

    def __init__(self, base: Dataset, groups: list[tuple[range, dict[str, torch.Tensor]]]):
        self.base, self.groups = base, groups
        self.starts = [g.start for g, _ in groups]

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, index: int):
        rows, tensors = self.groups[bisect.bisect_right(self.starts, index) - 1]
        return self.base[index], {k: v[index - rows.start] for k, v in tensors.items()}


def _rows_key(dataset: Dataset, rows: range) -> dict[str, str]:
    """Which clips a file holds, as its metadata says it: first index, count and a hash of the clips. A source
    that can say what each clip is (`clip_keys`, e.g. real video: name + prep's input fingerprint) gets its
    clips' hash, so re-prepared clips are never read from an old file; a source without (SynthAvatar, whose
    clips are a function of the config, already in the fingerprint) gets ''."""
    keys = getattr(dataset, "clip_keys", None)
    digest = hashlib.sha256("\n".join(keys[rows.start:rows.stop]).encode()).hexdigest()[:16] if keys else ""
    return {"first": str(rows.start), "clips": str(len(rows)), "rows": digest}


def bucket_groups(dataset: Dataset) -> list[tuple[tuple | None, range]]:
    """The split's clips as runs of one size bucket: [(bucket, index range)]; one run (bucket None) for a
    source without buckets. A bucketed source orders its clips by bucket, so each bucket is one run."""
    buckets = getattr(dataset, "buckets", None)
    if not buckets or len(set(buckets)) == 1:
        return [(None, range(len(dataset)))]
    groups, start = [], 0
    for index in range(1, len(buckets) + 1):
        if index == len(buckets) or buckets[index] != buckets[start]:
            groups.append((tuple(buckets[start]), range(start, index)))
            start = index
    if len({b for b, _ in groups}) != len(groups):
        raise DataError("train.condition_cache: the split's clips are not ordered by size bucket")
    return groups


class CachedConditions(DataSource):
    """`source` with the frozen encoders' outputs for its train split read from an on-disk cache."""

    def __init__(self, source: DataSource, encoder, root: str | Path):
        if not getattr(source, "cacheable", False):
            raise DataError(f"train.condition_cache: data.kind={source.kind!r} does not declare its clips "
                            "deterministic per index (cacheable = True), so its conditions cannot be cached")
        super().__init__(source.cfg)
        self.source, self.encoder = source, encoder
        self.kind, self.region_names = source.kind, source.region_names
        self.parts = fingerprint_parts(source, encoder)
        key = hashlib.sha256(json.dumps(self.parts, sort_keys=True).encode()).hexdigest()[:16]
        self.directory = Path(root) / key
        self._groups: dict[str, list] = {}

    def path(self, split: str, bucket: tuple | None = None) -> Path:
        """The file of one split (and size bucket, for a split of several sizes)."""
        suffix = "" if bucket is None else "." + "x".join(str(v) for v in bucket)
        return self.directory / f"{split}{suffix}.safetensors"

    def prepare(self, split: str, progress: bool = True) -> None:
        self.source.prepare(split, progress)
        if split in CACHED_SPLITS:
            dataset = self.source.dataset(split)
            groups = bucket_groups(dataset)
            missing = [(b, rows) for b, rows in groups
                       if not self.path(split, b).is_file() or self._stored_rows(self.path(split, b)) != _rows_key(dataset, rows)]
            if missing and progress:
                for note in self.other_caches():
                    print(note)
            with tqdm(total=sum(len(r) for _, r in missing), desc=f"caching {split} conditions", unit="clip",
                      disable=not progress or not missing) as bar:
                for bucket, rows in missing:
                    self._build(split, dataset, bucket, rows, bar)

    @staticmethod
    def _stored_rows(path: Path) -> dict | None:
        try:
            with safe_open(str(path), "pt") as handle:
                metadata = handle.metadata() or {}
        except (OSError, ValueError):
            return None
        return {"first": metadata.get("first", "0"), "clips": metadata.get("clips"), "rows": metadata.get("rows", "")}

    def other_caches(self) -> list[str]:
        """One line per cache under the same root made with other settings, naming the first that differs
        (so a user who expected a cache hit sees why this run builds its own instead of reusing one)."""
        notes = []
        for directory in sorted(self.directory.parent.iterdir()) if self.directory.parent.is_dir() else []:
            files = sorted(directory.glob("*.safetensors")) if directory != self.directory else []
            if not files:
                continue
            try:
                with safe_open(str(files[0]), "pt") as handle:
                    stored = json.loads((handle.metadata() or {}).get("parts", "{}"))
            except (OSError, ValueError):
                continue
            differing = next((k for k in self.parts if stored.get(k) != self.parts[k]), None)
            if differing:
                notes.append(f"train.condition_cache: not reusing {directory} (made with another '{differing}': "
                             f"{stored.get(differing)!r} vs {self.parts[differing]!r}); building {self.directory.name}")
        return notes

    def _build(self, split: str, dataset: Dataset, bucket: tuple | None, rows: range, bar) -> None:
        encoder = self.encoder
        latents, audio, texts = [], [], []
        step = int(self.cfg["batch_size"])
        with torch.no_grad():
            for start in range(rows.start, rows.stop, step):
                batch = self.source.collate([dataset[i] for i in range(start, min(start + step, rows.stop))])
                latents.append(encoder.encode_video(batch).cpu())  # (B, C, F, h, w)
                if encoder.audio_encoder is not None:
                    audio.append(encoder.encode_audio(batch.audio, batch.num_frames).cpu())  # (B, T, D)
                if caches_text(encoder):  # raw encode_text output: the window rescaling stays in the encoder
                    texts.append(encoder.encode_text(structured_prompts(batch.prompt)).to("cpu"))
                bar.update(len(batch))
        tensors = {"latents": torch.cat(latents)} | ({"audio_features": torch.cat(audio)} if audio else {})
        if texts:
            tensors |= _pad_text(texts, max(c.text.shape[1] for c in texts))
        self.directory.mkdir(parents=True, exist_ok=True)
        metadata = {"parts": json.dumps(self.parts, sort_keys=True)} | _rows_key(dataset, rows)
        atomic_write(self.path(split, bucket), lambda tmp: save_file(tensors, tmp, metadata=metadata))

    def _load_file(self, path: Path, rows: range, dataset: Dataset) -> dict[str, torch.Tensor]:
        if not path.is_file():
            raise DataError(f"{path}: missing; the cache was not prepared for this split's clips")
        with safe_open(str(path), "pt") as handle:
            metadata = handle.metadata() or {}
        stored = json.loads(metadata.get("parts", "{}"))
        if stored != self.parts:
            differing = next((k for k in self.parts if stored.get(k) != self.parts[k]), "format")
            raise DataError(f"{path}: cached conditions were made with another '{differing}' than this run's "
                            f"({stored.get(differing)!r} vs {self.parts.get(differing)!r}); delete the file")
        tensors = load_file(str(path))
        if (int(metadata.get("clips", -1)), int(metadata.get("first", 0))) != (len(rows), rows.start) \
                or len(tensors["latents"]) != len(rows):
            raise DataError(f"{path}: holds {metadata.get('clips')} clips from index {metadata.get('first', 0)}, "
                            f"the split has {len(rows)} from {rows.start} there; delete the file")
        if metadata.get("rows", "") != _rows_key(dataset, rows)["rows"]:
            raise DataError(f"{path}: made for other clips than the split now holds (prep changed them); "
                            "delete the file or run `main.py prep --stage cache` again")
        return tensors

    def _load(self, split: str) -> list[tuple[range, dict[str, torch.Tensor]]]:
        dataset = self.source.dataset(split)
        groups = [(rows, self._load_file(self.path(split, b), rows, dataset)) for b, rows in bucket_groups(dataset)]
        if "text/text" in groups[0][1]:  # one token length for every bucket: a batch may then mix files
            length = max(t["text/text"].shape[1] for _, t in groups)
            for _, tensors in groups:
                for name in TEXT_FIELDS:
                    x = tensors[f"text/{name}"]
                    tensors[f"text/{name}"] = torch.nn.functional.pad(
                        x, (0, 0) * (x.dim() - 2) + (0, length - x.shape[1]))
        return groups

    def dataset(self, split: str) -> Dataset:
        base = self.source.dataset(split)
        if split not in CACHED_SPLITS:
            return base
        if split not in self._groups:
            self._groups[split] = self._load(split)
        return _CachedDataset(base, self._groups[split])

    def collate(self, samples: list) -> ClipBatch:
        if not samples or not isinstance(samples[0], tuple):  # a split that is not cached
            return self.source.collate(samples)
        batch = self.source.collate([base for base, _ in samples])
        cached = {k: torch.stack([c[k] for _, c in samples]) for k in samples[0][1]}
        text = None
        if "text/text" in cached:  # trimmed to the batch's longest prompt, as the encoder pads (unless pad_to_max)
            keep = cached["text/text"].shape[1] if self.encoder.text_encoder.pad_to_max else \
                int(cached["text/text_mask"].sum(1).max())
            text = Conditions(**{name: cached[f"text/{name}"][:, :keep] for name in TEXT_FIELDS})
        return batch.replace(latents=cached["latents"], audio_features=cached.get("audio_features"),
                             text_conditions=text)

    def fit_frames(self, max_clips: int = 0, progress: bool = True):
        return self.source.fit_frames(max_clips, progress)

    def prompt_texts(self, split: str = "train", progress: bool = True) -> list[str]:
        return self.source.prompt_texts(split, progress)
