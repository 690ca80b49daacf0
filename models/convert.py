"""Load Wan2.2 DiT weights (original Wan or diffusers key names; single or sharded safetensors) from disk.

Our module names are the original Wan ones, so an original checkpoint loads as is; a diffusers
`WanTransformer3DModel` checkpoint is renamed key by key (the reverse of diffusers'
`scripts/convert_wan_to_diffusers.py`). The trap: diffusers calls the affine cross-attention pre-norm
`norm2` (Wan: `norm3`) and the pre-FFN norm `norm3` (Wan: `norm2`, no parameters), and the top-level
`scale_shift_table` is Wan's `head.modulation` while a block's is `blocks.i.modulation`.
Only a local path is read (file or directory): no network. New ActSync modules (phase embeddings, audio
and visual adapters, window biases) are the only keys allowed to be missing after loading.
Trade-off: regex renames per key are explicit and order-independent, unlike the ordered substring
replacement of the diffusers script.
"""
from __future__ import annotations

import json
import re
from dataclasses import replace
from pathlib import Path

import torch
from safetensors.torch import load_file

from common.errors import CheckpointError
from common.safe_load import load_checkpoint_file
from models.dit_config import DiTConfig

# (diffusers pattern, original replacement), applied to the full key with re.fullmatch
_DIFFUSERS_TO_WAN = [
    (r"condition_embedder\.text_embedder\.linear_1\.(.*)", r"text_embedding.0.\1"),
    (r"condition_embedder\.text_embedder\.linear_2\.(.*)", r"text_embedding.2.\1"),
    (r"condition_embedder\.time_embedder\.linear_1\.(.*)", r"time_embedding.0.\1"),
    (r"condition_embedder\.time_embedder\.linear_2\.(.*)", r"time_embedding.2.\1"),
    (r"condition_embedder\.time_proj\.(.*)", r"time_projection.1.\1"),
    (r"scale_shift_table", r"head.modulation"),
    (r"proj_out\.(.*)", r"head.head.\1"),
    (r"blocks\.(\d+)\.scale_shift_table", r"blocks.\1.modulation"),
    (r"blocks\.(\d+)\.attn1\.to_([qkv])\.(.*)", r"blocks.\1.self_attn.\2.\3"),
    (r"blocks\.(\d+)\.attn1\.to_out\.0\.(.*)", r"blocks.\1.self_attn.o.\2"),
    (r"blocks\.(\d+)\.attn1\.norm_([qk])\.(.*)", r"blocks.\1.self_attn.norm_\2.\3"),
    (r"blocks\.(\d+)\.attn2\.to_([qkv])\.(.*)", r"blocks.\1.cross_attn.\2.\3"),
    (r"blocks\.(\d+)\.attn2\.to_out\.0\.(.*)", r"blocks.\1.cross_attn.o.\2"),
    (r"blocks\.(\d+)\.attn2\.norm_([qk])\.(.*)", r"blocks.\1.cross_attn.norm_\2.\3"),
    (r"blocks\.(\d+)\.norm2\.(.*)", r"blocks.\1.norm3.\2"),  # the affine cross-attention norm
    (r"blocks\.(\d+)\.ffn\.net\.0\.proj\.(.*)", r"blocks.\1.ffn.0.\2"),
    (r"blocks\.(\d+)\.ffn\.net\.2\.(.*)", r"blocks.\1.ffn.2.\2"),
    (r"patch_embedding\.(.*)", r"patch_embedding.\1"),
]
# Keys our model may lack in a Wan checkpoint: the new, zero-initialised ActSync modules.
NEW_MODULE_PATTERN = re.compile(r"(phase_embedding|reference_embedding|audio_adapter|visual_adapter|.*\.(audio_attn|visual_attn)"
                                r"|.*\.window_bias).*")


def is_diffusers_state_dict(keys) -> bool:
    return any(k.startswith("condition_embedder.") or ".attn1." in k for k in keys)


def diffusers_to_wan(state_dict: dict) -> dict:
    """Rename diffusers `WanTransformer3DModel` keys to original Wan keys (unknown keys raise)."""
    out = {}
    for key, value in state_dict.items():
        for pattern, repl in _DIFFUSERS_TO_WAN:
            if re.fullmatch(pattern, key):
                out[re.sub(pattern, repl, key)] = value
                break
        else:
            raise CheckpointError(f"no Wan name for diffusers key {key!r} (an I2V-14B CLIP branch? not supported)")
    return out


def _safetensors_files(path: Path) -> list[Path]:
    if path.is_file():
        return [path]
    indexes = sorted(path.glob("*.safetensors.index.json"))
    if indexes:
        try:
            weight_map = json.loads(indexes[0].read_text())["weight_map"]
        except (json.JSONDecodeError, KeyError) as err:
            raise CheckpointError(f"{indexes[0]}: not a safetensors index ({err})") from None
        files = [path / name for name in sorted(set(weight_map.values()))]
        missing = [str(f) for f in files if not f.exists()]
        if missing:
            raise CheckpointError(f"{indexes[0]} names shards that are missing: {missing}")
        return files
    files = sorted(path.glob("*.safetensors"))
    if not files:
        raise CheckpointError(f"{path}: no *.safetensors file or *.safetensors.index.json found")
    return files


def read_state_dict(path: str | Path) -> dict:
    """All tensors of a local checkpoint: a .safetensors / .pth file, or a directory (single or sharded)."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"{path}: checkpoint path does not exist (weights are read from local disk only)")
    if path.is_file() and path.suffix in (".pth", ".pt", ".bin"):
        state = load_checkpoint_file(path)
        return state.get("state_dict", state) if isinstance(state, dict) else state
    state = {}
    for file in _safetensors_files(path):
        try:
            state.update(load_file(file))
        except Exception as err:  # safetensors raises its own error types for truncated/corrupt files
            raise CheckpointError(f"{file}: cannot read safetensors ({err})") from None
    return state


def to_wan_keys(state_dict: dict) -> dict:
    return diffusers_to_wan(state_dict) if is_diffusers_state_dict(state_dict) else dict(state_dict)


def load_wan_weights(model: torch.nn.Module, path: str | Path) -> dict:
    """Load a Wan checkpoint (either naming) into `model`; returns {"loaded", "new_modules"} key lists.

    Fails with a CheckpointError listing the keys when anything other than new ActSync modules is missing,
    when the checkpoint has keys the model lacks, or when a shape differs (wrong preset)."""
    state = to_wan_keys(read_state_dict(path))
    own = model.state_dict()
    unexpected = sorted(set(state) - set(own))
    missing = sorted(set(own) - set(state))
    backbone_missing = [k for k in missing if not NEW_MODULE_PATTERN.fullmatch(k)]
    shape_errors = [f"{k}: checkpoint {tuple(v.shape)} vs model {tuple(own[k].shape)}"
                    for k, v in state.items() if k in own and v.shape != own[k].shape]
    problems = []
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected key(s), e.g. {unexpected[:5]}")
    if backbone_missing:
        problems.append(f"{len(backbone_missing)} backbone key(s) missing, e.g. {backbone_missing[:5]}")
    if shape_errors:
        problems.append(f"{len(shape_errors)} shape mismatch(es), e.g. {shape_errors[:3]} (wrong preset?)")
    if problems:
        raise CheckpointError(f"{path}: does not fit the model: " + "; ".join(problems))
    model.load_state_dict(state, strict=False)
    return {"loaded": sorted(state), "new_modules": missing}


def dit_config_from_json(path: str | Path, base: DiTConfig | None = None) -> DiTConfig:
    """A DiTConfig from a checkpoint directory's config.json (original Wan or diffusers fields)."""
    file = Path(path) / "config.json" if Path(path).is_dir() else Path(path)
    try:
        raw = json.loads(file.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise CheckpointError(f"{file}: cannot read a model config ({err})") from None
    cfg = base or DiTConfig()
    if "num_attention_heads" in raw:  # diffusers
        heads = raw["num_attention_heads"]
        values = dict(dim=heads * raw["attention_head_dim"], num_heads=heads, in_channels=raw["in_channels"],
                      out_channels=raw["out_channels"], text_dim=raw["text_dim"], ffn_dim=raw["ffn_dim"],
                      num_layers=raw["num_layers"], freq_dim=raw["freq_dim"], eps=raw["eps"],
                      patch_size=list(raw["patch_size"]))
    else:  # original Wan config.json
        values = dict(dim=raw["dim"], num_heads=raw["num_heads"], in_channels=raw["in_dim"],
                      out_channels=raw["out_dim"], text_dim=raw["text_dim"], ffn_dim=raw["ffn_dim"],
                      num_layers=raw["num_layers"], freq_dim=raw["freq_dim"], eps=raw["eps"],
                      patch_size=list(raw.get("patch_size", [1, 2, 2])))
    return replace(cfg, **values)
