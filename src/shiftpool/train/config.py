"""The training configuration: one dataclass that round-trips to a dict and to YAML.

Every option of ``shiftpool train`` is a field here; the command line is generated from the
fields (name, type, default) and :data:`FIELD_HELP`, so this file is the one source of truth.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Union

import shiftpool.data as sdata
import shiftpool.downsample as sds
import shiftpool.metrics as smetrics
import shiftpool.models as smodels
from shiftpool.core.checks import (
    check_choice,
    check_int,
    check_positive_int,
    check_range,
)
from shiftpool.core.errors import InputError, MissingExtraError, MissingFileError
from shiftpool.data.folder_sets import parse_folder_name

OPTIMIZERS = ("sgd", "adamw")
SCHEDULES = ("onecycle", "cosine", "constant")
AMP_MODES = ("auto", "off", "bf16", "fp16")
DEVICES = ("auto", "cpu", "cuda")
MAX_SEED = 2**63 - 1
#: What a run learns (see :func:`shiftpool.models.model_task`).
TASKS: tuple[str, ...] = smodels.TASKS
#: The segmentation set built here (MNIST digits on 32x32 canvases, no download); every name of
#: :func:`shiftpool.data.list_segmentation_datasets` trains with ``task="segmentation"``.
CANVAS_SET = "mnist-canvas"
#: The keys of ``augment`` in a segmentation run (joint image/mask augmentation).
SEGMENTATION_AUGMENT: tuple[str, ...] = ("crop_padding", "flip", "scale")
# eval_metrics takes these names ("all": every metric)
METRIC_CHOICES: tuple[str, ...] = (*smetrics.METRICS, "all")

# Fields that change how a run is logged, where it is written or how it is evaluated afterwards,
# never the trained weights: a resumed run may differ from its checkpoint in these.
RESULT_NEUTRAL_FIELDS = frozenset(
    {"out_dir", "progress", "tensorboard", "num_threads", "eval_every", "data_dir", "download",
     "eval_batch_size", "eval_protocol", "eval_metrics", "eval_max_images"}
)

# The allowed values of the fields that take one of a fixed set.
FIELD_CHOICES: dict[str, tuple[str, ...]] = {
    "task": TASKS,
    "optimizer": OPTIMIZERS,
    "schedule": SCHEDULES,
    "amp": AMP_MODES,
    "device": DEVICES,
}

# One line of help per field (the command line's --help shows these).
FIELD_HELP: dict[str, str] = {
    "task": "classification (a label per image) or segmentation (a label per pixel)",
    "model": "model name (see shiftpool.models.list_models())",
    "downsample": "downsampling operator (see shiftpool.list_downsamples())",
    "downsample_options": "operator options, e.g. filter_size=5",
    "model_options": "extra model options, e.g. width=32",
    "circular": "circular padding in the model's convolutions",
    "dataset": "data set name (see shiftpool.data.list_datasets(); segmentation: "
    "shiftpool.data.list_segmentation_datasets(), e.g. mnist-canvas)",
    "data_dir": "data root (default: $SHIFTPOOL_DATA, else a cache)",
    "download": "download missing data sets",
    "train_subset": "train on a seeded random subset of this size",
    "augment": "augmentation (shiftpool.data.Augment fields), e.g. crop_padding=4,flip=true; "
    "segmentation: crop_padding, flip, scale=[0.75,1.25]",
    "epochs": "number of epochs",
    "batch_size": "batch size per process",
    "optimizer": "optimiser",
    "lr": "peak learning rate",
    "momentum": "SGD momentum (AdamW: beta1)",
    "nesterov": "Nesterov momentum (SGD)",
    "weight_decay": "weight decay",
    "decay_norm_and_bias": "also decay normalisation weights and biases",
    "schedule": "learning-rate schedule",
    "warmup_epochs": "linear warm-up (cosine schedule), in epochs",
    "pct_start": "fraction of steps spent rising (onecycle schedule)",
    "label_smoothing": "label smoothing of the cross-entropy",
    "grad_clip": "clip the gradient norm to this value",
    "tips_alpha": "TIPS: weight alpha of the undo loss against the CE",
    "tips_undo_start_epoch": "TIPS: first epoch of the undo loss",
    "tips_fm_weight": "TIPS: weight of the L_FM loss (0: the ablation without it)",
    "lps_tau_start": "LPS: Gumbel-softmax temperature at the first epoch",
    "lps_tau_end": "LPS: temperature at the last epoch (geometric decay)",
    "amp": "mixed precision (auto: bf16 where fast, else off)",
    "channels_last": "channels_last memory format",
    "compile": "torch.compile the model",
    "device": "device (auto: cuda if available)",
    "num_threads": "CPU threads (default: torch's choice)",
    "seed": "random seed",
    "deterministic": "deterministic algorithms (bitwise resume on CPU)",
    "out_dir": "output folder: checkpoints, logs, results",
    "progress": "progress bars (needs tqdm)",
    "tensorboard": "TensorBoard logs where tensorboard is installed",
    "eval_every": "test accuracy every N epochs and after the last (0: never)",
    "eval_batch_size": "batch size of evaluation",
    "eval_protocol": "invariance protocol of shiftpool.metrics.evaluate",
    "eval_metrics": "metrics to compute (default: the protocol's)",
    "eval_max_images": "evaluate on a seeded random subset of N test images",
}


@dataclass
class TrainConfig:
    """Everything that defines one training run; ``TrainConfig.from_dict(c.to_dict()) == c``.

    Example:
        >>> config = TrainConfig(model="simple_cnn", downsample="tips", dataset="mnist", epochs=2)
        >>> TrainConfig.from_yaml(config.to_yaml()) == config
        True
    """

    # What is trained.
    task: str = "classification"
    model: str = "resnet20"
    downsample: str = "max"
    downsample_options: dict[str, Any] = field(default_factory=dict)
    model_options: dict[str, Any] = field(default_factory=dict)
    circular: bool = False
    dataset: str = "cifar10"
    data_dir: str | None = None
    download: bool = True
    train_subset: int | None = None
    augment: dict[str, Any] = field(default_factory=dict)
    # How it is optimised.
    epochs: int = 10
    batch_size: int = 128
    optimizer: str = "sgd"
    lr: float = 0.1
    momentum: float = 0.9
    nesterov: bool = True
    weight_decay: float = 5e-4
    decay_norm_and_bias: bool = False
    schedule: str = "onecycle"
    warmup_epochs: float = 0.0
    pct_start: float = 0.25
    label_smoothing: float = 0.0
    grad_clip: float | None = None
    # Operator-specific training terms.
    tips_alpha: float = 0.35
    tips_undo_start_epoch: int = 0
    tips_fm_weight: float = 1.0
    lps_tau_start: float = 1.0
    lps_tau_end: float = 1.0
    # How it runs.
    amp: str = "auto"
    channels_last: bool = True
    compile: bool = False
    device: str = "auto"
    num_threads: int | None = None
    seed: int = 0
    deterministic: bool = True
    out_dir: str = "runs/train"
    progress: bool = True
    tensorboard: bool = True
    # How it is evaluated.
    eval_every: int = 1
    eval_batch_size: int = 256
    eval_protocol: str = "tips"
    eval_metrics: list[str] | None = None
    eval_max_images: int | None = None

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            setattr(self, f.name, coerce_field(f.name, getattr(self, f.name)))
        self._check_values()

    def _check_values(self) -> None:
        """Every field's range, checked once at construction (and by :meth:`replace`).

        Each error is one line: ``shiftpool.train: <field> must be ..., got <value>``.
        """
        for name, choices in FIELD_CHOICES.items():
            check_choice(getattr(self, name), _what(name), choices)
        self._check_what_is_trained()
        self._check_optimisation()
        self._check_running()
        self._check_evaluation()

    def _check_what_is_trained(self) -> None:
        check_choice(self.model, _what("model"), smodels.list_models())
        if smodels.model_task(self.model) != self.task:
            raise InputError(
                f"shiftpool.train: model {self.model!r} is a {smodels.model_task(self.model)} "
                f"model; task {self.task} takes one of {', '.join(smodels.list_models(self.task))}"
            )
        check_choice(self.downsample, _what("downsample"), sds.list_downsamples())
        allowed = sds.check_downsample_options(self.downsample, [])
        _check_keys("downsample_options", self.downsample_options, allowed,
                    f"of downsample {self.downsample!r}")
        _check_keys("model_options", self.model_options,
                    smodels.model_option_names(self.model), f"of model {self.model!r}")
        if self.task == "segmentation":
            _check_segmentation_augment(self.augment)
            _check_segmentation_dataset(self.dataset)
        else:
            _check_augment(self.augment)
            _check_dataset(self.dataset)
        if self.train_subset is not None:
            check_positive_int(self.train_subset, _what("train_subset"))

    def _check_optimisation(self) -> None:
        for name in ("epochs", "batch_size"):
            check_positive_int(getattr(self, name), _what(name))
        check_range(self.lr, _what("lr"), 0.0, None, low_open=True)
        check_range(self.momentum, _what("momentum"), 0.0, 1.0, high_open=True)
        check_range(self.weight_decay, _what("weight_decay"), 0.0, None)
        if self.grad_clip is not None:
            # torch would reverse every gradient with a negative norm and zero it with 0
            check_range(self.grad_clip, _what("grad_clip"), 0.0, None, low_open=True)
        check_range(self.warmup_epochs, _what("warmup_epochs"), 0.0, None)
        if self.warmup_epochs >= self.epochs:
            raise InputError(
                f"shiftpool.train: warmup_epochs must be in [0, epochs={self.epochs}), "
                f"got {self.warmup_epochs!r}"
            )
        check_range(self.pct_start, _what("pct_start"), 0.0, 1.0, low_open=True, high_open=True)
        check_range(self.label_smoothing, _what("label_smoothing"), 0.0, 1.0, high_open=True)
        check_range(self.tips_alpha, _what("tips_alpha"), 0.0, 1.0)
        check_int(self.tips_undo_start_epoch, _what("tips_undo_start_epoch"), minimum=0)
        check_range(self.tips_fm_weight, _what("tips_fm_weight"), 0.0, None)
        for name in ("lps_tau_start", "lps_tau_end"):
            check_range(getattr(self, name), _what(name), 0.0, None, low_open=True)

    def _check_running(self) -> None:
        if self.num_threads is not None:
            check_positive_int(self.num_threads, _what("num_threads"))
        check_int(self.seed, _what("seed"), minimum=0, maximum=MAX_SEED)
        if not self.out_dir.strip():
            raise InputError("shiftpool.train: out_dir must be a folder path, got ''")

    def _check_evaluation(self) -> None:
        check_int(self.eval_every, _what("eval_every"), minimum=0)
        check_positive_int(self.eval_batch_size, _what("eval_batch_size"))
        if self.eval_max_images is not None:
            check_positive_int(self.eval_max_images, _what("eval_max_images"))
        check_choice(self.eval_protocol, _what("eval_protocol"), smetrics.list_protocols())
        if self.eval_metrics is not None and self.task == "segmentation":
            raise InputError("shiftpool.train: eval_metrics names classification metrics; a "
                             "segmentation run is evaluated by mIoU, pixel accuracy, mASSC, "
                             "equivariance error and MSB (leave eval_metrics out)")
        if self.eval_metrics is not None:
            if not self.eval_metrics:
                raise InputError(
                    "shiftpool.train: eval_metrics must name at least one metric of "
                    f"{', '.join(METRIC_CHOICES)}, got an empty list"
                )
            for name in self.eval_metrics:
                check_choice(name, _what("eval_metrics"), METRIC_CHOICES)
            # "all" means every metric; the list is stored expanded (evaluate takes names)
            names = smetrics.METRICS if "all" in self.eval_metrics else self.eval_metrics
            self.eval_metrics = list(dict.fromkeys(names))

    def to_dict(self) -> dict[str, Any]:
        """A plain dict (JSON/YAML-serialisable) of every field."""
        return json.loads(json.dumps(dataclasses.asdict(self)))

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainConfig:
        """Build from a dict; unknown keys are an error listing the valid ones.

        Keys may use dashes (``batch-size``) as on the command line.
        """
        normalised = {str(key).replace("-", "_"): value for key, value in values.items()}
        unknown = sorted(set(normalised) - set(field_names()))
        if unknown:
            raise InputError(
                f"shiftpool.train: unknown option(s) {', '.join(unknown)}; "
                f"valid: {', '.join(field_names())}"
            )
        return cls(**normalised)

    def to_yaml(self, path: str | Path | None = None) -> str:
        """The config as YAML text; also written atomically to ``path`` if given."""
        text = _yaml().safe_dump(self.to_dict(), sort_keys=False)
        if path is not None:
            from shiftpool.core.io import atomic_write_text

            atomic_write_text(path, text)
        return text

    @classmethod
    def from_yaml(cls, source: str | Path) -> TrainConfig:
        """Read a config from a YAML file path or from YAML text."""
        return cls.from_dict(read_yaml_mapping(source))

    def replace(self, **changes: Any) -> TrainConfig:
        """A copy with ``changes`` applied (validated like a new config)."""
        return dataclasses.replace(self, **changes)

    def result_fields(self) -> dict[str, Any]:
        """The fields that decide the trained weights (all but logging, paths and evaluation).

        ``task`` is left out when it is ``classification``, so that checkpoints and compare rows
        saved before the field existed still match their runs."""
        return {k: v for k, v in self.to_dict().items() if k not in RESULT_NEUTRAL_FIELDS
                and not (k == "task" and v == "classification")}


def _what(name: str) -> str:
    return f"shiftpool.train: {name}"


def _check_keys(name: str, options: dict[str, Any], allowed: list[str], owner: str) -> None:
    """Every key of ``options`` must be one of ``allowed`` (the error lists them)."""
    unknown = [key for key in options if key not in allowed]
    if unknown:
        raise InputError(
            f"shiftpool.train: {name} {owner} must be among {', '.join(allowed) or 'none'}, "
            f"got {', '.join(map(str, unknown))}"
        )


def _check_dataset(name: str) -> None:
    """A registered data-set name, or a well-formed folder spelling (``folder:PATH?options`` or a
    path). The folder itself is looked for when the data is loaded, not here: a checkpoint's
    config must stay readable where its training folder is gone."""
    try:
        if parse_folder_name(name) is None:
            sdata.check_dataset_name(name)
    except InputError as error:  # "shiftpool.data: unknown data set 'x'; available: ..."
        detail = str(error).removeprefix("shiftpool.data: ")
        raise type(error)(f"shiftpool.train: dataset: {detail}") from None


def _check_augment(augment: dict[str, Any]) -> None:
    """The keys and values of ``augment``, as :class:`shiftpool.data.Augment` takes them."""
    allowed = [f.name for f in dataclasses.fields(sdata.Augment)]
    _check_keys("augment", augment, allowed, "(shiftpool.data.Augment fields)")
    try:
        sdata.Augment(**augment)
    except InputError as error:  # "shiftpool.data.Augment: flip must be ..."
        detail = str(error).split(": ", 1)[-1]
        raise type(error)(f"shiftpool.train: augment {detail}") from None


def _check_segmentation_dataset(name: str) -> None:
    """A name :func:`shiftpool.data.load_segmentation` knows (its files are looked for when the
    data is loaded, or by the command line's pre-flight check)."""
    try:
        sdata.check_segmentation_name(name)
    except InputError as error:  # "shiftpool.data: unknown segmentation data set 'x'; ..."
        detail = str(error).removeprefix("shiftpool.data: ")
        raise type(error)(f"shiftpool.train: dataset of task segmentation: {detail}") from None


def _check_segmentation_augment(augment: dict[str, Any]) -> None:
    """The keys and values of a segmentation run's ``augment``: the keyword arguments of
    :func:`shiftpool.data.segmentation.augment_segmentation` (``crop_padding`` >= 0, ``flip``,
    ``scale`` a range ``[low, high]`` with ``0 < low <= high``)."""
    _check_keys("augment", augment, list(SEGMENTATION_AUGMENT), "of task segmentation")
    if "crop_padding" in augment:
        check_int(augment["crop_padding"], _what("augment crop_padding"), minimum=0)
    if not isinstance(augment.get("flip", False), bool):
        raise InputError(f"shiftpool.train: augment flip must be true or false, got "
                         f"{augment['flip']!r}")
    scale = augment.get("scale", [1.0, 1.0])
    if (not isinstance(scale, (list, tuple)) or len(scale) != 2
            or any(isinstance(v, bool) or not isinstance(v, (int, float)) for v in scale)
            or not 0 < scale[0] <= scale[1]):
        raise InputError(f"shiftpool.train: augment scale must be a range [low, high] with "
                         f"0 < low <= high, got {scale!r}")


def field_names() -> list[str]:
    """Names of every :class:`TrainConfig` field, in declaration order."""
    return [f.name for f in dataclasses.fields(TrainConfig)]


def field_type(name: str) -> Any:
    """The resolved type annotation of the field ``name``."""
    return typing.get_type_hints(TrainConfig)[name]


def _unwrap_optional(tp: Any) -> tuple[Any, bool]:
    """``(inner type, allows None)`` for ``X | None``; ``(tp, False)`` otherwise."""
    if typing.get_origin(tp) in (Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return args[0], True
    return tp, False


def parse_scalar(text: str) -> Any:
    """Parse a command-line value: int, float, bool, null or else the string itself.

    Example:
        >>> parse_scalar("3"), parse_scalar("0.5"), parse_scalar("true"), parse_scalar("reflect")
        (3, 0.5, True, 'reflect')
    """
    lowered = text.strip().lower()
    if lowered in ("none", "null", "~"):
        return None
    if lowered in ("true", "yes", "on"):
        return True
    if lowered in ("false", "no", "off"):
        return False
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text.strip()


_CLOSING = {"[": "]", "{": "}", "(": ")"}
_QUOTES = "'\""


def split_top_level(text: str, separator: str = ",") -> list[str]:
    """Split ``text`` at ``separator`` outside brackets, braces, parentheses and quotes.

    Example:
        >>> split_top_level("channels=[16,32],head=fc")
        ['channels=[16,32]', 'head=fc']
    """
    parts: list[str] = []
    expected: list[str] = []  # closing characters still to come, innermost last
    quote, start = "", 0
    for index, char in enumerate(text):
        if quote:
            quote = "" if char == quote else quote
        elif char in _QUOTES:
            quote = char
        elif char in _CLOSING:
            expected.append(_CLOSING[char])
        elif char in _CLOSING.values():
            if not expected or expected.pop() != char:
                raise InputError(f"shiftpool: unbalanced {char!r} in {text!r}")
        elif char == separator and not expected:
            parts.append(text[start:index])
            start = index + 1
    if quote or expected:
        missing = quote or expected[-1]
        raise InputError(f"shiftpool: missing closing {missing!r} in {text!r}")
    parts.append(text[start:])
    return parts


def parse_value(text: str) -> Any:
    """A command-line option value: a JSON value, a ``[...]`` list or ``{...}`` mapping of such
    values (YAML flow style: unquoted strings allowed), a quoted string, or a scalar.

    Example:
        >>> parse_value("[16, 32, 64]"), parse_value("'16 32 64'"), parse_value("{a: 1}")
        ([16, 32, 64], '16 32 64', {'a': 1})
    """
    text = text.strip()
    if text[:1] in ("[", "{") or text[:1] in _QUOTES:
        try:
            return json.loads(text, object_pairs_hook=_unique_pairs)
        except json.JSONDecodeError:
            pass
    if len(text) >= 2 and text[0] in _QUOTES and text[-1] == text[0]:
        return text[1:-1]
    if text.startswith("[") and text.endswith("]"):
        inner = text[1:-1]
        return [] if not inner.strip() else [_item(part, text) for part in split_top_level(inner)]
    if text.startswith("{") and text.endswith("}"):
        return _flow_mapping(text[1:-1], text, (":", "="))
    if text[:1] in _CLOSING or text[-1:] in _CLOSING.values():
        split_top_level(text)  # names the unbalanced bracket
        raise InputError(f"shiftpool: cannot parse {text!r} (lists look like [1, 2, 3])")
    return parse_scalar(text)


def _item(part: str, whole: str) -> Any:
    if not part.strip():
        raise InputError(f"shiftpool: empty item in {whole!r}")
    return parse_value(part)


def _unique_pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """A JSON object's pairs as a dict; a key given twice is an error (not "last one wins")."""
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise InputError(f"shiftpool: key {key!r} is given twice")
        result[key] = value
    return result


def _flow_mapping(inner: str, whole: str, separators: tuple[str, ...]) -> dict[str, Any]:
    """``key=value`` (or ``key: value``) items separated by top-level commas."""
    pairs = []
    for item in split_top_level(inner):
        if not item.strip():
            raise InputError(f"shiftpool: empty item in {whole!r}")
        positions = [item.find(sep) for sep in separators if item.find(sep) > 0]
        key = item[: min(positions)].strip().strip(_QUOTES) if positions else ""
        if not key:
            raise InputError(
                f"shiftpool: expected key=value pairs separated by commas, got {item.strip()!r} "
                f"in {whole!r}"
            )
        pairs.append((key, parse_value(item[min(positions) + 1:])))
    return _unique_pairs(pairs)


def parse_mapping(text: str) -> dict[str, Any]:
    """Parse ``"key=value,key2=value2"`` (or a JSON object) into a dict.

    Values are parsed by :func:`parse_value`: brackets and braces protect their commas, so
    lists are written ``channels=[16,32,64]``. A key given twice is an error.

    Example:
        >>> parse_mapping("filter_size=5,pad_mode=circular")
        {'filter_size': 5, 'pad_mode': 'circular'}
        >>> parse_mapping("channels=[16,32,64],head=fc")
        {'channels': [16, 32, 64], 'head': 'fc'}
    """
    text = text.strip()
    if not text:
        return {}
    if text.startswith("{"):
        value = parse_value(text)
        if not isinstance(value, dict):
            raise InputError(f"shiftpool: expected a mapping, got {text!r}")
        return value
    return _flow_mapping(text, text, ("=",))


def coerce_field(name: str, value: Any) -> Any:
    """Convert ``value`` (possibly a command-line string) to the type of field ``name``.

    Raises a ``ValueError`` naming the field and the expected type when it cannot.
    """
    inner, optional = _unwrap_optional(field_type(name))
    if isinstance(value, str) and optional and value.strip().lower() in ("none", "null", ""):
        return None
    if value is None:
        if optional:
            return None
        raise InputError(f"shiftpool.train: {name} may not be empty")
    origin = typing.get_origin(inner) or inner
    try:
        if origin is bool:
            value = parse_scalar(value) if isinstance(value, str) else value
            if not isinstance(value, bool):
                raise TypeError
            return value
        if origin is int:
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise TypeError
            return int(value)
        if origin is float:
            if isinstance(value, bool):
                raise TypeError
            return float(value)
        if origin is str:
            return str(value)
        if origin is list:
            items = value.split(",") if isinstance(value, str) else list(value)
            return [str(item).strip() for item in items if str(item).strip()]
        if origin is dict:
            return parse_mapping(value) if isinstance(value, str) else dict(value)
    except InputError as error:  # a malformed mapping: the parser says where
        detail = str(error).removeprefix("shiftpool: ")
        raise type(error)(f"shiftpool.train: {name}: {detail}") from None
    except (TypeError, ValueError) as error:
        raise InputError(
            f"shiftpool.train: {name} expects {_type_name(inner)}, got {value!r}"
        ) from error
    return value


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp) or tp
    return {list: "a comma-separated list", dict: "key=value pairs"}.get(
        origin, getattr(origin, "__name__", str(origin))
    )


def _yaml() -> Any:
    try:
        import yaml
    except ImportError:
        raise MissingExtraError(
            "shiftpool: YAML configs need PyYAML; install it with `pip install shiftpool[cli]`"
        ) from None
    return yaml


def _strict_loader(yaml: Any) -> type:
    """``yaml.SafeLoader`` that refuses a key given twice in one mapping (not "last wins")."""

    class StrictLoader(yaml.SafeLoader):
        pass

    def mapping(loader: Any, node: Any, deep: bool = False) -> Any:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = loader.construct_object(key_node, deep=True)
            try:
                duplicate = key in seen
            except TypeError:  # an unhashable key: SafeLoader's own error says so
                break
            if duplicate:
                raise InputError(
                    f"key {key!r} is given twice (line {key_node.start_mark.line + 1})"
                )
            seen.add(key)
        return loader.construct_mapping(node, deep=deep)

    StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, mapping)
    return StrictLoader


def _yaml_problem(error: Exception) -> str:
    """One line for a YAML error: what went wrong, and where."""
    problem = getattr(error, "problem", None) or getattr(error, "context", None) or str(error)
    mark = getattr(error, "problem_mark", None) or getattr(error, "context_mark", None)
    where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
    return " ".join(str(problem).split()) + where


def read_yaml_mapping(source: str | Path) -> dict[str, Any]:
    """The top-level mapping of a YAML file (or YAML text); an error if it is not a mapping.

    Read with ``yaml.safe_load`` rules (no Python tags); a key given twice in a mapping is an
    error, as is malformed YAML, each in one line naming the file and the line.

    Example:
        >>> read_yaml_mapping("epochs: 2\\nlr: 0.1\\n")
        {'epochs': 2, 'lr': 0.1}
    """
    path = Path(source) if isinstance(source, Path) or "\n" not in str(source) else None
    where = f"config file {str(path)!r}" if path is not None else "YAML config"
    if path is not None and not path.is_file():
        raise MissingFileError(f"shiftpool: config file {str(path)!r} not found")
    try:
        text = path.read_text() if path is not None else str(source)
    except (OSError, UnicodeDecodeError) as error:
        reason = error.strerror if isinstance(error, OSError) else "not UTF-8 text"
        raise InputError(f"shiftpool: cannot read {where}: {reason}") from None
    yaml = _yaml()
    try:
        data = yaml.load(text, Loader=_strict_loader(yaml))
    except InputError as error:
        raise InputError(f"shiftpool: {where}: {error}") from None
    except yaml.YAMLError as error:
        raise InputError(f"shiftpool: {where} is not valid YAML: {_yaml_problem(error)}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise InputError(
            f"shiftpool: {where} must be a mapping of option: value, got {type(data).__name__}"
        )
    return data
