"""Probe caching and interfaces (tiny settings: seconds, not a quality check; quality is in test_metric_sanity)."""
import numpy as np
import pytest

from configs.loader import load_config
from evaluation.probe_train import get_probe, probe_key
from synthavatar.dataset import ensure_split, load_clip
from synthavatar.render import JOINTS

TINY = ["eval.probe.num_frames=250", "eval.probe.steps=5", "eval.probe.detector_clips=20",
        "eval.probe.detector_steps=5", "data.num_val=1", "data.num_test=1"]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("probe")
    cfg = load_config("smoke", [f"data.root={root}/d", f"eval.probe.cache_dir={root}/p"] + TINY)
    return cfg, get_probe(cfg, progress=False), root


def test_cached_probe_reloads_with_identical_outputs(tiny):
    cfg, trained, root = tiny
    assert len(list((root / "p").glob("probe-*.pt"))) == 1
    clip = load_clip(ensure_split(cfg.data, "test", progress=False)[0])
    reloaded = get_probe(cfg, progress=False)
    a, b = trained.analyse(clip["video"]), reloaded.analyse(clip["video"])
    for key in ("joints", "mouth_open", "identity_z", "action"):
        np.testing.assert_array_equal(a[key], b[key])
    T = len(clip["video"])
    assert a["joints"].shape == (T, len(JOINTS), 2) and a["action_prob"].shape[0] == T
    assert "test_joint_error_px" in reloaded.report


def test_cache_key_follows_settings(tiny):
    cfg = tiny[0]
    assert probe_key(cfg) == probe_key(load_config("smoke", [f"data.root={tiny[2]}/other"] + TINY))
    for change in ("eval.probe.steps=6", "data.resolution=128", "eval.probe.detector_clips=21"):
        other = load_config("smoke", TINY + [change])
        assert probe_key(other) != probe_key(cfg), change
