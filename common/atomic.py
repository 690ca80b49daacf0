"""Atomic file writes: the one place that implements "nothing is half-written".

Content goes to a temporary file in the target's directory (so os.replace is a rename within one file
system), with the target's suffix (so writers that choose a format by extension, like FFmpeg or
soundfile, still do), gets the usual umask-based mode, and is renamed over the target. On any failure
the temporary file is removed and an existing target is left untouched.
"""
from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path


def atomic_write(path: str | os.PathLike, write_fn: Callable[[str], None]) -> Path:
    """Call `write_fn(tmp_path)` to write the content, then rename it over `path`. Returns `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=path.suffix)
    os.close(fd)
    try:
        write_fn(tmp)
        umask = os.umask(0)  # mkstemp creates 0600; results are meant to be shared
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    def write(tmp: str) -> None:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
    return atomic_write(path, write)


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    return atomic_write_bytes(path, text.encode())
