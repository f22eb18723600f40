"""Downloads with md5 verification, HTTP Range resume and a progress bar; archive extraction.

The bytes go to ``<file>.part``; only a transfer whose md5 matches is renamed to ``<file>``
(``os.replace``), so a file under its final name is always verified. An interrupted transfer keeps
its ``.part`` and the next call resumes it with a ``Range`` request; a wrong checksum deletes it.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import sys
import tarfile
import tempfile
import urllib.error
import urllib.request
import zipfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from shiftpool.core.errors import InputError

__all__ = ["DownloadError", "download_file", "extract_archive", "md5_of_file"]

_CHUNK = 1 << 20
_USER_AGENT = "shiftpool-data/0.1"


class DownloadError(InputError):
    """A download failed, or what arrived does not have the published checksum."""


def md5_of_file(path: str | Path, chunk_size: int = _CHUNK) -> str:
    """Hex md5 of a file, read in chunks.

    Example:
        >>> md5_of_file("MNIST/raw/t10k-labels-idx1-ubyte.gz")  # doctest: +SKIP
        'ec29112dd5afa0611ce80d1b7f02629c'
    """
    digest = hashlib.md5()
    with open(path, "rb") as f:
        while block := f.read(chunk_size):
            digest.update(block)
    return digest.hexdigest()


def download_file(
    urls: str | Sequence[str],
    dest: str | Path,
    md5: str | None,
    *,
    size: int | None = None,
    progress: bool = True,
    timeout: float = 60.0,
) -> Path:
    """Fetch ``dest`` from the first URL that delivers the right bytes; return ``dest``.

    Args:
        urls: one URL or several tried in order (mirrors).
        dest: final path; the transfer goes to ``dest + ".part"`` first.
        md5: expected hex md5 (``None`` skips the check — only for files without a published one).
        size: expected size in bytes, used for the progress bar when the server sends no length.
        progress: show a progress bar on stderr (tqdm when installed, plain lines otherwise).
        timeout: seconds to wait on the network before giving up on a URL.

    Raises:
        DownloadError: every URL failed, or delivered bytes with another checksum. A transfer cut
            short keeps its ``.part`` (the next call resumes it); a wrong checksum removes it.

    Example:
        >>> download_file("https://example.org/f.bin", "/tmp/f.bin", md5="...")  # doctest: +SKIP
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    failures = []
    for url in [urls] if isinstance(urls, str) else list(urls):
        try:
            _fetch_to_part(url, part, size=size, progress=progress, timeout=timeout)
        except (OSError, http.client.HTTPException) as err:
            failures.append(f"{url}: {_reason(err)}")
            if part.exists() and part.stat().st_size == 0:
                part.unlink()
            continue
        actual = md5_of_file(part)
        if md5 is not None and actual != md5:
            part.unlink(missing_ok=True)
            failures.append(f"{url}: checksum mismatch (md5 {actual}, expected {md5}); removed")
            continue
        os.replace(part, dest)
        return dest
    kept = ""
    if part.exists():
        kept = f"; the partial transfer is kept at {part}, run again to resume it"
    raise DownloadError(
        f"shiftpool.data: could not download {dest.name}: " + "; ".join(failures) + kept
    )


def _reason(err: BaseException) -> str:
    if isinstance(err, urllib.error.HTTPError):
        return f"HTTP {err.code} {err.reason}"
    if isinstance(err, urllib.error.URLError):
        return f"{err.reason}"
    if isinstance(err, http.client.IncompleteRead):
        return f"connection closed early ({len(err.partial)} more bytes arrived)"
    return f"{type(err).__name__}: {err}"


def _fetch_to_part(
    url: str, part: Path, *, size: int | None, progress: bool, timeout: float
) -> None:
    """Append the rest of ``url`` to ``part`` (resuming from its length), or raise."""
    have = part.stat().st_size if part.exists() else 0
    headers = {"User-Agent": _USER_AGENT}
    if have:
        headers["Range"] = f"bytes={have}-"
    request = urllib.request.Request(url, headers=headers)
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as err:
        if err.code == 416 and have:  # asked past the end: the .part is already whole
            return
        raise
    with response:
        resumed = have > 0 and response.status == 206
        if have and not resumed:
            have = 0  # the server ignored Range: start over
        length = response.headers.get("Content-Length")
        remaining = int(length) if length is not None else None
        total = have + remaining if remaining is not None else size
        received = 0
        with open(part, "ab" if resumed else "wb") as out, _progress_bar(
            part.name[: -len(".part")], total, have, progress
        ) as advance:
            while block := response.read(_CHUNK):
                out.write(block)
                received += len(block)
                advance(len(block))
        if remaining is not None and received < remaining:
            raise http.client.IncompleteRead(b"", remaining - received)


@contextmanager
def _progress_bar(name: str, total: int | None, initial: int, enabled: bool) -> Iterator:
    """Yield ``advance(n)``; tqdm when installed, else a line per 10% on stderr."""
    if not enabled:
        yield lambda n: None
        return
    try:
        from tqdm.auto import tqdm
    except ImportError:
        tqdm = None
    if tqdm is not None:
        with tqdm(
            total=total, initial=initial, unit="B", unit_scale=True, unit_divisor=1024, desc=name
        ) as bar:
            yield bar.update
        return
    state = {"done": initial, "next": 0.0}

    def advance(n: int) -> None:
        state["done"] += n
        if total and state["done"] / total >= state["next"]:
            print(f"{name}: {100 * state['done'] / total:5.1f}%", file=sys.stderr, flush=True)
            state["next"] += 0.1

    print(f"downloading {name} ({total or '?'} bytes)", file=sys.stderr, flush=True)
    yield advance


def extract_archive(
    archive: str | Path, into: str | Path, md5: str | None = None
) -> list[Path]:
    """Unpack a ``.tar.gz``/``.tgz``/``.tar``/``.zip`` into ``into``; return the paths it added.

    Args:
        archive: the archive file.
        into: the folder to unpack into (created if missing).
        md5: the archive's published md5; when given, an archive with any other checksum is
            refused before anything is unpacked.

    The archive is unpacked into a temporary folder inside ``into``; then only paths that do
    not exist yet are moved into place (a new top-level entry as a whole, or the missing files
    of a folder that is already there). Nothing already under ``into`` is deleted or replaced:
    the archive owns only what it adds. Entries that would land outside the folder (absolute
    paths, ``..``, links pointing out) are refused.

    Returns:
        The added paths, sorted: whole top-level entries, or single files added inside an
        existing folder. Files the archive holds that already exist are left as they are.

    Raises:
        DownloadError: wrong checksum, unsafe member, or not an archive that can be unpacked.

    Example:
        >>> extract_archive("cifar-10-python.tar.gz", "data")  # doctest: +SKIP
        [PosixPath('data/cifar-10-batches-py')]
    """
    archive, into = Path(archive), Path(into)
    if md5 is not None:
        actual = md5_of_file(archive)
        if actual != md5:
            raise DownloadError(
                f"shiftpool.data: {archive} has md5 {actual}, but the published {archive.name} "
                f"has md5 {md5}; refusing to unpack it. Delete it to download the published "
                f"file again, or unpack a copy you trust into {into} yourself"
            )
    into.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=into, prefix=".extract-") as tmp:
        staging = Path(tmp)
        try:
            if zipfile.is_zipfile(archive):
                with zipfile.ZipFile(archive) as zf:
                    _check_members(archive, zf.namelist())
                    zf.extractall(staging)
            else:
                with tarfile.open(archive) as tf:
                    _check_members(archive, tf.getnames())
                    if hasattr(tarfile, "data_filter"):  # Python >= 3.10.12
                        tf.extractall(staging, filter="data")
                    else:
                        tf.extractall(staging)
        except (tarfile.TarError, zipfile.BadZipFile, OSError, EOFError) as err:
            raise DownloadError(f"shiftpool.data: cannot unpack {archive}: {err}") from err
        added: list[Path] = []
        for entry in sorted(staging.iterdir()):
            _move_missing(entry, into / entry.name, added)
    return sorted(added)


def _move_missing(source: Path, target: Path, added: list[Path]) -> None:
    """Move ``source`` to ``target`` unless something is there; recurse into folders."""
    if not os.path.lexists(target):
        os.rename(source, target)
        added.append(target)
    elif source.is_dir() and not source.is_symlink() and target.is_dir():
        for child in sorted(source.iterdir()):
            _move_missing(child, target / child.name, added)
    # otherwise the file (or a file where the archive has a folder) is kept as it is


def _check_members(archive: Path, names: list[str]) -> None:
    for name in names:
        parts = Path(name).parts
        if Path(name).is_absolute() or ".." in parts:
            raise DownloadError(f"shiftpool.data: {archive} holds an unsafe path {name!r}")
