"""Build the Lightning Trainer from the config: strategy (one device, DDP, DeepSpeed ZeRO-3), loggers.

Parallelism is applied to an already built model from outside (models/parallel.py for activation
checkpointing; the strategy for data parallelism and sharding), never inside the model code.
ZeRO-3 uses stock Lightning `DeepSpeedStrategy` (stage 3, optional CPU offload); the optimizer stays a
torch AdamW so no fused op has to be JIT-built. Trade-off: bf16/offload settings are the user's to pick
per machine; the `zero3_5b` experiment is a starting point for the 5B DiT on 8 x 80 GB.
"""
from __future__ import annotations

import os
from pathlib import Path

import lightning as L
from lightning.pytorch.loggers import CSVLogger
from omegaconf import OmegaConf


def build_strategy(strategy_cfg):
    name = strategy_cfg.name
    if name == "auto":
        return "auto"
    if name == "ddp":
        from lightning.pytorch.strategies import DDPStrategy
        backend = None if strategy_cfg.accelerator in ("gpu", "cuda") else "gloo"
        return DDPStrategy(process_group_backend=backend) if backend else DDPStrategy()
    if name == "deepspeed_zero3":
        from lightning.pytorch.strategies import DeepSpeedStrategy
        return DeepSpeedStrategy(stage=3, offload_optimizer=strategy_cfg.offload_optimizer,
                                 offload_parameters=strategy_cfg.offload_params,
                                 process_group_backend=os.environ.get("ACTSYNC_DIST_BACKEND"))
    raise ValueError(f"unknown train.strategy.name {name!r}")


def build_loggers(cfg, run_dir: Path, resolved: dict) -> list:
    # always: metrics.csv for tables and tests, flushed as often as scalars are logged
    loggers = [CSVLogger(str(run_dir), name="logs", version="", flush_logs_every_n_steps=cfg.train.logger.log_every)]
    log_cfg = cfg.train.logger
    if log_cfg.kind == "wandb" and log_cfg.mode != "disabled":
        from lightning.pytorch.loggers import WandbLogger
        # WANDB_MODE in the environment wins (wandb's own convention), else the config (offline by default).
        mode = os.environ.get("WANDB_MODE", log_cfg.mode)
        logger = WandbLogger(project=log_cfg.project, name=cfg.run.name, group=log_cfg.group or cfg.run.name,
                             tags=list(log_cfg.tags) + [cfg.train.stage], save_dir=str(run_dir), mode=mode,
                             job_type=cfg.train.stage)
        logger.log_hyperparams(resolved)
        loggers.append(logger)
    return loggers


def build_trainer(cfg, run_dir: Path, callbacks: list, progress: bool = True) -> L.Trainer:
    """cfg: typed Config. run_dir: runs/NAME/fit."""
    train, strategy = cfg.train, cfg.train.strategy
    resolved = OmegaConf.to_container(OmegaConf.structured(cfg), resolve=True)
    return L.Trainer(
        accelerator=strategy.accelerator, devices=strategy.devices, num_nodes=strategy.num_nodes,
        strategy=build_strategy(strategy), precision=strategy.precision,
        max_steps=train.max_steps, max_epochs=-1,
        val_check_interval=train.val_every or None, check_val_every_n_epoch=None if train.val_every else 1,
        limit_val_batches=train.val_batches, num_sanity_val_steps=0,
        gradient_clip_val=train.grad_clip or None,
        logger=build_loggers(cfg, run_dir, resolved), log_every_n_steps=train.logger.log_every,
        callbacks=callbacks, enable_checkpointing=False,  # our StepCheckpoint does it atomically
        enable_progress_bar=progress, use_distributed_sampler=False,  # StepSampler shards by rank itself
        default_root_dir=str(run_dir), deterministic=False,
    )
