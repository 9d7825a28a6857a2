"""Exceptions raised by robustood.

Every error a user can cause derives from :class:`RobustoodError` (itself a
``ValueError``), and its message says how to fix the problem. The CLI turns these
into one clear line and a non-zero exit code (:data:`EXIT_CODES`); the library never prints.
"""

from __future__ import annotations

EXIT_OK, EXIT_FAILURE, EXIT_USAGE = 0, 1, 2
EXIT_CODES = {
    EXIT_OK: "success",
    EXIT_FAILURE: "the environment stopped the work: missing data, an unsafe or unreadable file, "
    "a failed write (full disk, read-only, no permission), an interrupted run",
    EXIT_USAGE: "bad usage or input: an unknown option or name, a value out of range, "
    "a model or data set that does not fit",
}
"""The command line's exit codes and what each means (printed by ``robustood --help``)."""


class RobustoodError(ValueError):
    """Base class of the errors a user can cause (bad input, missing files)."""


class EnvironmentFault(RobustoodError):
    """The environment, not the input, stopped the work: a file that cannot be written or read,
    a corrupt cache entry, missing data. The command line exits with code 1 for these."""


class DatasetUnavailableError(EnvironmentFault):
    """A dataset is not on disk and cannot be downloaded (e.g. no network)."""


class UnsafeCheckpointError(EnvironmentFault):
    """A checkpoint holds pickled objects that could run code when loaded; refused."""


class IncompatibleModelError(RobustoodError):
    """A model's input shape or class count does not match the dataset."""


class NotFittedError(RobustoodError, AttributeError):
    """A detector or defense that needs fitting was used before ``fit``."""


class WriteError(EnvironmentFault):
    """A file could not be written (full disk, read-only file system, no permission, a directory).

    ``path`` and ``reason`` name the file and why; ``done`` says what work finished before
    the write failed and what was kept (the command line appends it to the message).
    """

    def __init__(self, path: object, reason: str, done: str = "") -> None:
        self.path, self.reason, self.done = str(path), reason, done
        super().__init__(f"cannot write {self.path}: {reason}" + (f" ({done})" if done else ""))

    def after(self, done: str) -> WriteError:
        """The same error, saying which finished work the failed write followed."""
        return self if self.done else WriteError(self.path, self.reason, done)
