"""Versioned on-disk cache of SynthAvatar splits, generated in parallel with a progress bar.

Layout: <root>/v<CACHE_VERSION>-<hash of the generation settings>/<split>/clip_<index>.npz plus
<split>/manifest.json. Each clip file is written to a temporary name and renamed, so a killed run never
leaves a half-written clip; the manifest is written last, so a split without one is incomplete and is
completed on the next run (existing clips are reused: a clip is a pure function of (seed, split, index)).
Changing any generation setting changes the hash, hence a new cache directory. Trade-off: one compressed
npz per clip is simple and robust; loading decompresses every time (fine at 64x64, cache a decoded copy
in RAM for large runs).
"""
from __future__ import annotations

import hashlib
import json
from multiprocessing import get_context
from pathlib import Path

import numpy as np
from tqdm import tqdm

from common.atomic import atomic_write, atomic_write_text
from common.errors import DataError
from synthavatar.clip import render_clip, sample_clip_spec
from synthavatar.splits import SPLIT_ID, SPLITS

CACHE_VERSION = 3  # bump whenever rendering or ground truth changes
GEN_KEYS = ("seed", "resolution", "fps", "duration", "sample_rate", "min_phases", "max_phases")
ARRAY_KEYS = ("video", "audio", "joints", "mouth_open", "viseme", "expressiveness", "speaking", "gaze",
              "head", "blink", "action_label")
META_KEYS = ("prompt", "prompt_text", "prompt_global", "prompt_brief")


def gen_settings(data_cfg) -> dict:
    return {k: data_cfg[k] for k in GEN_KEYS}


def cache_dir(data_cfg) -> Path:
    digest = hashlib.sha1(json.dumps(gen_settings(data_cfg), sort_keys=True).encode()).hexdigest()[:10]
    return Path(data_cfg["root"]) / f"v{CACHE_VERSION}-{digest}"


def split_size(data_cfg, split: str) -> int:
    return int(data_cfg[f"num_{split}"])


def clip_seed(seed: int, split: str, index: int) -> np.random.SeedSequence:
    return np.random.SeedSequence([int(seed), SPLIT_ID[split], int(index)])


def save_clip(path: Path, clip: dict, spec: dict) -> None:
    masks = clip["masks"]  # bool (T, R, H, W) -> bits along W: 8x smaller before compression
    meta = {k: clip[k] for k in META_KEYS} | {"spec": spec}
    arrays = {k: clip[k] for k in ARRAY_KEYS} | {
        "masks_bits": np.packbits(masks, axis=-1), "masks_shape": np.asarray(masks.shape),
        "meta": np.asarray(json.dumps(meta))}
    atomic_write(path, lambda tmp: np.savez_compressed(tmp, **arrays))


def load_clip(path: Path) -> dict:
    """Load one cached clip: arrays, bool masks (T, R, H, W), prompt fields and the spec."""
    try:
        with np.load(path) as z:
            out = {k: z[k] for k in ARRAY_KEYS}
            shape = tuple(z["masks_shape"])
            out["masks"] = np.unpackbits(z["masks_bits"], axis=-1, count=shape[-1]).astype(bool)
            meta = json.loads(str(z["meta"]))
    except (OSError, ValueError, KeyError, EOFError) as err:
        raise DataError(f"{path}: cannot read cached clip ({type(err).__name__}: {err}); "
                        f"delete it and rerun `python main.py data`") from err
    return out | meta


def _make_clip(job) -> str:
    data_cfg, split, index, path = job
    spec = sample_clip_spec(clip_seed(data_cfg["seed"], split, index), split, data_cfg["duration"],
                            data_cfg["min_phases"], data_cfg["max_phases"])
    clip = render_clip(spec, data_cfg["resolution"], data_cfg["fps"], data_cfg["sample_rate"])
    save_clip(Path(path), clip, spec)
    return path


def clip_paths(data_cfg, split: str) -> list[Path]:
    root = cache_dir(data_cfg) / split
    return [root / f"clip_{i:05d}.npz" for i in range(split_size(data_cfg, split))]


def manifest_path(data_cfg, split: str) -> Path:
    return cache_dir(data_cfg) / split / "manifest.json"


def is_complete(data_cfg, split: str) -> bool:
    path = manifest_path(data_cfg, split)
    if not path.exists():
        return False
    return json.loads(path.read_text()).get("count", -1) >= split_size(data_cfg, split)


def generate_split(data_cfg, split: str, workers: int | None = None, progress: bool = True) -> list[Path]:
    """Generate the missing clips of a split (in parallel), then write its manifest. Returns clip paths."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; expected one of {SPLITS}")
    paths = clip_paths(data_cfg, split)
    plain = {k: data_cfg[k] for k in GEN_KEYS}
    todo = [(plain, split, i, str(p)) for i, p in enumerate(paths) if not p.exists()]
    workers = int(workers if workers is not None else data_cfg["gen_workers"])
    bar = tqdm(total=len(paths), initial=len(paths) - len(todo), desc=f"SynthAvatar {split}",
               unit="clip", disable=not progress)
    if workers > 1 and len(todo) > 1:
        with get_context("fork").Pool(workers) as pool:
            for _ in pool.imap_unordered(_make_clip, todo):
                bar.update()
    else:
        for job in todo:
            _make_clip(job)
            bar.update()
    bar.close()
    manifest = {"version": CACHE_VERSION, "split": split, "count": len(paths),
                "settings": gen_settings(plain), "clips": [p.name for p in paths]}
    atomic_write_text(manifest_path(data_cfg, split), json.dumps(manifest, indent=1))
    return paths


def ensure_split(data_cfg, split: str, progress: bool = True) -> list[Path]:
    """Paths of a complete split, generating whatever is missing first."""
    if is_complete(data_cfg, split):
        return clip_paths(data_cfg, split)
    return generate_split(data_cfg, split, progress=progress)
