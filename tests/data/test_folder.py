"""Image folders: a folder per class, Tiny ImageNet's layouts, decoding through workers."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from shiftpool.data import (
    BatchLoader,
    DatasetFormatError,
    ImageDataset,
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
    """A Tiny-ImageNet layout with 2 of the 200 classes (wnids.txt unsorted on purpose)."""
    top = root / "tiny-imagenet-200"
    (top).mkdir(parents=True)
    (top / "wnids.txt").write_text("n02\nn01\n")
    for i, wnid in enumerate(["n01", "n01", "n02", "n02"]):
        write_png(top / "train" / wnid / "images" / f"{wnid}_{i}.JPEG", i, (64, 64))
    (top / "train" / "n01" / "n01_boxes.txt").write_text("not an image\n")
    write_png(top / "val" / "images" / "val_0.JPEG", 9, (64, 64))
    (top / "val" / "val_annotations.txt").write_text("val_0.JPEG\tn02\t0\t0\t9\t9\n")


def test_tiny_imagenet_subset_loads_in_memory(tmp_path: Path) -> None:
    """Fewer than 200 classes load (the labels index wnids.txt's sorted ids), in memory."""
    _tiny_imagenet(tmp_path)
    train = load_dataset("tinyimagenet", "train", root=tmp_path, download=False)
    val = load_dataset("tinyimagenet", "val", root=tmp_path, download=False)
    test = load_dataset("tinyimagenet", "test", root=tmp_path, download=False)
    assert isinstance(train, ImageDataset)
    assert train.classes == val.classes == ("n01", "n02") and train.num_classes == 2
    assert train.labels.tolist() == [0, 0, 1, 1] and val.labels.tolist() == [1]
    assert torch.equal(val.images, test.images)
    assert train.images.shape == (4, 3, 64, 64) and train.images.dtype == torch.uint8
    assert train.mean == dataset_info("tinyimagenet").mean  # the full set's statistics
    assert train.subset([3]).labels.tolist() == [1]
    first = np.asarray(Image.open(tmp_path / "tiny-imagenet-200/train/n01/images/n01_0.JPEG"))
    assert np.array_equal(train.images[0].permute(1, 2, 0).numpy(), first)


def test_tiny_imagenet_of_another_size_is_refused(tmp_path: Path) -> None:
    _tiny_imagenet(tmp_path)
    for path in (tmp_path / "tiny-imagenet-200" / "train").rglob("*.JPEG"):
        write_png(path, 0, (32, 32))
    with pytest.raises(DatasetFormatError, match=r"shape \(3, 32, 32\).*expected \(3, 64, 64\)"):
        load_dataset("tinyimagenet", "train", root=tmp_path, download=False)


def test_grey_folder_needs_no_statistics(tmp_path: Path) -> None:
    """image_folder(channels=1) used to fail with ImageNet's 3-value defaults."""
    write_png(tmp_path / "a" / "x.png", 0)
    write_png(tmp_path / "b" / "y.png", 1)
    ds = image_folder(tmp_path, channels=1)
    grey = np.stack([np.asarray(Image.open(p).convert("L")) for p in ds.paths]) / 255
    assert ds.mean == pytest.approx((grey.mean(),)) and ds.std == pytest.approx((grey.std(),))
    memory = ds.to_memory("train")
    assert memory.images.shape == (2, 1, 6, 5) and memory.mean == ds.mean
    assert ds.subset([1]).labels.tolist() == [1] and ds.subset([1]).mean == ds.mean
    with pytest.raises(ValueError, match=r"mean and std need 1 values .* got 3 and 3"):
        image_folder(tmp_path, channels=1, mean=(0.5,) * 3, std=(0.5,) * 3)


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
    folder = image_folder(tmp_path, mean=(0.5,) * 3, std=(0.5,) * 3)
    loader = BatchLoader(folder, 2, shuffle=False, num_workers=0, prefetch=1)
    with pytest.raises(DatasetFormatError, match=r"bad\.png: cannot decode image"):
        list(loader)
    with pytest.raises(DatasetFormatError, match=r"bad\.png: cannot decode image"):
        _ = image_folder(tmp_path).mean  # the statistics pass reads every image


def test_lazy_folder_of_mixed_sizes_names_the_files_in_the_loader(tmp_path: Path) -> None:
    write_png(tmp_path / "a" / "small.png", 0, (6, 5))
    write_png(tmp_path / "b" / "tall.png", 1, (9, 5))
    folder = image_folder(tmp_path, mean=(0.5,) * 3, std=(0.5,) * 3)
    loader = BatchLoader(folder, 2, shuffle=False, num_workers=0, prefetch=0)
    with pytest.raises(DatasetFormatError, match=r"small\.png is 6x5, .*tall\.png is 9x5"):
        list(loader)
    with pytest.raises(DatasetFormatError, match=r"small\.png is 6x5, .*tall\.png is 9x5"):
        folder.to_memory()
    resized = image_folder(tmp_path, size=(4, 4), mean=(0.5,) * 3, std=(0.5,) * 3)
    assert next(iter(BatchLoader(resized, 2, shuffle=False, num_workers=0)))[0].shape == (
        2, 3, 4, 4)
