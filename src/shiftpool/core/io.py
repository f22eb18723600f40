"""Files that are never seen half-written, and a lock that gives one writer a folder.

Atomic writes go to a temporary file in the target's folder, are flushed to disk (``fsync``),
then renamed over the target: a reader, or a run killed mid-write, sees the old file or the new
one, never part of one. Every file gets the usual mode (``0666`` less the umask), like any file
``open()`` creates. :func:`atomic_write_set` writes several files as one set: all are written
first, then all renamed, so a reader never meets a new file beside an old one of the same set
unless it reads during the renames themselves (microseconds, no I/O).

:class:`FolderLock` is an advisory ``flock`` on ``FOLDER/.shiftpool.lock``; a second holder gets
:class:`FolderLockedError` naming the first one's PID and host. The kernel drops the lock when
the process dies, so a killed run never leaves a stale lock behind.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import tempfile
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import IO

from shiftpool.core.errors import InputError
from shiftpool.core.jsonable import without_nan

LOCK_NAME = ".shiftpool.lock"


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _temporary_file(path: Path) -> tuple[int, Path]:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the file the usual mode
    return fd, Path(tmp)


def _write_temporary(path: Path, write: Callable[[IO[bytes]], object]) -> Path:
    """Write a temporary sibling of ``path`` through ``write`` and flush it to disk."""
    fd, tmp = _temporary_file(path)
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return tmp


def atomic_write(path: str | os.PathLike[str], write: Callable[[IO[bytes]], object]) -> Path:
    """Call ``write(binary_file)`` on a temporary file, then move it onto ``path``.

    Example:
        >>> import tempfile, pathlib
        >>> target = pathlib.Path(tempfile.mkdtemp()) / "x.bin"
        >>> atomic_write(target, lambda f: f.write(b"data")).read_bytes()
        b'data'
    """
    path = Path(path)
    tmp = _write_temporary(path, write)
    try:
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def atomic_write_text(path: str | os.PathLike[str], text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    return atomic_write(path, lambda handle: handle.write(text.encode("utf-8")))


def json_text(data: object) -> str:
    """``data`` as indented JSON text; NaN and infinities become ``null`` (JSON has neither)."""
    return json.dumps(without_nan(data), indent=2, allow_nan=False) + "\n"


def atomic_write_json(path: str | os.PathLike[str], data: object) -> Path:
    """Write ``data`` as indented JSON to ``path`` atomically."""
    return atomic_write_text(path, json_text(data))


def atomic_write_set(files: Mapping[str | os.PathLike[str], str | bytes]) -> list[Path]:
    """Write several files as one set: every temporary file first, then every rename.

    If any write fails, nothing is renamed and the targets keep their old contents.

    Example:
        >>> import tempfile, pathlib
        >>> folder = pathlib.Path(tempfile.mkdtemp())
        >>> [p.name for p in atomic_write_set({folder / "a.txt": "1", folder / "b.txt": "2"})]
        ['a.txt', 'b.txt']
    """
    staged: list[tuple[Path, Path]] = []
    try:
        for target, content in files.items():
            data = content.encode("utf-8") if isinstance(content, str) else content
            tmp = _write_temporary(Path(target), lambda handle, d=data: handle.write(d))
            staged.append((Path(target), tmp))
        for target, tmp in staged:
            os.replace(tmp, target)
    finally:
        for _, tmp in staged:
            tmp.unlink(missing_ok=True)
    return [target for target, _ in staged]


class FolderLockedError(InputError):
    """Another process holds the folder's lock."""


class FolderLock:
    """An exclusive lock on a folder for as long as the ``with`` block runs.

    Args:
        folder: the folder (created if missing).
        what: what the holder is doing, recorded in the lock file for the error message.

    Raises:
        FolderLockedError: another process holds it (the message names its PID and host).

    Example:
        >>> import tempfile
        >>> with FolderLock(tempfile.mkdtemp(), "compare") as lock:
        ...     lock.held
        True
    """

    def __init__(self, folder: str | os.PathLike[str], what: str = "shiftpool") -> None:
        self.folder = Path(folder)
        self.what = what
        self.held = False
        self._handle: IO[str] | None = None

    @property
    def path(self) -> Path:
        return self.folder / LOCK_NAME

    def acquire(self) -> FolderLock:
        import fcntl

        self.folder.mkdir(parents=True, exist_ok=True)
        handle = open(self.path, "a+", encoding="utf-8")  # noqa: SIM115 (held until release)
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            handle.close()
            raise FolderLockedError(
                f"shiftpool: {self.folder} is in use by {holder}; wait for it to finish or use "
                "another output folder"
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"PID {os.getpid()} on {socket.gethostname()} ({self.what})\n")
        handle.flush()
        self._handle, self.held = handle, True
        return self

    def release(self) -> None:
        if self._handle is None:
            return
        import fcntl

        with contextlib.suppress(OSError):
            self._handle.seek(0)
            self._handle.truncate()
        fcntl.flock(self._handle.fileno(), fcntl.LOCK_UN)
        self._handle.close()
        self._handle, self.held = None, False

    def __enter__(self) -> FolderLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


@contextlib.contextmanager
def locked_folder(folder: str | os.PathLike[str], what: str = "shiftpool") -> Iterator[FolderLock]:
    """``with locked_folder(path, "compare"):`` — :class:`FolderLock` as a context manager."""
    with FolderLock(folder, what) as lock:
        yield lock
