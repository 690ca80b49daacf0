"""`main.py fit` and `main.py validate`: build the system from the config and run Lightning.

build_system is the one place that turns a config into (codec, condition encoder, DiT): the same
function serves training, validation, generation and the sweep's evaluation, so a saved run is rebuilt
exactly from its resolved_config.yaml. Outputs of `fit` go to runs/NAME/fit/ (checkpoints/, logs/,
weights.safetensors; see lightning_modules/checkpoints.py).
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import lightning as L
import torch
from omegaconf import OmegaConf

from configs.loader import ConfigError
from datamodules.synth_avatar import SynthAvatarDataModule
from lightning_modules.callbacks import ExportWeights, StepCheckpoint
from lightning_modules.checkpoints import find_resume_checkpoint, load_stage_weights
from lightning_modules.flow_module import AvatarFlowModule
from lightning_modules.media import SampleVideos
from lightning_modules.trainer import build_trainer
from models.codec import build_codec
from models.conditioning import ConditionEncoder, build_model
from models.parallel import apply_activation_checkpointing
from synthavatar.dataset import ensure_split, load_clip


@dataclass
class System:
    cfg: object  # typed Config
    encoder: ConditionEncoder
    model: torch.nn.Module


def _learned_vocab(data_cfg, progress: bool) -> list[str]:
    from models.text_encoders import LearnedTextEncoder
    texts = []
    for path in ensure_split(data_cfg, "train", progress):
        clip = load_clip(path)
        texts += [clip["prompt_text"], clip["prompt_global"], clip["prompt_brief"]]
    return LearnedTextEncoder.build_vocab(texts)


def build_system(cfg, progress: bool = True, load_init: bool = True) -> System:
    """cfg: the DictConfig from configs/loader.py. Fits/loads the codec and builds the DiT (seeded)."""
    typed = OmegaConf.to_object(cfg)
    ensure_split(cfg.data, "train", progress)  # the SynthAvatar codec is fitted on the train split
    codec = build_codec(typed.model.codec, cfg.data, progress=progress)
    vocab = _learned_vocab(cfg.data, progress) if typed.model.text.encoder == "learned" else None
    encoder = ConditionEncoder(typed.model, codec, text_vocab=vocab)
    torch.manual_seed(typed.run.seed)  # same initial weights on every rank and every resume
    model = build_model(typed.model, codec, encoder.text_encoder.dim)
    if load_init and typed.train.init_from:
        load_stage_weights(model, typed.train.init_from)
    return System(typed, encoder, model)


def resume_path(resume: str, checkpoint_dir: Path, trainer=None) -> str | None:
    """The checkpoint to resume from ('' = none, 'auto' = newest complete one, or a path). With `trainer`,
    also prepares its strategy: a ZeRO-3 checkpoint written by another world size is converted once to a
    universal checkpoint and loaded as such (lightning_modules/distributed.py)."""
    if not resume:
        return None
    if resume == "auto":
        found = find_resume_checkpoint(checkpoint_dir)
        if found is None:
            warnings.warn(f"--resume auto: no complete checkpoint in {checkpoint_dir}; starting fresh",
                          stacklevel=2)
        path = str(found) if found else None
    elif not Path(resume).exists():
        raise ConfigError(f"--resume {resume}: no such checkpoint")
    else:
        path = resume
    if trainer is not None:
        from lightning_modules.distributed import prepare_resume
        path = prepare_resume(path, trainer)
    return path


def cmd_fit(cfg, args) -> int:
    run_dir = Path(args.run_dir)
    system = build_system(cfg)
    typed = system.cfg
    if typed.train.strategy.activation_checkpointing:
        apply_activation_checkpointing(system.model)
    module = AvatarFlowModule(typed, system.model, system.encoder)
    print(f"{typed.train.stage}: training {sum(p.numel() for p in system.model.parameters() if p.requires_grad):,} "
          f"of {sum(p.numel() for p in system.model.parameters()):,} DiT parameters "
          f"({len(module.trained)} tensors) for {typed.train.max_steps} steps")
    checkpoint_dir = run_dir / "checkpoints"
    callbacks = [StepCheckpoint(checkpoint_dir, typed.train.ckpt_every, typed.train.keep_last),
                 ExportWeights(run_dir, {"run": typed.run.name, "stage": typed.train.stage}),
                 SampleVideos(cfg.data, run_dir / "samples", typed.train.sample_clips)]
    trainer = build_trainer(typed, run_dir, callbacks, progress=not getattr(args, "quiet", False))
    datamodule = SynthAvatarDataModule(cfg.data, train_steps=typed.train.max_steps, seed=typed.run.seed)
    ckpt = resume_path(getattr(args, "resume", "") or "", checkpoint_dir, trainer)
    L.seed_everything(typed.run.seed, verbose=False)
    # weights_only: resuming a checkpoint never unpickles code (DeepSpeed shards are read by DeepSpeed itself)
    trainer.fit(module, datamodule, ckpt_path=ckpt, weights_only=True)
    _finish_loggers(trainer)
    return 0


def cmd_validate(cfg, args) -> int:
    from lightning_modules.checkpoints import read_weights
    system = build_system(cfg, load_init=False)
    source = args.weights or str(Path(cfg.run.output_dir) / cfg.run.name / "fit")
    system.model.load_state_dict(read_weights(source))
    module = AvatarFlowModule(system.cfg, system.model, system.encoder)
    trainer = build_trainer(system.cfg, Path(args.run_dir), [], progress=True)
    trainer.validate(module, SynthAvatarDataModule(cfg.data))
    _finish_loggers(trainer)
    return 0


def _finish_loggers(trainer) -> None:
    for logger in trainer.loggers:
        experiment = getattr(logger, "_experiment", None)
        if experiment is not None and hasattr(experiment, "finish"):
            experiment.finish()  # W&B: close the run so sweeps can open the next one in-process
