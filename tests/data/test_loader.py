"""BatchLoader and the batch augmentation: shapes, seeding, sharding, exact augmentation."""

from __future__ import annotations

import math
import threading

import pytest
import torch
import torch.nn.functional as F

from shiftpool.core.errors import InputError
from shiftpool.data import (
    Augment,
    AugmentParams,
    BatchLoader,
    ImageDataset,
    apply_augment,
    augment_batch,
    normalize_batch,
    sample_augment,
)

MEAN, STD = (0.4, 0.5, 0.6), (0.2, 0.25, 0.3)


def toy_dataset(n: int = 103, size: tuple[int, int] = (8, 8)) -> ImageDataset:
    """Random images whose label is their index, so a batch says which images it holds."""
    generator = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (n, 3, *size), dtype=torch.uint8, generator=generator)
    classes = tuple(str(i) for i in range(n))
    return ImageDataset(images, torch.arange(n), "toy", classes, MEAN, STD, "train")


def denormalize(x: torch.Tensor) -> torch.Tensor:
    mean, std = torch.tensor(MEAN).view(1, 3, 1, 1), torch.tensor(STD).view(1, 3, 1, 1)
    return ((x * std + mean) * 255).round().to(torch.uint8)


def labels_of(loader: BatchLoader) -> list[torch.Tensor]:
    return [labels for _, labels in loader]


# -- batches -----------------------------------------------------------------------------------


@pytest.mark.parametrize(("drop_last", "sizes"), [(False, [32, 32, 32, 7]), (True, [32] * 3)])
def test_batches_shapes_and_len(drop_last: bool, sizes: list[int]) -> None:
    ds = toy_dataset()
    loader = BatchLoader(ds, 32, shuffle=False, drop_last=drop_last)
    batches = list(loader)
    assert len(loader) == len(batches) == len(sizes)
    assert [len(labels) for _, labels in batches] == sizes
    images, labels = batches[0]
    assert images.shape == (32, 3, 8, 8) and images.dtype == torch.float32
    assert labels.dtype == torch.int64 and labels.tolist() == list(range(32))


def test_normalisation_is_exact() -> None:
    ds = toy_dataset()
    images, labels = next(iter(BatchLoader(ds, 16, shuffle=True)))
    mean, std = torch.tensor(MEAN).view(1, 3, 1, 1), torch.tensor(STD).view(1, 3, 1, 1)
    expected = (ds.images[labels].float() / 255 - mean) / std
    torch.testing.assert_close(images, expected, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(normalize_batch(ds.images[labels], MEAN, STD), images)


def test_same_seed_same_batches_and_epochs_differ() -> None:
    ds, aug = toy_dataset(), Augment(crop_padding=2, flip=True)
    first = BatchLoader(ds, 16, shuffle=True, augment=aug, seed=5)
    second = BatchLoader(ds, 16, shuffle=True, augment=aug, seed=5)
    epoch0 = list(first)
    for (a, la), (b, lb) in zip(epoch0, second, strict=True):
        assert torch.equal(a, b) and torch.equal(la, lb)
    epoch1 = list(first)  # each pass advances the epoch
    assert not torch.equal(epoch0[0][1], epoch1[0][1])
    first.set_epoch(0)
    assert all(torch.equal(a, b) for (a, _), (b, _) in zip(epoch0, first, strict=True))
    other_seed = BatchLoader(ds, 16, shuffle=True, augment=aug, seed=6)
    assert not torch.equal(epoch0[0][1], next(iter(other_seed))[1])


def test_each_epoch_is_a_permutation() -> None:
    loader = BatchLoader(toy_dataset(), 10, shuffle=True)
    for _ in range(3):
        seen = torch.cat(labels_of(loader))
        assert sorted(seen.tolist()) == list(range(103))
        assert seen.tolist() != list(range(103))


@pytest.mark.parametrize("n", [100, 103])
def test_shards_disjoint_and_covering(n: int) -> None:
    world = 4
    shards = [
        torch.cat(labels_of(BatchLoader(toy_dataset(n), 8, shuffle=True, rank=r, world_size=world)))
        for r in range(world)
    ]
    per_rank = math.ceil(n / world)
    assert [len(s) for s in shards] == [per_rank] * world  # padded to equal sizes
    everything = torch.cat(shards)
    assert set(everything.tolist()) == set(range(n))  # covering
    assert len(everything) - len(set(everything.tolist())) == per_rank * world - n  # only padding
    dropping = [
        BatchLoader(toy_dataset(n), 8, shuffle=True, rank=r, world_size=world, drop_last=True)
        for r in range(world)
    ]
    flat = torch.cat([loader.shard_indices() for loader in dropping]).tolist()
    assert len(flat) == len(set(flat)) == (n // world) * world  # disjoint, tail dropped
    batches = [len(labels_of(loader)) for loader in dropping]
    assert batches == [(n // world) // 8] * world  # same number of full batches on every rank


def test_channels_last_output() -> None:
    ds, aug = toy_dataset(), Augment(crop_padding=2, flip=True)
    plain = next(iter(BatchLoader(ds, 16, shuffle=True, augment=aug)))[0]
    cl = next(iter(BatchLoader(ds, 16, shuffle=True, augment=aug, channels_last=True)))[0]
    assert cl.is_contiguous(memory_format=torch.channels_last) and not cl.is_contiguous()
    assert torch.equal(cl, plain)


def test_loader_augments_each_image_with_a_crop_or_flip() -> None:
    ds, p = toy_dataset(40), 2
    images, labels = next(iter(BatchLoader(ds, 40, shuffle=True, augment=Augment(p, flip=True))))
    out = denormalize(images)
    padded = F.pad(ds.images, (p, p, p, p))
    flips = 0
    for image, label in zip(out, labels.tolist(), strict=True):
        crops = [
            (padded[label, :, dy : dy + 8, dx : dx + 8], flip)
            for dy in range(2 * p + 1)
            for dx in range(2 * p + 1)
            for flip in (False, True)
        ]
        matches = [f for crop, f in crops if torch.equal(crop.flip(-1) if f else crop, image)]
        assert matches, f"image {label} is no crop/flip of its source"
        flips += matches[0]
    assert 0 < flips < 40


def test_prefetching_changes_nothing_but_timing() -> None:
    ds, aug = toy_dataset(), Augment(crop_padding=2, flip=True, max_shift=1)
    eager = list(BatchLoader(ds, 16, shuffle=True, augment=aug, prefetch=0))
    ahead = list(BatchLoader(ds, 16, shuffle=True, augment=aug, prefetch=3))
    assert len(eager) == len(ahead) == 7
    for (a, la), (b, lb) in zip(eager, ahead, strict=True):
        assert torch.equal(a, b) and torch.equal(la, lb)


def test_prefetch_thread_stops_early_and_keeps_caller_threads() -> None:
    threads = torch.get_num_threads()
    batches = iter(BatchLoader(toy_dataset(), 4, shuffle=True, prefetch=2))
    next(batches)
    batches.close()  # stopping early ends the worker
    assert not any(t.name == "shiftpool-batches" for t in threading.enumerate())
    assert torch.get_num_threads() == threads


def test_bad_arguments() -> None:
    ds = toy_dataset()
    with pytest.raises(ValueError, match="rank"):
        BatchLoader(ds, 8, shuffle=False, rank=2, world_size=2)
    with pytest.raises(ValueError, match="batch_size"):
        BatchLoader(ds, 0, shuffle=False)
    with pytest.raises(TypeError, match="ImageDataset"):
        BatchLoader(ds.images, 8, shuffle=False)
    with pytest.raises(ValueError, match="crop_padding must be an integer >= 0, got -1"):
        Augment(crop_padding=-1)
    with pytest.raises(TypeError, match="max_shift must be an integer >= 0, got True"):
        Augment(max_shift=True)
    with pytest.raises(TypeError, match="flip must be True or False, got 'no'"):
        Augment(flip="no")
    with pytest.raises(ValueError, match="shift_mode must be one of circular, zero, reflect; "
                                         "got 'crop'"):
        Augment(max_shift=1, shift_mode="crop")


# -- the augmentation itself ---------------------------------------------------------------------


def reference(images: torch.Tensor, augment: Augment, params: AugmentParams) -> torch.Tensor:
    """One image at a time, with plain slicing: shift, then zero-padded crop, then flip."""
    out = []
    _, _, h, w = images.shape
    p, m = augment.crop_padding, augment.max_shift
    for i, image in enumerate(images):
        sy, sx = int(params.shift_dy[i]), int(params.shift_dx[i])
        if augment.shift_mode == "circular":
            image = torch.roll(image, (sy, sx), dims=(1, 2))
        else:
            pad_mode = "reflect" if augment.shift_mode == "reflect" else "constant"
            big = F.pad(image[None].float(), (m, m, m, m), mode=pad_mode)[0].to(image.dtype)
            image = big[:, m - sy : m - sy + h, m - sx : m - sx + w]
        big = F.pad(image, (p, p, p, p))
        dy, dx = int(params.crop_dy[i]), int(params.crop_dx[i])
        image = big[:, dy : dy + h, dx : dx + w]
        if params.flip[i]:
            image = image.flip(-1)
        out.append(image)
    return torch.stack(out)


@pytest.mark.parametrize(
    "augment",
    [
        Augment(crop_padding=4),
        Augment(flip=True),
        Augment(max_shift=3, shift_mode="circular"),
        Augment(max_shift=3, shift_mode="zero"),
        Augment(crop_padding=2, flip=True, max_shift=2, shift_mode="zero"),
        Augment(crop_padding=3, flip=True, max_shift=5, shift_mode="circular"),
        Augment(max_shift=3, shift_mode="reflect"),
        Augment(crop_padding=2, flip=True, max_shift=4, shift_mode="reflect"),
        Augment(crop_padding=9),  # padding larger than the image
    ],
    ids=str,
)
def test_batched_augmentation_equals_per_image_reference(augment: Augment) -> None:
    images = toy_dataset(64, size=(7, 9)).images
    params = sample_augment(64, augment, torch.Generator().manual_seed(3))
    out = apply_augment(images, augment, params)
    assert out.dtype == images.dtype and out.shape == images.shape
    assert torch.equal(out, reference(images, augment, params))
    as_float = apply_augment(images.float(), augment, params)  # any dtype
    assert torch.equal(as_float, out.float())
    nhwc = images.contiguous(memory_format=torch.channels_last)  # memory format kept
    channels_last = apply_augment(nhwc, augment, params)
    assert channels_last.is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(channels_last, out)


def test_parameter_ranges_and_flip_rate() -> None:
    n, augment = 4000, Augment(crop_padding=4, flip=True, max_shift=2)
    params = sample_augment(n, augment, torch.Generator().manual_seed(0))
    assert set(params.crop_dy.tolist()) == set(range(9)) == set(params.crop_dx.tolist())
    assert set(params.shift_dy.tolist()) == set(range(-2, 3))
    # flip ~ Bernoulli(1/2): 4000 draws lie within +-4.5 standard deviations (about 1e-5 miss)
    assert abs(int(params.flip.sum()) - n / 2) <= 4.5 * math.sqrt(n / 4)


def test_identity_augment_and_generator_reproducibility() -> None:
    images = toy_dataset(16).images
    assert torch.equal(augment_batch(images, Augment()), images)
    aug = Augment(crop_padding=2, flip=True)
    a = augment_batch(images, aug, torch.Generator().manual_seed(1))
    b = augment_batch(images, aug, torch.Generator().manual_seed(1))
    assert torch.equal(a, b) and not torch.equal(a, images)


# -- the order shared by the loaders ---------------------------------------------------------


@pytest.mark.parametrize(("rank", "world_size", "pad_shards"), [(0, 1, True), (1, 3, True),
                                                                 (2, 3, False)])
def test_segmentation_loader_visits_the_order_of_batch_loader(rank, world_size, pad_shards):
    from shiftpool.data import SegmentationLoader, SegmentationSet

    n = 23
    masks = torch.arange(n).view(n, 1, 1).expand(n, 4, 4).contiguous()  # mask = the index
    segmentation = SegmentationSet(torch.zeros(n, 1, 4, 4), masks, ("a",) * n, "train")
    common = dict(shuffle=True, seed=7, rank=rank, world_size=world_size,
                  pad_shards=pad_shards)
    classification = BatchLoader(toy_dataset(n), 5, prefetch=0, **common)
    loader = SegmentationLoader(segmentation, 5, **common)
    for epoch in (0, 3):
        classification.set_epoch(epoch)
        loader.set_epoch(epoch)
        expected = [labels.tolist() for labels in labels_of(classification)]
        assert [m[:, 0, 0].tolist() for _, m in loader] == expected
        assert len(loader) == len(classification) == len(expected)


def test_an_empty_set_is_refused_naming_the_loader():
    from shiftpool.data import SegmentationLoader, SegmentationSet, ShardedOrder

    with pytest.raises(InputError, match=r"^shiftpool\.data\.ShardedOrder: the data set is empty$"):
        ShardedOrder([], 4, shuffle=False)
    empty = SegmentationSet(torch.zeros(0, 1, 4, 4), torch.zeros(0, 4, 4, dtype=torch.long),
                            ("a",), "train", name="canvas")
    with pytest.raises(InputError, match=r"SegmentationLoader: data set 'canvas' is empty"):
        SegmentationLoader(empty, 4, shuffle=False)
