"""load_dataset: the real data under the data root, layouts, validation, missing files, fetching."""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import io
import pickle
import shutil
import tarfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import torch

import shiftpool.data.datasets as datasets_module
from shiftpool.data import (
    DatasetFormatError,
    DatasetNotFoundError,
    DownloadError,
    ImageDataset,
    Resource,
    dataset_info,
    load_dataset,
)

from .conftest import FileServer
from .test_formats import idx_bytes

MNIST_PER_CLASS = {
    "train": [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949],
    "test": [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009],
}
REAL = [
    ("mnist", "train", (1, 28, 28), MNIST_PER_CLASS["train"]),
    ("mnist", "test", (1, 28, 28), MNIST_PER_CLASS["test"]),
    ("fashionmnist", "train", (1, 28, 28), [6000] * 10),
    ("fashionmnist", "test", (1, 28, 28), [1000] * 10),
    ("cifar10", "train", (3, 32, 32), [5000] * 10),
    ("cifar10", "test", (3, 32, 32), [1000] * 10),
]


@pytest.mark.parametrize(("name", "split", "shape", "per_class"), REAL)
def test_real_data(
    shared_root: Path, name: str, split: str, shape: tuple, per_class: list[int]
) -> None:
    count = sum(per_class)
    ds = load_dataset(name, split, root=shared_root, download=False)
    assert isinstance(ds, ImageDataset)
    assert ds.name == name and ds.split == split and ds.num_classes == 10
    assert ds.images.shape == (count, *shape) and ds.images.dtype == torch.uint8
    assert ds.images.is_contiguous()
    assert ds.labels.shape == (count,) and ds.labels.dtype == torch.int64
    assert ds.labels.bincount(minlength=10).tolist() == per_class  # also: labels in [0, 9]
    if split == "train":  # the table's statistics describe these pixels (CIFAR-10 here is a
        # JPEG-decoded copy, hence the tolerance)
        mean = ds.images[:10_000].float().mean(dim=(0, 2, 3)) / 255
        torch.testing.assert_close(mean, torch.tensor(ds.mean), atol=0.01, rtol=0)


def test_data_root_from_environment(shared_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SHIFTPOOL_DATA", str(shared_root))
    assert len(load_dataset("mnist", "test", download=False)) == 10_000


def _copy_mnist_test(shared_root: Path, tmp_path: Path, folder: str = "MNIST/raw") -> Path:
    target = tmp_path / folder
    target.mkdir(parents=True)
    for name in dataset_info("mnist").split_files["test"]:
        shutil.copy(shared_root / "MNIST" / "raw" / name, target / name)
    return target


def test_decompressed_idx_layout(shared_root: Path, tmp_path: Path) -> None:
    target = tmp_path / "mnist"
    target.mkdir()
    for name in dataset_info("mnist").split_files["test"]:
        with gzip.open(shared_root / "MNIST" / "raw" / name) as f:
            (target / name.removesuffix(".gz")).write_bytes(f.read())
    ds = load_dataset("mnist", "test", root=tmp_path, download=False)
    reference = load_dataset("mnist", "test", root=shared_root, download=False)
    assert torch.equal(ds.images, reference.images) and torch.equal(ds.labels, reference.labels)


def test_truncated_file_is_caught(shared_root: Path, tmp_path: Path) -> None:
    target = _copy_mnist_test(shared_root, tmp_path)
    images = target / "t10k-images-idx3-ubyte.gz"
    images.write_bytes(images.read_bytes()[: images.stat().st_size // 2])
    with pytest.raises(DatasetFormatError, match=r"t10k-images-idx3-ubyte\.gz: cannot read IDX"):
        load_dataset("mnist", "test", root=tmp_path, download=False)


def _write_idx_gz(path: Path, array: np.ndarray) -> None:
    path.write_bytes(gzip.compress(idx_bytes(array), compresslevel=1))


def test_wrong_count_and_label_range_are_caught(shared_root: Path, tmp_path: Path) -> None:
    target = _copy_mnist_test(shared_root, tmp_path)
    labels_path = target / "t10k-labels-idx1-ubyte.gz"
    with gzip.open(labels_path) as f:
        labels = np.frombuffer(f.read()[8:], dtype=np.uint8).copy()
    labels[123] = 10
    _write_idx_gz(labels_path, labels)
    with pytest.raises(DatasetFormatError, match=r"mnist \(test\): labels span \[0, 10\]"):
        load_dataset("mnist", "test", root=tmp_path, download=False)
    _write_idx_gz(labels_path, labels[:100])
    _write_idx_gz(target / "t10k-images-idx3-ubyte.gz", np.zeros((100, 28, 28), np.uint8))
    with pytest.raises(DatasetFormatError, match=r"100 images, expected 10000"):
        load_dataset("mnist", "test", root=tmp_path, download=False)


def test_truncated_cifar_batch_is_caught(shared_root: Path, tmp_path: Path) -> None:
    target = tmp_path / "cifar-10-batches-py"
    target.mkdir()
    source = (shared_root / "cifar-10-batches-py" / "test_batch").read_bytes()
    (target / "test_batch").write_bytes(source[:100_000])
    with pytest.raises(DatasetFormatError, match="test_batch: cannot unpickle"):
        load_dataset("cifar10", "test", root=tmp_path, download=False)


def test_missing_offline_says_what_and_where(tmp_path: Path) -> None:
    with pytest.raises(DatasetNotFoundError) as info:
        load_dataset("fashionmnist", "test", root=tmp_path, download=False)
    message = str(info.value)
    assert str(tmp_path / "FashionMNIST" / "raw") in message
    assert "missing t10k-images-idx3-ubyte.gz, t10k-labels-idx1-ubyte.gz" in message
    assert "data root from the data_dir argument" in message
    assert "fashion-mnist.s3-website" in message  # where a download would come from


def test_unknown_names() -> None:
    with pytest.raises(ValueError, match=r"unknown data set 'cifar'; available: cifar10"):
        load_dataset("cifar", "train")
    with pytest.raises(ValueError, match=r"unknown split 'val'; available: train, test"):
        load_dataset("cifar10", "val")


# -- fetching: the table's entries pointed at a local server -------------------------------------


def _use_spec(monkeypatch: pytest.MonkeyPatch, spec) -> None:
    monkeypatch.setattr(datasets_module, "dataset_info", lambda name: spec)


def _resource(server: FileServer, name: str, data: bytes, archive: bool = False) -> Resource:
    server.files["/" + name] = data
    md5 = hashlib.md5(data).hexdigest()
    return Resource(name, md5, (server.url("/" + name),), len(data), archive)


def _small_mnist_spec(file_server: FileServer):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (20, 28, 28), dtype=np.uint8)
    labels = np.arange(20, dtype=np.uint8) % 10
    names = dataset_info("mnist").split_files["test"]
    resources = (
        _resource(file_server, names[0], gzip.compress(idx_bytes(images))),
        _resource(file_server, names[1], gzip.compress(idx_bytes(labels))),
    )
    spec = dataclasses.replace(
        dataset_info("mnist"), counts={"train": 60_000, "test": 20}, resources=resources
    )
    return spec, images, names


def test_fetch_missing_files(
    file_server: FileServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec, images, names = _small_mnist_spec(file_server)
    _use_spec(monkeypatch, spec)
    ds = load_dataset("mnist", "test", root=tmp_path, progress=False)
    np.testing.assert_array_equal(ds.images[:, 0].numpy(), images)
    assert sorted(p.name for p in (tmp_path / "MNIST" / "raw").iterdir()) == sorted(names)
    served = len(file_server.requests)
    assert served == 2
    load_dataset("mnist", "test", root=tmp_path, download=False)  # now read in place
    assert len(file_server.requests) == served


def test_parallel_loads_download_once(
    file_server: FileServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec, images, _ = _small_mnist_spec(file_server)
    _use_spec(monkeypatch, spec)
    file_server.delay = 0.2  # both callers are waiting at the same time
    with ThreadPoolExecutor(2) as pool:
        loaded = list(pool.map(lambda _: load_dataset("mnist", "test", root=tmp_path,
                                                      progress=False), range(2)))  # fmt: skip
    assert all(np.array_equal(ds.images[:, 0].numpy(), images) for ds in loaded)
    assert len(file_server.requests) == 2  # one per file, not per caller


def test_fetch_and_unpack_archive(
    file_server: FileServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = np.random.default_rng(1).integers(0, 256, (30, 3072), dtype=np.uint8)
    batch = pickle.dumps({"data": data, "labels": [i % 10 for i in range(30)]})
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        info = tarfile.TarInfo("cifar-10-batches-py/test_batch")
        info.size = len(batch)
        tar.addfile(info, io.BytesIO(batch))
    archive = _resource(file_server, "cifar-10-python.tar.gz", buffer.getvalue(), archive=True)
    spec = dataclasses.replace(
        dataset_info("cifar10"), counts={"train": 50_000, "test": 30}, resources=(archive,)
    )
    _use_spec(monkeypatch, spec)
    ds = load_dataset("cifar10", "test", root=tmp_path, progress=False)
    assert ds.images.shape == (30, 3, 32, 32)
    np.testing.assert_array_equal(ds.images.reshape(30, -1).numpy(), data)
    assert (tmp_path / "cifar-10-python.tar.gz").is_file()  # verified archive kept


# -- the other official layouts, written small -------------------------------------------------


def _write_cifar100(root: Path, images: np.ndarray, labels: np.ndarray) -> None:
    folder = root / "cifar-100-python"
    folder.mkdir()
    batch = {"data": images.reshape(len(images), -1), "fine_labels": labels.tolist(),
             "coarse_labels": [0] * len(labels)}  # fmt: skip
    (folder / "test").write_bytes(pickle.dumps(batch, protocol=2))


def _write_svhn(root: Path, images: np.ndarray, labels: np.ndarray) -> None:
    sio = pytest.importorskip("scipy.io")
    (root / "svhn").mkdir()
    x = images.transpose(2, 3, 1, 0)  # MATLAB's (H, W, C, N)
    y = np.where(labels == 0, 10, labels).reshape(-1, 1).astype(np.uint8)  # digit 0 is label 10
    sio.savemat(root / "svhn" / "test_32x32.mat", {"X": x, "y": y}, do_compression=True)


def _write_stl10(root: Path, images: np.ndarray, labels: np.ndarray) -> None:
    (root / "stl10_binary").mkdir()
    planes = images.transpose(0, 1, 3, 2).tobytes()  # column-major planes
    (root / "stl10_binary" / "test_X.bin").write_bytes(planes)
    (root / "stl10_binary" / "test_y.bin").write_bytes((labels + 1).astype(np.uint8).tobytes())


@pytest.mark.parametrize(
    ("name", "writer"),
    [("cifar100", _write_cifar100), ("svhn", _write_svhn), ("stl10", _write_stl10)],
)
def test_official_layouts(
    name: str, writer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = dataset_info(name)
    rng = np.random.default_rng(3)
    images = rng.integers(0, 256, (12, spec.channels, *spec.image_size), dtype=np.uint8)
    labels = np.arange(12) % spec.num_classes
    writer(tmp_path, images, labels)
    _use_spec(monkeypatch, dataclasses.replace(spec, counts={**spec.counts, "test": 12}))
    ds = load_dataset(name, "test", root=tmp_path, download=False)
    np.testing.assert_array_equal(ds.images.numpy(), images)
    np.testing.assert_array_equal(ds.labels.numpy(), labels)
    assert ds.num_classes == spec.num_classes


def test_unlabelled_split(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    spec = dataset_info("stl10")
    images = np.random.default_rng(4).integers(0, 256, (3, 3, 96, 96), dtype=np.uint8)
    (tmp_path / "stl10_binary").mkdir()
    planes = images.transpose(0, 1, 3, 2).tobytes()
    (tmp_path / "stl10_binary" / "unlabeled_X.bin").write_bytes(planes)
    _use_spec(monkeypatch, dataclasses.replace(spec, counts={**spec.counts, "unlabeled": 3}))
    ds = load_dataset("stl10", "unlabeled", root=tmp_path, download=False)
    assert ds.labels.tolist() == [-1, -1, -1]
    np.testing.assert_array_equal(ds.images.numpy(), images)


# -- archives already in the data root, and no network ------------------------------------------


def _tar(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def _cifar_test_batch(n: int = 30) -> bytes:
    data = np.random.default_rng(1).integers(0, 256, (n, 3072), dtype=np.uint8)
    return pickle.dumps({"data": data, "labels": [i % 10 for i in range(n)]})


def _real_mnist(root: Path) -> dict[Path, bytes]:
    """Stand-ins for the user's real MNIST files: they must survive any archive."""
    files = {root / "MNIST" / "raw" / n: f"real {n}".encode() for n in ("a.gz", "b.gz")}
    for path, data in files.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return files


def test_planted_archive_is_refused_before_unpacking(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An archive under the published name but with other bytes: no md5 match, nothing unpacked."""
    real = _real_mnist(tmp_path)
    planted = _tar({"MNIST/raw/a.gz": b"evil",
                    "cifar-10-batches-py/test_batch": _cifar_test_batch()})  # fmt: skip
    (tmp_path / "cifar-10-python.tar.gz").write_bytes(planted)
    spec = dataclasses.replace(dataset_info("cifar10"), counts={"train": 50_000, "test": 30})
    _use_spec(monkeypatch, spec)  # the published md5, the published URL (never reached)
    with pytest.raises(DownloadError) as info:
        load_dataset("cifar10", "test", root=tmp_path, progress=False)
    message = str(info.value)
    md5 = hashlib.md5(planted).hexdigest()
    assert f"{tmp_path / 'cifar-10-python.tar.gz'} has md5 {md5}" in message
    assert "c58f30108f718f92721af3b95e74349a; refusing to unpack it" in message
    assert all(path.read_bytes() == data for path, data in real.items())
    left = sorted(p.name for p in tmp_path.iterdir() if p.name != ".cifar10.lock")
    assert left == ["MNIST", "cifar-10-python.tar.gz"]  # nothing unpacked


def test_verified_archive_adds_only_what_is_missing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Even a genuine archive never deletes or replaces what is already in the data root."""
    real = _real_mnist(tmp_path)
    batch = _cifar_test_batch()
    archive = _tar({"MNIST/raw/a.gz": b"archive", "MNIST/raw/new.gz": b"new",
                    "cifar-10-batches-py/test_batch": batch})  # fmt: skip
    (tmp_path / "cifar-10-python.tar.gz").write_bytes(archive)
    resource = Resource("cifar-10-python.tar.gz", hashlib.md5(archive).hexdigest(),
                        ("http://127.0.0.1:9/unused",), archive=True)  # fmt: skip
    spec = dataclasses.replace(dataset_info("cifar10"), counts={"train": 50_000, "test": 30},
                               resources=(resource,))  # fmt: skip
    _use_spec(monkeypatch, spec)
    ds = load_dataset("cifar10", "test", root=tmp_path, progress=False)
    assert len(ds) == 30
    assert all(path.read_bytes() == data for path, data in real.items())  # a.gz kept as it was
    assert (tmp_path / "MNIST" / "raw" / "new.gz").read_bytes() == b"new"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".extract-")]


def _closed_port_url(path: str) -> str:
    """A URL on 127.0.0.1 where nothing listens: the connection is refused, as offline."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/{path}"


def test_no_network_says_which_url_and_how_to_place_files_by_hand(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    names = dataset_info("mnist").split_files["test"]
    urls = [_closed_port_url(n) for n in names]
    resources = tuple(Resource(n, "0" * 32, (u,)) for n, u in zip(names, urls, strict=True))
    _use_spec(monkeypatch, dataclasses.replace(dataset_info("mnist"), resources=resources))
    with pytest.raises(DownloadError) as info:
        load_dataset("mnist", "test", root=tmp_path, progress=False)
    message = str(info.value)
    assert "\n" not in message
    assert f"could not download {names[0]}: {urls[0]}: " in message
    folder = (tmp_path / "MNIST" / "raw").resolve()
    for name, url in zip(names, urls, strict=True):
        assert f"save {url} as {folder / name}" in message


def test_no_network_for_an_archive_says_where_it_goes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = _closed_port_url("cifar-10-python.tar.gz")
    resource = Resource("cifar-10-python.tar.gz", "0" * 32, (url,), archive=True)
    _use_spec(monkeypatch, dataclasses.replace(dataset_info("cifar10"), resources=(resource,)))
    with pytest.raises(DownloadError) as info:
        load_dataset("cifar10", "test", root=tmp_path, progress=False)
    message = str(info.value)
    assert "\n" not in message and f"{url}: " in message
    root = tmp_path.resolve()
    assert f"save {url} as {root / 'cifar-10-python.tar.gz'} (it is md5-checked" in message
    assert f"so that {root / 'cifar-10-batches-py'} holds test_batch" in message


def test_missing_offline_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(DatasetNotFoundError) as info:
        load_dataset("cifar10", "test", root=tmp_path, download=False)
    message = str(info.value)
    assert "\n" not in message and "pass download=True" in message
    assert f"save https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz as {tmp_path}" in message


@pytest.mark.parametrize("where", ["data", "labels"])
def test_malicious_cifar_pickle_runs_nothing(tmp_path: Path, where: str) -> None:
    """A live payload (it would create a file) inside a CIFAR batch, read through load_dataset."""
    import os

    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    batch = {"data": np.zeros((1, 3072), dtype=np.uint8), "labels": [0]}
    batch[where] = Payload()
    (tmp_path / "cifar-10-batches-py").mkdir()
    (tmp_path / "cifar-10-batches-py" / "test_batch").write_bytes(pickle.dumps(batch))
    with pytest.raises(DatasetFormatError, match=r"test_batch: cannot unpickle .*refusing to "
                                                 r"load (posix|os|nt)\.system"):
        load_dataset("cifar10", "test", root=tmp_path, download=False)
    assert not marker.exists()
