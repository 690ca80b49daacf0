"""Build the Lightning Trainer from the config: strategy (one device, DDP, DeepSpeed ZeRO-3), loggers.

Parallelism is applied to an already built model from outside (models/parallel.py for activation
checkpointing; the strategy for data parallelism and sharding), never inside the model code.
ZeRO-3 uses stock Lightning `DeepSpeedStrategy` (stage 3, optional CPU offload); the optimizer stays a
torch AdamW so no fused op has to be JIT-built. Trade-off: bf16/offload settings are the user's to pick
per machine; the `zero3_5b` experiment is a starting point for the 5B DiT on 8 x 80 GB.

Launchers: one process per device, started by Lightning itself (single node), by torchrun
(scripts/launch_torchrun.sh) or by srun (scripts/slurm_fit.sbatch); Lightning reads the ranks from the
environment each of them sets. Under SLURM, Lightning's own auto-requeue is switched off
(`SLURMEnvironment(auto_requeue=False)`): its SIGUSR1 handler saves `hpc_ckpt_*.ckpt` from inside the
signal handler (mid-step; a collective save under ZeRO-3) and runs `scontrol requeue`, and on the next
start on SLURM such a file takes precedence over `--resume auto` when that finds nothing. Lightning
registers it only where no SIGUSR1 handler exists yet, so depending on whether StepCheckpoint installs
its handler before or after (on_fit_start vs on_train_start) the two would fight or Lightning's would
silently never run. StepCheckpoint owns SIGUSR1/SIGTERM (all ranks agree, checkpoint after the step,
stop); scripts/slurm_fit.sbatch requeues the job. World-size changes on resume: distributed.py.
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
        if strategy_cfg.precision not in ("32-true", "bf16-mixed"):
            from configs.loader import ConfigError
            raise ConfigError(f"train.strategy.precision={strategy_cfg.precision} is not supported with "
                              "deepspeed_zero3 (DeepSpeed's half-precision modes cast the DiT to half precision, "
                              "but the condition encoders hand it fp32 inputs); use bf16-mixed or 32-true")
        strategy = DeepSpeedStrategy(stage=3, offload_optimizer=strategy_cfg.offload_optimizer,
                                     offload_parameters=strategy_cfg.offload_params,
                                     process_group_backend=os.environ.get("ACTSYNC_DIST_BACKEND"))
        if strategy_cfg.precision == "bf16-mixed":  # see trainer_precision
            strategy.config["torch_autocast"] = {"enabled": True, "dtype": "bfloat16"}
        return strategy
    raise ValueError(f"unknown train.strategy.name {name!r}")


def trainer_precision(strategy_cfg) -> str:
    """Lightning's precision flag. bf16-mixed under ZeRO-3 is DeepSpeed's `torch_autocast` (set in the
    strategy's config: fp32 sharded master weights, bf16 compute, bf16 gradient reduction for Linear/Conv),
    so Lightning itself runs 32-true: its DeepSpeed bf16 mode would cast the DiT's weights to bf16 and
    only the batch to bf16, while the latents and conditions come from fp32 encoders inside the step."""
    if strategy_cfg.name == "deepspeed_zero3" and strategy_cfg.precision == "bf16-mixed":
        return "32-true"
    return strategy_cfg.precision


def _keep_previous_csv(log_dir: Path) -> None:
    """Lightning's CSVLogger deletes an existing metrics.csv; keep a resumed run's earlier log as partN."""
    current = log_dir / "metrics.csv"
    if not current.is_file() or int(os.environ.get("LOCAL_RANK", 0)) or int(os.environ.get("NODE_RANK", 0)):
        return  # only the first process moves it (others write no CSV)
    part = 1
    while (log_dir / f"metrics.part{part}.csv").exists():
        part += 1
    try:
        os.replace(current, log_dir / f"metrics.part{part}.csv")
    except FileNotFoundError:
        pass


def build_loggers(cfg, run_dir: Path, resolved: dict) -> list:
    # always: metrics.csv for tables and tests, flushed as often as scalars are logged
    _keep_previous_csv(run_dir / "logs")
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


def build_plugins() -> list:
    """Under SLURM: the SLURM environment without Lightning's auto-requeue (see the module docstring)."""
    from lightning.fabric.plugins.environments import SLURMEnvironment
    return [SLURMEnvironment(auto_requeue=False)] if SLURMEnvironment.detect() else []


def build_trainer(cfg, run_dir: Path, callbacks: list, progress: bool = True) -> L.Trainer:
    """cfg: typed Config. run_dir: runs/NAME/fit."""
    train, strategy = cfg.train, cfg.train.strategy
    resolved = OmegaConf.to_container(OmegaConf.structured(cfg), resolve=True)
    return L.Trainer(
        accelerator=strategy.accelerator, devices=strategy.devices, num_nodes=strategy.num_nodes,
        strategy=build_strategy(strategy), precision=trainer_precision(strategy), plugins=build_plugins() or None,
        max_steps=train.max_steps, max_epochs=-1,
        val_check_interval=train.val_every or None, check_val_every_n_epoch=None if train.val_every else 1,
        limit_val_batches=train.val_batches, num_sanity_val_steps=0,
        gradient_clip_val=train.grad_clip or None,
        logger=build_loggers(cfg, run_dir, resolved), log_every_n_steps=train.logger.log_every,
        callbacks=callbacks, enable_checkpointing=False,  # our StepCheckpoint does it atomically
        enable_progress_bar=progress, use_distributed_sampler=False,  # StepSampler shards by rank itself
        default_root_dir=str(run_dir), deterministic=False,
    )
