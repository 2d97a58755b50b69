"""One base exception with specific subclasses whose messages say what went wrong and how to fix it.

The CLI catches :class:`MlRnnNamesError` and prints its message without a traceback; anything else is a
bug and keeps its traceback.
"""

from __future__ import annotations


class MlRnnNamesError(Exception):
    """Base class of every error this package raises on purpose."""


class DataError(MlRnnNamesError, ValueError):
    """The names data is missing, malformed or fails its checksum. The message names the file (and line)."""


class ConfigError(MlRnnNamesError, ValueError):
    """A campaign file is invalid. The message names the file, the key and the fix."""


class NonFiniteLossError(MlRnnNamesError, FloatingPointError):
    """Training produced a NaN or infinite loss (usually a learning rate too large for the model)."""

    def __init__(self, message: str, *, epoch: int, batch: int | None, value: float) -> None:
        super().__init__(message)
        self.epoch = epoch
        self.batch = batch
        self.value = value


class StudyMismatchError(MlRnnNamesError):
    """An existing study was created with a different config, search space, budget or data."""


class StorageError(MlRnnNamesError):
    """The study storage cannot be opened or written (locked, read-only, corrupt, unreachable)."""


class FairnessError(MlRnnNamesError):
    """The studies of a campaign cannot be compared fairly (different data, space or budget)."""


class CheckpointError(MlRnnNamesError):
    """A checkpoint is missing, corrupt, or refused by ``torch.load(weights_only=True)``."""
