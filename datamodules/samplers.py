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
