"""User-facing errors: plain exceptions carrying one clear line.

The library raises them; the CLI prints `error: <message>` and exits with code 2
(no traceback). Real bugs are *not* wrapped: they keep their traceback so they get fixed.
"""
from __future__ import annotations


class DlhwError(Exception):
    """A mistake the user can fix (bad config, path or file). The CLI exits 2 with one line."""

    exit_code = 2  # what the CLI exits with

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message

    def format_message(self) -> str:
        return self.message

    def __str__(self) -> str:
        return self.message


class ConfigError(DlhwError):
    """A config file, key or value that breaks the schema."""


class DataError(DlhwError):
    """A data set that is missing, corrupt or fails its checksum."""


class RunError(DlhwError):
    """A run folder that is missing, incomplete or locked."""


class WriteError(DlhwError):
    """A result file that could not be written (disk full, I/O error, read-only folder). Exit code 1:
    not a usage mistake, but the run did not finish; files written before it are intact."""

    exit_code = 1
