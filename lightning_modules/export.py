"""`main.py export`: one consolidated safetensors file of the DiT weights from any training checkpoint.

Sources:
- a sharded DeepSpeed ZeRO-3 step checkpoint (a directory with `latest`): the fp32 master weights are
  gathered from every rank's optimizer shard (DeepSpeed's zero_to_fp32, which Lightning's
  `convert_zero_checkpoint_to_fp32_state_dict` wraps; called directly so no intermediate full pickle
  is written), any world size;
- a plain Lightning `.ckpt`: `state_dict`, with the trained weights replaced by the EMA shadow stored
  under checkpoint["ema"]["shadow"] when present (`ema=False`/`--no-ema` takes the raw weights);
- a fit run directory (runs/NAME/fit): its newest complete step checkpoint.
The output has the format of system/weights.save_weights (keys without the `model.` prefix, plain
safetensors, a JSON sidecar saying what it is), so read_weights / `generate` / `train.init_from` read it.
Written atomically. Trade-off: the whole fp32 state is held in CPU memory once (about 20 GB for 5B).
"""
from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import save_file

from common.atomic import atomic_write, atomic_write_text
from common.errors import CheckpointError
from common.safe_load import load_checkpoint_file
from lightning_modules.checkpoints import find_resume_checkpoint
from lightning_modules.distributed import deepspeed_tag_dir, is_deepspeed_checkpoint, saved_world_size
from system.weights import CONFIG, TEXT_ENCODER, save_text_encoder

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}
PREFIX = "model."
TEXT_PREFIX = "text_encoder."


def resolve_checkpoint(source: str | Path) -> Path:
    """A step checkpoint (file or DeepSpeed dir), its DeepSpeed tag dir, or a fit run dir -> the checkpoint."""
    path = Path(source)
    if is_deepspeed_checkpoint(path) or path.is_file():
        return path
    if path.is_dir() and is_deepspeed_checkpoint(path.parent):  # .../step-X.ckpt/checkpoint
        return path.parent
    if path.is_dir():
        found = find_resume_checkpoint(path / "checkpoints" if (path / "checkpoints").is_dir() else path)
        if found is not None:
            return found
    raise CheckpointError(f"{path}: not a checkpoint (expected a Lightning .ckpt file, a DeepSpeed step "
                          "checkpoint directory or a fit run directory with complete checkpoints)")


def _dit_weights(state_dict: dict) -> dict[str, torch.Tensor]:
    return {k[len(PREFIX):]: v for k, v in state_dict.items() if k.startswith(PREFIX)}


def _deepspeed_state(path: Path) -> tuple[dict[str, torch.Tensor], dict]:
    from deepspeed.utils.zero_to_fp32 import get_fp32_state_dict_from_zero_checkpoint

    tag_dir = deepspeed_tag_dir(path)
    state = get_fp32_state_dict_from_zero_checkpoint(str(path), tag=tag_dir.name)
    client = load_checkpoint_file(sorted(tag_dir.glob("*model_states.pt"))[0])
    meta = {"global_step": client.get("global_step"), "ema": False, "world_size": saved_world_size(path)}
    return _dit_weights({k.removeprefix("_forward_module."): v for k, v in state.items()}), meta


def _lightning_state(path: Path, ema: bool) -> tuple[dict[str, torch.Tensor], dict]:
    checkpoint = load_checkpoint_file(path, mmap=True)
    if "state_dict" not in checkpoint:
        raise CheckpointError(f"{path}: not a Lightning checkpoint (no 'state_dict')")
    state = _dit_weights(checkpoint["state_dict"])
    shadow = (checkpoint.get("ema") or {}).get("shadow") if ema else None
    if shadow:  # EMA names are the DiT's own parameter names (lightning_modules/ema.py)
        unknown = sorted(set(shadow) - set(state))
        if unknown:
            raise CheckpointError(f"{path}: EMA shadow names weights the model lacks: {unknown[:5]}")
        state.update(shadow)
    return state, {"global_step": checkpoint.get("global_step"), "ema": bool(shadow)}


def consolidate(source: str | Path, ema: bool = True) -> tuple[dict[str, torch.Tensor], dict]:
    """(DiT state dict without the `model.` prefix, description) of a checkpoint (see resolve_checkpoint)."""
    path = resolve_checkpoint(source)
    state, meta = _deepspeed_state(path) if path.is_dir() else _lightning_state(path, ema)
    if not state:
        raise CheckpointError(f"{path}: no '{PREFIX}*' weights in this checkpoint")
    return state, meta | {"source": str(path)}


def default_output(checkpoint: Path) -> Path:
    """runs/NAME/fit/checkpoints/step-00000100.ckpt -> runs/NAME/fit/checkpoints/step-00000100.safetensors."""
    return checkpoint.with_suffix(".safetensors")


def text_encoder_weights(source: str | Path, ema: bool = True) -> dict[str, torch.Tensor]:
    """The learned text encoder a Lightning checkpoint holds under `text_encoder.`, its EMA average
    (checkpoint["text_ema"]) when `ema` and present ({} when none: the packaged encoders are frozen and never
    saved; under ZeRO-3 it would sit in the shards, which the learned ablation, a CPU-scale model, does not
    use)."""
    path = resolve_checkpoint(source)
    if path.is_dir():
        return {}
    checkpoint = load_checkpoint_file(path, mmap=True)
    state = checkpoint.get("state_dict", {})
    text = {k[len(TEXT_PREFIX):]: v for k, v in state.items() if k.startswith(TEXT_PREFIX)}
    shadow = (checkpoint.get("text_ema") or {}).get("shadow") if ema and text else None
    return text | (shadow or {})


def export_weights(source: str | Path, out: str | Path | None = None, dtype: str = "fp32", ema: bool = True,
                   meta: dict | None = None, config: dict | None = None) -> Path:
    """Write the consolidated DiT weights of `source` to `out` (+ `<out stem>.json`); returns `out`.
    Beside them: text_encoder.safetensors when the run trained its text encoder, and config.json (the run's
    resolved config: `config`, or the resolved_config.yaml of the fit run the checkpoint belongs to)."""
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {', '.join(DTYPES)} (got {dtype!r})")
    state, found = consolidate(source, ema)
    out = Path(out) if out else default_output(Path(found["source"]))
    tensors = {k: (v.to(DTYPES[dtype]) if v.is_floating_point() else v).detach().cpu().contiguous()
               for k, v in state.items()}
    atomic_write(out, lambda tmp: save_file(tensors, tmp))
    description = _run_codec(Path(found["source"])) | (meta or {}) | found | {"dtype": dtype, "tensors": len(tensors),
                                          "parameters": sum(t.numel() for t in tensors.values())}
    atomic_write_text(out.with_suffix(".json"), json.dumps(description, indent=1, default=str))
    text = text_encoder_weights(source, ema)
    if text:
        save_text_encoder(text, out.parent / TEXT_ENCODER)
    config = config if config is not None else _run_config(Path(found["source"]))
    if config is not None:
        atomic_write_text(out.parent / CONFIG, json.dumps(config, indent=1, default=str))
    return out


def _run_directory(checkpoint: Path) -> Path | None:
    """runs/NAME/fit/checkpoints/step-*.ckpt -> runs/NAME/fit (the first parent holding resolved_config.yaml)."""
    return next((d for d in checkpoint.parents if (d / "resolved_config.yaml").is_file()), None)


def _run_codec(checkpoint: Path) -> dict:
    """The codec key the fit run recorded (its weights.json), so exported weights keep their latent space's
    identity and `train.init_from` / `generate` can refuse them under another codec ({} when unknown)."""
    run = _run_directory(checkpoint)
    if run is None or not (run / "weights.json").is_file():
        return {}
    key = json.loads((run / "weights.json").read_text()).get("codec_key")
    return {"codec_key": key} if key else {}


def _run_config(checkpoint: Path) -> dict | None:
    """The resolved config saved with the checkpoint's fit run, if any."""
    run = _run_directory(checkpoint)
    if run is None:
        return None
    from omegaconf import OmegaConf
    return OmegaConf.to_container(OmegaConf.load(run / "resolved_config.yaml"), resolve=True)


def cmd_export(cfg, args) -> int:
    from configs.loader import ConfigError

    try:
        out = export_weights(args.checkpoint, args.out, args.dtype, ema=not args.no_ema)
    except CheckpointError as error:
        raise ConfigError(f"--checkpoint: {error}") from error
    info = json.loads(out.with_suffix(".json").read_text())
    print(f"export: {info['tensors']} tensors, {info['parameters']:,} parameters ({args.dtype}, "
          f"{'EMA' if info['ema'] else 'raw'} weights, step {info['global_step']}) from {info['source']} -> {out}")
    return 0
