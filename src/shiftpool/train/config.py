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

from shiftpool.core.errors import InputError, MissingExtraError, MissingFileError

OPTIMIZERS = ("sgd", "adamw")
SCHEDULES = ("onecycle", "cosine", "constant")
AMP_MODES = ("auto", "off", "bf16", "fp16")
DEVICES = ("auto", "cpu", "cuda")

# Fields that change how a run is logged, where it is written or how it is evaluated afterwards,
# never the trained weights: a resumed run may differ from its checkpoint in these.
RESULT_NEUTRAL_FIELDS = frozenset(
    {"out_dir", "progress", "tensorboard", "num_threads", "eval_every", "data_dir", "download",
     "eval_batch_size", "eval_protocol", "eval_metrics", "eval_max_images"}
)

# The allowed values of the fields that take one of a fixed set.
FIELD_CHOICES: dict[str, tuple[str, ...]] = {
    "optimizer": OPTIMIZERS,
    "schedule": SCHEDULES,
    "amp": AMP_MODES,
    "device": DEVICES,
}

# One line of help per field (the command line's --help shows these).
FIELD_HELP: dict[str, str] = {
    "model": "model name (see shiftpool.models.list_models())",
    "downsample": "downsampling operator (see shiftpool.list_downsamples())",
    "downsample_options": "operator options, e.g. filter_size=5",
    "model_options": "extra model options, e.g. width=32",
    "circular": "circular padding in the model's convolutions",
    "dataset": "data set name (see shiftpool.data.list_datasets())",
    "data_dir": "data root (default: $SHIFTPOOL_DATA, else a cache)",
    "download": "download missing data sets",
    "train_subset": "train on a seeded random subset of this size",
    "augment": "augmentation (shiftpool.data.Augment fields), e.g. crop_padding=4,flip=true",
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
        for name, choices in FIELD_CHOICES.items():
            value = getattr(self, name)
            if value not in choices:
                raise InputError(
                    f"shiftpool.train: {name} must be one of {', '.join(choices)}, got {value!r}"
                )
        if self.eval_every < 0:
            raise InputError(f"shiftpool.train: eval_every must be >= 0, got {self.eval_every}")
        positive = ("epochs", "batch_size", "eval_batch_size", "train_subset", "eval_max_images")
        for name in positive:
            value = getattr(self, name)
            if value is not None and value < 1:
                raise InputError(f"shiftpool.train: {name} must be >= 1, got {value}")
        if self.lr <= 0:
            raise InputError(f"shiftpool.train: lr must be > 0, got {self.lr}")
        if not 0.0 <= self.label_smoothing < 1.0:
            raise InputError(
                f"shiftpool.train: label_smoothing must be in [0, 1), got {self.label_smoothing}"
            )
        if not 0.0 <= self.tips_alpha <= 1.0:
            raise InputError(
                f"shiftpool.train: tips_alpha must be in [0, 1], got {self.tips_alpha}"
            )
        if not 0.0 < self.pct_start < 1.0:
            raise InputError(f"shiftpool.train: pct_start must be in (0, 1), got {self.pct_start}")
        if min(self.lps_tau_start, self.lps_tau_end) <= 0:
            raise InputError("shiftpool.train: LPS temperatures must be > 0")

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
        """The fields that decide the trained weights (all but logging, paths and evaluation)."""
        return {k: v for k, v in self.to_dict().items() if k not in RESULT_NEUTRAL_FIELDS}


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


def parse_mapping(text: str) -> dict[str, Any]:
    """Parse ``"key=value,key2=value2"`` (or a JSON object) into a dict.

    Example:
        >>> parse_mapping("filter_size=5,pad_mode=circular")
        {'filter_size': 5, 'pad_mode': 'circular'}
    """
    text = text.strip()
    if not text:
        return {}
    if text.startswith("{"):
        return dict(json.loads(text))
    result: dict[str, Any] = {}
    for item in text.split(","):
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise InputError(f"expected key=value pairs separated by commas, got {text!r}")
        result[key.strip()] = parse_scalar(value)
    return result


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


def read_yaml_mapping(source: str | Path) -> dict[str, Any]:
    """The top-level mapping of a YAML file (or YAML text); an error if it is not a mapping."""
    path = Path(source) if isinstance(source, Path) or "\n" not in str(source) else None
    if path is not None and not path.is_file():
        raise MissingFileError(f"shiftpool: config file {str(path)!r} not found")
    text = path.read_text() if path is not None else str(source)
    data = _yaml().safe_load(text)
    if data is None:
        return {}
    if not isinstance(data, dict):
        where = f"config file {path}" if path else "YAML config"
        raise InputError(f"shiftpool: {where} must be a mapping of option: value")
    return data
