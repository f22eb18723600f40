"""Fast batches: uint8 images gathered, augmented and normalised a whole batch at a time.

Augmentation is one gather per batch: every geometric transform (zero-padded random crop,
horizontal flip, random circular or zero-filled shift) is a per-image map from output pixel to
source pixel, separable in rows and columns, so the maps compose into index tensors and a single
``torch.gather`` on the uint8 batch applies them all (no Python loop over images). Normalisation
then converts to float32 and scales per channel. On a GPU the whole uint8 data set lives on the
device; on any device a background thread prepares the next batches during the training step.

Randomness comes from seeded ``torch.Generator`` objects keyed by ``(seed, epoch, rank)``: the
same seed and epoch give the same batches, like ``DistributedSampler.set_epoch``.
"""

from __future__ import annotations

import math
import os
import queue
import threading
from collections.abc import Iterator, Sequence, Sized
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from shiftpool.core.checks import check_choice, check_int
from shiftpool.core.errors import InputError, InputTypeError
from shiftpool.core.shifts import shift_source
from shiftpool.data.folder import ImageFolderDataset, mixed_sizes_error
from shiftpool.data.image_dataset import ImageDataset
from shiftpool.data.segmentation import SegmentationSet, augment_segmentation

__all__ = [
    "SHIFT_MODES",
    "Augment",
    "AugmentParams",
    "BatchLoader",
    "SegmentationLoader",
    "ShardedOrder",
    "apply_augment",
    "augment_batch",
    "normalize_batch",
    "sample_augment",
]

# the content-moving modes of shiftpool.core.shifts (``crop`` changes the size: not here)
SHIFT_MODES: tuple[str, ...] = ("circular", "zero", "reflect")


@dataclass(frozen=True)
class Augment:
    """Batch augmentation settings; every draw is independent per image.

    Attributes:
        crop_padding: ``p``: pad each image with ``p`` zero pixels on every side and crop the
            original size at a random offset (``RandomCrop(size, padding=p)``); 0 disables.
        flip: mirror left-right with probability 1/2.
        max_shift: ``m``: translate by ``(dy, dx)``, each uniform in ``[-m, m]``; 0 disables.
        shift_mode: ``"circular"`` (content wraps around), ``"zero"`` (zero fill) or
            ``"reflect"`` (mirrored at the border); :mod:`shiftpool.core.shifts` implements
            them for the metrics too.

    The shift acts first, then the crop, then the flip. Zero here is the raw pixel value 0,
    i.e. ``-mean/std`` after normalisation (as with padding before ``Normalize``).

    Example:
        >>> Augment(crop_padding=4, flip=True)  # the standard CIFAR augmentation
        Augment(crop_padding=4, flip=True, max_shift=0, shift_mode='circular')
    """

    crop_padding: int = 0
    flip: bool = False
    max_shift: int = 0
    shift_mode: str = "circular"

    def __post_init__(self) -> None:
        for field in ("crop_padding", "max_shift"):
            check_int(getattr(self, field), f"shiftpool.data.Augment: {field}", minimum=0)
        if not isinstance(self.flip, bool):
            raise InputTypeError(f"shiftpool.data.Augment: flip must be True or False, "
                                 f"got {self.flip!r}")
        check_choice(self.shift_mode, "shiftpool.data.Augment: shift_mode", SHIFT_MODES)

    @property
    def is_identity(self) -> bool:
        """True when no transform is enabled."""
        return not (self.crop_padding or self.flip or self.max_shift)

    @property
    def fills_zeros(self) -> bool:
        """True when some output pixels may come from outside the image."""
        return bool(self.crop_padding or (self.max_shift and self.shift_mode == "zero"))


@dataclass(frozen=True)
class AugmentParams:
    """One draw of :class:`Augment` for ``N`` images (int64/bool CPU tensors of shape ``(N,)``).

    ``crop_dy, crop_dx`` in ``[0, 2p]`` are the crop's top-left corner in the padded image;
    ``flip`` mirrors; ``shift_dy, shift_dx`` in ``[-m, m]`` move the content down/right.
    """

    crop_dy: torch.Tensor
    crop_dx: torch.Tensor
    flip: torch.Tensor
    shift_dy: torch.Tensor
    shift_dx: torch.Tensor


def sample_augment(
    n: int, augment: Augment, generator: torch.Generator | None = None
) -> AugmentParams:
    """Draw the random parameters of ``augment`` for ``n`` images (on the CPU).

    Example:
        >>> p = sample_augment(8, Augment(crop_padding=4), torch.Generator().manual_seed(0))
        >>> p.crop_dy.shape, int(p.crop_dy.max()) <= 8
        (torch.Size([8]), True)
    """

    def offsets(low: int, high: int) -> torch.Tensor:
        if high == low:
            return torch.full((n,), low, dtype=torch.int64)
        return torch.randint(low, high + 1, (n,), generator=generator)

    p, m = augment.crop_padding, augment.max_shift
    crop_dy, crop_dx = offsets(0, 2 * p), offsets(0, 2 * p)
    flip = (
        torch.rand(n, generator=generator) < 0.5
        if augment.flip
        else torch.zeros(n, dtype=torch.bool)
    )
    shift_dy, shift_dx = offsets(-m, m), offsets(-m, m)
    return AugmentParams(crop_dy, crop_dx, flip, shift_dy, shift_dx)


def _source_coords(
    size: int,
    crop: torch.Tensor,
    shift: torch.Tensor,
    flip: torch.Tensor | None,
    augment: Augment,
    border: int,
) -> torch.Tensor:
    """Per image, the source coordinate of each output coordinate along one axis, ``(N, size)``.

    With ``border=1`` the batch has been padded by one zero row and column in front: sources
    are offset by one and positions that fall outside the image map to index 0 (a zero).
    """
    out = torch.arange(size).expand(crop.shape[0], size)
    if flip is not None:
        out = torch.where(flip[:, None], size - 1 - out, out)
    cropped = out + crop[:, None] - augment.crop_padding
    valid = (cropped >= 0) & (cropped < size)
    source, inside = shift_source(cropped, shift[:, None], size, augment.shift_mode)
    if augment.shift_mode == "zero":
        valid &= inside
    return torch.where(valid, source + border, 0) if border else source


def apply_augment(images: torch.Tensor, augment: Augment, params: AugmentParams) -> torch.Tensor:
    """Apply a drawn augmentation to a batch ``(N, C, H, W)`` of any dtype, on its device.

    Returns a new tensor of the same shape, dtype and memory format.

    Example:
        >>> x = torch.arange(16, dtype=torch.uint8).view(1, 1, 4, 4)
        >>> zero, yes = torch.zeros(1, dtype=torch.int64), torch.ones(1, dtype=torch.bool)
        >>> p = AugmentParams(zero, zero, yes, zero, zero)
        >>> apply_augment(x, Augment(flip=True), p)[0, 0, 0].tolist()
        [3, 2, 1, 0]
    """
    n, c, h, w = images.shape
    if _is_channels_last(images):
        return apply_augment(images.contiguous(), augment, params).contiguous(
            memory_format=torch.channels_last
        )
    if augment.is_identity:
        return images.contiguous()
    border = int(augment.fills_zeros)
    rows = _source_coords(h, params.crop_dy, params.shift_dy, None, augment, border)
    cols = _source_coords(w, params.crop_dx, params.shift_dx, params.flip, augment, border)
    # with a border, index 0 of each row and column is the zero that out-of-image pixels read
    source = F.pad(images, (border, 0, border, 0)) if border else images
    flat = (rows[:, :, None] * (w + border) + cols[:, None, :]).view(n, 1, h * w)
    out = torch.gather(source.reshape(n, c, -1), 2, flat.to(images.device).expand(n, c, h * w))
    return out.view(n, c, h, w)


def _is_channels_last(x: torch.Tensor) -> bool:
    return x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()


def augment_batch(
    images: torch.Tensor, augment: Augment, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Draw and apply ``augment`` to a batch ``(N, C, H, W)`` (the loader's augmentation step).

    Example:
        >>> x = torch.randint(0, 256, (16, 3, 32, 32), dtype=torch.uint8)
        >>> augment_batch(x, Augment(crop_padding=4, flip=True)).shape
        torch.Size([16, 3, 32, 32])
    """
    return apply_augment(images, augment, sample_augment(images.shape[0], augment, generator))


def _normalization(
    mean: Sequence[float], std: Sequence[float], device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(scale, offset)`` of shape ``(1, C, 1, 1)``: ``(x/255 - mean)/std = x*scale + offset``."""
    mean_t = torch.tensor(mean, dtype=torch.float64)
    std_t = torch.tensor(std, dtype=torch.float64)
    scale = (1.0 / (255.0 * std_t)).float().view(1, -1, 1, 1).to(device)
    offset = (-mean_t / std_t).float().view(1, -1, 1, 1).to(device)
    return scale, offset


def _normalize(
    images: torch.Tensor, scale: torch.Tensor, offset: torch.Tensor, channels_last: bool
) -> torch.Tensor:
    # Normalising in NCHW keeps the per-channel constants fixed along the inner dimension
    # (vectorised); converting the float result afterwards is cheaper than normalising NHWC.
    out = images.float().mul_(scale).add_(offset)
    return out.contiguous(memory_format=torch.channels_last) if channels_last else out


def normalize_batch(
    images: torch.Tensor,
    mean: Sequence[float],
    std: Sequence[float],
    *,
    channels_last: bool = False,
) -> torch.Tensor:
    """uint8 ``(N, C, H, W)`` in [0, 255] -> float32 ``(x / 255 - mean) / std`` per channel.

    Example:
        >>> x = torch.full((1, 1, 2, 2), 255, dtype=torch.uint8)
        >>> normalize_batch(x, (0.5,), (0.5,))[0, 0, 0, 0].item()
        1.0
    """
    scale, offset = _normalization(mean, std, images.device)
    return _normalize(images, scale, offset, channels_last)


class _Indexed(torch.utils.data.Dataset):
    """A folder data set whose items also say their index (for messages about the file)."""

    def __init__(self, dataset: ImageFolderDataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int, int]:
        image, label = self.dataset[index]
        return image, label, index


class _Stack:
    """Collate ``(image, label, index)`` items; images of different sizes are a clear error."""

    def __init__(self, paths: Sequence[Path]) -> None:
        self.paths = paths

    def __call__(self, items: list[tuple[torch.Tensor, int, int]]) -> tuple[torch.Tensor, ...]:
        first, _, first_index = items[0]
        for image, _, index in items:
            if image.shape != first.shape:
                raise mixed_sizes_error(
                    self.paths[first_index], first.shape, self.paths[index], image.shape
                )
        images = torch.stack([image for image, _, _ in items])
        return images, torch.tensor([label for _, label, _ in items], dtype=torch.int64)


def _derived_seed(*keys: int) -> int:
    """A well-mixed 63-bit seed from integer keys (stable across platforms and versions)."""
    state = np.random.SeedSequence([k % 2**64 for k in keys]).generate_state(1, np.uint64)[0]
    return int(state) >> 1


_PERMUTATION_STREAM, _AUGMENT_STREAM = 0, 1
_END = object()


class _Failure:
    def __init__(self, error: BaseException) -> None:
        self.error = error


def _prefetched(source: Iterator, depth: int) -> Iterator:
    """Yield ``source``'s items, computed up to ``depth`` ahead in a single-threaded worker."""
    items: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def offer(item: object) -> bool:
        while not stop.is_set():
            try:
                items.put(item, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        torch.set_num_threads(1)  # per thread: the caller keeps its own setting
        try:
            for item in source:
                if not offer(item):
                    return
            offer(_END)
        except BaseException as error:  # handed to the consumer, raised there
            offer(_Failure(error))
        finally:
            source.close()

    worker = threading.Thread(target=produce, name="shiftpool-batches", daemon=True)
    worker.start()
    try:
        while (item := items.get()) is not _END:
            if isinstance(item, _Failure):
                raise item.error
            yield item
    finally:
        stop.set()
        worker.join()


class ShardedOrder:
    """The order in which one process visits a data set, epoch by epoch: the part of a loader
    that decides *which* images make each batch (the subclasses decide what a batch holds).

    An epoch's order is a seeded permutation (``shuffle``) or ``0..N-1``, the same on every
    rank; rank ``r`` takes ``order[r::world_size]``. When ``N`` does not divide evenly,
    ``drop_last=False`` pads the order by repeating its first indices (``pad_shards``: every
    rank gets as many images, what DDP training needs) or leaves the shards uneven
    (``pad_shards=False``: each image in exactly one shard, for evaluation); ``drop_last=True``
    drops the tail and the last incomplete batch. Each pass uses the current epoch and then
    advances it; :meth:`set_epoch` sets the epoch of the next pass.

    Args:
        dataset: anything with a length (``N`` images).
        batch_size, shuffle, seed, rank, world_size, drop_last, pad_shards: as above.
        owner: the name the error messages start with.

    Example:
        >>> order = ShardedOrder(range(10), 4, shuffle=False, rank=1, world_size=2)
        >>> [b.tolist() for b in order.batch_indices()], len(order)
        ([[1, 3, 5, 7], [9]], 2)
    """

    def __init__(self, dataset: Sized, batch_size: int, *, shuffle: bool, seed: int = 0,
                 rank: int = 0, world_size: int = 1, drop_last: bool = False,
                 pad_shards: bool = True, owner: str = "shiftpool.data.ShardedOrder") -> None:
        if not isinstance(batch_size, int) or batch_size < 1:
            raise InputError(f"{owner}: batch_size must be an int >= 1, got {batch_size!r}")
        if not (isinstance(world_size, int) and world_size >= 1 and 0 <= rank < world_size):
            raise InputError(
                f"{owner}: need world_size >= 1 and 0 <= rank < world_size, "
                f"got rank={rank!r}, world_size={world_size!r}"
            )
        if len(dataset) == 0:
            name = getattr(dataset, "name", "")
            raise InputError(f"{owner}: data set {name!r} is empty" if name
                             else f"{owner}: the data set is empty")
        self.dataset = dataset
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.seed, self.rank, self.world_size = seed, rank, world_size
        self.drop_last = drop_last
        self.pad_shards = bool(pad_shards)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Make the next pass epoch ``epoch`` (its order and augmentation)."""
        self.epoch = int(epoch)

    @property
    def num_samples(self) -> int:
        """Images this rank sees per epoch (before ``drop_last`` trims the last batch)."""
        n, ws = len(self.dataset), self.world_size
        if self.drop_last:
            return n // ws
        return math.ceil(n / ws) if self.pad_shards else len(range(self.rank, n, ws))

    def __len__(self) -> int:
        count = self.num_samples
        return count // self.batch_size if self.drop_last else math.ceil(count / self.batch_size)

    def shard_indices(self, epoch: int | None = None) -> torch.Tensor:
        """The data set indices this rank visits in ``epoch`` (default: the next pass), in order."""
        epoch = self.epoch if epoch is None else epoch
        n = len(self.dataset)
        if self.shuffle:
            generator = torch.Generator().manual_seed(
                _derived_seed(self.seed, epoch, _PERMUTATION_STREAM)
            )
            order = torch.randperm(n, generator=generator)
        else:
            order = torch.arange(n)
        if not (self.drop_last or self.pad_shards):
            return order[self.rank :: self.world_size]
        total = self.num_samples * self.world_size
        if total > n:
            order = order.repeat(math.ceil(total / n))
        return order[:total][self.rank :: self.world_size]

    def batch_indices(self, epoch: int | None = None) -> list[torch.Tensor]:
        """The index batches of ``epoch`` for this rank."""
        batches = list(self.shard_indices(epoch).split(self.batch_size))
        if self.drop_last and batches and len(batches[-1]) < self.batch_size:
            batches.pop()
        return batches

    def augment_generator(self, epoch: int) -> torch.Generator:
        """The CPU generator of ``epoch``'s augmentation on this rank (keyed by seed, epoch
        and rank: a resumed epoch draws the same)."""
        return torch.Generator().manual_seed(
            _derived_seed(self.seed, epoch, self.rank, _AUGMENT_STREAM)
        )

    def next_epoch(self) -> int:
        """The epoch of the pass that starts now (and advance to the next)."""
        epoch = self.epoch
        self.epoch += 1
        return epoch


class BatchLoader(ShardedOrder):
    """Iterate over ``(images, labels)`` batches, normalised float32, on ``device``.

    Args:
        dataset: an :class:`ImageDataset` (in memory; on a GPU device it is copied there once)
            or an :class:`ImageFolderDataset` (decoded by a ``DataLoader`` with workers).
        batch_size: images per batch.
        shuffle: a new random order every epoch (same on every rank).
        augment: an :class:`Augment`, or ``None`` for none.
        device: where batches are produced.
        seed: base seed of the order and the augmentation.
        rank, world_size: this process's shard for distributed training. The epoch's order is
            split round-robin (``order[rank::world_size]``) so that shards are disjoint. When the
            data set does not divide evenly, ``drop_last=False`` pads the order by repeating
            its first indices (every image seen, a few twice) and ``drop_last=True`` drops the
            tail (every rank still gets the same number of batches).
        pad_shards: with ``drop_last=False``, pad the order as above so that every rank gets
            as many images (what DDP training needs: one collective per step). ``False`` leaves
            the shards uneven instead, each image in exactly one shard (rank ``r`` takes
            ``order[r::world_size]``, so ranks differ by at most one image and one batch): for
            evaluation, where counting a padded image twice would skew the totals.
        drop_last: also drop the last incomplete batch of each shard.
        channels_last: return images in ``torch.channels_last`` memory format.
        num_workers: decoding processes for folder data sets (default: up to 4, one per CPU).
        prefetch: batches prepared ahead by a background thread that runs its tensor ops on one
            CPU thread, overlapping them with the training step (and sparing the small batch
            ops the cost of synchronising the intra-op thread pool on a busy CPU); 0 prepares
            each batch on demand in the calling thread. The batches are the same either way.

    Each pass uses the current epoch and then advances it; :meth:`set_epoch` sets the epoch of
    the next pass (call it every epoch, as with ``DistributedSampler``, to resume exactly).

    Yields:
        images float32 ``(B, C, H, W)`` normalised by the data set's mean and std, and labels
        int64 ``(B,)``, both on ``device``.

    Example:
        >>> from shiftpool.data import load_dataset
        >>> train = load_dataset("mnist5k", "train")
        >>> loader = BatchLoader(train, 128, shuffle=True, augment=Augment(2, flip=False))
        >>> len(loader)
        32
        >>> for epoch in range(epochs):  # doctest: +SKIP
        ...     loader.set_epoch(epoch)
        ...     for images, labels in loader:
        ...         train_step(images, labels)
    """

    def __init__(
        self,
        dataset: ImageDataset | ImageFolderDataset,
        batch_size: int,
        *,
        shuffle: bool,
        augment: Augment | None = None,
        device: str | torch.device = "cpu",
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        drop_last: bool = False,
        pad_shards: bool = True,
        channels_last: bool = False,
        num_workers: int | None = None,
        prefetch: int = 2,
    ) -> None:
        if not isinstance(dataset, ImageDataset | ImageFolderDataset):
            raise InputTypeError(
                "shiftpool.data.BatchLoader: dataset must be an ImageDataset or "
                f"ImageFolderDataset, got {type(dataset).__name__}"
            )
        super().__init__(dataset, batch_size, shuffle=shuffle, seed=seed, rank=rank,
                         world_size=world_size, drop_last=drop_last, pad_shards=pad_shards,
                         owner="shiftpool.data.BatchLoader")
        self.dataset: ImageDataset | ImageFolderDataset = dataset
        self.augment = augment if augment is not None and not augment.is_identity else None
        self.device = torch.device(device)
        self.channels_last = channels_last
        self.num_workers = min(4, os.cpu_count() or 1) if num_workers is None else num_workers
        if not isinstance(prefetch, int) or prefetch < 0:
            raise InputError(f"shiftpool.data.BatchLoader: prefetch must be >= 0, got {prefetch!r}")
        self.prefetch = prefetch
        self._scale, self._offset = _normalization(dataset.mean, dataset.std, self.device)
        if isinstance(dataset, ImageDataset):
            self._images = dataset.images.to(self.device)
            self._labels = dataset.labels.to(self.device)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        epoch = self.next_epoch()
        # built here, in the calling thread: folder data sets start their worker processes now
        uint8_batches = self._uint8_batches(self.batch_indices(epoch))
        batches = self._finished(uint8_batches, epoch)
        return _prefetched(batches, self.prefetch) if self.prefetch else batches

    def _finished(
        self, uint8_batches: Iterator[tuple[torch.Tensor, torch.Tensor]], epoch: int
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Augmented, normalised batches of ``epoch``."""
        generator = self.augment_generator(epoch)
        for images, labels in uint8_batches:
            if self.augment is not None:
                images = augment_batch(images, self.augment, generator)
            yield _normalize(images, self._scale, self._offset, self.channels_last), labels

    def _uint8_batches(
        self, batches: list[torch.Tensor]
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """uint8 image batches and their labels, on the device."""
        if isinstance(self.dataset, ImageDataset):
            return self._gathered(batches)
        loader = DataLoader(
            _Indexed(self.dataset),
            batch_sampler=[index.tolist() for index in batches],
            num_workers=self.num_workers,
            pin_memory=self.device.type == "cuda",
            collate_fn=_Stack(self.dataset.paths),
        )
        return map(self._to_device, iter(loader))

    def _gathered(
        self, batches: list[torch.Tensor]
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for index in batches:
            index = index.to(self.device, non_blocking=True)
            yield self._images.index_select(0, index), self._labels.index_select(0, index)

    def _to_device(
        self, batch: tuple[torch.Tensor, torch.Tensor]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        images, labels = batch
        return images.to(self.device, non_blocking=True), labels.to(self.device, non_blocking=True)


class SegmentationLoader(ShardedOrder):
    """``(images, masks)`` batches of a :class:`~shiftpool.data.segmentation.SegmentationSet`,
    in the order of :class:`ShardedOrder` (the same order as a :class:`BatchLoader` with the
    same seed, epoch and rank).

    Args:
        dataset: the set; images read as float32 in ``[0, 1]`` (``take``), augmented there
            (padding is black), then normalised by the set's mean and std where it has them.
        batch_size, shuffle, seed, rank, world_size, drop_last, pad_shards: as
            :class:`ShardedOrder`.
        augment: keyword arguments of :func:`~shiftpool.data.segmentation.augment_segmentation`
            (``crop_padding``, ``flip``, ``scale``), drawn from the epoch's
            :meth:`~ShardedOrder.augment_generator`; None for none.
        device: where batches are produced; ``channels_last``: images in that memory format.

    Yields:
        images float32 ``(B, C, H, W)`` and masks int64 ``(B, H, W)`` (255: ignored), on
        ``device``.

    Example:
        >>> from shiftpool.data.segmentation import mnist_segmentation
        >>> loader = SegmentationLoader(mnist_segmentation("test", 10), 4, shuffle=True,
        ...                             augment={"crop_padding": 2, "flip": True})
        >>> [tuple(x.shape) + tuple(y.shape) for x, y in loader][:1], len(loader)
        ([(4, 1, 32, 32, 4, 32, 32)], 3)
    """

    def __init__(self, dataset: SegmentationSet, batch_size: int, *, shuffle: bool,
                 augment: dict[str, object] | None = None, device: str | torch.device = "cpu",
                 seed: int = 0, rank: int = 0, world_size: int = 1, drop_last: bool = False,
                 pad_shards: bool = True, channels_last: bool = False) -> None:
        super().__init__(dataset, batch_size, shuffle=shuffle, seed=seed, rank=rank,
                         world_size=world_size, drop_last=drop_last, pad_shards=pad_shards,
                         owner="shiftpool.data.SegmentationLoader")
        self.dataset: SegmentationSet = dataset
        # flips are asked for, as with Augment (the function's default is on)
        self.augment = {"flip": False, **augment} if augment else None
        self.device = torch.device(device)
        self.channels_last = channels_last

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        epoch = self.next_epoch()
        generator = self.augment_generator(epoch)
        for index in self.batch_indices(epoch):
            images, masks = self.dataset.take(index)  # float32 in [0, 1], int64
            if self.augment is not None:
                images, masks = augment_segmentation(
                    images, masks, ignore_index=self.dataset.ignore_index, generator=generator,
                    **self.augment)  # type: ignore[arg-type]
            images = self.dataset.normalize(images.to(self.device, non_blocking=True))
            if self.channels_last:
                images = images.contiguous(memory_format=torch.channels_last)
            yield images, masks.to(self.device, non_blocking=True)
