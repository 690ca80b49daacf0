"""Generation requests from files: (reference image, audio, structured prompt) -> model inputs.

A request comes from the command line (`--reference IMG --audio WAV --prompt FILE`) or from one line of a
JSONL batch file: {"reference": path, "audio": path, "prompt": path or an inline structured-prompt JSON
object, "name": optional output stem}; relative paths are resolved against the JSONL file's directory.

- reference: png/jpg, converted to RGB, centre-cropped to a square if it is not one, resized to
  data.resolution (bicubic) and scaled to [-1, 1] as (3, H, W), like the datamodule's reference frame.
- audio: wav/flac/mp3 read with librosa at data.sample_rate, mixed to mono. The clip has
  T = round(duration * data.fps) frames; the waveform is trimmed or zero-padded (by less than half a
  frame) to exactly T / fps seconds, so video, audio features and the muxed track have one length.
- prompt: models.prompt.load_prompt(path, duration) (or from_json for an inline object), checked
  against the audio's duration; the batch gets its JSON form (to_json, what
  models/prompt_tokens.structured_prompts reads, as in datamodules/synth_avatar.collate) with
  duration = T / fps. A window that ends within that half-frame rounding past T / fps is cut to T / fps.

Every fault raises the project's input errors (VideoError for images, AudioError, PromptError, DataError
for the request file itself) with the file and the fault in the message; inside a JSONL file the message
starts with `<file> line <n>:`. All requests are read and checked before any model is built.
Trade-off: requests are loaded into memory up front (a 4 s request is about 0.3 MB), which is what lets a
bad line fail in a second instead of after an hour of generating the lines before it.
"""
from __future__ import annotations

import json
import re
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from common.audio_io import validate_waveform
from common.errors import AudioError
from common.video_io import VideoError
from models.contracts import ClipBatch
from models.prompt import PromptError, StructuredPrompt, from_json, load_prompt, to_json, validate
from synthavatar.dataset import DataError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
AUDIO_SUFFIXES = (".wav", ".flac", ".mp3")
REQUEST_FIELDS = ("reference", "audio", "prompt", "name")
REQUIRED_FIELDS = ("reference", "audio", "prompt")
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
INPUT_ERRORS = (VideoError, AudioError, PromptError, DataError)


@dataclass
class Request:
    name: str  # output stem: <name>.mp4
    reference: torch.Tensor  # (3, H, W) float in [-1, 1]
    audio: np.ndarray  # float32 (round(T * sample_rate / fps),)
    prompt: dict  # structured prompt, JSON form, duration = T / fps
    num_frames: int  # T
    audio_path: Path
    source: str = ""  # where it came from, e.g. "requests.jsonl line 3"
    meta: dict = field(default_factory=dict)


# ------------------------------------------------------------------------------------------ inputs


def load_reference(path: str | Path, resolution: int) -> torch.Tensor:
    """png/jpg -> (3, resolution, resolution) float in [-1, 1] (centre crop to square, bicubic resize)."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    path = Path(path)
    if not path.is_file():
        raise VideoError(f"{path}: reference image does not exist" if not path.exists()
                         else f"{path}: reference image is not a regular file")
    if path.suffix.lower() not in IMAGE_SUFFIXES:
        raise VideoError(f"{path}: unsupported reference image type '{path.suffix}' (expected .png or .jpg)")
    try:
        with Image.open(path) as image:
            image = ImageOps.exif_transpose(image).convert("RGB")
    except (UnidentifiedImageError, OSError, ValueError) as error:
        raise VideoError(f"{path}: cannot read reference image ({type(error).__name__}: {error})") from None
    w, h = image.size
    side = min(w, h)
    if w != h:
        left, top = (w - side) // 2, (h - side) // 2
        image = image.crop((left, top, left + side, top + side))
    if side != resolution:
        image = image.resize((resolution, resolution), Image.Resampling.BICUBIC)
    pixels = torch.from_numpy(np.asarray(image, dtype=np.float32).copy())  # (H, W, 3)
    return pixels.permute(2, 0, 1).div(127.5).sub(1.0)


def load_request_audio(path: str | Path, sample_rate: int) -> np.ndarray:
    """wav/flac/mp3 -> mono float32 (N,) at `sample_rate` (librosa), checked (not empty, finite)."""
    import librosa

    path = Path(path)
    if not path.is_file():
        raise AudioError(f"{path}: audio file does not exist" if not path.exists()
                         else f"{path}: audio path is not a regular file")
    if path.suffix.lower() not in AUDIO_SUFFIXES:
        raise AudioError(f"{path}: unsupported audio type '{path.suffix}' (expected .wav, .flac or .mp3)")
    try:
        with warnings.catch_warnings():  # librosa warns when it falls back from soundfile to audioread (mp3)
            warnings.simplefilter("ignore")
            wave, _ = librosa.load(str(path), sr=sample_rate, mono=True)
    except Exception as error:  # soundfile / audioread / decoder errors of every kind
        raise AudioError(f"{path}: cannot read audio ({type(error).__name__}: {error})") from None
    return validate_waveform(wave, sample_rate, sample_rate, source=str(path))


def clip_frames(num_samples: int, sample_rate: int, fps: float) -> int:
    """T = round(duration * fps)."""
    return int(round(num_samples / sample_rate * fps))


def fit_to_frames(wave: np.ndarray, num_frames: int, sample_rate: int, fps: float) -> np.ndarray:
    """Trim or zero-pad the waveform to exactly num_frames / fps seconds."""
    n = int(round(num_frames * sample_rate / fps))
    return wave[:n] if len(wave) >= n else np.concatenate([wave, np.zeros(n - len(wave), np.float32)])


def load_request_prompt(prompt: str | Path | dict, duration: float, clip_seconds: float,
                        source: str = "prompt") -> dict:
    """A prompt file or inline JSON object, checked against the audio's `duration`, as the JSON form with
    duration = clip_seconds (windows ending in the rounding gap past clip_seconds end at clip_seconds)."""
    if isinstance(prompt, dict):
        structured = from_json(prompt, source=source, duration=duration)
    elif isinstance(prompt, (str, Path)):
        path = Path(prompt)
        structured = load_prompt(path, duration=duration)
        source = str(path)
    else:
        raise PromptError(f"{source}: expected a prompt file path or a structured-prompt JSON object, "
                          f"got {type(prompt).__name__}")
    if clip_seconds < duration:
        phases = tuple(p if p.end <= clip_seconds else type(p)(p.start, clip_seconds, p.text, p.action)
                       for p in structured.phases)
        structured = StructuredPrompt(structured.base, phases, None)
    return to_json(validate(structured, duration=clip_seconds, source=source))


def load_request(reference, audio, prompt, data_cfg, name: str, source: str = "") -> Request:
    """Load and check one request's inputs (paths already resolved)."""
    sample_rate, fps = int(data_cfg.sample_rate), float(data_cfg.fps)
    image = load_reference(reference, int(data_cfg.resolution))
    wave = load_request_audio(audio, sample_rate)
    duration = len(wave) / sample_rate
    num_frames = clip_frames(len(wave), sample_rate, fps)
    if num_frames < 2:
        raise AudioError(f"{audio}: audio is {duration:.3f} s long, {num_frames} video frame(s) at {fps:g} fps; "
                         "a clip needs at least 2 frames")
    prompt_json = load_request_prompt(prompt, duration, num_frames / fps)
    return Request(name, image, fit_to_frames(wave, num_frames, sample_rate, fps), prompt_json, num_frames,
                   Path(audio), source)


def single_request(reference, audio, prompt, data_cfg, name: str | None = None) -> Request:
    """The command line's --reference/--audio/--prompt; the output is named after the audio file."""
    return load_request(Path(reference), Path(audio), Path(prompt), data_cfg, name or Path(audio).stem,
                        source="command line")


# ------------------------------------------------------------------------------------------ JSONL


def _prefixed(error: Exception, prefix: str) -> Exception:
    return type(error)(f"{prefix}: {error}")


def _resolve(value, key: str, base: Path, where: str) -> Path:
    if not isinstance(value, str) or not value.strip():
        raise DataError(f"{where}: field '{key}' must be a non-empty path string, got {value!r}")
    path = Path(value).expanduser()
    return path if path.is_absolute() else base / path


def _parse_line(text: str, where: str) -> dict:
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as error:
        raise DataError(f"{where}: not valid JSON ({error.msg} at column {error.colno})") from None
    if not isinstance(obj, dict):
        raise DataError(f"{where}: expected a JSON object {{reference, audio, prompt[, name]}}, "
                        f"got {type(obj).__name__}")
    for key in obj:
        if key not in REQUEST_FIELDS:
            import difflib
            close = difflib.get_close_matches(str(key), REQUEST_FIELDS, n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            raise DataError(f"{where}: unknown field '{key}'{hint}; fields: {', '.join(REQUEST_FIELDS)}")
    missing = [key for key in REQUIRED_FIELDS if key not in obj]
    if missing:
        raise DataError(f"{where}: missing field{'s' if len(missing) > 1 else ''} "
                        f"{', '.join(repr(m) for m in missing)}")
    return obj


def read_requests(path: str | Path, data_cfg) -> list[Request]:
    """Every request of a JSONL file (blank lines and lines starting with # are skipped), checked."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: requests file does not exist" if not path.exists()
                        else f"{path}: requests path is not a regular file")
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as error:
        raise DataError(f"{path}: cannot read requests file ({type(error).__name__}: {error})") from None
    base = path.resolve().parent
    requests, names = [], {}
    for number, text in enumerate(lines, start=1):
        if not text.strip() or text.lstrip().startswith("#"):
            continue
        where = f"{path} line {number}"
        obj = _parse_line(text, where)
        name = obj.get("name")
        if name is None:
            name = f"line{number:04d}"
        elif not isinstance(name, str) or not NAME.match(name):
            raise DataError(f"{where}: field 'name' must be a file stem of letters, digits, '.', '_' or '-' "
                            f"(no path), got {name!r}")
        if name in names:
            raise DataError(f"{where}: name {name!r} is already used by line {names[name]}")
        names[name] = number
        reference = _resolve(obj["reference"], "reference", base, where)
        audio = _resolve(obj["audio"], "audio", base, where)
        prompt = obj["prompt"] if isinstance(obj["prompt"], dict) else _resolve(obj["prompt"], "prompt", base, where)
        try:
            requests.append(load_request(reference, audio, prompt, data_cfg, name, source=where))
        except INPUT_ERRORS as error:
            raise _prefixed(error, where) from None
    if not requests:
        raise DataError(f"{path}: no requests (expected one JSON object per line)")
    return requests


# ------------------------------------------------------------------------------------------ batches


def batches(requests: list[Request], batch_size: int) -> Iterator[tuple[list[int], ClipBatch]]:
    """(positions, batch) for runs of consecutive requests of equal length, at most batch_size each; the
    ClipBatch has what ConditionEncoder.prepare_inference reads (reference, audio, prompt), no video."""
    start = 0
    while start < len(requests):
        end = start + 1
        while (end < len(requests) and end - start < batch_size
               and requests[end].num_frames == requests[start].num_frames):
            end += 1
        group = requests[start:end]
        yield list(range(start, end)), ClipBatch(
            reference=torch.stack([r.reference for r in group]),
            audio=torch.from_numpy(np.stack([r.audio for r in group])),
            prompt=[r.prompt for r in group], num_frames=group[0].num_frames)
        start = end
