"""Bad input to the commands fails with one clear line naming the file and the fault (no probe needed)."""
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from omegaconf import OmegaConf

from evaluation.commands import _generated_items, find_videos
from evaluation.video_io import VideoError, write_video
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
