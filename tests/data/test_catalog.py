"""The table of data sets and the data root."""

from __future__ import annotations

from pathlib import Path

import pytest

from shiftpool.data import DATASETS, data_root, dataset_info, list_datasets

ARRAY_SETS = ("mnist", "fashionmnist", "cifar10", "cifar100", "svhn", "stl10")


def test_list_has_every_data_set() -> None:
    assert set(ARRAY_SETS) | {"mnist5k", "tinyimagenet"} == set(list_datasets())
    assert list_datasets() == sorted(list_datasets())


@pytest.mark.parametrize("name", sorted(DATASETS))
def test_entries_are_consistent(name: str) -> None:
    spec = DATASETS[name]
    assert spec.name == name
    assert len(spec.mean) == len(spec.std) == spec.channels
    assert all(0 < m < 1 for m in spec.mean) and all(0 < s < 1 for s in spec.std)
    if spec.classes:
        assert len(spec.classes) == spec.num_classes == len(set(spec.classes))
    if spec.kind == "embedded":
        assert not spec.resources
        return
    assert set(spec.split_files) == set(spec.counts)
    for split in spec.splits:
        # every file a split needs comes from a resource: itself, or an archive
        provided = {r.filename for r in spec.resources_for(split)}
        archives = [r for r in spec.resources_for(split) if r.archive]
        assert archives or set(spec.split_files[split]) <= provided
    for resource in spec.resources:
        assert len(resource.md5) == 32 and int(resource.md5, 16) >= 0
        assert resource.urls and all(u.startswith(("http://", "https://")) for u in resource.urls)
        assert all(u.endswith(resource.filename) for u in resource.urls)


def test_split_needs_only_its_own_files() -> None:
    mnist = dataset_info("mnist")
    assert {r.filename for r in mnist.resources_for("test")} == {
        "t10k-images-idx3-ubyte.gz",
        "t10k-labels-idx1-ubyte.gz",
    }
    assert [r.filename for r in dataset_info("cifar10").resources_for("test")] == [
        "cifar-10-python.tar.gz"
    ]


def test_reference_facts() -> None:
    assert dataset_info("cifar100").num_classes == 100
    assert dataset_info("cifar10").classes[0] == "airplane"
    assert dataset_info("svhn").counts == {"train": 73_257, "test": 26_032, "extra": 531_131}
    assert dataset_info("stl10").image_size == (96, 96)


def test_unknown_name_lists_valid_names() -> None:
    with pytest.raises(ValueError, match=r"unknown data set 'imagenet'.*cifar10.*mnist"):
        dataset_info("imagenet")


def test_data_root_precedence(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("SHIFTPOOL_DATA", str(tmp_path / "env"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert data_root(tmp_path / "arg") == tmp_path / "arg"
    assert data_root() == tmp_path / "env"
    monkeypatch.setenv("SHIFTPOOL_DATA", "")  # empty counts as unset
    assert data_root() == tmp_path / "xdg" / "shiftpool"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert data_root() == tmp_path / "home" / ".cache" / "shiftpool"
    assert not (tmp_path / "home").exists()  # never created here
