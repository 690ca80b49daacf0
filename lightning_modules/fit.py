"""`main.py fit` and `main.py validate`: build the system from the config (system/build.py) and run Lightning.

Outputs of `fit` go to runs/NAME/fit/ (checkpoints/, logs/, and the export: weights.safetensors,
config.json, text_encoder.safetensors for the learned-text ablation; see system/weights.py).
Trade-off: the LightningModule only wires the system to the objective; everything a run is made of comes
from build_system, so generation and sweeps rebuild exactly what was trained.
"""
from __future__ import annotations

import warnings
from pathlib import Path

import lightning as L
from omegaconf import OmegaConf

from common.errors import ConfigError
from datamodules.clip_datamodule import ClipDataModule
from datamodules.condition_cache import CachedConditions
from lightning_modules.callbacks import ExportWeights, StepCheckpoint, WeightSnapshots
from lightning_modules.checkpoints import find_resume_checkpoint
from lightning_modules.flow_module import AvatarFlowModule
from lightning_modules.media import SampleVideos
from lightning_modules.trainer import build_trainer
from models.parallel import apply_activation_checkpointing
from system.build import build_system, load_trained_weights


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
    if typed.train.condition_cache:  # the train clips' encoder outputs, computed once (on disk)
        system.source = CachedConditions(system.source, system.encoder, typed.train.condition_cache)
    module = AvatarFlowModule(typed, system.model, system.encoder)
    print(f"{typed.train.stage}: training {sum(p.numel() for p in system.model.parameters() if p.requires_grad):,} "
          f"of {sum(p.numel() for p in system.model.parameters()):,} DiT parameters "
          f"({len(module.trained)} tensors) for {typed.train.max_steps} steps")
    checkpoint_dir = run_dir / "checkpoints"
    meta = {"run": typed.run.name, "stage": typed.train.stage, "codec_key": system.encoder.codec.key}
    config = OmegaConf.to_container(cfg, resolve=True)
    callbacks = [StepCheckpoint(checkpoint_dir, typed.train.ckpt_every, typed.train.keep_last),
                 ExportWeights(run_dir, meta, config),
                 SampleVideos(system.source, run_dir / "samples", typed.train.sample_clips)]
    if typed.train.snapshot_at:
        callbacks.append(WeightSnapshots(run_dir / "snapshots", typed.train.snapshot_at, meta, config))
    trainer = build_trainer(typed, run_dir, callbacks, progress=not getattr(args, "quiet", False))
    datamodule = ClipDataModule(system.source, train_steps=typed.train.max_steps, seed=typed.run.seed)
    ckpt = resume_path(getattr(args, "resume", "") or "", checkpoint_dir, trainer)
    L.seed_everything(typed.run.seed, verbose=False)
    # weights_only: resuming a checkpoint never unpickles code (DeepSpeed shards are read by DeepSpeed itself)
    trainer.fit(module, datamodule, ckpt_path=ckpt, weights_only=True)
    _finish_loggers(trainer)
    return 0


def cmd_validate(cfg, args) -> int:
    system = build_system(cfg, load_init=False)
    source = args.weights or str(Path(cfg.run.output_dir) / cfg.run.name / "fit")
    load_trained_weights(system, source)
    module = AvatarFlowModule(system.cfg, system.model, system.encoder)
    trainer = build_trainer(system.cfg, Path(args.run_dir), [], progress=True)
    trainer.validate(module, ClipDataModule(system.source))
    _finish_loggers(trainer)
    return 0


def _finish_loggers(trainer) -> None:
    for logger in trainer.loggers:
        experiment = getattr(logger, "_experiment", None)
        if experiment is not None and hasattr(experiment, "finish"):
            experiment.finish()  # W&B: close the run so sweeps can open the next one in-process
