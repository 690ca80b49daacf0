"""A training sampler whose position is a function of the global step, so resumes are exact.

The sample stream is an endless sequence of shuffled epochs (epoch e is randperm(n) seeded by
(seed, e)); process `rank` of `world` takes every world-th item. Iteration starts at
start_step() * batch_size items into that rank's stream, so a run resumed at step k sees exactly the
batches an uninterrupted run would have seen from step k on, without saving any sampler state.
Trade-off: no drop_last/epoch semantics (training is counted in steps); one epoch of the loader = the
rest of the run.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator

import torch
from torch.utils.data import Sampler


class StepSampler(Sampler[int]):
    def __init__(self, num_items: int, batch_size: int, total_steps: int, seed: int = 0,
                 rank: int = 0, world: int = 1, start_step: Callable[[], int] = lambda: 0):
        if num_items <= 0:
            raise ValueError("StepSampler needs a non-empty dataset")
        self.n, self.batch_size, self.total_steps = num_items, batch_size, total_steps
        self.seed, self.rank, self.world, self.start_step = seed, rank, world, start_step

    def _epoch(self, epoch: int) -> list[int]:
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
        return torch.randperm(self.n, generator=generator).tolist()

    def global_index(self, position: int) -> int:
        """Item of this rank's stream at `position` (items consumed by this rank so far)."""
        flat = position * self.world + self.rank
        epoch, offset = divmod(flat, self.n)
        return self._epoch(epoch)[offset]

    def __iter__(self) -> Iterator[int]:
        position = self.start_step() * self.batch_size
        end = self.total_steps * self.batch_size
        cached_epoch, order = -1, []
        while position < end:
            flat = position * self.world + self.rank
            epoch, offset = divmod(flat, self.n)
            if epoch != cached_epoch:
                cached_epoch, order = epoch, self._epoch(epoch)
            yield order[offset]
            position += 1

    def __len__(self) -> int:
        return max(0, (self.total_steps - self.start_step()) * self.batch_size)


class BucketStepSampler(Sampler[list[int]]):
    """Batches that each hold one bucket (clips of one height x width x frames), as a function of the step.

    Epoch e: every bucket's items shuffled (seed, e) and cut into batches of `batch_size` (a bucket's last
    partial batch is kept only when the bucket has fewer items than one batch, so every bucket is
    seen); the epoch's batches shuffled. Global batch g = step * world + rank is batch g mod M of epoch
    g // M (M batches per epoch), so a resumed run sees exactly the batches an uninterrupted run would,
    without sampler state - the StepSampler property, per bucket. Used as a DataLoader batch_sampler.
    """

    def __init__(self, buckets: list, batch_size: int, total_steps: int, seed: int = 0, rank: int = 0,
                 world: int = 1, start_step: Callable[[], int] = lambda: 0):
        if not buckets:
            raise ValueError("BucketStepSampler needs a non-empty dataset")
        groups: dict = {}
        for index, key in enumerate(buckets):
            groups.setdefault(key, []).append(index)
        self.groups = [groups[k] for k in sorted(groups, key=str)]
        self.batch_size, self.total_steps = batch_size, total_steps
        self.seed, self.rank, self.world, self.start_step = seed, rank, world, start_step
        self.per_epoch = len(self._epoch(0))

    def _epoch(self, epoch: int) -> list[list[int]]:
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
        batches = []
        for items in self.groups:
            order = [items[i] for i in torch.randperm(len(items), generator=g).tolist()]
            full = len(order) // self.batch_size * self.batch_size
            cuts = [order[i: i + self.batch_size] for i in range(0, full, self.batch_size)]
            batches += cuts or [order]
        return [batches[i] for i in torch.randperm(len(batches), generator=g).tolist()]

    def __iter__(self) -> Iterator[list[int]]:
        cached_epoch, order = -1, []
        for step in range(self.start_step(), self.total_steps):
            epoch, offset = divmod(step * self.world + self.rank, self.per_epoch)
            if epoch != cached_epoch:
                cached_epoch, order = epoch, self._epoch(epoch)
            yield order[offset]

    def __len__(self) -> int:
        return max(0, self.total_steps - self.start_step())
