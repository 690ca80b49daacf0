"""The LightningModule of every training stage and ablation row: wiring only.

model (models/dit.py) + frozen condition encoders (models/conditioning.py) + flow-matching objective
(models/flow_matching.py) + SyncDreamer's localisation loss (the network's aux output, weight
model.visual.loc_weight) + EMA + AdamW with warm-up/cosine + logging. Stages differ only by config
(configs/experiment/*.yaml): which parameters train (`train.trainable` regexes; ActAvatar stage 1 trains
the audio adapter on a frozen backbone), which prompt form the text encoder sees (brief / global /
structured), which adapters exist, and which earlier stage initialises the weights (`train.init_from`).

Randomness (timesteps, noise, modality dropout) comes from a generator seeded by (seed, global step,
rank), so a resumed run draws exactly what an uninterrupted one would, with no RNG state to restore.
The frozen encoders are held outside the module tree: they are not checkpointed, not optimised and
not sharded by ZeRO-3. Trade-off: encoders run in every step instead of from a feature cache.
"""
from __future__ import annotations

import math
import re
import time

import lightning as L
import torch

from configs.loader import ConfigError
from lightning_modules.ema import EMA
from models.contracts import ClipBatch
from models.flow_matching import drop_modalities, flow_matching_loss


def step_generator(seed: int, step: int, rank: int, salt: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(((seed * 1_000_003 + step) * 8191 + rank) * 31 + salt)


def trainable_names(model: torch.nn.Module, patterns: list[str]) -> list[str]:
    """Parameter names matched (re.search) by any pattern; an unmatched pattern is a config error."""
    names = [n for n, _ in model.named_parameters()]
    chosen = []
    for pattern in patterns:
        hits = [n for n in names if re.search(pattern, n)]
        if not hits:
            raise ConfigError(f"train.trainable pattern {pattern!r} matches no parameter of the model "
                             f"(e.g. {', '.join(names[:4])}, ...)")
        chosen += hits
    return sorted(set(chosen), key=names.index)


def lr_lambda(warmup: int, total: int, schedule: str, floor: float = 0.1):
    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        if schedule == "constant":
            return 1.0
        progress = min(1.0, (step - warmup) / max(1, total - warmup))
        return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))
    return factor


class AvatarFlowModule(L.LightningModule):
    def __init__(self, cfg, model: torch.nn.Module, encoder):
        """cfg: the typed Config (configs/schema.py); model: WanDiT; encoder: ConditionEncoder (frozen)."""
        super().__init__()
        self.cfg = cfg
        self.model = model
        object.__setattr__(self, "encoder", encoder)  # not a submodule: never saved, optimised or sharded
        text_encoder = encoder.text_encoder
        # The learned-embedding text ablation trains its table; the packaged encoders are frozen.
        self.text_encoder = text_encoder if any(p.requires_grad for p in text_encoder.parameters()) else None
        self.trained = trainable_names(model, cfg.train.trainable)
        for name, p in model.named_parameters():
            p.requires_grad_(name in self.trained)
        self.loc_weight = cfg.model.visual.loc_weight if cfg.model.visual.enabled else 0.0
        self.ema = None
        if cfg.train.ema_decay > 0:
            params = dict(model.named_parameters())
            self.ema = EMA([(n, params[n]) for n in self.trained], cfg.train.ema_decay)
        # The learned text table is trained state too: averaged like the DiT, saved as checkpoint["text_ema"].
        self.text_ema = None
        if cfg.train.ema_decay > 0 and self.text_encoder is not None:
            self.text_ema = EMA(list(self.text_encoder.named_parameters()), cfg.train.ema_decay)
        self._last_batch_time = None

    # ------------------------------------------------------------------ the one shared step

    def shared_step(self, batch: ClipBatch, generator: torch.Generator, training: bool) -> tuple[torch.Tensor, dict]:
        x0, cond = self.encoder.prepare(batch)
        if training:
            cond = drop_modalities(cond, self.cfg.train.flow, generator)
        velocity = lambda x, t, c: self.model(x, t, c, return_aux=True)
        out = flow_matching_loss(velocity, x0, cond, self.cfg.train.flow, generator, training=training)
        loss, logs = out["loss"], {"fm_loss": out["loss"].detach(), "mse": out["mse"]}
        loc_loss = out["aux"].loc_loss
        if self.loc_weight and loc_loss is not None:
            loss = loss + self.loc_weight * loc_loss
            logs["loc_loss"] = loc_loss.detach()
        logs["loss"] = loss.detach()
        logs["tokens"] = x0[0, 0].numel() // math.prod(self.model.cfg.patch_size)  # video tokens per clip
        return loss, logs

    def training_step(self, batch, batch_idx):
        generator = step_generator(self.cfg.run.seed, self.global_step, self.global_rank)
        loss, logs = self.shared_step(batch, generator, training=True)
        batch_size = len(batch)
        self.log_dict({f"train/{k}": v for k, v in logs.items() if k != "tokens"}, batch_size=batch_size,
                      prog_bar=False)
        self.log("loss", logs["loss"], prog_bar=True, logger=False, batch_size=batch_size)
        now = time.perf_counter()
        if self._last_batch_time is not None and self._logged_step():
            seconds = now - self._last_batch_time
            samples = batch_size * self.trainer.world_size / seconds
            self.log_dict({"perf/samples_per_s": samples, "perf/tokens_per_s": samples * logs["tokens"]},
                          batch_size=batch_size)
        self._last_batch_time = now
        return loss

    def validation_step(self, batch, batch_idx):
        # Fixed draws per validation batch, so validation losses are comparable across the run.
        generator = step_generator(self.cfg.run.seed, 10**9 + batch_idx, 0, salt=1)
        _, logs = self.shared_step(batch, generator, training=False)
        self.log_dict({f"val/{k}": v for k, v in logs.items() if k != "tokens"},
                      batch_size=len(batch), sync_dist=True)

    # ------------------------------------------------------------------ optimisation

    def configure_optimizers(self):
        params = [p for p in self.model.parameters() if p.requires_grad]
        if self.text_encoder is not None:
            params += list(self.text_encoder.parameters())
        train = self.cfg.train
        optimizer = torch.optim.AdamW(params, lr=train.lr, weight_decay=train.weight_decay, betas=(0.9, 0.99))
        schedule = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lr_lambda(train.warmup_steps, train.max_steps, train.lr_schedule))
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}

    def _logged_step(self) -> bool:
        """Whether Lightning writes this step's metrics to the loggers (it does when (step + 1) % log_every
        == 0, step = global_step before the optimizer step); values logged on other steps would be
        written later, stale, under the wrong step."""
        return (self.global_step + 1) % self.cfg.train.logger.log_every == 0

    def on_before_optimizer_step(self, optimizer):
        if not self._logged_step():
            return
        grads = [p.grad for p in self.parameters() if p.grad is not None]
        if grads:  # ZeRO-3 keeps gradients partitioned inside DeepSpeed: nothing to measure here
            norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g.float()) for g in grads]))
            self.log("train/grad_norm", norm)
        self.log("train/lr", optimizer.param_groups[0]["lr"])

    def optimizer_step(self, *args, **kwargs):
        super().optimizer_step(*args, **kwargs)
        # Here, not in on_train_batch_end: callbacks' on_train_batch_end (StepCheckpoint) runs before the
        # module's, so a step-k checkpoint would hold an EMA of k - 1 updates and a resumed run would lose one.
        for ema in (self.ema, self.text_ema):
            if ema is not None:
                ema.update()

    def on_validation_end(self):
        self._last_batch_time = None  # throughput is not measured across a validation pass

    # ------------------------------------------------------------------ devices and checkpoints

    def on_fit_start(self):
        self.encoder.to(self.device)
        for ema in (self.ema, self.text_ema):
            if ema is not None:
                ema.to(self.device)

    def on_validation_start(self):
        self.encoder.to(self.device)

    def on_save_checkpoint(self, checkpoint):
        if self.ema is not None:
            checkpoint["ema"] = self.ema.state_dict()
        if self.text_ema is not None:
            checkpoint["text_ema"] = self.text_ema.state_dict()
        checkpoint["trained_parameters"] = self.trained

    def on_load_checkpoint(self, checkpoint):
        if self.ema is not None and "ema" in checkpoint:
            self.ema.load_state_dict(checkpoint["ema"])
        if self.text_ema is not None and "text_ema" in checkpoint:
            self.text_ema.load_state_dict(checkpoint["text_ema"])

    def generation_state(self) -> dict[str, torch.Tensor]:
        """The DiT weights used for generation: EMA-averaged trained weights when EMA is on."""
        if self.ema is None or not self.cfg.sample.use_ema:
            return {k: v.detach().clone() for k, v in self.model.state_dict().items()}
        return self.ema.averaged_state(self.model)

    def text_encoder_state(self) -> dict[str, torch.Tensor] | None:
        """The learned text encoder's trained table (exported beside the DiT; EMA-averaged like the DiT when EMA
        is on), None when it is frozen."""
        if self.text_encoder is None:
            return None
        if self.text_ema is not None and self.cfg.sample.use_ema:
            return self.text_ema.averaged_state(self.text_encoder)
        return {k: v.detach().clone() if torch.is_tensor(v) else v for k, v in self.text_encoder.state_dict().items()}
