"""Local Hugging Face model directories: the one existence check and load-error wrapper of every loader
that reads a pretrained model (umT5 / MiniLM text encoders, wav2vec2, the visual reference encoder, the
RL policy, the vision-language attribute model).

Model hubs are never contacted (local_files_only=True everywhere), so a wrong path must say which
component wanted which directory and what is missing there, in one line. Trade-off: transformers' own
message is kept verbatim after ours (long, but it names the missing file).
"""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")


def local_model_dir(path: str | Path, what: str, setting: str = "") -> Path:
    """`path` as a local HF-format model directory (config.json inside), or FileNotFoundError naming
    `what` (e.g. "wav2vec2 audio encoder"), the config key that sets it and the fault."""
    key = f" ({setting})" if setting else ""
    if not str(path).strip():
        raise FileNotFoundError(f"{what}: {setting or 'the model path'} is empty; it needs a local model directory "
                                "(config.json and the weights); no download is attempted")
    directory = Path(path).expanduser()
    if not directory.is_dir():
        raise FileNotFoundError(f"{what}: model directory {directory}{key} does not exist (no download is attempted)")
    if not (directory / "config.json").is_file():
        raise FileNotFoundError(f"{what}: {directory / 'config.json'} is missing (expected a directory written by "
                                "save_pretrained)")
    return directory


def load_local(directory: Path, what: str, load: Callable[..., T], component: str = "model", **kwargs) -> T:
    """load(directory, local_files_only=True, **kwargs) (e.g. AutoModel.from_pretrained); the errors
    transformers raises for a broken directory become one OSError naming `what` and the directory."""
    try:
        return load(directory, local_files_only=True, **kwargs)
    except (OSError, ValueError) as error:
        raise OSError(f"{what}: cannot load {component} from {directory}: {error}") from error


IMAGENET_MEAN_STD = ([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])


def image_normalisation(directory: Path):
    """The (1, 3, 1, 1) mean and std a vision model's directory says it was trained with (its
    preprocessor_config.json image_mean / image_std), ImageNet's when it does not say."""
    import json

    import torch
    mean, std = IMAGENET_MEAN_STD
    processor = Path(directory) / "preprocessor_config.json"
    if processor.is_file():
        spec = json.loads(processor.read_text())
        mean, std = spec.get("image_mean", mean), spec.get("image_std", std)
    return (torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1),
            torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1))
