"""Image folders as data sets: layouts, seeded split, statistics, sizes, names, end to end."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from shiftpool.core.errors import InputError, InputTypeError, MissingFileError
from shiftpool.data import (
    DEFAULT_TEST_FRACTION,
    BatchLoader,
    DatasetFormatError,
    ImageDataset,
    check_dataset_name,
    folder_dataset,
    load_dataset,
)
from shiftpool.data.folder_sets import parse_folder_name, stratified_split

Image = pytest.importorskip("PIL.Image", reason="Pillow decodes image folders")


def write_image(
    path: Path, seed: int, size: tuple[int, int] = (6, 5), mode: str = "RGB"
) -> np.ndarray:
    """A random image file (PNG, or JPEG by suffix); returns the pixels as they decode."""
    shape = (*size, 3) if mode == "RGB" else size
    pixels = np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels, mode).save(path)
    return np.asarray(Image.open(path).convert(mode))


def class_tree(root: Path, counts: dict[str, int], **kwargs) -> dict[Path, np.ndarray]:
    """``root/<class>/<i>.png`` for each class; ``{path: pixels}``."""
    return {
        root / name / f"{i}.png": write_image(root / name / f"{i}.png", hash((name, i)) % 999,
                                              **kwargs)
        for name, n in counts.items()
        for i in range(n)
    }


def pixels_of(dataset: ImageDataset, k: int) -> np.ndarray:
    return dataset.images[k].permute(1, 2, 0).squeeze(-1).numpy()


def test_class_folders_split_stratified_and_seeded(tmp_path: Path) -> None:
    files = class_tree(tmp_path, {"cat": 10, "dog": 5, "emu": 1})
    train = load_dataset(f"folder:{tmp_path}", "train")
    test = load_dataset(str(tmp_path), "test")
    assert isinstance(train, ImageDataset) and train.split == "train"
    assert train.classes == test.classes == ("cat", "dog", "emu") and train.num_classes == 3
    # 20% of each class, rounded, at least one training image: cat 2, dog 1, emu 0
    assert DEFAULT_TEST_FRACTION == 0.2
    assert torch.bincount(test.labels, minlength=3).tolist() == [2, 1, 0]
    assert torch.bincount(train.labels, minlength=3).tolist() == [8, 4, 1]
    # every file exactly once, with its label and its pixels
    seen = [pixels_of(train, k) for k in range(len(train))] + [
        pixels_of(test, k) for k in range(len(test))
    ]
    labels = train.labels.tolist() + test.labels.tolist()
    assert len(seen) == len(files) == 16
    for path, pixels in files.items():
        matches = [i for i, s in enumerate(seen) if np.array_equal(s, pixels)]
        assert len(matches) == 1 and labels[matches[0]] == train.classes.index(path.parent.name)
    again = load_dataset(f"folder:{tmp_path}", "test")
    assert torch.equal(again.images, test.images)
    other = load_dataset(f"folder:{tmp_path}?seed=1&test_fraction=0.5", "test")
    assert torch.bincount(other.labels, minlength=3).tolist() == [5, 3, 0]  # 2.5 rounds up
    assert not torch.equal(other.images[:2], test.images[:2])


def test_stratified_split_rounds_half_up_and_keeps_a_training_image() -> None:
    labels = [0] * 5 + [1] * 2 + [2] * 1 + [3] * 13
    train, test = stratified_split(labels, 0.2, seed=4)
    assert np.bincount(np.asarray(labels)[test], minlength=4).tolist() == [1, 0, 0, 3]
    assert sorted(np.concatenate([train, test]).tolist()) == list(range(len(labels)))
    half = stratified_split(labels, 0.5, seed=4)[1]
    assert np.bincount(np.asarray(labels)[half], minlength=4).tolist() == [3, 1, 0, 7]


def test_statistics_come_from_the_training_images(tmp_path: Path) -> None:
    class_tree(tmp_path, {"a": 4, "b": 4})
    train = load_dataset(f"folder:{tmp_path}", "train")
    test = load_dataset(f"folder:{tmp_path}", "test")
    pixels = train.images.double() / 255
    expected_mean = pixels.mean(dim=(0, 2, 3)).tolist()
    expected_std = pixels.permute(1, 0, 2, 3).reshape(3, -1).std(dim=1, unbiased=False).tolist()
    assert train.mean == pytest.approx(expected_mean, abs=1e-12)
    assert train.std == pytest.approx(expected_std, abs=1e-12)
    assert test.mean == train.mean and test.std == train.std  # not the test images' own
    given = load_dataset(f"folder:{tmp_path}?mean=0.1,0.2,0.3&std=0.5,0.5,0.5", "test")
    assert given.mean == (0.1, 0.2, 0.3) and given.std == (0.5, 0.5, 0.5)


def test_greyscale_folder_gets_one_channel_and_one_value_statistics(tmp_path: Path) -> None:
    write_image(tmp_path / "a" / "0.jpg", 0, mode="L")  # a real JPEG, lossy
    write_image(tmp_path / "b" / "1.png", 1, mode="L")
    jpeg = np.asarray(Image.open(tmp_path / "a" / "0.jpg"))
    train = folder_dataset(tmp_path, "train", test_fraction=0.2)
    assert train.images.shape == (2, 1, 6, 5) and len(train.mean) == len(train.std) == 1
    assert np.array_equal(pixels_of(train, 0), jpeg)
    rgb = folder_dataset(tmp_path, "train", channels=3)
    assert rgb.images.shape == (2, 3, 6, 5) and len(rgb.mean) == 3
    assert torch.equal(rgb.images[:, 0], rgb.images[:, 2])  # grey replicated
    write_image(tmp_path / "b" / "2.png", 2, mode="RGB")  # one colour image: RGB for all
    assert folder_dataset(tmp_path, "train").images.shape[1] == 3


def test_split_folders_share_the_training_classes(tmp_path: Path) -> None:
    class_tree(tmp_path / "train", {"ant": 2, "bee": 2, "cow": 1})
    val = class_tree(tmp_path / "val", {"bee": 1, "cow": 2})  # no ant: fine
    train = load_dataset(f"{tmp_path}/", "train")
    held = load_dataset(f"{tmp_path}/", "val")
    assert train.classes == held.classes == ("ant", "bee", "cow")
    assert held.labels.tolist() == [1, 2, 2]
    assert np.array_equal(pixels_of(held, 0), val[tmp_path / "val" / "bee" / "0.png"])
    assert torch.equal(load_dataset(f"{tmp_path}/", "test").images, held.images)  # test = val
    class_tree(tmp_path / "val", {"dog": 1})
    with pytest.raises(DatasetFormatError, match=r"val: class folder 'dog' is not among the 3"):
        load_dataset(f"{tmp_path}/", "val")


def test_mixed_sizes_name_two_files_and_resize_fixes_it(tmp_path: Path) -> None:
    write_image(tmp_path / "a" / "small.png", 0, (6, 5))
    write_image(tmp_path / "b" / "tall.png", 1, (9, 5))
    with pytest.raises(DatasetFormatError) as info:
        load_dataset(f"folder:{tmp_path}", "train")
    message = str(info.value)
    assert "small.png is 6x5" in message and "tall.png is 9x5" in message
    assert "image_size=(h, w)" in message and "?size=" in message and "\n" not in message
    resized = load_dataset(f"folder:{tmp_path}?size=4x3", "train")
    assert resized.images.shape == (2, 3, 4, 3)
    square = folder_dataset(tmp_path, "train", image_size=7)
    assert square.images.shape == (2, 3, 7, 7)


def test_test_images_must_match_the_training_size(tmp_path: Path) -> None:
    write_image(tmp_path / "train" / "a" / "0.png", 0, (6, 5))
    write_image(tmp_path / "test" / "a" / "1.png", 1, (8, 8))
    with pytest.raises(DatasetFormatError, match=r"0\.png is 6x5, .*1\.png is 8x8"):
        load_dataset(f"folder:{tmp_path}", "test")
    assert load_dataset(f"folder:{tmp_path}?size=6x5", "test").images.shape == (1, 3, 6, 5)


def test_empty_or_missing_split_is_a_clear_error(tmp_path: Path) -> None:
    class_tree(tmp_path / "one", {"a": 1, "b": 1})
    with pytest.raises(DatasetFormatError, match=r"the test split is empty"):
        load_dataset(f"folder:{tmp_path / 'one'}", "test")
    with pytest.raises(ValueError, match=r"split must be one of train, test, val; got 'dev'"):
        load_dataset(f"folder:{tmp_path / 'one'}", "dev")


def test_names_and_the_validator(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    class_tree(tmp_path / "pets", {"a": 1})
    (tmp_path / "flat").mkdir()
    (tmp_path / "flat" / "x.png").write_bytes(b"")
    monkeypatch.chdir(tmp_path)
    for name in ("mnist", "mnist5k", "folder:pets", "./pets", str(tmp_path / "pets"),
                 "folder:pets?size=8x8&channels=1&mean=0.5&std=0.2&test_fraction=0.1&seed=3"):
        assert check_dataset_name(name) == name
    assert parse_folder_name("mnist") is None
    folder, options = parse_folder_name("folder:pets?size=8&seed=3")
    assert folder == Path("pets") and options.image_size == (8, 8) and options.seed == 3
    bad = [
        ("pets", InputError, r"unknown data set 'pets'; available: cifar10.*write ./pets"),
        ("cifar", InputError, r"unknown data set 'cifar'; available: cifar10, cifar100"),
        ("folder:nowhere", MissingFileError, r"image folder nowhere does not exist"),
        ("./pets/a/0.png", MissingFileError, r"0\.png is not a folder"),
        ("folder:flat", DatasetFormatError, r"flat: no class folders found"),
        ("folder:pets?size=0", InputError, r"image_size must be an integer >= 1, got 0"),
        ("folder:pets?size=big", InputError, r"size='big' .* must be HxW or N"),
        ("folder:pets?colour=1", InputError, r"option 'colour=1' .* not one of size=..."),
        ("folder:pets?channels=2", InputError, r"channels must be one of 1, 3; got 2"),
        ("folder:pets?mean=0.5", InputError, r"give both mean and std"),
        ("folder:pets?mean=0.5&std=0", InputError, r"std must be in \(0, inf\], got 0"),
        ("folder:pets?channels=3&mean=0.5&std=0.5", InputError, r"need 3 values"),
        ("folder:pets?test_fraction=1", InputError, r"test_fraction must be in \(0, 1\)"),
        ("folder:pets?seed=-1", InputError, r"seed must be an integer in \[0, "),
        ("folder:", InputError, r"names no folder"),
    ]
    for name, error, match in bad:
        with pytest.raises(error, match=match):
            check_dataset_name(name)
        with pytest.raises(error, match=match):
            load_dataset(name, "train")
    with pytest.raises(InputTypeError, match=r"must be a string, got 3"):
        check_dataset_name(3)  # type: ignore[arg-type]
    with pytest.raises(InputTypeError, match=r"channels must be an integer in \[1, 3\], got True"):
        folder_dataset(tmp_path / "pets", channels=True)  # type: ignore[arg-type]


def test_a_folder_trains_end_to_end(tmp_path: Path) -> None:
    """train() and the harness use images, labels, subset, num_classes, mean, std, name."""
    from shiftpool.harness.homogeneity import homogeneity_rows
    from shiftpool.train import TrainConfig, train

    for k, name in enumerate(("circle", "square")):
        for i in range(10):
            image = np.full((12, 12, 3), 40 + 150 * k, dtype=np.uint8)
            image[(i % 3) : (i % 3) + 6, 2:8] = 255 - 150 * k
            (tmp_path / "data" / name).mkdir(parents=True, exist_ok=True)
            suffix = ".jpg" if i % 2 else ".png"
            Image.fromarray(image).save(tmp_path / "data" / name / f"{i}{suffix}")
    dataset = f"folder:{tmp_path / 'data'}"
    config = TrainConfig(
        model="simple_cnn", model_options={"channels": [4, 8, 8]}, dataset=dataset, epochs=1,
        batch_size=4, lr=0.05, amp="off", num_threads=1, progress=False, tensorboard=False,
        out_dir=str(tmp_path / "run"),
    )  # fmt: skip
    result = train(config)
    assert 0.0 <= result.test_acc <= 1.0
    assert (tmp_path / "run" / "result.json").is_file()
    rows = homogeneity_rows([dataset], split="test", max_images=3)
    row = rows[0].to_dict()
    assert row["dataset"] == dataset and row["images"] == 3


def test_lazy_and_in_memory_forms_give_the_same_batches(tmp_path: Path) -> None:
    from shiftpool.data import image_folder

    class_tree(tmp_path, {"a": 3, "b": 3})
    lazy = image_folder(tmp_path)
    memory = lazy.to_memory("train")
    a = list(BatchLoader(lazy, 4, shuffle=True, seed=1, num_workers=0))
    b = list(BatchLoader(memory, 4, shuffle=True, seed=1))
    for (x, y), (u, v) in zip(a, b, strict=True):
        assert torch.equal(x, u) and torch.equal(y, v)
