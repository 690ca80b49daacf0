"""Sample videos during training: after each validation pass, generate a few validation clips with the
current weights (EMA-averaged when on), write them as mp4 with their audio, and log them to W&B.

Uses the same sampler settings as `main.py generate` (config `sample`), with a fixed noise seed per clip
so successive samples show the progress of training, not of the noise. Trade-off: costs a few seconds of
sampling per validation on CPU; `num_clips=0` turns it off.
"""
from __future__ import annotations

from pathlib import Path

import lightning as L
import torch
from lightning.fabric.utilities.apply_func import move_data_to_device

from common.video_io import write_video
from datamodules.sources import DataSource
from system.sampling import sample_latents, to_uint8_frames


class SampleVideos(L.Callback):
    def __init__(self, source: DataSource, out_dir: Path, num_clips: int = 2):
        self.source, self.out_dir, self.num_clips = source, Path(out_dir), num_clips
        self.data_cfg = source.cfg

    @torch.no_grad()
    def on_validation_end(self, trainer, pl_module):
        if not self.num_clips or not trainer.is_global_zero or trainer.sanity_checking or trainer.state.fn != "fit":
            return
        if getattr(trainer.strategy, "zero_stage_3", False):
            return  # weights are sharded across ranks: sampling would need every rank
        dataset = self.source.dataset("val")
        batch = self.source.collate([dataset[i] for i in range(min(self.num_clips, len(dataset)))])
        videos = self.generate(pl_module, batch)
        paths = []
        for b, frames in enumerate(videos):
            path = self.out_dir / f"step-{trainer.global_step:08d}_val{b}.mp4"
            write_video(path, frames, fps=self.data_cfg["fps"], audio=batch.audio[b].numpy(),
                        sample_rate=self.data_cfg["sample_rate"])
            paths.append(path)
        for logger in trainer.loggers:
            if hasattr(logger, "log_video"):  # WandbLogger
                logger.log_video("samples/val", [str(p) for p in paths], step=trainer.global_step,
                                 format=["mp4"] * len(paths))

    def generate(self, module, batch):
        cfg, encoder, model = module.cfg, module.encoder, module.model
        was_training = model.training
        backup = None
        if module.ema is not None and cfg.sample.use_ema:  # sample with the averaged weights, then restore
            backup = {k: v.detach().clone() for k, v in model.state_dict().items()}
            model.load_state_dict(module.generation_state())
        model.eval()
        try:
            batch = move_data_to_device(batch, module.device)
            num_frames = batch.num_frames
            seeds = [cfg.sample.seed + i for i in range(len(batch))]
            latents, _, _ = sample_latents(model, encoder, batch, num_frames, seeds, cfg)
            return to_uint8_frames(encoder.codec.decode(latents))
        finally:
            if backup is not None:
                model.load_state_dict(backup)
            model.train(was_training)
