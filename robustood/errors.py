"""Exceptions raised by robustood.

Every error a user can cause derives from :class:`RobustoodError` (itself a
``ValueError``), and its message says how to fix the problem. The CLI turns these
into one clear line and a non-zero exit code; the library never prints.
"""

from __future__ import annotations


class RobustoodError(ValueError):
    """Base class of the errors a user can cause (bad input, missing files)."""


class DatasetUnavailableError(RobustoodError):
    """A dataset is not on disk and cannot be downloaded (e.g. no network)."""


class UnsafeCheckpointError(RobustoodError):
    """A checkpoint holds pickled objects that could run code when loaded; refused."""


class IncompatibleModelError(RobustoodError):
    """A model's input shape or class count does not match the dataset."""


class NotFittedError(RobustoodError, AttributeError):
    """A detector or defense that needs fitting was used before ``fit``."""
