"""The two ways a dataset can be wrong, as exceptions that name the path and what was expected.

Both subclass the built-in exception a caller would already catch (``FileNotFoundError``,
``ValueError``), so ``except FileNotFoundError`` keeps working.
"""

from __future__ import annotations

import os
from collections.abc import Iterable

from dynsweep.errors import DynsweepError


class DatasetNotFoundError(DynsweepError, FileNotFoundError):
    """A dataset root, folder or file that is not there."""


class DatasetFormatError(DynsweepError, ValueError):
    """Files that are there but are not in the format the loader reads."""


def require_dir(path: str | os.PathLike, what: str, expected: str) -> str:
    """``path`` as a string if it is a directory, else a DatasetNotFoundError saying what belongs there."""
    path = os.fspath(path)
    if not os.path.isdir(path):
        state = "is a file, not a directory" if os.path.exists(path) else "does not exist"
        raise DatasetNotFoundError(f"{what}: {path!r} {state}; expected {expected}")
    return path


def require_files(folder: str, names: Iterable[str], what: str, hint: str = "") -> None:
    """A DatasetNotFoundError listing the files of ``names`` missing from ``folder``."""
    missing = [name for name in names if not os.path.isfile(os.path.join(folder, name))]
    if missing:
        raise DatasetNotFoundError(
            f"{what}: {folder!r} lacks {', '.join(repr(m) for m in missing)}{'; ' + hint if hint else ''}"
        )
