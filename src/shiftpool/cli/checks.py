"""Checks of what a command needs besides valid options, done before any work starts:
output paths that can be written, the device, the data set, a model that builds."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from shiftpool.cli.options import Option, int_value
from shiftpool.core.errors import InputError
from shiftpool.train.checkpoint import check_model_builds
from shiftpool.train.config import (
    TrainConfig,
)

if TYPE_CHECKING:
    pass


# -- paths, devices and threads ---------------------------------------------------------------


def _existing_ancestor(path: Path, what: str) -> Path:
    """The nearest part of ``path`` (itself or a parent) that exists."""
    current = path
    while True:
        try:
            if current.exists() or current == current.parent:
                return current
        except (OSError, ValueError) as error:
            raise InputError(f"{what}: invalid path {str(path)!r} ({error})") from None
        current = current.parent


def _check_writable_folder(folder: Path, what: str) -> None:
    try:
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as error:
        raise InputError(f"{what}: cannot write in {str(folder)!r} ({error.strerror})") from None


def check_output_dir(path: str | os.PathLike[str], what: str) -> Path:
    """``path`` if it is a folder that can be written, or one that can be created there.

    Nothing is created: the nearest existing part of the path must be a writable folder.

    Raises:
        InputError: ``path`` is a file, lies under a file, is invalid, or its folder is not
            writable (one line naming ``what`` and the path).
    """
    if not str(path).strip():
        raise InputError(f"{what}: the folder name is empty")
    folder = Path(path).expanduser()
    existing = _existing_ancestor(folder, what)
    if not existing.is_dir():
        if existing == folder:
            raise InputError(f"{what}: {str(folder)!r} is a file, not a folder")
        raise InputError(f"{what}: cannot create {str(folder)!r}: {str(existing)!r} is a file, "
                         "not a folder")
    _check_writable_folder(existing, what)
    return folder


def check_output_file(path: str | os.PathLike[str], what: str) -> Path:
    """``path`` if a file can be written there (its folder existing or creatable).

    Raises:
        InputError: ``path`` is a folder, lies under a file, or cannot be written.
    """
    if not str(path).strip():
        raise InputError(f"{what}: the file name is empty")
    file = Path(path).expanduser()
    existing = _existing_ancestor(file, what)
    if (existing == file and file.is_dir()) or str(path).endswith(os.sep):
        raise InputError(f"{what}: {str(file)!r} is a folder; give a file name")
    check_output_dir(file.parent, what)
    return file


def check_input_dir(path: str | os.PathLike[str] | None, what: str) -> None:
    """Refuse a ``path`` that exists but is not a folder (a missing one may be created)."""
    if path is None:
        return
    existing = _existing_ancestor(Path(path).expanduser(), what)
    if not existing.is_dir():
        raise InputError(f"{what}: {str(existing)!r} is a file, not a folder")


def check_device(name: str) -> None:
    """Refuse ``cuda`` where CUDA is not available (before any data is loaded)."""
    from shiftpool.train.runtime import resolve_device

    resolve_device(name)


def set_threads(count: int | None) -> None:
    """``torch.set_num_threads(count)`` unless ``count`` is None (torch's choice)."""
    if count is not None:
        import torch

        torch.set_num_threads(count)


def threads_used() -> int:
    import torch

    return torch.get_num_threads()


NUM_THREADS = Option("num_threads", "CPU threads, >= 1", int_value(minimum=1),
                     shown="torch's choice", metavar="N")


# -- what a run needs -------------------------------------------------------------------------


def check_dataset(name: str) -> None:
    """Refuse an unknown data set or a bad image-folder name (cheap: no image is read)."""
    import shiftpool.data as sdata

    sdata.check_dataset_name(name)


def check_run(config: TrainConfig, *, check_model: bool = True) -> None:
    """Everything a run needs besides a valid config: a known data set, a model that builds
    (``check_model``), the device, a data root that is a folder and a writable output folder.
    Checked before any data is loaded."""
    if config.task == "segmentation":  # its folders and lists, no image read
        import shiftpool.data as sdata

        sdata.check_segmentation_data(config.dataset, "train", config.data_dir,
                                      download=config.download)
    else:
        check_dataset(config.dataset)
    if check_model:
        check_model_builds(config)
    check_device(config.device)
    check_input_dir(config.data_dir, "--data-dir")
    check_output_dir(config.out_dir, "--out-dir")
