"""The one family of exceptions that means "the input was wrong", whatever its source.

The command line catches :class:`InputError` (and only it): one line on stderr, exit code 2. Any
other exception is a bug in shiftpool and keeps its traceback. Each subclass also derives from the
built-in exception a Python caller would expect (``TypeError``, ``FileNotFoundError``,
``ImportError``), so ``except FileNotFoundError`` keeps working.

Example:
    >>> try:
    ...     raise InputError("shiftpool: epochs must be >= 1, got 0")
    ... except ValueError as error:
    ...     print(error)
    shiftpool: epochs must be >= 1, got 0
"""

from __future__ import annotations


class InputError(ValueError):
    """A value, file or setting given to shiftpool that it cannot use; the message says which
    and what is allowed."""


class InputTypeError(InputError, TypeError):
    """An argument of the wrong type."""


class MissingFileError(InputError, FileNotFoundError):
    """A file or folder the user named (or that a run needs) is not there."""


class MissingExtraError(InputError, ImportError):
    """An optional dependency is not installed; the message names the extra that brings it."""
