"""Multi-process DiT inference, applied to a built WanDiT from outside (code style rule 5): Ulysses
sequence parallelism and guidance parallelism (issue 17; xDiT's USP + CFG parallel, DeepSpeed-Ulysses).

Sequence parallel (`SequenceParallelDiT`): the L video tokens are split into P contiguous shards, one per
rank of the sequence group. Every per-token input of the blocks is sliced the same way (RoPE tables,
timestep groups, the query times of PACA's window bias and of the frame-local audio attention, region
masks). Self-attention is the only layer that mixes tokens: DeepSpeed's `DistributedAttention` exchanges
the shards by all-to-all, (B, L/P, H, d) -> (B, L, H/P, d), attends over the whole sequence for H/P heads,
and exchanges back. Text, audio and identity cross-attention, the FFN and adaLN are per token and need no
communication. The head runs on the shard and its outputs are all-gathered (head output is much smaller
than the hidden width). Recorded text-attention maps (Fig. 4) are all-gathered the same way.

Guidance parallel (`guidance_parallel`): the up-to-three dual-CFG passes of a sampling step
(models/sampling.py guided_velocity) are owned round-robin by the ranks of the guidance group; each rank
runs its own passes first, then every pass is broadcast from its owner, so all ranks combine the same
three velocities with the same formula as one process.

Trade-off: the blocks' inputs are built in full on every rank (patch, text and time embeddings, RoPE
tables) and then sliced: a few percent of a step, and WanDiT stays unaware of parallelism. L must be a
multiple of P and the head count of P (checked with the numbers: heads when wrapping, tokens per call).
"""
from __future__ import annotations

import dataclasses

import torch
import torch.distributed as dist
import torch.nn as nn

from common.errors import ConfigError
from models.attention import attention, merge_heads
from models.rope import apply_rope


class _LocalAttention(nn.Module):
    """DistributedAttention's local attention: (B, L, H/P, d) layout in and out, our backends inside."""

    def forward(self, q, k, v, backend: str = "sdpa"):
        out = attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), backend=backend)  # (B, H/P, L, d)
        return out.transpose(1, 2)


def _ulysses_self_attention(attn, distributed):
    def forward(x: torch.Tensor, rope: tuple, backend: str) -> torch.Tensor:
        q, k, v = attn.project(x, x)  # (B, H, L/P, d): this rank's tokens, every head
        q, k = apply_rope(q, rope), apply_rope(k, rope)  # this shard's RoPE rows
        out = distributed(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), 0, None, backend=backend)
        return attn.o(merge_heads(out.transpose(1, 2)))  # (B, L/P, H, d) -> (B, L/P, dim)
    return forward


def _shard_groups(e: torch.Tensor, L: int, start: int, stop: int) -> torch.Tensor:
    """Timestep modulation (B, G, ...) whose G groups cover L / G consecutive tokens each -> the groups of
    tokens [start, stop); a shard boundary inside a group expands that shard to one group per token."""
    G = e.shape[1]
    if G == 1:
        return e
    per = L // G
    if start % per == 0 and stop % per == 0:
        return e[:, start // per:stop // per]
    return e.repeat_interleave(per, dim=1)[:, start:stop]


def _shard_inputs(inp, start: int, stop: int):
    """BlockInputs with every per-video-token field cut to tokens [start, stop)."""
    changes = {"rope": tuple(table[start:stop] for table in inp.rope)}
    if inp.query_time is not None:
        changes["query_time"] = inp.query_time[:, start:stop]
    if inp.text_time is not None:
        changes["text_time"] = dataclasses.replace(inp.text_time, query_time=inp.text_time.query_time[:, start:stop])
    if inp.region_tokens is not None:
        changes["region_tokens"] = inp.region_tokens[:, start:stop]
    return dataclasses.replace(inp, **changes)


def gather_tokens(x: torch.Tensor, group) -> torch.Tensor:
    """(B, L/P, ...) shards of the group's ranks, in rank order -> (B, L, ...)."""
    parts = [torch.empty_like(x) for _ in range(dist.get_world_size(group))]
    dist.all_gather(parts, x.contiguous(), group=group)
    return torch.cat(parts, 1)


class SequenceParallelDiT(nn.Module):
    """A WanDiT whose blocks run on 1/P of the video tokens per rank of `group` (module docstring).
    Same call as WanDiT: (x, t, cond[, return_aux]) -> velocity (B, C, F, H, W), identical on every rank."""

    def __init__(self, model: nn.Module, group=None):
        super().__init__()
        from deepspeed.sequence.layer import DistributedAttention
        self.model, self.group = model, group
        self.rank, self.size = dist.get_rank(group), dist.get_world_size(group)
        heads = model.cfg.num_heads
        if heads % self.size:
            raise ConfigError(f"sequence parallel over {self.size} ranks needs the DiT's {heads} heads to be a "
                             f"multiple of {self.size}")
        for block in model.blocks:  # an instance attribute, like activation checkpointing: weights unchanged
            distributed = DistributedAttention(_LocalAttention(), group, scatter_idx=2, gather_idx=1)
            block.self_attn.forward = _ulysses_self_attention(block.self_attn, distributed)

    @property
    def patch_size(self):
        return self.model.patch_size

    def forward(self, x: torch.Tensor, t: torch.Tensor, cond, return_aux: bool = False):
        model = self.model
        tokens, e, e0, inp, grid = model.embed(x, t, cond)
        L = tokens.shape[1]
        if L % self.size:
            raise ConfigError(f"sequence parallel over {self.size} ranks: {L} video tokens (grid {grid}) are not a "
                             f"multiple of {self.size}; change the frame count or resolution, or use fewer ranks")
        if inp.region_tokens is not None:
            raise ValueError("sequence parallel is for inference: the localisation loss (region tokens) is not sharded")
        start, stop = self.rank * L // self.size, (self.rank + 1) * L // self.size
        tokens, e, e0 = tokens[:, start:stop], _shard_groups(e, L, start, stop), _shard_groups(e0, L, start, stop)
        inp = _shard_inputs(inp, start, stop)
        for block in model.blocks:
            tokens = block(tokens, e0, inp)
        out = model._unpatchify(gather_tokens(model.head(tokens, e), self.group), grid)
        if not return_aux:
            return out
        aux = inp.aux
        aux.text_attention = {layer: gather_tokens(probs, self.group) for layer, probs in aux.text_attention.items()}
        return out, aux


def guidance_parallel(group=None):
    """A drop-in for models.sampling.guided_velocity whose CFG passes are split over `group`'s ranks."""
    from models.sampling import _with_keep, combine_guidance, guidance_passes
    rank, size = dist.get_rank(group), dist.get_world_size(group)

    def owner(i: int) -> int:  # global rank of the group member that runs pass i
        return dist.get_global_rank(group, i % size) if group is not None else i % size

    def guided(model, x, t_frames, cond, text_scale: float = 1.0, audio_scale: float = 1.0):
        B = x.shape[0]
        passes = guidance_passes(text_scale, audio_scale)
        # own passes first, then the broadcasts: a rank never waits for another's pass before running its own
        mine = {i: model(x, t_frames, _with_keep(cond, *keep, B, x.device))
                for i, keep in enumerate(passes) if i % size == rank}
        outs = []
        for i in range(len(passes)):
            v = mine[i].contiguous() if i in mine else torch.empty_like(x)
            dist.broadcast(v, src=owner(i), group=group)
            outs.append(v)
        return combine_guidance(outs, text_scale, audio_scale)

    return guided
