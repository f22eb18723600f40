"""Readers for the official file formats, with numpy only.

- IDX (MNIST, Fashion-MNIST): :func:`read_idx`, plain or gzip-compressed.
- CIFAR python pickles: :func:`read_cifar_pickle` (a restricted unpickler that builds only
  numpy arrays and plain containers, so a crafted file cannot run code).
- MATLAB v5 ``.mat`` (SVHN): :func:`read_mat`, numeric arrays, compressed or not.
- STL-10 binaries: :func:`read_stl10_images`, :func:`read_stl10_labels`.

Every reader raises :class:`DatasetFormatError` naming the file and what is wrong with it.
"""

from __future__ import annotations

import gzip
import pickle
import struct
import zlib
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from shiftpool.core.errors import InputError

__all__ = [
    "DatasetFormatError",
    "read_cifar_pickle",
    "read_idx",
    "read_mat",
    "read_stl10_images",
    "read_stl10_labels",
]


class DatasetFormatError(InputError):
    """A data file or folder does not have the layout its data set promises."""


def _open_maybe_gzip(path: Path) -> BinaryIO:
    return gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb")


# ---------------------------------------------------------------------------------------------
# IDX

_IDX_DTYPES = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}


def read_idx(path: str | Path) -> np.ndarray:
    """Decode an IDX file (``.gz`` or not) into an array of its declared shape.

    Example:
        >>> read_idx("MNIST/raw/t10k-labels-idx1-ubyte.gz").shape  # doctest: +SKIP
        (10000,)
    """
    path = Path(path)
    try:
        with _open_maybe_gzip(path) as f:
            raw = f.read()
    except (OSError, EOFError, zlib.error) as err:
        raise DatasetFormatError(f"{path}: cannot read IDX file ({err})") from err
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES:
        raise DatasetFormatError(f"{path}: not an IDX file (bad magic number {raw[:4]!r})")
    dtype, ndim = _IDX_DTYPES[raw[2]], raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DatasetFormatError(f"{path}: IDX header truncated")
    shape = struct.unpack(f">{ndim}I", raw[4:header])
    expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(raw) - header != expected:
        raise DatasetFormatError(
            f"{path}: IDX header declares shape {shape} ({expected} bytes) "
            f"but the file holds {len(raw) - header} bytes of data"
        )
    array = np.frombuffer(raw, dtype=dtype, offset=header).reshape(shape)
    return array.astype(dtype.newbyteorder("="))


# ---------------------------------------------------------------------------------------------
# CIFAR pickles

_NUMPY_GLOBALS = {
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "scalar"),
    ("_codecs", "encode"),  # how protocol-2 pickles written by Python 3 store bytes
}


class _ArrayUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _NUMPY_GLOBALS:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}")


def read_cifar_pickle(path: str | Path) -> dict[str, Any]:
    """Load one CIFAR python batch (a dict; py2-era pickles decode with ``latin1``).

    Example:
        >>> read_cifar_pickle("cifar-10-batches-py/test_batch")["data"].shape  # doctest: +SKIP
        (10000, 3072)
    """
    path = Path(path)
    try:
        with open(path, "rb") as f:
            batch = _ArrayUnpickler(f, encoding="latin1").load()
    except (OSError, EOFError, pickle.UnpicklingError, ValueError, TypeError) as err:
        raise DatasetFormatError(f"{path}: cannot unpickle CIFAR batch ({err})") from err
    if not isinstance(batch, dict):
        raise DatasetFormatError(f"{path}: expected a dict, found {type(batch).__name__}")
    return batch


def cifar_arrays(
    batch: dict[str, Any], label_key: str, path: Path
) -> tuple[np.ndarray, np.ndarray]:
    """``(images (N, 3, 32, 32) uint8, labels (N,) int64)`` from one decoded CIFAR batch."""
    for key in ("data", label_key):
        if key not in batch:
            raise DatasetFormatError(f"{path}: CIFAR batch has no {key!r} entry")
    data = np.asarray(batch["data"])
    labels = np.asarray(batch[label_key])
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
        raise DatasetFormatError(
            f"{path}: 'data' must be uint8 of shape (N, 3072), found {data.dtype} {data.shape}"
        )
    if labels.shape != (data.shape[0],):
        raise DatasetFormatError(
            f"{path}: {len(labels)} labels for {data.shape[0]} images in {label_key!r}"
        )
    return data.reshape(-1, 3, 32, 32), labels.astype(np.int64)


# ---------------------------------------------------------------------------------------------
# MATLAB v5

_MI_COMPRESSED, _MI_MATRIX = 15, 14
_MI_DTYPES = {
    1: "i1", 2: "u1", 3: "i2", 4: "u2", 5: "i4", 6: "u4", 7: "f4", 9: "f8", 12: "i8", 13: "u8"
}  # fmt: skip
_MX_CLASSES = {
    6: "f8", 7: "f4", 8: "i1", 9: "u1", 10: "i2", 11: "u2", 12: "i4", 13: "u4", 14: "i8", 15: "u8"
}  # fmt: skip
_MX_COMPLEX_FLAG = 0x08


class _MatStream:
    """Cursor over the bytes of a v5 element stream with a fixed byte order."""

    def __init__(self, data: bytes | bytearray | memoryview, order: str, path: Path):
        self.data, self.order, self.path, self.pos = memoryview(data), order, path, 0

    def at_end(self) -> bool:
        return self.pos >= len(self.data)

    def tag(self) -> tuple[int, int, memoryview]:
        """``(type, nbytes, payload)`` of the next element; moves past it and its padding."""
        if self.pos + 8 > len(self.data):
            raise DatasetFormatError(f"{self.path}: MAT element tag truncated")
        first, second = struct.unpack_from(self.order + "II", self.data, self.pos)
        if first >> 16:  # small data element: type and size share 4 bytes, payload in the next 4
            dtype, nbytes = first & 0xFFFF, first >> 16
            payload = self.data[self.pos + 4 : self.pos + 4 + nbytes]
            self.pos += 8
            return dtype, nbytes, payload
        dtype, nbytes = first, second
        start = self.pos + 8
        if start + nbytes > len(self.data):
            raise DatasetFormatError(
                f"{self.path}: MAT element declares {nbytes} bytes, only "
                f"{len(self.data) - start} remain (truncated file?)"
            )
        # compressed elements are not padded; all others end on an 8-byte boundary
        self.pos = start + (nbytes if dtype == _MI_COMPRESSED else -(-nbytes // 8) * 8)
        return dtype, nbytes, self.data[start : start + nbytes]

    def typed(self, expect: str | None = None) -> np.ndarray:
        dtype, _, payload = self.tag()
        if dtype not in _MI_DTYPES:
            raise DatasetFormatError(f"{self.path}: unsupported MAT data type {dtype}")
        return np.frombuffer(payload, dtype=self.order + _MI_DTYPES[dtype])


def _mat_matrix(payload: memoryview, order: str, path: Path) -> tuple[str, np.ndarray | None]:
    """``(name, array)`` of one miMATRIX element; ``array`` is None for non-numeric classes."""
    sub = _MatStream(payload, order, path)
    flags = sub.typed()
    mx_class, is_complex = int(flags[0]) & 0xFF, bool(int(flags[0]) & (_MX_COMPLEX_FLAG << 8))
    dims = tuple(int(d) for d in sub.typed())
    name = bytes(sub.typed()).decode("latin1")
    if mx_class not in _MX_CLASSES:
        return name, None
    if is_complex:
        raise DatasetFormatError(f"{path}: variable {name!r} is complex; not supported")
    real = sub.typed()
    if real.size != int(np.prod(dims, dtype=np.int64)):
        raise DatasetFormatError(
            f"{path}: variable {name!r} declares dims {dims} but holds {real.size} values"
        )
    # MATLAB may store values in a smaller type than the class (e.g. doubles as uint8)
    array = real.astype(_MX_CLASSES[mx_class], copy=False).reshape(dims, order="F")
    return name, array


def _inflate(payload: memoryview, path: Path) -> bytearray:
    inflater, out, step = zlib.decompressobj(), bytearray(), 1 << 24
    try:
        for start in range(0, len(payload), step):
            out += inflater.decompress(payload[start : start + step])
        out += inflater.flush()
    except zlib.error as err:
        raise DatasetFormatError(f"{path}: corrupt compressed MAT element ({err})") from err
    return out


def read_mat(path: str | Path) -> dict[str, np.ndarray]:
    """The numeric arrays of a MATLAB v5 ``.mat`` file, by variable name, in MATLAB's shape.

    Reads what SVHN's files use (real numeric matrices, zlib-compressed or not); variables of
    other classes (cells, structs, strings, sparse) are skipped. v7.3 (HDF5) files are refused.

    Example:
        >>> read_mat("svhn/test_32x32.mat")["X"].shape  # doctest: +SKIP
        (32, 32, 3, 26032)
    """
    path = Path(path)
    raw = _read_bytes(path)
    if len(raw) < 128:
        raise DatasetFormatError(f"{path}: too short for a MAT file header")
    indicator = raw[126:128]
    if indicator not in (b"IM", b"MI"):
        raise DatasetFormatError(f"{path}: not a MATLAB v5 file (byte-order mark {indicator!r})")
    order = "<" if indicator == b"IM" else ">"
    version = struct.unpack_from(order + "H", raw, 124)[0]
    if version != 0x0100:
        raise DatasetFormatError(f"{path}: MAT version {version:#x} not supported (v5 only)")
    arrays: dict[str, np.ndarray] = {}
    stream = _MatStream(memoryview(raw)[128:], order, path)
    while not stream.at_end():
        dtype, _, payload = stream.tag()
        if dtype == _MI_COMPRESSED:
            dtype, _, payload = _MatStream(_inflate(payload, path), order, path).tag()
        if dtype == _MI_MATRIX:
            name, array = _mat_matrix(payload, order, path)
            if array is not None:
                arrays[name] = array
    return arrays


# ---------------------------------------------------------------------------------------------
# STL-10

_STL_SHAPE = (3, 96, 96)


def read_stl10_images(path: str | Path) -> np.ndarray:
    """STL-10 ``*_X.bin`` as uint8 ``(N, 3, 96, 96)`` (the file stores each plane column-major).

    Example:
        >>> read_stl10_images("stl10_binary/test_X.bin").shape  # doctest: +SKIP
        (8000, 3, 96, 96)
    """
    path = Path(path)
    raw = _read_bytes(path)
    per_image = int(np.prod(_STL_SHAPE))
    if len(raw) % per_image:
        raise DatasetFormatError(
            f"{path}: {len(raw)} bytes is not a whole number of 3x96x96 images (truncated?)"
        )
    images = np.frombuffer(raw, dtype=np.uint8).reshape(-1, *_STL_SHAPE)
    return np.ascontiguousarray(images.transpose(0, 1, 3, 2))


def read_stl10_labels(path: str | Path) -> np.ndarray:
    """STL-10 ``*_y.bin`` (labels 1..10) as int64 labels 0..9."""
    return np.frombuffer(_read_bytes(Path(path)), dtype=np.uint8).astype(np.int64) - 1


def _read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as err:
        raise DatasetFormatError(f"{path}: cannot read ({err})") from err
