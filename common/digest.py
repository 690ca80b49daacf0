"""Content digest of a module's weights: the identity of a frozen encoder's output space.

Used wherever a cached or recorded result must not be mixed with another encoder's: the condition cache's
fingerprint (datamodules/condition_cache.py) and the Wan VAE's latent-space key (models/codec_wan.py,
which `train.init_from` checks). Trade-off: it reads every weight once (a few seconds for the 705M-parameter
Wan VAE), where names and file sizes would be free but cannot tell two fine-tunes of one VAE apart.
"""
from __future__ import annotations

import hashlib

import torch


def module_digest(module: torch.nn.Module | None) -> str:
    """sha256 over the sorted state dict (names and raw bytes), first 16 hex digits; None -> the digest of nothing."""
    digest = hashlib.sha256()
    for name, value in sorted(module.state_dict().items()) if module is not None else []:
        if torch.is_tensor(value):
            digest.update(name.encode())
            digest.update(value.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()[:16]
