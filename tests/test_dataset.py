"""Cache, generation and the SynthAvatar data source: determinism, atomic writes, corrupt-file errors,
the ClipBatch contract (region masks, ground truth for evaluators only), collate."""
import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from datamodules.clip_datamodule import ClipDataModule
from datamodules.sources import build_data_source
from datamodules.synth_avatar import SynthAvatarSource, collate
from models.contracts import ClipBatch
from synthavatar.dataset import (
    DataError,
    cache_dir,
    clip_paths,
    ensure_split,
    generate_split,
    is_complete,
    load_clip,
    manifest_path,
)
from synthavatar.render import REGIONS


@pytest.fixture()
def data_cfg(tmp_path):
    return OmegaConf.create({"root": str(tmp_path / "cache"), "seed": 3, "resolution": 64, "fps": 25,
                             "duration": 1.2, "sample_rate": 16000, "min_phases": 1, "max_phases": 3,
                             "num_train": 4, "num_val": 2, "num_test": 3, "gen_workers": 2,
                             "batch_size": 3, "loader_workers": 0, "kind": "synthavatar"})


def test_generation_is_deterministic_across_worker_counts(data_cfg, tmp_path):
    parallel = generate_split(data_cfg, "train", workers=2, progress=False)
    other = OmegaConf.merge(data_cfg, {"root": str(tmp_path / "other")})
    serial = generate_split(other, "train", workers=1, progress=False)
    for a, b in zip(parallel, serial):
        ca, cb = load_clip(a), load_clip(b)
        assert np.array_equal(ca["video"], cb["video"]) and ca["prompt"] == cb["prompt"]
    assert not list(cache_dir(data_cfg).rglob(".*tmp*"))  # no temporary files left behind


def test_incomplete_split_is_completed_and_corrupt_clip_named(data_cfg):
    paths = generate_split(data_cfg, "val", workers=1, progress=False)
    manifest_path(data_cfg, "val").unlink()
    paths[1].unlink()
    assert not is_complete(data_cfg, "val")
    assert ensure_split(data_cfg, "val", progress=False) == paths and paths[1].exists()
    paths[0].write_bytes(b"not a zip")
    with pytest.raises(DataError, match=r"clip_00000\.npz: cannot read cached clip"):
        load_clip(paths[0])


def test_settings_change_the_cache_version_dir(data_cfg):
    assert cache_dir(data_cfg) != cache_dir(OmegaConf.merge(data_cfg, {"resolution": 128}))
    assert cache_dir(data_cfg) == cache_dir(OmegaConf.merge(data_cfg, {"num_train": 99}))


def test_datamodule_batches_follow_the_clip_batch_contract(data_cfg):
    source = build_data_source(data_cfg)
    assert isinstance(source, SynthAvatarSource)
    dm = ClipDataModule(source)
    dm.prepare_data()
    dm.setup()
    batch = next(iter(dm.test_dataloader()))
    B, T = 3, 30
    assert isinstance(batch, ClipBatch) and len(batch) == B and batch.num_frames == T
    assert batch.video.shape == (B, T, 3, 64, 64) and batch.video.min() >= -1
    assert torch.equal(batch.reference, batch.video[:, 0])
    assert batch.audio.shape == (B, int(1.2 * 16000))
    assert batch.region_masks.shape == (B, T, len(REGIONS), 64, 64) and batch.region_names == REGIONS
    assert batch.latents is None and batch.audio_features is None
    truth = batch.ground_truth  # evaluators' business: phase table and per-frame labels
    counts = [len(p["phases"]) for p in batch.prompt]
    assert truth["phase_mask"].sum(1).tolist() == counts
    P = max(counts)
    assert truth["phase_windows"].shape == (B, P, 2) and len(truth["phase_texts"][0]) == P
    assert truth["action_label"].shape == (B, T)
    for b, prompt in enumerate(batch.prompt):
        for k, phase in enumerate(prompt["phases"]):
            assert truth["phase_windows_norm"][b, k, 1] == pytest.approx(phase["end"] / 1.2)
        assert (truth["phase_actions"][b, counts[b]:] == -1).all()
    assert len(clip_paths(data_cfg, "test")) == 3


def test_clip_batch_rejects_masks_without_names():
    with pytest.raises(ValueError, match="region_masks has 2 regions but region_names names 1"):
        ClipBatch(reference=torch.zeros(1, 3, 4, 4), prompt=[{}], region_masks=torch.zeros(1, 2, 2, 4, 4),
                  region_names=("face",))


def test_collate_handles_variable_phase_counts():
    def sample(n):
        phases = [{"start": 0.5 * k, "end": 0.5 * k + 0.4, "text": f"p{k}", "action": "nod"} for k in range(n)]
        return {"index": n, "video": torch.zeros(2, 3, 4, 4), "reference": torch.zeros(3, 4, 4),
                "audio": torch.zeros(8), "masks": torch.zeros(2, len(REGIONS), 4, 4, dtype=torch.bool),
                "gt": {"x": torch.zeros(2)},
                "prompt": {"base": "b", "phases": phases, "duration": 2.0},
                "prompt_text": "", "prompt_global": "", "prompt_brief": ""}
    batch = collate([sample(1), sample(4)])
    assert batch.ground_truth["phase_mask"].tolist() == [[True, False, False, False], [True] * 4]
    assert batch.ground_truth["phase_texts"][0] == ["p0", "", "", ""]
