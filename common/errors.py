"""One error hierarchy for bad input (issue 14). Every error a user can cause with a file, a key or a value
derives from ActSyncError and carries one line naming the file or key and the fault; `main.py` prints that
line and exits with status 2 (no traceback). Programming errors stay ordinary exceptions with tracebacks.

Each class also derives from the builtin a caller would expect (ValueError for bad values, RuntimeError for
unusable state), so `except ValueError` in library code keeps working. They live here, the lowest layer, so
the core (models/) and every data source, trainer and command raise the same classes.
"""
from __future__ import annotations

__all__ = ["ActSyncError", "ConfigError", "PromptError", "AudioError", "VideoError", "DataError",
           "CheckpointError", "CodecError"]


class ActSyncError(Exception):
    """Bad user input; the message names the file or key and the fault, in one line."""


class ConfigError(ActSyncError, ValueError):
    """A config key, value or experiment file that cannot be used."""


class PromptError(ActSyncError, ValueError):
    """A structured prompt that does not parse or validate."""


class AudioError(ActSyncError, ValueError):
    """An audio file or waveform that cannot be used (rate, channels, length, format)."""


class VideoError(ActSyncError, ValueError):
    """A video file that cannot be read or written."""


class DataError(ActSyncError, RuntimeError):
    """A data set (cache, split, clip file or data source) that cannot be used."""


class CheckpointError(ActSyncError, ValueError, RuntimeError):
    """A checkpoint or weights file that cannot be used (missing, unreadable, unsafe, or not fitting)."""


class CodecError(ActSyncError, RuntimeError):
    """A latent codec that cannot be built, fitted or loaded."""
