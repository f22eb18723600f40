"""The bottom layer of shiftpool: errors, atomic files, value checks and JSON helpers.

Every other package may import from here; this package imports only the standard library (and
torch where a helper works on tensors), never another part of shiftpool.
"""

from shiftpool.core.checks import (
    check_choice,
    check_finite,
    check_int,
    check_positive_int,
    check_range,
)
from shiftpool.core.errors import (
    InputError,
    InputTypeError,
    MissingExtraError,
    MissingFileError,
)
from shiftpool.core.io import (
    FolderLock,
    FolderLockedError,
    atomic_write,
    atomic_write_json,
    atomic_write_set,
    atomic_write_text,
)
from shiftpool.core.jsonable import finite_or_none, without_nan

__all__ = [
    "FolderLock",
    "FolderLockedError",
    "InputError",
    "InputTypeError",
    "MissingExtraError",
    "MissingFileError",
    "atomic_write",
    "atomic_write_json",
    "atomic_write_set",
    "atomic_write_text",
    "check_choice",
    "check_finite",
    "check_int",
    "check_positive_int",
    "check_range",
    "finite_or_none",
    "without_nan",
]
