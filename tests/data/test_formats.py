"""Readers of the official formats: IDX, CIFAR pickles, MATLAB v5, STL-10 binaries."""

from __future__ import annotations

import gzip
import pickle
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest

from shiftpool.data.formats import (
    DatasetFormatError,
    read_cifar_pickle,
    read_idx,
    read_mat,
    read_stl10_images,
    read_stl10_labels,
)


def idx_bytes(array: np.ndarray) -> bytes:
    assert array.dtype == np.uint8
    return bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape) + (
        array.tobytes()
    )


@pytest.mark.parametrize("compress", [False, True])
def test_idx_round_trip(tmp_path: Path, compress: bool) -> None:
    array = np.random.default_rng(0).integers(0, 256, (5, 3, 4), dtype=np.uint8)
    data = idx_bytes(array)
    path = tmp_path / ("x.idx.gz" if compress else "x.idx")
    path.write_bytes(gzip.compress(data) if compress else data)
    out = read_idx(path)
    assert out.dtype == np.uint8 and out.flags.writeable
    np.testing.assert_array_equal(out, array)


def test_idx_truncated_and_bad_magic(tmp_path: Path) -> None:
    data = idx_bytes(np.zeros((10, 2, 2), dtype=np.uint8))
    (tmp_path / "short").write_bytes(data[:-3])
    with pytest.raises(DatasetFormatError, match=r"shape \(10, 2, 2\).*37 bytes"):
        read_idx(tmp_path / "short")
    (tmp_path / "magic").write_bytes(b"\x01\x02" + data[2:])
    with pytest.raises(DatasetFormatError, match="not an IDX file"):
        read_idx(tmp_path / "magic")
    (tmp_path / "cut.gz").write_bytes(gzip.compress(data)[:-10])
    with pytest.raises(DatasetFormatError, match="cannot read IDX"):
        read_idx(tmp_path / "cut.gz")


def test_cifar_pickle_loads_arrays(tmp_path: Path) -> None:
    batch = {"data": np.arange(6, dtype=np.uint8).reshape(2, 3), "labels": [1, 2]}
    path = tmp_path / "batch"
    path.write_bytes(pickle.dumps(batch, protocol=2))
    out = read_cifar_pickle(path)
    np.testing.assert_array_equal(out["data"], batch["data"])
    assert out["labels"] == [1, 2]


class _Exploit:
    def __reduce__(self):
        return (print, ("this must not run",))


def test_cifar_pickle_refuses_code(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    path = tmp_path / "evil"
    path.write_bytes(pickle.dumps({"data": _Exploit()}))
    with pytest.raises(DatasetFormatError, match=r"refusing to load builtins\.print"):
        read_cifar_pickle(path)
    assert "must not run" not in capsys.readouterr().out


@pytest.mark.parametrize("compress", [False, True])
def test_mat_matches_scipy_writer(tmp_path: Path, compress: bool) -> None:
    sio = pytest.importorskip("scipy.io")
    rng = np.random.default_rng(1)
    x = rng.integers(0, 256, (4, 5, 3, 7), dtype=np.uint8)
    y = rng.integers(1, 11, (7, 1)).astype(np.float64)
    path = tmp_path / "svhn_like.mat"
    sio.savemat(path, {"X": x, "y": y, "note": "text is skipped"}, do_compression=compress)
    arrays = read_mat(path)
    assert set(arrays) == {"X", "y"}
    assert arrays["X"].dtype == np.uint8 and arrays["y"].dtype == np.float64
    np.testing.assert_array_equal(arrays["X"], x)
    np.testing.assert_array_equal(arrays["y"], y)


def _mat_element(dtype: int, payload: bytes) -> bytes:
    if len(payload) <= 4:  # small data element format
        return struct.pack("<HH", dtype, len(payload)) + payload.ljust(4, b"\0")
    return struct.pack("<II", dtype, len(payload)) + payload + b"\0" * (-len(payload) % 8)


def _mat_double_stored_as_uint8(name: bytes, values: np.ndarray) -> bytes:
    """A MATLAB-style variable: class double, values stored compactly as miUINT8."""
    body = (
        _mat_element(6, struct.pack("<II", 6, 0))  # array flags: mxDOUBLE_CLASS
        + _mat_element(5, struct.pack(f"<{values.ndim}i", *values.shape))
        + _mat_element(1, name)
        + _mat_element(2, values.astype(np.uint8).tobytes(order="F"))
    )
    return struct.pack("<II", 14, len(body)) + body


def test_mat_compact_storage_and_compression(tmp_path: Path) -> None:
    values = np.array([[1, 2, 3], [4, 5, 10]], dtype=np.float64)
    element = _mat_double_stored_as_uint8(b"y", values)
    compressed = zlib.compress(element)
    header = b"MATLAB 5.0 MAT-file".ljust(116, b" ") + b"\0" * 8 + struct.pack("<H", 0x0100) + b"IM"
    path = tmp_path / "compact.mat"
    path.write_bytes(header + struct.pack("<II", 15, len(compressed)) + compressed)
    out = read_mat(path)["y"]
    assert out.dtype == np.float64
    np.testing.assert_array_equal(out, values)


def test_mat_rejects_other_files(tmp_path: Path) -> None:
    (tmp_path / "h5.mat").write_bytes(b"\x89HDF" + b"\0" * 200)
    with pytest.raises(DatasetFormatError, match="not a MATLAB v5 file"):
        read_mat(tmp_path / "h5.mat")
    values = np.ones((2, 2))
    header = b"M".ljust(124, b" ") + struct.pack("<H", 0x0100) + b"IM"
    whole = header + _mat_double_stored_as_uint8(b"y", values)
    (tmp_path / "cut.mat").write_bytes(whole[:-12])
    with pytest.raises(DatasetFormatError, match="truncated"):
        read_mat(tmp_path / "cut.mat")


def test_stl10_planes_are_column_major(tmp_path: Path) -> None:
    images = np.random.default_rng(2).integers(0, 256, (2, 3, 96, 96), dtype=np.uint8)
    # the file stores each colour plane column by column
    (tmp_path / "x.bin").write_bytes(images.transpose(0, 1, 3, 2).tobytes())
    (tmp_path / "y.bin").write_bytes(bytes([1, 10]))
    np.testing.assert_array_equal(read_stl10_images(tmp_path / "x.bin"), images)
    np.testing.assert_array_equal(read_stl10_labels(tmp_path / "y.bin"), [0, 9])
    (tmp_path / "short.bin").write_bytes(images.tobytes()[:-1])
    with pytest.raises(DatasetFormatError, match="not a whole number"):
        read_stl10_images(tmp_path / "short.bin")
