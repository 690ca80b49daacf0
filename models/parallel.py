"""Parallelism and memory transforms applied to an already-built model (code style rule 4).

The model code never checks for checkpointing or sharding; these functions wrap a built `WanDiT`:
- `apply_activation_checkpointing`: recompute each DiT block in backward (non-reentrant
  `torch.utils.checkpoint`), trading ~30% more compute for activations of one block instead of all.
Sharding (ZeRO-3 / FSDP per WanBlock) belongs to the training strategy (issue 4) and lives beside it.
Trade-off: wrapping per block (not per sub-layer) keeps the recompute granularity Wan and diffusers use.
"""
from __future__ import annotations

import torch
import torch.nn as nn
from torch.utils.checkpoint import checkpoint


def _checkpointed(block: nn.Module, plain_forward):
    def forward(*args, **kwargs):
        if block.training and torch.is_grad_enabled():
            return checkpoint(plain_forward, *args, use_reentrant=False, **kwargs)
        return plain_forward(*args, **kwargs)
    return forward


def apply_activation_checkpointing(model: nn.Module, every: int = 1) -> int:
    """Recompute every `every`-th block of `model.blocks` in backward; returns how many blocks.

    Only the block's `forward` is replaced (an instance attribute), so parameter names and checkpoints
    are unchanged: a model trained with checkpointing loads into one without."""
    if every < 1:
        raise ValueError(f"every must be >= 1 (got {every})")
    wrapped = 0
    for i, block in enumerate(model.blocks):
        if i % every == 0 and not getattr(block, "activation_checkpointing", False):
            block.forward = _checkpointed(block, block.forward)
            block.activation_checkpointing = True
            wrapped += 1
    return wrapped
