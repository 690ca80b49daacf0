"""Round-trip and failure-mode tests for common.video_io (PyAV)."""

import os
from fractions import Fraction

import av
import numpy as np
import pytest

from common import video_io as vio
from common.video_io import VideoClip, VideoError, read_video, write_video
from evaluation.metrics import psnr

SR = 16000


def _frames(t=25, h=64, w=64):
    """(t, h, w, 3) uint8 smooth moving gradients (codec friendly, every frame distinct)."""
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    out = [
        np.stack([128 + 100 * np.sin((x + 2 * i) / 10), 128 + 100 * np.cos((y - i) / 9), np.full_like(x, 60.0 + 5 * i)], -1)
        for i in range(t)
    ]
    return np.clip(out, 0, 255).astype(np.uint8)


def _audio(seconds=1.0, sr=SR):
    """(n,) float32 tone with a click at half time (to check alignment)."""
    t = np.arange(int(seconds * sr)) / sr
    a = 0.2 * np.sin(2 * np.pi * 440 * t)
    click = int(0.5 * seconds * sr)
    a[click : click + 80] = 0.9
    return a.astype(np.float32)


def _listing(d):
    return sorted(os.listdir(d))


# --------------------------------------------------------------------------- mp4


def test_mp4_round_trip(tmp_path):
    frames, audio = _frames(), _audio(1.0)
    path = tmp_path / "clip.mp4"
    write_video(path, frames, fps=25, audio=audio, sample_rate=SR)
    clip = read_video(path)
    assert isinstance(clip, VideoClip)
    assert clip.frames.shape == frames.shape and clip.frames.dtype == np.uint8
    assert clip.fps == pytest.approx(25.0)
    assert psnr(frames, clip.frames) > 30.0
    assert clip.audio is not None and clip.audio.dtype == np.float32 and clip.audio.ndim == 1
    assert clip.sample_rate == SR
    assert len(clip.audio) / clip.sample_rate == pytest.approx(1.0, abs=0.05)
    # The click stays where it was (no encoder-delay shift): within 2 ms.
    onset = np.argmax(np.abs(clip.audio) > 0.6)
    assert abs(onset - SR // 2) < 0.002 * SR
    assert _listing(tmp_path) == ["clip.mp4"]  # no temp file left behind


def test_mp4_without_audio_and_fractional_fps(tmp_path):
    path = tmp_path / "silent.mp4"
    write_video(path, _frames(12), fps=30000 / 1001)
    clip = read_video(path)
    assert clip.audio is None and clip.sample_rate is None
    assert clip.num_frames == 12
    assert clip.fps == pytest.approx(29.97, abs=1e-3)


def test_mp4_audio_resampling(tmp_path):
    path = tmp_path / "hi.mp4"
    write_video(path, _frames(), fps=25, audio=_audio(1.0, sr=22050), sample_rate=22050)
    native = read_video(path, sample_rate=None)
    assert native.sample_rate == 22050
    resampled = read_video(path)  # default: 16 kHz
    assert resampled.sample_rate == SR
    assert len(resampled.audio) == pytest.approx(SR, abs=0.02 * SR)


def test_mp4_odd_size_raises_clear_error(tmp_path):
    path = tmp_path / "odd.mp4"
    with pytest.raises(VideoError, match="even") as err:
        write_video(path, _frames(5, h=63, w=64), fps=25)
    assert str(path) in str(err.value)
    assert _listing(tmp_path) == []


def test_bad_arguments_leave_nothing(tmp_path):
    cases = [
        np.zeros((5, 64, 64), np.uint8),  # no channel axis
        np.zeros((5, 64, 64, 4), np.uint8),  # RGBA
        np.zeros((0, 64, 64, 3), np.uint8),  # no frames
        np.zeros((5, 64, 64, 3), np.float32),  # wrong dtype
    ]
    for suffix in (".mp4", ".npz"):
        for frames in cases:
            with pytest.raises(VideoError):
                write_video(tmp_path / f"bad{suffix}", frames, fps=25)
    with pytest.raises(VideoError, match="fps"):
        write_video(tmp_path / "bad.mp4", _frames(2), fps=0)
    with pytest.raises(VideoError, match="unsupported"):
        write_video(tmp_path / "bad.avi", _frames(2), fps=25)
    assert _listing(tmp_path) == []


@pytest.mark.parametrize("suffix", [".mp4", ".npz"])
def test_failure_mid_write_is_atomic(tmp_path, monkeypatch, suffix):
    path = tmp_path / f"clip{suffix}"
    write_video(path, _frames(4), fps=25)
    before = path.read_bytes()

    def boom(*args, **kwargs):
        raise RuntimeError("disk on fire")

    if suffix == ".mp4":
        # Let the encoder write the header and some frames, then fail.
        real = vio._encode_video

        def partial(container, stream, frames):
            real(container, stream, frames[:2])
            boom()

        monkeypatch.setattr(vio, "_encode_video", partial)
    else:
        monkeypatch.setattr(vio.np, "savez_compressed", boom)
    with pytest.raises(RuntimeError, match="disk on fire"):
        write_video(path, _frames(8), fps=25)
    assert _listing(tmp_path) == [path.name]  # temp file removed
    assert path.read_bytes() == before  # old content untouched


def test_fresh_failed_write_leaves_no_file(tmp_path, monkeypatch):
    monkeypatch.setattr(vio, "_encode_video", lambda *a: (_ for _ in ()).throw(RuntimeError("x")))
    with pytest.raises(RuntimeError):
        write_video(tmp_path / "new.mp4", _frames(3), fps=25)
    assert _listing(tmp_path) == []


def test_write_creates_parent_dirs_and_overwrites(tmp_path):
    path = tmp_path / "a" / "b" / "clip.mp4"
    write_video(path, _frames(3), fps=25)
    write_video(path, _frames(6), fps=25)
    assert read_video(path).num_frames == 6


# --------------------------------------------------------------------------- npz


def test_npz_round_trip_is_exact(tmp_path):
    frames = np.random.default_rng(0).integers(0, 256, (7, 33, 21, 3), dtype=np.uint8)  # odd sizes fine
    audio = np.random.default_rng(1).uniform(-1, 1, 4410).astype(np.float32)
    path = tmp_path / "clip.npz"
    write_video(path, frames, fps=12.5, audio=audio, sample_rate=44100)
    clip = read_video(path)
    np.testing.assert_array_equal(clip.frames, frames)
    np.testing.assert_array_equal(clip.audio, audio)
    assert (clip.fps, clip.sample_rate) == (12.5, 44100)
    assert _listing(tmp_path) == ["clip.npz"]

    write_video(path, frames, fps=25)
    silent = read_video(path)
    assert silent.audio is None and silent.sample_rate is None


# --------------------------------------------------------------------------- reading errors


def test_read_missing_file(tmp_path):
    path = tmp_path / "nope.mp4"
    with pytest.raises(VideoError, match="no such file") as err:
        read_video(path)
    assert str(path) in str(err.value)


@pytest.mark.parametrize("name", ["empty.mp4", "empty.npz"])
def test_read_empty_file(tmp_path, name):
    path = tmp_path / name
    path.write_bytes(b"")
    with pytest.raises(VideoError, match="empty") as err:
        read_video(path)
    assert str(path) in str(err.value)


@pytest.mark.parametrize("name", ["garbage.mp4", "garbage.webm", "garbage.npz"])
def test_read_unreadable_file_names_path(tmp_path, name):
    path = tmp_path / name
    path.write_bytes(b"this is not a video at all" * 40)
    with pytest.raises(VideoError, match="unreadable") as err:
        read_video(path)
    assert str(path) in str(err.value)


def test_read_truncated_mp4(tmp_path):
    path = tmp_path / "clip.mp4"
    write_video(path, _frames(), fps=25)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(VideoError) as err:
        read_video(path)
    assert str(path) in str(err.value)


def test_read_npz_without_frames(tmp_path):
    path = tmp_path / "other.npz"
    np.savez(path, x=np.zeros(3))
    with pytest.raises(VideoError, match="frames"):
        read_video(path)


def test_read_unsupported_suffix(tmp_path):
    path = tmp_path / "clip.txt"
    path.write_text("hello")
    with pytest.raises(VideoError, match="unsupported"):
        read_video(path)


@pytest.mark.skipif("libvpx-vp9" not in av.codecs_available, reason="no VP9 encoder")
def test_read_webm(tmp_path):
    frames = _frames(10)
    path = tmp_path / "clip.webm"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libvpx-vp9", rate=Fraction(25))
        stream.width, stream.height, stream.pix_fmt = 64, 64, "yuv420p"
        stream.options = {"crf": "10", "b": "0"}
        for i, f in enumerate(frames):
            vf = av.VideoFrame.from_ndarray(f, format="rgb24")
            vf.pts = i
            container.mux(stream.encode(vf))
        container.mux(stream.encode(None))
    clip = read_video(path)
    assert clip.num_frames == 10 and clip.fps == pytest.approx(25.0)
    assert psnr(frames, clip.frames) > 28.0
    assert clip.audio is None


def test_video_error_is_value_error():
    assert issubclass(VideoError, ValueError)
