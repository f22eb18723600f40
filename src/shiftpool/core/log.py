"""Progress logs: a log is any ``Callable[[str], None]`` that takes one line of text.

The harness and the command line report progress through a ``log`` argument, so a caller can
collect the lines (tests), silence them, or send them to a file; :func:`stderr_log` is the
default everywhere.

Example:
    >>> lines: list[str] = []
    >>> log: Log = lines.append
    >>> log("trained max, seed 0")
    >>> lines
    ['trained max, seed 0']
"""

from __future__ import annotations

import sys
from collections.abc import Callable

__all__ = ["Log", "stderr_log"]

#: A progress log: called with one line of text (no newline) at a time.
Log = Callable[[str], None]


def stderr_log(text: str) -> None:
    """Write ``text`` as one line on stderr, flushed at once (the default log)."""
    print(text, file=sys.stderr, flush=True)
