"""The one base class of dynsweep's errors, so that the command line catches them in one place.

Every error dynsweep raises on purpose subclasses :class:`DynsweepError` (and, where a caller would
already catch one, the built-in it refines: ``ValueError``, ``FileNotFoundError``...). Its message
is one line that names the field or file at fault. ``dynsweep`` prints it and exits with
:attr:`DynsweepError.exit_status`: 1 for an error, 2 for a usage error.
"""

from __future__ import annotations


class DynsweepError(Exception):
    """An error whose message is meant for the user as it is: one line naming what is wrong."""

    exit_status = 1


class UsageError(DynsweepError, ValueError):
    """A command line that asks for something impossible (options that do not go together)."""

    exit_status = 2
