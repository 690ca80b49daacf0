"""Video reading and writing for ActSync (mp4 / webm / lossless npz).

We use PyAV (FFmpeg bindings) directly because torchvision cannot be installed
on our CPU machines (its CUDA wheel breaks lightning/transformers there), so
``torchvision.io`` is not an option.

* ``write_video`` writes H.264 mp4 (libx264, optional AAC mono audio) or a
  lossless ``.npz``; writes are atomic (temporary file in the same directory,
  then ``os.replace``), so a crash never leaves a half-written video at the
  target path.
* ``read_video`` returns a ``VideoClip`` with uint8 RGB frames (T, H, W, 3),
  fps, and mono float32 audio.

All faults (missing, empty, unreadable, undecodable files, bad arguments)
raise ``VideoError`` with the path in the message.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from common.atomic import atomic_write
from common.errors import VideoError

__all__ = ["VideoError", "VideoClip", "write_video", "read_video", "read_audio_track"]

VIDEO_SUFFIXES = (".mp4", ".webm", ".mov", ".mkv")  # anything FFmpeg demuxes; we write mp4 only
AUDIO_CHUNK = 1024  # samples per audio frame handed to the encoder (AAC frame size)


@dataclass
class VideoClip:
    """A decoded clip.

    frames: uint8 (T, H, W, 3) RGB; fps: frames per second;
    audio: float32 (N,) mono in [-1, 1] or None; sample_rate: Hz or None.
    """

    frames: np.ndarray
    fps: float
    audio: np.ndarray | None = None
    sample_rate: int | None = None

    @property
    def num_frames(self) -> int:
        return int(self.frames.shape[0])

    @property
    def duration(self) -> float:
        """Video duration in seconds (T / fps)."""
        return self.num_frames / self.fps


# --------------------------------------------------------------------------- writing


def _check_frames(path: Path, frames: np.ndarray) -> np.ndarray:
    frames = np.asarray(frames)
    if frames.dtype != np.uint8:
        raise VideoError(f"{path}: frames must be uint8, got {frames.dtype}")
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.shape[0] == 0:
        raise VideoError(f"{path}: frames must have shape (T>0, H, W, 3), got {frames.shape}")
    return frames


def _check_audio(path: Path, audio, sample_rate: int) -> np.ndarray | None:
    if audio is None:
        return None
    audio = np.asarray(audio, dtype=np.float32)
    if audio.ndim == 2 and audio.shape[1] == 1:  # (N, 1) -> (N,)
        audio = audio[:, 0]
    if audio.ndim != 1:
        raise VideoError(f"{path}: audio must be mono (N,), got shape {audio.shape}")
    if sample_rate <= 0:
        raise VideoError(f"{path}: sample_rate must be positive, got {sample_rate}")
    return audio


def _write_npz(tmp: str, frames: np.ndarray, fps: float, audio, sample_rate: int) -> None:
    arrays = {"frames": frames, "fps": np.float64(fps)}
    if audio is not None:  # no audio -> keys absent, read back as None
        arrays.update(audio=audio, sample_rate=np.int64(sample_rate))
    # Write through a file object: savez would append ".npz" to a bare name.
    with open(tmp, "wb") as f:
        np.savez_compressed(f, **arrays)


def _add_video_stream(container, shape: tuple[int, ...], fps: float, crf: int, pix_fmt: str):
    rate = Fraction(fps).limit_denominator(1001)  # 29.97 -> 30000/1001
    stream = container.add_stream("libx264", rate=rate)
    stream.height, stream.width = shape[1:3]
    stream.pix_fmt = pix_fmt
    stream.options = {"crf": str(crf)}
    stream.codec_context.time_base = 1 / rate  # pts counts frames
    return stream


def _encode_video(container, stream, frames: np.ndarray) -> None:
    """Encode (T, H, W, 3) uint8 RGB frames as H.264."""
    for i, rgb in enumerate(frames):
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
        frame.pts = i
        container.mux(stream.encode(frame))
    container.mux(stream.encode(None))  # flush delayed (B-)frames


def _encode_audio(container, stream, audio: np.ndarray, sample_rate: int) -> None:
    """Encode mono float32 (N,) audio as AAC, in AUDIO_CHUNK-sample frames."""
    samples = np.clip(audio, -1.0, 1.0)  # AAC expects [-1, 1]; clipping beats wrap-around
    for start in range(0, samples.shape[0], AUDIO_CHUNK):
        chunk = samples[start : start + AUDIO_CHUNK][None]  # (1, n) planar
        frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(chunk), format="fltp", layout="mono")
        frame.sample_rate = sample_rate
        frame.pts = start
        container.mux(stream.encode(frame))
    container.mux(stream.encode(None))


def _write_mp4(tmp: str, frames: np.ndarray, fps: float, audio, sample_rate: int, crf: int, pix_fmt: str) -> None:
    with av.open(tmp, mode="w", format="mp4") as container:
        # Every stream must exist before the first mux() writes the header.
        vstream = _add_video_stream(container, frames.shape, fps, crf, pix_fmt)
        has_audio = audio is not None and audio.size > 0
        astream = container.add_stream("aac", rate=sample_rate, layout="mono") if has_audio else None
        _encode_video(container, vstream, frames)
        if astream is not None:
            _encode_audio(container, astream, audio, sample_rate)


def write_video(
    path,
    frames: np.ndarray,
    fps: float,
    audio: np.ndarray | None = None,
    sample_rate: int = 16000,
    crf: int = 12,
    pix_fmt: str = "yuv420p",
) -> None:
    """Atomically write uint8 RGB frames (T, H, W, 3) at ``fps`` to ``path``.

    ``.mp4``: H.264 (libx264, ``crf``, ``pix_fmt``); H and W must be even
    (chroma subsampling), with optional mono float32 audio (N,) at
    ``sample_rate`` muxed as AAC.  ``.npz``: lossless ``np.savez_compressed``
    with keys frames, fps and (if audio is given) audio, sample_rate.
    Raises VideoError for bad arguments or encoder failures; ``path`` is then
    left as it was.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".mp4", ".npz"):
        raise VideoError(f"{path}: unsupported output format {suffix!r} (use .mp4 or .npz)")
    frames = _check_frames(path, frames)
    audio = _check_audio(path, audio, sample_rate)
    if not fps or fps <= 0:
        raise VideoError(f"{path}: fps must be positive, got {fps}")

    if suffix == ".npz":
        atomic_write(path, lambda tmp: _write_npz(tmp, frames, fps, audio, sample_rate))
        return
    h, w = frames.shape[1:3]
    if h % 2 or w % 2:
        raise VideoError(f"{path}: H.264 mp4 needs even height and width, got {h}x{w} (crop or pad by one pixel)")
    try:
        atomic_write(path, lambda tmp: _write_mp4(tmp, frames, fps, audio, sample_rate, crf, pix_fmt))
    except av.FFmpegError as e:
        raise VideoError(f"{path}: encoding failed: {e}") from e


# --------------------------------------------------------------------------- reading


def _read_npz(path: Path) -> VideoClip:
    try:
        with np.load(path, allow_pickle=False) as data:
            if "frames" not in data or "fps" not in data:
                raise VideoError(f"{path}: npz has no 'frames'/'fps' arrays (keys: {sorted(data.files)})")
            frames = data["frames"]
            fps = float(data["fps"])
            audio = data["audio"].astype(np.float32) if "audio" in data else None
            sample_rate = int(data["sample_rate"]) if "sample_rate" in data else None
    except VideoError:
        raise
    except Exception as e:  # BadZipFile, pickle refusal, truncated data...
        raise VideoError(f"{path}: unreadable npz ({type(e).__name__}: {e})") from e
    if frames.ndim != 4 or frames.shape[0] == 0:
        raise VideoError(f"{path}: npz holds no frames (shape {frames.shape})")
    return VideoClip(frames.astype(np.uint8, copy=False), fps, audio, sample_rate)


def _stream_fps(stream) -> float:
    # average_rate is measured from the container; guessed/base rates are fallbacks
    # for streams (e.g. some webm) that do not report it.
    for rate in (stream.average_rate, stream.guessed_rate, stream.base_rate):
        if rate:
            return float(rate)
    return 0.0


class _AudioCollector:
    """Mono float32 accumulator that resamples decoded frames to ``rate`` Hz."""

    def __init__(self, rate: int):
        self.rate = int(rate)
        self.resampler = av.AudioResampler(format="flt", layout="mono", rate=self.rate)
        self.chunks: list[np.ndarray] = []

    def add(self, frame) -> None:  # frame=None flushes the resampler
        self.chunks += [f.to_ndarray().reshape(-1) for f in self.resampler.resample(frame)]

    def result(self) -> np.ndarray:
        self.add(None)
        return np.concatenate(self.chunks).astype(np.float32) if self.chunks else np.zeros(0, np.float32)


def _decode(container, sample_rate: int | None) -> tuple[list[np.ndarray], np.ndarray | None, int | None]:
    """One demux pass over the first video and audio streams -> RGB frames, audio, rate."""
    vstream = container.streams.video[0]
    astream = container.streams.audio[0] if container.streams.audio else None
    audio = _AudioCollector(sample_rate or astream.codec_context.sample_rate) if astream else None
    frames = []  # each (H, W, 3) uint8
    for packet in container.demux(*[s for s in (vstream, astream) if s is not None]):
        for frame in packet.decode():  # packet.decode() also flushes at the end (empty packet)
            if packet.stream is vstream:
                frames.append(frame.to_ndarray(format="rgb24"))
            else:
                audio.add(frame)
    if audio is None:
        return frames, None, None
    return frames, _trimmed(audio.result(), astream, audio.rate), audio.rate


def _trimmed(samples: np.ndarray, astream, rate: int) -> np.ndarray:
    if astream.duration is not None:
        # AAC pads its last frame to 1024 samples; trim to the muxed duration.
        samples = samples[: round(float(astream.duration * astream.time_base) * rate)]
    return samples


def read_audio_track(path, sample_rate: int) -> np.ndarray:
    """The first audio stream of a container (mp4, wav, ...) as mono float32 at ``sample_rate``, decoded
    without touching the video: the same samples ``read_video`` returns. VideoError if there is none."""
    path = Path(path)
    try:
        with av.open(str(path)) as container:
            if not container.streams.audio:
                raise VideoError(f"{path}: no audio stream")
            astream = container.streams.audio[0]
            audio = _AudioCollector(sample_rate)
            for frame in container.decode(astream):
                audio.add(frame)
            return _trimmed(audio.result(), astream, audio.rate)
    except av.FFmpegError as e:
        raise VideoError(f"{path}: unreadable audio ({getattr(e, 'strerror', None) or e})") from e


def _read_av(path: Path, sample_rate: int | None) -> VideoClip:
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise VideoError(f"{path}: no video stream")
            fps = _stream_fps(container.streams.video[0])
            frames, audio, rate = _decode(container, sample_rate)
    except VideoError:
        raise
    except (av.FFmpegError, UnicodeDecodeError) as e:
        # FFmpegError.strerror omits the file name we already prefix.
        raise VideoError(f"{path}: unreadable video ({getattr(e, 'strerror', None) or e})") from e
    if not frames:
        raise VideoError(f"{path}: no decodable video frames")
    if fps <= 0:
        raise VideoError(f"{path}: stream reports no frame rate")
    return VideoClip(np.stack(frames), fps, audio, rate)


def read_video(path, sample_rate: int | None = 16000) -> VideoClip:
    """Read ``.mp4`` / ``.webm`` (/ .mov / .mkv) or ``.npz`` into a VideoClip.

    Frames come back as uint8 RGB (T, H, W, 3).  Container audio is decoded to
    mono float32 and resampled to ``sample_rate`` Hz with av.AudioResampler
    (``None`` keeps the native rate, reported in ``clip.sample_rate``); npz
    audio is returned exactly as stored.  Missing, empty, unreadable or
    frameless files raise VideoError naming the path and the fault.
    """
    path = Path(path)
    if not path.exists():
        raise VideoError(f"{path}: no such file")
    if not path.is_file():
        raise VideoError(f"{path}: not a regular file")
    if path.stat().st_size == 0:
        raise VideoError(f"{path}: empty file (0 bytes)")
    suffix = path.suffix.lower()
    if suffix == ".npz":
        return _read_npz(path)
    if suffix not in VIDEO_SUFFIXES:
        raise VideoError(f"{path}: unsupported format {suffix!r} (expected .npz or one of {VIDEO_SUFFIXES})")
    return _read_av(path, sample_rate)
