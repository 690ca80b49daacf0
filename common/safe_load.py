"""Reading pickled checkpoints (.ckpt / .pt / .bin) without running code from them (issue 14).

torch.load(weights_only=True) admits tensors, numbers, strings and plain containers -- everything our
Lightning checkpoints hold -- plus the classes a caller allow-lists (e.g. DeepSpeed's loss-scaler state).
Anything else, such as a payload planted in a shared .ckpt, is refused with one line naming the file and the
pickled type, before any of it runs. Weights meant to be shared are safetensors (`main.py export`).
"""
from __future__ import annotations

import pickle
import re
from pathlib import Path

import torch

from common.errors import CheckpointError

__all__ = ["load_checkpoint_file"]

_UNSAFE_GLOBAL = re.compile(r"(?:Unsupported global: GLOBAL|unsupported GLOBAL) ([\w.]+)")


def load_checkpoint_file(path: Path, mmap: bool = False, allow: tuple = ()) -> dict:
    """torch.load that never runs code from the file: weights_only=True admits tensors, numbers, strings and
    plain containers (all our Lightning checkpoints hold), plus the classes in `allow` (e.g. DeepSpeed's
    loss-scaler state). A file that pickles anything else -- a shared .ckpt with a payload among them -- is
    refused with one line naming the file and the type, before any of it is executed."""
    try:
        with torch.serialization.safe_globals(list(allow)):
            return torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except pickle.UnpicklingError as error:
        found = _UNSAFE_GLOBAL.search(str(error))
        what = found.group(1) if found else "a Python object"
        raise CheckpointError(f"{path}: refused to load: it pickles {what}, which a weights file never holds "
                              "(unpickling it could run code); share weights as .safetensors (main.py export)"
                              ) from None
    except (OSError, RuntimeError, EOFError, ValueError) as error:
        raise CheckpointError(f"{path}: cannot read checkpoint ({type(error).__name__}: "
                              f"{str(error).splitlines()[0] if str(error) else ''})") from None
