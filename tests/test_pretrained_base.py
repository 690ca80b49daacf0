"""The shipped SynthAvatar base (pretrained/synthavatar_base/, `make pretrain`, issue 15 Deliver 5).

What must hold for it to stand in for pretrained Wan2.2: it knows only global captions and no audio, phase
ids or adapters (no row gets them for free); it loads into `make demo`'s model with only those new
zero-init modules missing; and it was trained in the very latent space `make demo` builds (same codec key),
checked here from the configs alone, without generating a clip or fitting the codec.
"""
from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

from omegaconf import OmegaConf
from safetensors import safe_open

from configs.loader import load_config
from datamodules.synth_avatar import SynthFitFrames
from models.codec_synth import synth_codec_key
from models.conditioning import build_model
from models.convert import NEW_MODULE_PATTERN
from system.weights import load_stage_weights

BASE = Path(__file__).resolve().parents[1] / "pretrained" / "synthavatar_base"


def demo_config():
    return OmegaConf.to_object(load_config("demo"))


def test_base_knows_no_phases_audio_or_adapters():
    cfg = json.loads((BASE / "config.json").read_text())
    model = cfg["model"]
    assert model["text"]["prompt_mode"] == "global"
    assert model["audio"]["enabled"] is False and model["visual"]["enabled"] is False
    assert model["dit"]["phase_embedding"] is False and not model["dit"]["phase_window_bias"]
    with safe_open(str(BASE / "weights.safetensors"), "pt") as f:
        keys = list(f.keys())
        assert {str(f.get_slice(k).get_dtype()) for k in keys} == {"BF16"}
    assert keys and not [k for k in keys if NEW_MODULE_PATTERN.fullmatch(k) and "reference_embedding" not in k]


def test_base_loads_into_the_demo_model_with_only_new_modules_missing():
    typed = demo_config()
    codec = SimpleNamespace(latent_channels=typed.model.codec.channels, temporal_stride=4, causal_first=True)
    model = build_model(typed.model, codec, text_dim=384)  # MiniLM's width
    result = load_stage_weights(model, BASE)
    assert result["new_modules"] > 0
    own = set(model.state_dict())
    with safe_open(str(BASE / "weights.safetensors"), "pt") as f:
        missing = own - set(f.keys())
    assert missing and all(NEW_MODULE_PATTERN.fullmatch(k) for k in missing)
    assert any(k.startswith("phase_embedding") for k in missing) and any("audio" in k for k in missing)


def test_base_shares_the_demo_latent_space():
    typed = demo_config()
    data = OmegaConf.to_container(load_config("demo").data, resolve=True)
    clips = typed.model.codec.fit_clips or typed.data.num_train
    key = synth_codec_key(typed.model.codec, SynthFitFrames(data, clips, paths=[]))
    assert json.loads((BASE / "weights.json").read_text())["codec_key"] == key
