"""User-facing errors: one clear line, exit code 2, no traceback.

Real bugs are *not* wrapped: they keep their traceback so they get fixed.
"""
from __future__ import annotations

import click


class DlhwError(click.ClickException):
    """A mistake the user can fix (bad config, path or file). Exit code 2."""

    exit_code = 2

    def show(self, file=None) -> None:  # one line, no "Error: " noise twice
        click.echo(f"error: {self.format_message()}", err=True, file=file)


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
