"""Exceptions of neuroxr.  The command line turns these into one-line messages (exit 2)."""
from __future__ import annotations

from .schema import SchemaError


class NeuroxrError(RuntimeError):
    """Base class for errors a user can act on; the message says what to do."""


class StoreExistsError(NeuroxrError, FileExistsError):
    """A store already exists and ``overwrite`` was not asked for."""


class SettingsMismatchError(NeuroxrError):
    """A store was written with other settings; results would be mixed."""


class MissingDataError(NeuroxrError, FileNotFoundError):
    """A file, store or weight that a step needs is not there."""


class StoreWriteError(NeuroxrError, OSError):
    """A store cannot be written (disk full, a path under a file); the message names the store."""


class InvalidArgumentError(NeuroxrError, ValueError):
    """An argument is out of range or of the wrong kind; the message names it and the valid values."""


USER_ERRORS = (NeuroxrError, SchemaError, FileNotFoundError, FileExistsError, ValueError, KeyError)

__all__ = ["NeuroxrError", "StoreExistsError", "SettingsMismatchError", "MissingDataError", "InvalidArgumentError",
           "StoreWriteError",            "SchemaError"]
