"""Training callbacks: atomic step checkpoints, preemption (SIGTERM / SIGUSR1), final weights export.

StepCheckpoint saves the full state every `every` steps as `<name>.partial`, then renames it
(lightning_modules/checkpoints.py), and keeps the last `keep_last`. On SIGTERM or SIGUSR1 (SLURM sends
SIGUSR1 before the time limit when `--signal=USR1@90` is set; schedulers send SIGTERM on preemption) the
handler only sets a flag; after the current optimiser step all ranks agree on it, write a checkpoint and
stop cleanly, so `--resume auto` continues from exactly there. Trade-off: one step of latency before
the checkpoint, never a checkpoint of a half-applied step.
"""
from __future__ import annotations

import signal
import time
from pathlib import Path

import lightning as L

from lightning_modules.checkpoints import promote_partial, prune_checkpoints, step_checkpoint_path
from system.weights import WEIGHTS, save_weights


class StepCheckpoint(L.Callback):
    def __init__(self, directory: Path, every: int, keep_last: int, signals=(signal.SIGTERM, signal.SIGUSR1)):
        self.directory, self.every, self.keep_last = Path(directory), every, keep_last
        self.signals = signals
        self._requested = False
        self._previous = {}

    # ------------------------------------------------------------------ signals

    def _on_signal(self, signum, frame):
        self._requested = True

    def on_train_start(self, trainer, pl_module):
        # Installed here, after Lightning registered its own SIGTERM handler (Trainer._run, after on_fit_start)
        # and so replacing it: Lightning's raises SIGTERMException (a SystemExit) at the end of the step or
        # inside a validation pass, which stops the run without a checkpoint when the signal lands in validation.
        # Lightning's teardown then restores the handlers from before the fit, also after an exception.
        self._requested = self._requested or trainer.received_sigterm  # a signal during restore/setup
        for sig in self.signals:  # only the main thread may install handlers (not the case in some launchers)
            try:
                self._previous[sig] = signal.signal(sig, self._on_signal)
            except ValueError:
                pass

    def _restore_handlers(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()

    def on_train_end(self, trainer, pl_module):
        self._restore_handlers()

    def on_exception(self, trainer, pl_module, exception):
        self._restore_handlers()

    # ------------------------------------------------------------------ saving

    def save(self, trainer) -> Path:
        final = step_checkpoint_path(self.directory, trainer.global_step)
        partial = final.with_name(final.name + ".partial")
        if trainer.is_global_zero:
            self.directory.mkdir(parents=True, exist_ok=True)
        trainer.strategy.barrier("checkpoint-dir")
        # full state (optimiser too, hence weights_only=False); every rank takes part (one shard per rank)
        trainer.save_checkpoint(partial, weights_only=False)
        trainer.strategy.barrier("checkpoint-written")
        if trainer.is_global_zero:
            promote_partial(partial, final)
            prune_checkpoints(self.directory, self.keep_last)
        trainer.strategy.barrier("checkpoint-promoted")
        return final

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        stop = trainer.strategy.reduce_boolean_decision(self._requested, all=False)
        step = trainer.global_step
        if stop or step % self.every == 0 or step >= trainer.max_steps:
            self.save(trainer)
        if stop:
            pl_module.print(f"preemption signal: checkpoint at step {step} written, stopping")
            trainer.should_stop = True


class WeightSnapshots(L.Callback):
    """Export the generation weights (EMA when on) at chosen steps to `directory/step-N/` (the layout of
    system/weights.py), with the wall time since training started and the samples seen, for learning
    curves (sweeps/curve.py). Costs one state-dict copy per snapshot; nothing is generated here, so the
    recorded wall time is training time only."""

    def __init__(self, directory: Path, steps: list[int], meta: dict, config: dict | None = None):
        self.directory, self.steps, self.meta, self.config = Path(directory), set(steps), meta, config
        self._start = None

    def on_train_start(self, trainer, pl_module):
        self._start = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        step = trainer.global_step
        if step not in self.steps or not trainer.is_global_zero or getattr(trainer.strategy, "zero_stage_3", False):
            return
        if (self.directory / f"step-{step}" / WEIGHTS).is_file():  # a resumed run passes it again
            return
        wall = time.perf_counter() - self._start
        samples = step * len(batch) * trainer.world_size
        save_weights(pl_module.generation_state(), self.directory / f"step-{step}",
                     self.meta | {"global_step": step, "train_wall_s": round(wall, 2), "samples_seen": samples,
                                  "ema": pl_module.ema is not None},
                     config=self.config, text_encoder=pl_module.text_encoder_state())


class ExportWeights(L.Callback):
    """At the end of a completed fit, write weights.safetensors (EMA when on) for generation/next stage.

    Under ZeRO-3 the weights are sharded: rank 0 consolidates the final step checkpoint that
    StepCheckpoint wrote at max_steps (lightning_modules/export.py) after the strategy has torn down."""

    def __init__(self, run_dir: Path, meta: dict, config: dict | None = None):
        self.run_dir, self.meta, self.config = Path(run_dir), meta, config

    def on_fit_end(self, trainer, pl_module):
        if trainer.global_step < trainer.max_steps:  # stopped early (preemption): not a finished stage
            return
        if getattr(trainer.strategy, "zero_stage_3", False):
            saver = next((c for c in trainer.callbacks if isinstance(c, StepCheckpoint)), None)
            final = step_checkpoint_path(saver.directory, trainer.global_step) if saver else None
            if trainer.is_global_zero and final is not None and final.is_dir():
                from lightning_modules.export import export_weights
                out = export_weights(final, self.run_dir / WEIGHTS, meta=self.meta, config=self.config)
                pl_module.print(f"consolidated ZeRO-3 checkpoint {final.name} -> {out}")
            return
        if trainer.is_global_zero:
            save_weights(pl_module.generation_state(), self.run_dir,
                         self.meta | {"global_step": trainer.global_step, "ema": pl_module.ema is not None},
                         config=self.config, text_encoder=pl_module.text_encoder_state())
