"""Image folders: a folder per class, Tiny ImageNet's layouts, decoding through workers."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch

import shiftpool.data.datasets as datasets_module
from shiftpool.data import (
    BatchLoader,
    DatasetFormatError,
    ImageDataset,
    ImageFolderDataset,
    dataset_info,
    image_folder,
    load_dataset,
)

Image = pytest.importorskip("PIL.Image", reason="Pillow decodes image folders")


def write_png(path: Path, seed: int, size: tuple[int, int] = (6, 5)) -> np.ndarray:
    pixels = np.random.default_rng(seed).integers(0, 256, (*size, 3), dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path, format="PNG")  # lossless whatever the name
    return pixels


def test_folder_per_class(tmp_path: Path) -> None:
    cat = write_png(tmp_path / "cat" / "a.png", 0)
    write_png(tmp_path / "cat" / "nested" / "b.PNG", 1)
    dog = write_png(tmp_path / "dog" / "c.png", 2)
    (tmp_path / "dog" / "notes.txt").write_text("not an image")
    ds = image_folder(tmp_path)
    assert ds.classes == ("cat", "dog") and len(ds) == 3
    assert ds.labels.tolist() == [0, 0, 1]
    image, label = ds[0]
    assert image.dtype == torch.uint8 and image.shape == (3, 6, 5) and label == 0
    assert np.array_equal(image.permute(1, 2, 0).numpy(), cat)
    assert np.array_equal(ds[2][0].permute(1, 2, 0).numpy(), dog)


def test_grey_and_resize(tmp_path: Path) -> None:
    write_png(tmp_path / "a" / "x.png", 0)
    ds = image_folder(tmp_path, channels=1, size=(4, 3), mean=(0.5,), std=(0.5,))
    assert ds[0][0].shape == (1, 4, 3)


def test_validation_annotations(tmp_path: Path) -> None:
    val = tmp_path / "val"
    first = write_png(val / "images" / "val_0.JPEG", 0)
    write_png(val / "images" / "val_1.JPEG", 1)
    (val / "val_annotations.txt").write_text(
        "val_0.JPEG\tn02\t0\t0\t5\t5\nval_1.JPEG\tn01\t1\t1\t4\t4\n"
    )
    ds = image_folder(val, classes=("n01", "n02"))
    assert ds.labels.tolist() == [1, 0]
    assert np.array_equal(ds[0][0].permute(1, 2, 0).numpy(), first)
    (val / "images" / "val_1.JPEG").unlink()
    with pytest.raises(DatasetFormatError, match=r"val_1\.JPEG is missing"):
        image_folder(val, classes=("n01", "n02"))


def test_empty_folder_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(DatasetFormatError, match="no class folders"):
        image_folder(tmp_path)


def _tiny_imagenet(root: Path) -> None:
    top = root / "tiny-imagenet-200"
    (top).mkdir(parents=True)
    (top / "wnids.txt").write_text("n02\nn01\n")
    for i, wnid in enumerate(["n01", "n01", "n02", "n02"]):
        write_png(top / "train" / wnid / "images" / f"{wnid}_{i}.JPEG", i, (64, 64))
    write_png(top / "val" / "images" / "val_0.JPEG", 9, (64, 64))
    (top / "val" / "val_annotations.txt").write_text("val_0.JPEG\tn02\t0\t0\t9\t9\n")


def test_tiny_imagenet_layout(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _tiny_imagenet(tmp_path)
    spec = dataclasses.replace(
        dataset_info("tinyimagenet"), num_classes=2, counts={"train": 4, "val": 1, "test": 1}
    )
    monkeypatch.setattr(datasets_module, "dataset_info", lambda name: spec)
    train = load_dataset("tinyimagenet", "train", root=tmp_path, download=False)
    val = load_dataset("tinyimagenet", "val", root=tmp_path, download=False)
    assert isinstance(train, ImageFolderDataset)
    assert train.classes == val.classes == ("n01", "n02")  # sorted wnids, shared by splits
    assert train.labels.tolist() == [0, 0, 1, 1] and val.labels.tolist() == [1]
    assert train.mean == spec.mean
    wrong_count = dataclasses.replace(spec, counts={"train": 5, "val": 1, "test": 1})
    monkeypatch.setattr(datasets_module, "dataset_info", lambda name: wrong_count)
    with pytest.raises(DatasetFormatError, match=r"4 images under .* expected 5"):
        load_dataset("tinyimagenet", "train", root=tmp_path, download=False)


def test_batch_loader_decodes_with_workers(tmp_path: Path) -> None:
    arrays = [write_png(tmp_path / f"c{i % 3}" / f"{i}.png", i) for i in range(12)]
    folder = image_folder(tmp_path, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))
    # the same images in memory, in the folder's order
    order = [int(p.stem) for p in folder.paths]
    images = torch.stack([torch.from_numpy(arrays[i]).permute(2, 0, 1) for i in order])
    memory = ImageDataset(images, folder.labels, "m", folder.classes, folder.mean, folder.std)
    kwargs = {"shuffle": True, "seed": 3, "channels_last": True}
    from_disk = list(BatchLoader(folder, 5, num_workers=2, **kwargs))
    from_memory = list(BatchLoader(memory, 5, **kwargs))
    assert [len(y) for _, y in from_disk] == [5, 5, 2]
    for (a, la), (b, lb) in zip(from_disk, from_memory, strict=True):
        assert torch.equal(la, lb) and torch.equal(a, b)
        assert a.is_contiguous(memory_format=torch.channels_last)


def test_undecodable_file_is_reported_by_the_loader(tmp_path: Path) -> None:
    write_png(tmp_path / "a" / "good.png", 0)
    (tmp_path / "a" / "bad.png").write_bytes(b"not a png")
    loader = BatchLoader(image_folder(tmp_path), 2, shuffle=False, num_workers=0, prefetch=1)
    with pytest.raises(DatasetFormatError, match=r"bad\.png: cannot decode image"):
        list(loader)
