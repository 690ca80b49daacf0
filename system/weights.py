"""Exported weights: the files a finished stage hands to generation, the next stage and other people.

Layout of an export (runs/NAME/fit/, or any directory):
    weights.safetensors        the DiT (EMA when on)
    text_encoder.safetensors   the learned text encoder, when the run trained one (the ablation)
    config.json                the run's resolved config (like diffusers' save_pretrained), so
                               `generate --weights DIR` rebuilds the model without naming the experiment
    weights.json               what they are: step, stage, EMA
Shared weights are safetensors (loading them runs no code); a Lightning .ckpt is read with
weights_only=True (common/safe_load.py). Trade-off: two tensor files instead of one keep
weights.safetensors exactly the DiT's state dict (Wan key names), which the converters and parity tests
rely on, at the price of one more file for the one ablation that trains its text encoder.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from common.atomic import atomic_write, atomic_write_text
from common.errors import CheckpointError
from common.safe_load import load_checkpoint_file
from models.convert import NEW_MODULE_PATTERN

WEIGHTS = "weights.safetensors"
TEXT_ENCODER = "text_encoder.safetensors"
CONFIG = "config.json"


def _tensors(state: dict) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu().contiguous() for k, v in state.items() if torch.is_tensor(v)}


def save_weights(state: dict[str, torch.Tensor], run_dir: Path, meta: dict, config: dict | None = None,
                 text_encoder: dict[str, torch.Tensor] | None = None) -> Path:
    """Atomically write weights.safetensors (+ text_encoder.safetensors when given, config.json when given,
    weights.json describing them) into `run_dir`."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    path = atomic_write(run_dir / WEIGHTS, lambda tmp: save_file(_tensors(state), tmp))
    if text_encoder:
        save_text_encoder(text_encoder, run_dir / TEXT_ENCODER)
    if config is not None:
        atomic_write_text(run_dir / CONFIG, json.dumps(config, indent=1, default=str))
    atomic_write_text(run_dir / "weights.json", json.dumps(meta | {"text_encoder": bool(text_encoder)},
                                                           indent=1, default=str))
    return path


def save_text_encoder(state: dict, path: Path) -> Path:
    """The learned text encoder's tensors, with its non-tensor extra state (the vocabulary, checked on load)
    as JSON in the safetensors metadata."""
    extra = {k: v for k, v in state.items() if not torch.is_tensor(v)}
    metadata = {"extra_state": json.dumps(extra)} if extra else None
    return atomic_write(Path(path), lambda tmp: save_file(_tensors(state), tmp, metadata=metadata))


def weights_config(source: str | Path) -> dict | None:
    """The resolved run config saved beside exported weights (config.json), or None if there is none."""
    path = resolve_weights(source).parent / CONFIG
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise CheckpointError(f"{path}: cannot read the config saved with these weights ({error})") from None


def weights_description(source: str | Path) -> dict:
    """The JSON sidecar written beside exported weights (weights.json / <file>.json), {} when there is none
    (a .ckpt, or weights written before sidecars)."""
    path = resolve_weights(source).with_suffix(".json")
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise CheckpointError(f"{path}: cannot read the description saved with these weights ({error})") from None


def check_codec(source: str | Path, codec_key: str) -> None:
    """Weights trained in another latent space (another codec fit, channels or data) would load without a
    shape error and silently produce noise: refuse them when both sides know their codec."""
    trained = weights_description(source).get("codec_key") or ""
    if trained and codec_key and trained != codec_key:
        raise CheckpointError(
            f"{resolve_weights(source)}: trained on codec {trained!r} but this config builds codec {codec_key!r} "
            "(model.codec.* or the data its codec is fitted on, e.g. data.seed / resolution / model.codec.fit_clips, "
            "differ from that run's config.json)")


def read_text_encoder(source: str | Path) -> dict[str, torch.Tensor] | None:
    """The learned text encoder exported beside the DiT weights (None when the run trained none)."""
    path = resolve_weights(source)
    if path.suffix != ".safetensors":  # a .ckpt holds it in its state_dict under "text_encoder."
        state = load_checkpoint_file(path).get("state_dict", {})
        found = {k[len("text_encoder."):]: v for k, v in state.items() if k.startswith("text_encoder.")}
        return found or None
    file = path.parent / TEXT_ENCODER
    if not file.is_file():
        return None
    with safe_open(str(file), "pt") as handle:
        extra = json.loads((handle.metadata() or {}).get("extra_state", "{}"))
    return load_file(str(file)) | extra


def resolve_weights(source: str | Path) -> Path:
    """A run dir (runs/NAME/fit), a weights .safetensors or a Lightning .ckpt -> the file to read."""
    path = Path(source)
    if path.is_dir() and (path / WEIGHTS).is_file():
        return path / WEIGHTS
    if path.is_dir() and (path / "fit" / WEIGHTS).is_file():
        return path / "fit" / WEIGHTS
    if path.is_file():
        return path
    raise CheckpointError(f"{path}: no weights found (expected a run directory containing {WEIGHTS}, "
                          "a .safetensors file or a .ckpt file); did that stage finish?")


def read_weights(source: str | Path) -> dict[str, torch.Tensor]:
    path = resolve_weights(source)
    try:
        if path.suffix == ".safetensors":
            return load_file(str(path))
        state = load_checkpoint_file(path)
    except CheckpointError:
        raise
    except Exception as error:
        raise CheckpointError(f"{path}: cannot read weights ({type(error).__name__}: {error})") from error
    if "state_dict" not in state:
        raise CheckpointError(f"{path}: not a Lightning checkpoint (no 'state_dict')")
    return {k[len("model."):]: v for k, v in state["state_dict"].items() if k.startswith("model.")}


def load_stage_weights(model: torch.nn.Module, source: str | Path) -> dict:
    """Initialise `model` from an earlier stage. Only ActSync's new zero-init modules may be missing
    (e.g. phase embeddings added in ActAvatar stage 2); weights the model lacks are an error."""
    state = read_weights(source)
    own = model.state_dict()
    missing = [k for k in own if k not in state and not NEW_MODULE_PATTERN.fullmatch(k)]
    unexpected = [k for k in state if k not in own]
    # checked before loading: torch raises a RuntimeError (not naming the file) on a shape mismatch
    shapes = [f"{k} {tuple(v.shape)} vs {tuple(own[k].shape)}" for k, v in state.items()
              if k in own and v.shape != own[k].shape]
    if missing or unexpected or shapes:
        raise CheckpointError(
            f"{resolve_weights(source)}: does not fit this model: missing {missing[:5]} "
            f"unexpected {unexpected[:5]} shape (file vs model) {shapes[:3]} "
            "(is model.* the same as in that stage?)")
    result = model.load_state_dict(state, strict=False)
    return {"loaded": len(state), "new_modules": len(result.missing_keys)}
