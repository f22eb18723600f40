"""The C allocator setting that keeps large tensors' memory in the process between calls.

With its default settings glibc's ``malloc`` serves every allocation above a dynamic threshold
(128 KiB to 32 MiB) with a fresh ``mmap`` and hands it back with ``munmap`` when freed, and it
trims the top of the heap once more than 128 KiB is free there. A training step allocates and
frees the same large activations every time, so each step maps memory anew and pays a page fault
per 4 KiB page touched: measured here, about 330k minor faults per 105 operator calls, and
identical computations differing 2-8x in time from call to call. Raising both thresholds
(``mallopt(M_MMAP_THRESHOLD)`` to glibc's maximum, 32 MiB on 64-bit, and
``mallopt(M_TRIM_THRESHOLD)`` to 1 GiB) keeps the memory mapped and reuses it: about 3k faults.

Measured on this project's 2-core machine (300 steps of ``shiftpool train``, ResNet-20 on
CIFAR-10, bf16 autocast, one thread, two interleaved runs each; CPU time user+sys): glibc
defaults 71.9 s (69.1-74.7), 583k minor faults; raised thresholds 70.1 s (69.8-70.5, -2.5%),
193k faults, half the system time; tcmalloc-minimal by ``LD_PRELOAD`` 62.7 s (60.0-65.4,
-13%), 175k faults; jemalloc 5.3 by ``LD_PRELOAD`` 93.8 s (+30%, 12M faults: it returns
memory eagerly). Glibc's dynamic mmap threshold already lifts most of a training loop's
allocations into the heap after warm-up; the setting matters most for timing single large
operators (the benchmarks apply it by default) and costs nothing. The ``shiftpool`` command
applies it at start; for the larger gain, run it under tcmalloc:
``LD_PRELOAD=/usr/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4 shiftpool train ...``
(Debian: ``apt-get install libtcmalloc-minimal4``).

:func:`configure_malloc` applies a setting once per process: ``"fast"`` (the raised thresholds)
or ``"default"`` (leave glibc alone), from its argument or the environment variable
``SHIFTPOOL_MALLOC``. Where the C library is not glibc (macOS, musl, Windows) or another
allocator is preloaded (``LD_PRELOAD`` of jemalloc or tcmalloc), nothing is changed and the
returned record says so. Tensors above 32 MiB are still mapped per call (glibc refuses a higher
mmap threshold); a preloaded jemalloc or tcmalloc also keeps those.

Example:
    >>> record = configure_malloc("default")  # "fast" stays once applied: glibc cannot undo it
    >>> record["setting"] in ("default", "fast", "preloaded")
    True
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import platform

from shiftpool.core.errors import InputError

__all__ = ["MALLOC_ENV", "MALLOC_SETTINGS", "configure_malloc", "malloc_setting"]

MALLOC_ENV = "SHIFTPOOL_MALLOC"
MALLOC_SETTINGS: tuple[str, ...] = ("fast", "default")

M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
TRIM_THRESHOLD = 1 << 30
#: tried in order: glibc accepts at most half its heap size (32 MiB on 64-bit).
MMAP_THRESHOLDS = (1 << 30, 1 << 25)

_applied: dict | None = None


def _preloaded() -> str | None:
    """The allocator named in ``LD_PRELOAD`` (jemalloc, tcmalloc, mimalloc), if any."""
    for part in os.environ.get("LD_PRELOAD", "").replace(":", " ").split():
        name = os.path.basename(part)
        for allocator in ("jemalloc", "tcmalloc", "mimalloc"):
            if allocator in name:
                return name
    return None


def _glibc() -> ctypes.CDLL | None:
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return None
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return None


def configure_malloc(setting: str | None = None) -> dict:
    """Apply an allocator setting (see the module docstring) and return what holds now.

    Args:
        setting: ``"fast"`` or ``"default"``; ``None`` reads ``$SHIFTPOOL_MALLOC`` (default
            ``"fast"``).

    Returns:
        ``{"setting": ..., "detail": ...}``: the setting in force (``"fast"``, ``"default"``,
        ``"preloaded"`` or ``"unavailable"``) and a sentence on it; the thresholds under
        ``"fast"``.

    Raises:
        InputError: an unknown setting (from the argument or the environment).
    """
    global _applied
    source = "argument"
    if setting is None:
        setting, source = os.environ.get(MALLOC_ENV, "").strip() or "fast", MALLOC_ENV
    if setting not in MALLOC_SETTINGS:
        raise InputError(f"{source}: unknown allocator setting {setting!r}; allowed: "
                         f"{', '.join(MALLOC_SETTINGS)}")
    if _applied is not None and _applied["setting"] == "fast":
        return dict(_applied)  # mallopt cannot be undone in a process: keep the record true
    preloaded = _preloaded()
    if setting == "default":
        record = {"setting": "default", "detail": "glibc malloc, default thresholds"}
        if preloaded:
            record = {"setting": "preloaded", "detail": f"LD_PRELOAD {preloaded}"}
    elif preloaded:
        record = {"setting": "preloaded", "detail": f"LD_PRELOAD {preloaded}; mallopt skipped"}
    else:
        record = _raise_thresholds()
    _applied = record
    return dict(record)


def _raise_thresholds() -> dict:
    libc = _glibc()
    if libc is None:
        return {"setting": "unavailable", "detail": "not glibc: the C allocator is left alone"}
    mmap = next((v for v in MMAP_THRESHOLDS if libc.mallopt(M_MMAP_THRESHOLD, v) == 1), None)
    trimmed = libc.mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD) == 1
    if mmap is None or not trimmed:
        return {"setting": "unavailable", "detail": "glibc refused mallopt"}
    return {"setting": "fast", "mmap_threshold": mmap, "trim_threshold": TRIM_THRESHOLD,
            "detail": f"glibc mallopt: M_MMAP_THRESHOLD={mmap}, M_TRIM_THRESHOLD="
                      f"{TRIM_THRESHOLD}"}


def malloc_setting() -> dict:
    """What :func:`configure_malloc` applied in this process (``"default"`` if never called).

    Example:
        >>> malloc_setting()["setting"] in ("fast", "default", "preloaded", "unavailable")
        True
    """
    if _applied is not None:
        return dict(_applied)
    preloaded = _preloaded()
    if preloaded:
        return {"setting": "preloaded", "detail": f"LD_PRELOAD {preloaded}"}
    return {"setting": "default", "detail": "not configured by shiftpool"}
