"""`build_system`: the one place that turns a config into (data source, codec, condition encoder, DiT).

The same function serves training, validation, generation and the sweep's evaluation, so a saved run is
rebuilt exactly from its resolved config. The data source (`data.kind`, datamodules/sources.py) hands the
codec its fitting frames and the learned text encoder its vocabulary; the core never sees where clips
come from. Trade-off: building the data source first means a fit on SynthAvatar may generate the train
split before the model exists (the codec is fitted on it), which is what makes the run reproducible
from its config alone.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from omegaconf import OmegaConf

from common.errors import CheckpointError
from datamodules.sources import DataSource, build_data_source
from models.codec_factory import build_codec
from models.conditioning import ConditionEncoder, build_model
from system.weights import check_codec, load_stage_weights, read_text_encoder, read_weights, resolve_weights


@dataclass
class System:
    cfg: object  # typed Config
    source: DataSource
    encoder: ConditionEncoder
    model: torch.nn.Module


def build_system(cfg, progress: bool = True, load_init: bool = True) -> System:
    """cfg: the DictConfig from configs/loader.py. Fits/loads the codec and builds the DiT (seeded)."""
    typed = OmegaConf.to_object(cfg)
    source = build_data_source(cfg.data)
    m = typed.model
    if m.visual.enabled and m.visual.loc_weight > 0:
        source.check_regions(m.visual.regions)
    frames = source.fit_frames(m.codec.fit_clips, progress=progress) if m.codec.kind == "synth" else None
    codec = build_codec(m.codec, frames, progress=progress)
    vocab = None
    if m.text.encoder == "learned":
        from models.text_encoders import LearnedTextEncoder
        vocab = LearnedTextEncoder.build_vocab(source.prompt_texts("train", progress=progress))
    encoder = ConditionEncoder(m, codec, text_vocab=vocab)
    torch.manual_seed(typed.run.seed)  # same initial weights on every rank and every resume
    model = build_model(m, codec, encoder.text_encoder.dim)
    if load_init and typed.train.init_from:
        check_codec(typed.train.init_from, codec.key)
        load_stage_weights(model, typed.train.init_from)
        load_text_encoder(encoder, typed.train.init_from, required=False)
    return System(typed, source, encoder, model)


def load_trained_weights(system: System, source) -> None:
    """Load a finished run's weights (`generate`, `validate`) into `system`: refused when trained under another
    codec, strict on the DiT's keys and shapes (one error naming the file), plus the learned text encoder
    exported beside them when the model has one."""
    check_codec(source, system.encoder.codec.key)
    try:
        system.model.load_state_dict(read_weights(source))
    except RuntimeError as error:  # missing / unexpected / mis-shaped keys
        if isinstance(error, CheckpointError):
            raise
        first = str(error).strip().splitlines()[0:2]
        raise CheckpointError(f"{resolve_weights(source)}: does not fit the model of this config "
                              f"(are model.* the same as in the run that wrote it?): {' '.join(first)}") from None
    load_text_encoder(system.encoder, source, required=True)  # the learned-text ablation's trained table


def load_text_encoder(encoder: ConditionEncoder, source, required: bool) -> bool:
    """Load a learned text encoder exported beside `source`'s weights into `encoder` (the ablation's only
    trained module outside the DiT). required: the model has a trainable text encoder and must get it."""
    trainable = any(p.requires_grad for p in encoder.text_encoder.parameters())
    if not trainable:
        return False
    state = read_text_encoder(source)
    if state is None:
        if required:
            raise CheckpointError(f"{source}: the model trains its text encoder (model.text.encoder=learned) "
                                  "but no text_encoder.safetensors was exported with these weights")
        return False
    encoder.text_encoder.load_state_dict(state)
    return True
