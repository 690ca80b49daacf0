"""The condition cache (issue 15): cached latents / audio features equal what the encoders compute in the
step, the batches carry them, a changed setting gets another cache, and a tampered file is refused."""
import json

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from common.errors import DataError
from configs.loader import load_config
from datamodules.condition_cache import CachedConditions
from system.build import build_system


@pytest.fixture(scope="module")
def system(tmp_path_factory):
    root = tmp_path_factory.mktemp("cond_cache")
    cfg = load_config("smoke", [f"data.root={root / 'data'}", f"model.codec.cache_dir={root / 'codec'}",
                                "model.preset=tiny", "data.duration=1.2", "data.batch_size=3"])
    return build_system(cfg, progress=False), root


def test_cached_conditions_equal_the_encoders_and_ride_in_the_batch(system):
    system, root = system
    cached = CachedConditions(system.source, system.encoder, root / "conditions")
    cached.prepare("train", progress=False)
    dataset = cached.dataset("train")
    batch = cached.collate([dataset[i] for i in (4, 1, 6)])
    direct = system.source.collate([system.source.dataset("train")[i] for i in (4, 1, 6)])
    x0_direct, cond_direct = system.encoder.prepare(direct)
    x0_cached, cond_cached = system.encoder.prepare(batch)
    assert batch.latents is not None and batch.audio_features is not None and batch.text_conditions is not None
    torch.testing.assert_close(x0_cached, x0_direct, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(cond_cached.audio, cond_direct.audio, rtol=1e-5, atol=1e-5)
    for name in ("text", "text_mask", "text_phase", "text_window", "text_is_phase"):  # bit-identical
        assert torch.equal(getattr(cond_cached, name), getattr(cond_direct, name)), name
    system.source.prepare("val", progress=False)
    assert cached.dataset("val")[0].keys() == system.source.dataset("val")[0].keys()  # val is not cached
    # another codec setting -> another cache directory; the same settings -> the same one
    assert CachedConditions(system.source, system.encoder, root / "conditions").directory == cached.directory
    system.source.cfg.duration, duration = 0.8, system.source.cfg.duration
    try:
        other = CachedConditions(system.source, system.encoder, root / "conditions")
        assert other.directory != cached.directory
        notes = other.other_caches()  # a user expecting a hit is told why this run builds its own
        assert len(notes) == 1 and f"not reusing {cached.directory} (made with another 'data'" in notes[0]
    finally:
        system.source.cfg.duration = duration


def test_a_cache_made_with_other_settings_is_refused_naming_the_file(system):
    system, root = system
    cached = CachedConditions(system.source, system.encoder, root / "tampered")
    cached.prepare("train", progress=False)
    path = cached.path("train")
    with safe_open(str(path), "pt") as handle:
        metadata = handle.metadata()
    parts = json.loads(metadata["parts"]) | {"codec_weights": "0" * 16}
    save_file(load_file(str(path)), str(path), metadata=metadata | {"parts": json.dumps(parts)})
    with pytest.raises(DataError, match=rf"{path}: cached conditions were made with another 'codec_weights'"):
        CachedConditions(system.source, system.encoder, root / "tampered").dataset("train")


def test_a_source_that_is_not_cacheable_is_refused(system):
    system, root = system

    class Augmenting(type(system.source)):
        cacheable = False

    with pytest.raises(DataError, match="does not declare its clips deterministic"):
        CachedConditions(Augmenting(system.source.cfg), system.encoder, root / "x")


def test_a_split_of_several_size_buckets_gets_one_file_per_bucket(system):
    """Real video batches one bucket at a time; its cache holds one file per bucket, indexed as the split."""
    system, root = system

    def _with_keys(dataset):
        dataset.clip_keys = Bucketed.keys
        return dataset

    class Bucketed(type(system.source)):
        def dataset(self, split):
            dataset = super().dataset(split)
            dataset.buckets = [(64, 64, 29)] * 5 + [(32, 64, 29)] * (len(dataset) - 5)  # ordered by bucket
            return dataset

    source = Bucketed(system.source.cfg)
    cached = CachedConditions(source, system.encoder, root / "bucketed")
    cached.prepare("train", progress=False)
    files = sorted(p.name for p in cached.directory.iterdir())
    assert files == ["train.32x64x29.safetensors", "train.64x64x29.safetensors"]
    dataset = cached.dataset("train")
    plain = CachedConditions(system.source, system.encoder, root / "conditions")
    plain.prepare("train", progress=False)
    single = plain.dataset("train")
    for index in (0, 4, 5, len(dataset) - 1):  # the same rows as the one-file cache, across the boundary
        got, want = dataset[index][1], single[index][1]
        assert torch.equal(got["latents"], want["latents"]), index
        keep = int(want["text/text_mask"].sum())
        assert torch.equal(got["text/text"][:keep], want["text/text"][:keep]), index
    (cached.directory / files[0]).unlink()
    with pytest.raises(DataError, match="train.32x64x29.safetensors: missing"):
        CachedConditions(source, system.encoder, root / "bucketed").dataset("train")
    Bucketed.keys = [f"clip{i}" for i in range(len(dataset))]  # a source that says what each clip is
    Bucketed.dataset = lambda self, split, _d=Bucketed.dataset: _with_keys(_d(self, split))
    keyed = CachedConditions(source, system.encoder, root / "keyed")
    keyed.prepare("train", progress=False)
    stamps = {p.name: p.stat().st_mtime_ns for p in keyed.directory.iterdir()}
    Bucketed.keys = Bucketed.keys[:-1] + ["changed"]  # prep re-made the last clip (of the 32x64 bucket)
    again = CachedConditions(source, system.encoder, root / "keyed")
    with pytest.raises(DataError, match="made for other clips than the split now holds"):
        again.dataset("train")
    again.prepare("train", progress=False)  # rebuilds that bucket's file only
    assert {p.name for p in keyed.directory.iterdir() if p.stat().st_mtime_ns != stamps[p.name]} == {files[0]}
    again.dataset("train")
