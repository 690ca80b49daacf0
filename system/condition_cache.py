"""`main.py prep --stage cache` (issue 16, Deliver 2): fill train.condition_cache for prepared real clips
before training, DiffSynth-Studio's "process data, then train" split, with the run's own encoders.

The cache is datamodules/condition_cache.py's (one file per size bucket, fingerprinted by the data settings
and every encoder's config and weights, refused when they differ), so `main.py fit` with the same config
finds it and skips the encoders; with any other encoder, weights, dtype, fps or resolution it gets another
fingerprint directory and builds its own. It lives here, above datamodules and models, because it builds
the system (codec, text and audio encoders) the way fit does.
Trade-off: one process encodes the whole train split (no --shard): the encoders are the expensive part
and sharding would need one file per shard and bucket.
"""
from __future__ import annotations

from common.errors import DataError


def fill_condition_cache(cfg, progress: bool = True) -> dict:
    from datamodules.condition_cache import CachedConditions
    from system.build import build_system

    if cfg.data.kind != "real":
        raise DataError(f"prep --stage cache: data.kind is {cfg.data.kind!r}; the cache stage encodes prepared "
                        "real clips (data.kind=real data.root=<prep root>)")
    if not cfg.train.condition_cache:
        raise DataError("prep --stage cache: train.condition_cache is not set; give the cache directory "
                        "(train.condition_cache=DIR, the same value as in the fit run)")
    system = build_system(cfg, progress=progress)
    cached = CachedConditions(system.source, system.encoder, cfg.train.condition_cache)
    cached.prepare("train", progress)
    files = sorted(p.name for p in cached.directory.glob("train*.safetensors"))
    size = sum(p.stat().st_size for p in cached.directory.glob("train*.safetensors"))
    clips = len(system.source.dataset("train"))
    return {"stage": "cache", "directory": str(cached.directory), "files": files, "clips": clips,
            "bytes_per_clip": round(size / max(clips, 1))}
