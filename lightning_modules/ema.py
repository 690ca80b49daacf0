"""Exponential moving average of the trained weights (used for generation; DiT/ADM practice).

Only parameters that are trained are shadowed (a frozen backbone in ActAvatar stage 1 is its own
average). The shadow lives on the parameters' device and is saved in the Lightning checkpoint, so a
resumed run continues the same average. Warm-up: decay_k = min(decay, (1 + k) / (10 + k)), so short
runs are not dominated by the random initialisation. Trade-off: a full fp32 copy of the trained
weights; not used with ZeRO-3, where the weights are sharded (the schema refuses the combination).
"""
from __future__ import annotations

import torch
import torch.nn as nn


class EMA:
    def __init__(self, named_params: list[tuple[str, nn.Parameter]], decay: float):
        self.decay = decay
        self.params = dict(named_params)
        # fp32 even when the weights are trained in bf16 (bf16-true converts them in place later): an
        # average with decay 0.995 moves by less than bf16's resolution.
        self.shadow = {name: p.detach().to(torch.promote_types(p.dtype, torch.float32), copy=True)
                       for name, p in self.params.items()}
        self.updates = 0

    @torch.no_grad()
    def update(self) -> None:
        k = self.updates
        decay = min(self.decay, (1 + k) / (10 + k))
        for name, p in self.params.items():
            self.shadow[name].lerp_(p.detach().to(self.shadow[name].dtype), 1 - decay)
        self.updates += 1

    def to(self, device) -> EMA:
        self.shadow = {name: t.to(device) for name, t in self.shadow.items()}
        return self

    def state_dict(self) -> dict:
        return {"updates": self.updates, "decay": self.decay, "shadow": {k: v.cpu() for k, v in self.shadow.items()}}

    def load_state_dict(self, state: dict) -> None:
        missing = set(self.shadow) ^ set(state["shadow"])
        if missing:
            raise KeyError(f"EMA state does not match the trained parameters: {sorted(missing)[:5]}")
        self.updates = state["updates"]
        for name, value in state["shadow"].items():
            self.shadow[name].copy_(value)

    def averaged_state(self, model: nn.Module, prefix: str = "") -> dict[str, torch.Tensor]:
        """The model's state dict with the trained weights replaced by their average."""
        # non-tensor entries (the learned text encoder's vocabulary) pass through unchanged
        state = {k: v.detach().clone() if torch.is_tensor(v) else v for k, v in model.state_dict().items()}
        for name, value in self.shadow.items():
            key = name[len(prefix):] if name.startswith(prefix) else name
            state[key] = value.to(state[key].dtype if key in state else value.dtype, copy=True)
        return state
