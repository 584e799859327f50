"""Errors a user can fix: printed by the CLI as one line, without a traceback."""

from __future__ import annotations


class BenchError(Exception):
    """An error caused by input the user controls (a file, a name, an argument).

    The message is one line that names what is wrong and how to fix it.
    """

    exit_code = 2


class UnknownNameError(BenchError, KeyError):
    """A system, task, dataset or metric name that is not registered."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class DataFormatError(BenchError):
    """A malformed data file (atomic file, dataset card, steering file)."""


class SpecError(BenchError):
    """A task spec or suite file that does not validate."""


class ResultFileError(BenchError):
    """A result file that is missing, corrupt or of another schema version."""


class SystemFailure(BenchError):
    """A system raised while fitting or recommending."""

    exit_code = 1
