"""Bad input to the commands fails with one clear line naming the file and the fault (no probe needed)."""
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from omegaconf import OmegaConf

from common.video_io import VideoError, write_video
from evaluation.commands import _generated_items, find_videos
from synthavatar.dataset import generate_split

REPO = Path(__file__).resolve().parents[1]


def run_main(*args):
    return subprocess.run([sys.executable, "main.py", *args], cwd=REPO, capture_output=True, text=True,
                          env=os.environ | {"PYTHONPATH": str(REPO)})


def test_evaluate_rejects_video_outside_split_before_any_training(tmp_path):
    videos = tmp_path / "videos"
    videos.mkdir()
    (videos / "clip_00099.mp4").write_bytes(b"")
    result = run_main("evaluate", "--videos", str(videos), "data.num_test=2",
                      f"run.output_dir={tmp_path / 'runs'}", f"data.root={tmp_path / 'data'}")
    assert result.returncode == 2
    assert "clip_00099.mp4: clip index 99 is outside the split (2 clips)" in result.stderr
    assert "Traceback" not in result.stderr and not (tmp_path / "data").exists()


def test_evaluate_rejects_empty_directory(tmp_path):
    with pytest.raises(VideoError, match="no videos named clip_<index>"):
        find_videos(tmp_path, 4)


@pytest.fixture()
def tiny_test_split(tmp_path):
    cfg = OmegaConf.create({"data": {"root": str(tmp_path / "cache"), "seed": 0, "resolution": 64, "fps": 25,
                                     "duration": 0.8, "sample_rate": 16000, "min_phases": 1,
                                     "max_phases": 2, "num_test": 1, "gen_workers": 1}})
    return cfg, generate_split(cfg.data, "test", workers=1, progress=False)


@pytest.mark.parametrize("shape,fps,fault", [
    ((20, 32, 32, 3), 25, r"shape \(20, 32, 32, 3\) does not match"),
    ((20, 64, 64, 3), 30, r"30(\.0)? fps, expected 25"),
])
def test_generated_video_with_wrong_shape_or_fps_is_named(tmp_path, tiny_test_split, shape, fps, fault):
    cfg, paths = tiny_test_split
    bad = tmp_path / "clip_00000.npz"
    write_video(bad, np.zeros(shape, np.uint8), fps=fps)
    with pytest.raises(VideoError, match=r"clip_00000\.npz: " + fault):
        list(_generated_items([(0, bad)], paths, cfg))


class _Payload:
    """Unpickling this runs a shell command: what a crafted checkpoint someone shares could hold."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _smoke_places(tmp_path):
    return ["-e", "smoke", "model.preset=tiny", f"run.output_dir={tmp_path / 'runs'}",
            f"data.root={tmp_path / 'data'}", f"model.codec.cache_dir={tmp_path / 'codec'}"]


def test_a_pickled_payload_in_a_ckpt_is_refused_and_never_runs(tmp_path):
    import torch

    marker = tmp_path / "payload-ran"
    evil = tmp_path / "shared.ckpt"
    torch.save({"state_dict": {"model.head.head.weight": torch.zeros(2)}, "hparams": _Payload(marker)}, evil)
    result = run_main("generate", *_smoke_places(tmp_path), "--split", "test", "--weights", str(evil),
                      "--out", str(tmp_path / "gen"))
    assert result.returncode == 2, result.stderr[-2000:]
    assert not marker.exists()
    error = result.stderr.strip().splitlines()[-1]
    assert f"{evil}: refused to load: it pickles posix.system" in error
    assert "Traceback" not in result.stderr


def test_a_bad_init_from_is_one_line_naming_the_path(tmp_path):
    result = run_main("fit", *_smoke_places(tmp_path), f"model.init_from={tmp_path / 'no-such-wan'}",
                      "train.max_steps=1")
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert f"{tmp_path / 'no-such-wan'}: checkpoint path does not exist" in result.stderr.strip().splitlines()[-1]


def test_a_truncated_ckpt_is_one_line(tmp_path):
    from common.errors import CheckpointError
    from system.weights import read_weights

    bad = tmp_path / "step.ckpt"
    bad.write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(CheckpointError, match=r"step\.ckpt: cannot read checkpoint"):
        read_weights(bad)
