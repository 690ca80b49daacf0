"""One LightningDataModule over any DataSource (datamodules/sources.py): loaders of ClipBatches.

`train_steps` > 0: the train loader follows the global step (datamodules/samplers.py), so a resumed run
sees exactly the batches it would have seen; otherwise a plain shuffled loader. `prepare_data` prepares
every split (generation / indexing, once on rank 0); `setup` only reads. Trade-off: the step-following
sampler fixes the data order by (seed, step, rank), which costs the loader's own shuffling but is what
makes bit-exact resume possible.
"""
from __future__ import annotations

import lightning as L
from torch.utils.data import DataLoader

from datamodules.samplers import BucketStepSampler, StepSampler
from datamodules.sources import SPLITS, DataSource


class ClipDataModule(L.LightningDataModule):
    def __init__(self, source: DataSource, train_steps: int = 0, seed: int = 0):
        super().__init__()
        self.source = source
        self.batch_size, self.workers = int(source.cfg["batch_size"]), int(source.cfg["loader_workers"])
        self.train_steps, self.seed = train_steps, seed
        self.datasets: dict = {}

    def prepare_data(self) -> None:
        for split in SPLITS:
            self.source.prepare(split)

    def setup(self, stage: str | None = None) -> None:
        self.datasets = {s: self.source.dataset(s) for s in SPLITS}

    def _loader(self, split: str, shuffle: bool) -> DataLoader:
        return DataLoader(self.datasets[split], batch_size=self.batch_size, shuffle=shuffle,
                          num_workers=self.workers, collate_fn=self.source.collate)

    def train_dataloader(self) -> DataLoader:
        if not self.train_steps:
            return self._loader("train", True)
        trainer = self.trainer
        buckets = getattr(self.datasets["train"], "buckets", None)  # clips of several sizes (real video)
        if buckets is not None and len(set(buckets)) > 1:
            batches = BucketStepSampler(buckets, self.batch_size, self.train_steps, self.seed, trainer.global_rank,
                                        trainer.world_size, start_step=lambda: trainer.global_step)
            return DataLoader(self.datasets["train"], batch_sampler=batches, num_workers=self.workers,
                              collate_fn=self.source.collate)
        sampler = StepSampler(len(self.datasets["train"]), self.batch_size, self.train_steps,
                              self.seed, trainer.global_rank, trainer.world_size,
                              start_step=lambda: trainer.global_step)
        return DataLoader(self.datasets["train"], batch_size=self.batch_size, sampler=sampler,
                          num_workers=self.workers, collate_fn=self.source.collate)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", False)
