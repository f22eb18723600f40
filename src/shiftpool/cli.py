"""The ``shiftpool`` command: train, evaluate and compare downsampling methods.

``train``, ``evaluate``, ``compare``, ``homogeneity`` and ``export`` take ``--config FILE.yaml``
(keys are the long option names, with ``_`` or ``-``). Every one of them merges its settings
the same way: defaults < config file < options on the command line; a key the command does not
know is refused with the list of valid ones. ``shiftpool <command> --help`` lists each command's
options and defaults.

Every input is checked before any work starts (no data set is loaded, no model trained): a bad
one is one line on stderr naming it and what is allowed, and exit status 2.

Example::

    shiftpool compare --downsample max,blur,aps,tips --model simple_cnn --dataset mnist --epochs 3
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import functools
import json
import os
import sys
import tempfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

from shiftpool.core.checks import check_choice, check_int
from shiftpool.core.errors import InputError, InputTypeError
from shiftpool.train.config import (
    FIELD_CHOICES,
    FIELD_HELP,
    TrainConfig,
    field_type,
    read_yaml_mapping,
)

if TYPE_CHECKING:
    from shiftpool.harness.homogeneity import HomogeneityRow
    from shiftpool.metrics import EvaluationResult

EXIT_OK = 0
EXIT_ERROR = 2
EXIT_DIVERGED = 3
EXIT_INTERRUPTED = 130
COMPARE_OUT_DIR = "runs/compare"
HOMOGENEITY_DATASETS = ("mnist", "fashionmnist", "cifar10")
# Short names accepted besides the generated ``--eval-...`` options.
ALIASES = {"eval_metrics": ("--metrics",), "eval_protocol": ("--protocol",)}

# A converter turns a value from the command line (text) or from a config file (any YAML value)
# into the option's value, or raises one InputError line naming ``what`` (the flag or the key).
Convert = Callable[[object, str], object]


# -- one-line argument errors -----------------------------------------------------------------


class UsageError(InputError):
    """A command line argparse cannot parse; ``prog`` is the (sub)command that refused it."""

    def __init__(self, prog: str, message: str) -> None:
        super().__init__(message)
        self.prog = prog


class OneLineParser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose errors are one :class:`UsageError` line, not usage + exit."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(self.prog, message)


# -- converters: one per kind of value, used for flags and config keys alike ------------------


def _text(value: object, what: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise InputTypeError(f"{what} must be a non-empty text, got {value!r}")
    return value


def _int(minimum: int | None = None) -> Convert:
    def convert(value: object, what: str) -> int:
        if isinstance(value, str):
            with contextlib.suppress(ValueError):
                value = int(value.strip())
        return check_int(value, what, minimum=minimum)

    return convert


def _float(value: object, what: str) -> float:
    if isinstance(value, str):
        try:
            return float(value.strip())
        except ValueError:
            pass
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InputTypeError(f"{what} must be a number, got {value!r}")
    return float(value)


def _bool(value: object, what: str) -> bool:
    if not isinstance(value, bool):
        raise InputTypeError(f"{what} must be true or false, got {value!r}")
    return value


def _choice(choices: Callable[[], Sequence[str]]) -> Convert:
    def convert(value: object, what: str) -> str:
        return check_choice(value, what, list(choices()))

    return convert


def _names(value: object, what: str) -> list[str]:
    """``"a,b"`` or a YAML list of names → ``["a", "b"]``; empty items are an error."""
    if isinstance(value, str):
        items: list[object] = value.split(",")
    elif isinstance(value, (list, tuple)):
        items = list(value)
    else:
        raise InputTypeError(f"{what} must be comma-separated names, got {value!r}")
    names = [item.strip() if isinstance(item, str) else item for item in items]
    if not names or any(not isinstance(n, str) or not n for n in names):
        raise InputError(f"{what} must be comma-separated names without empty ones, "
                         f"got {value!r}")
    return [str(n) for n in names]


def _metric_names(value: object, what: str) -> tuple[str, ...] | str:
    """Metric names (or ``"all"``), checked by :func:`shiftpool.metrics.check_metrics`."""
    from shiftpool.metrics.evaluate import METRICS, check_metrics

    if isinstance(value, str) and value.strip() == "all":
        return "all"
    try:
        names = _names(value, what)
    except InputError:
        raise InputError(f"{what} names no metric (got {value!r}); allowed: "
                         f"{', '.join(METRICS)} or 'all'") from None
    return check_metrics(names)


def _method_options(value: object, what: str) -> dict[str, dict[str, object]]:
    """Per-method operator options: a JSON object (command line) or a mapping (config file) of
    method name → mapping of options."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError as error:
            raise InputError(
                f"{what} is not valid JSON ({error.msg} at column {error.colno}): {value!r}; "
                'expected e.g. \'{"blur": {"filter_size": 5}}\''
            ) from None
    if not isinstance(value, Mapping):
        raise InputTypeError(f"{what} must map method names to options, e.g. "
                             f'{{"blur": {{"filter_size": 5}}}}; got {value!r}')
    options: dict[str, dict[str, object]] = {}
    for method, settings in value.items():
        if not isinstance(settings, Mapping):
            raise InputTypeError(f"{what}: the options of {method!r} must be a mapping of "
                                 f"name: value, got {settings!r}")
        options[str(method)] = {str(k): v for k, v in settings.items()}
    return options


# -- options and the one merge of defaults, --config and flags --------------------------------


@dataclasses.dataclass(frozen=True)
class Option:
    """One option of a subcommand, also accepted as a key of ``--config``.

    Attributes:
        name: the key (``max_images``); the flag is ``--max-images``.
        help: one line of help; the default is appended.
        convert: checks and converts a value from the command line or the file.
        default: the value when neither gives one (``None``: not set).
        shown: how ``--help`` shows the default (default: ``default`` itself).
        switch: a ``--name/--no-name`` switch instead of a value.
        metavar: the placeholder in ``--help``.
        flags: extra spellings of the flag.
        main_flag: the flag that errors name, when it is not ``--`` + ``name``.
    """

    name: str
    help: str
    convert: Convert = _text
    default: object = None
    shown: str | None = None
    switch: bool = False
    metavar: str | None = None
    flags: tuple[str, ...] = ()
    main_flag: str | None = None

    @property
    def flag(self) -> str:
        return self.main_flag or _flag(self.name)


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def add_options(parser: argparse.ArgumentParser, options: Sequence[Option],
                title: str = "options (also as keys of --config)") -> None:
    """Add ``options`` to ``parser``; each defaults to "not given" so the file can fill it in."""
    group = parser.add_argument_group(title)
    for option in options:
        shown = option.shown if option.shown is not None else option.default
        help_text = option.help if shown is None else f"{option.help} (default: {shown})"
        common = {"dest": option.name, "default": argparse.SUPPRESS, "help": help_text}
        if option.switch:
            group.add_argument(option.flag, *option.flags, action=argparse.BooleanOptionalAction,
                               **common)
        else:
            group.add_argument(option.flag, *option.flags, metavar=option.metavar, **common)


def add_config_options(parser: argparse.ArgumentParser, exclude: Sequence[str] = (),
                       defaults: Mapping[str, object] | None = None) -> None:
    """Add one option per :class:`TrainConfig` field (help and default from the config, or from
    ``defaults`` where a command has its own, e.g. compare's ``out_dir``).

    Options default to "not given" so that a ``--config`` file can fill them in; the values are
    checked by :class:`TrainConfig` itself.
    """
    base = TrainConfig()
    group = parser.add_argument_group("training options (also as keys of --config)")
    for f in dataclasses.fields(TrainConfig):
        if f.name in exclude:
            continue
        default = (defaults or {}).get(f.name, getattr(base, f.name))
        shown = "none" if default in (None, {}, []) else default
        help_text = f"{FIELD_HELP[f.name]} (default: {shown})"
        flags = (_flag(f.name), *ALIASES.get(f.name, ()))
        common = {"dest": f.name, "default": argparse.SUPPRESS, "help": help_text}
        if field_type(f.name) is bool:
            group.add_argument(*flags, action=argparse.BooleanOptionalAction, **common)
        else:
            group.add_argument(*flags, metavar=_metavar(f.name), choices=FIELD_CHOICES.get(f.name),
                               **common)


def _metavar(name: str) -> str | None:
    if name in FIELD_CHOICES:
        return None
    kind = str(field_type(name))
    if "dict" in kind:
        return "K=V,..."
    if "list" in kind:
        return "A,B,..."
    return name.split("_")[-1].upper()


def _config_fields(exclude: Sequence[str] = ()) -> list[str]:
    return [f.name for f in dataclasses.fields(TrainConfig) if f.name not in exclude]


class Settings(dict[str, object]):
    """A command's merged settings, with typed reads (each value was already converted by its
    option; a read of the wrong type is a bug in this module, not an input error)."""

    def _wrong(self, key: str, kind: str) -> TypeError:
        return TypeError(f"setting {key!r} holds {self[key]!r}, not {kind}")

    def text(self, key: str) -> str | None:
        """A text setting, or None when not set."""
        value = self[key]
        if value is None or isinstance(value, str):
            return value
        raise self._wrong(key, "text")

    def integer(self, key: str) -> int | None:
        """An integer setting, or None when not set."""
        value = self[key]
        if value is None or (isinstance(value, int) and not isinstance(value, bool)):
            return value
        raise self._wrong(key, "an integer")

    def number(self, key: str) -> float:
        """A number setting (always set)."""
        value = self[key]
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        raise self._wrong(key, "a number")

    def switch(self, key: str) -> bool:
        """A true/false setting (always set)."""
        value = self[key]
        if isinstance(value, bool):
            return value
        raise self._wrong(key, "true or false")

    def names(self, key: str) -> list[str]:
        """A list-of-names setting (always set)."""
        value = self[key]
        if isinstance(value, list) and all(isinstance(name, str) for name in value):
            return list(value)
        raise self._wrong(key, "a list of names")


def merge_settings(args: argparse.Namespace, options: Sequence[Option] = (), *,
                   fields: Sequence[str] = (),
                   aliases: Mapping[str, str] | None = None) -> Settings:
    """The settings of one command: defaults < ``--config`` file < flags.

    Args:
        args: the parsed command line (options not given are absent from it).
        options: the command's own options; their values are converted and checked here.
        fields: :class:`TrainConfig` fields the command takes; passed on as given, for
            :class:`TrainConfig` to check (and absent when neither file nor flag sets them).
        aliases: other spellings of keys in the file (``downsample`` → ``methods``).

    Raises:
        InputError: a key of the file that the command does not take (the message lists the
            valid ones), or a value an option's converter refuses.
    """
    source, file_values = _file_values(args)
    for alias, key in (aliases or {}).items():
        if alias in file_values:
            if key in file_values:
                raise InputError(f"{source}: give either {alias} or {key}, not both")
            file_values[key] = file_values.pop(alias)
    valid = [option.name for option in options] + list(fields)
    unknown = sorted(set(file_values) - set(valid))
    if unknown:
        raise InputError(f"{source}: unknown key(s) {', '.join(unknown)}; "
                         f"valid keys: {', '.join(valid)}")
    values = Settings()
    for option in options:
        if hasattr(args, option.name):
            values[option.name] = option.convert(getattr(args, option.name), option.flag)
        elif option.name in file_values:
            values[option.name] = option.convert(file_values[option.name],
                                                 f"{option.name} in {source}")
        else:
            values[option.name] = option.default
    for name in fields:
        if hasattr(args, name):
            values[name] = getattr(args, name)
        elif name in file_values:
            values[name] = file_values[name]
    return values


def _file_values(args: argparse.Namespace) -> tuple[str, dict[str, object]]:
    path = getattr(args, "config", None)
    if path is None:
        return "", {}
    data = read_config_file(path)
    return f"config file {path}", {str(k).replace("-", "_"): v for k, v in data.items()}


def _add_config_file(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", metavar="FILE.yaml", help="read options from a YAML file; "
                        "options on the command line override it")


# -- YAML config files ------------------------------------------------------------------------


def read_config_file(path: str | os.PathLike[str]) -> dict[str, object]:
    """The top-level mapping of the YAML file ``path``.

    Read by :func:`shiftpool.train.config.read_yaml_mapping` (safe tags only, a repeated key
    refused); every problem is one :class:`InputError` line naming the file (and the line).
    """
    if Path(path).is_dir():
        raise InputError(f"config file {str(path)!r} is a folder, not a YAML file")
    return read_yaml_mapping(path)


# -- paths, devices and threads ---------------------------------------------------------------


def _existing_ancestor(path: Path, what: str) -> Path:
    """The nearest part of ``path`` (itself or a parent) that exists."""
    current = path
    while True:
        try:
            if current.exists() or current == current.parent:
                return current
        except (OSError, ValueError) as error:
            raise InputError(f"{what}: invalid path {str(path)!r} ({error})") from None
        current = current.parent


def _check_writable_folder(folder: Path, what: str) -> None:
    try:
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as error:
        raise InputError(f"{what}: cannot write in {str(folder)!r} ({error.strerror})") from None


def check_output_dir(path: str | os.PathLike[str], what: str) -> Path:
    """``path`` if it is a folder that can be written, or one that can be created there.

    Nothing is created: the nearest existing part of the path must be a writable folder.

    Raises:
        InputError: ``path`` is a file, lies under a file, is invalid, or its folder is not
            writable (one line naming ``what`` and the path).
    """
    if not str(path).strip():
        raise InputError(f"{what}: the folder name is empty")
    folder = Path(path).expanduser()
    existing = _existing_ancestor(folder, what)
    if not existing.is_dir():
        if existing == folder:
            raise InputError(f"{what}: {str(folder)!r} is a file, not a folder")
        raise InputError(f"{what}: cannot create {str(folder)!r}: {str(existing)!r} is a file, "
                         "not a folder")
    _check_writable_folder(existing, what)
    return folder


def check_output_file(path: str | os.PathLike[str], what: str) -> Path:
    """``path`` if a file can be written there (its folder existing or creatable).

    Raises:
        InputError: ``path`` is a folder, lies under a file, or cannot be written.
    """
    if not str(path).strip():
        raise InputError(f"{what}: the file name is empty")
    file = Path(path).expanduser()
    existing = _existing_ancestor(file, what)
    if (existing == file and file.is_dir()) or str(path).endswith(os.sep):
        raise InputError(f"{what}: {str(file)!r} is a folder; give a file name")
    check_output_dir(file.parent, what)
    return file


def check_input_dir(path: str | os.PathLike[str] | None, what: str) -> None:
    """Refuse a ``path`` that exists but is not a folder (a missing one may be created)."""
    if path is None:
        return
    existing = _existing_ancestor(Path(path).expanduser(), what)
    if not existing.is_dir():
        raise InputError(f"{what}: {str(existing)!r} is a file, not a folder")


def check_device(name: str) -> None:
    """Refuse ``cuda`` where CUDA is not available (before any data is loaded)."""
    from shiftpool.train.runtime import resolve_device

    resolve_device(name)


def set_threads(count: int | None) -> None:
    """``torch.set_num_threads(count)`` unless ``count`` is None (torch's choice)."""
    if count is not None:
        import torch

        torch.set_num_threads(count)


def _threads_used() -> int:
    import torch

    return torch.get_num_threads()


NUM_THREADS = Option("num_threads", "CPU threads, >= 1", _int(minimum=1),
                     shown="torch's choice", metavar="N")


# -- what a run needs -------------------------------------------------------------------------


def check_dataset(name: str) -> None:
    """Refuse an unknown data set or a bad image-folder name (cheap: no image is read)."""
    import shiftpool.data as sdata

    sdata.check_dataset_name(name)


def check_model_builds(config: TrainConfig) -> None:
    """Build the run's model on the meta device (no memory, no data), so that a bad model or
    operator option (``channels='16 32 64'``, ``filter_size=0``...) is refused before any data
    is loaded. Classes and channels come from the data set's table entry where it has one."""
    import torch

    import shiftpool.data as sdata
    from shiftpool.train.checkpoint import build_model

    shape = {"num_classes": 10, "in_channels": 3}
    if config.dataset in sdata.list_datasets():
        spec = sdata.dataset_info(config.dataset)
        shape = {"num_classes": spec.num_classes, "in_channels": spec.channels}
    with torch.device("meta"):
        build_model(config, shape)


def check_run(config: TrainConfig, *, check_model: bool = True) -> None:
    """Everything a run needs besides a valid config: a known data set, a model that builds
    (``check_model``), the device, a data root that is a folder and a writable output folder.
    Checked before any data is loaded."""
    check_dataset(config.dataset)
    if check_model:
        check_model_builds(config)
    check_device(config.device)
    check_input_dir(config.data_dir, "--data-dir")
    check_output_dir(config.out_dir, "--out-dir")


# -- train ------------------------------------------------------------------------------------


def _add_train(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("train", help="train one model",
                            description="Train a model with one downsampling operator; "
                            "resumes from OUT_DIR/last.pt when present.")
    _add_config_file(parser)
    parser.add_argument("--fresh", action="store_true",
                        help="ignore an existing checkpoint in --out-dir and start over")
    add_config_options(parser)
    parser.set_defaults(handler=_cmd_train)


def train_settings(args: argparse.Namespace) -> TrainConfig:
    """The run ``shiftpool train`` was asked for: defaults < --config file < flags."""
    return TrainConfig.from_dict(merge_settings(args, fields=_config_fields()))


def _cmd_train(args: argparse.Namespace) -> int:
    from shiftpool.train import train

    config = train_settings(args)
    check_run(config)
    set_threads(config.num_threads)
    result = train(config, resume=not args.fresh)
    if result.checkpoint is not None:
        acc = "n/a" if result.test_acc is None else f"{100 * result.test_acc:.2f}%"
        print(f"done: test accuracy {acc}, {result.train_time_s:.1f} s of training; "
              f"checkpoint {result.checkpoint}")
    return EXIT_OK


# -- evaluate ---------------------------------------------------------------------------------


def _evaluate_options() -> tuple[Option, ...]:
    from shiftpool.metrics import DEFAULT_METRICS, list_protocols

    return (
        Option("metrics", "comma-separated metrics, or 'all' for every one", _metric_names,
               default=tuple(DEFAULT_METRICS), shown=",".join(DEFAULT_METRICS),
               metavar="A,B,..."),
        Option("protocol", f"protocol: {', '.join(list_protocols())}", _choice(list_protocols),
               shown="the run's"),
        Option("max_shift", "override the protocol's largest shift, >= 1", _int(minimum=1),
               metavar="N"),
        Option("max_images", "evaluate a seeded random subset of N test images, >= 1",
               _int(minimum=1), shown="every test image", metavar="N"),
        Option("batch_size", "evaluation batch size, >= 1", _int(minimum=1),
               shown="the run's eval_batch_size", metavar="N"),
        Option("device", "cpu, cuda or auto", _choice(lambda: FIELD_CHOICES["device"]),
               shown="the run's"),
        Option("data_dir", "data root", shown="$SHIFTPOOL_DATA, else a cache", metavar="DIR"),
        Option("seed", "seed of the images and shifts", _int(), shown="the run's", metavar="N"),
        Option("output", "JSON file", shown="evaluation-PROTOCOL.json beside the checkpoint",
               metavar="FILE"),
        Option("progress", "progress bar", _bool, default=True, switch=True),
        NUM_THREADS,
    )


def _add_evaluate(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "evaluate", help="accuracy and shift invariance of a checkpoint",
        description="Evaluate a trained checkpoint with shiftpool.metrics. The metrics default "
        "to accuracy, consistency and fidelity whatever the run was trained with.")
    parser.add_argument("checkpoint", metavar="CHECKPOINT", help="a checkpoint from train")
    _add_config_file(parser)
    add_options(parser, _evaluate_options())
    parser.set_defaults(handler=_cmd_evaluate)


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from shiftpool.core.io import atomic_write_json
    from shiftpool.harness.evaluation import evaluate_model
    from shiftpool.metrics import get_protocol
    from shiftpool.train.checkpoint import load_trained_model

    opts = merge_settings(args, _evaluate_options())
    device, data_dir, output = opts.text("device"), opts.text("data_dir"), opts.text("output")
    max_images, max_shift = opts.integer("max_images"), opts.integer("max_shift")
    if device is not None:
        check_device(device)
    check_input_dir(data_dir, "--data-dir")
    if output is not None:
        check_output_file(output, "--output")
    model, config, _ = load_trained_model(args.checkpoint)
    changes: dict[str, object] = {"progress": opts.switch("progress"),
                                  "eval_max_images": max_images}
    changes.update({key: opts[key] for key in ("device", "data_dir", "seed")
                    if opts[key] is not None})
    if opts["batch_size"] is not None:
        changes["eval_batch_size"] = opts["batch_size"]
    config = config.replace(**changes)  # checked like any run's settings
    check_device(config.device)
    protocol = opts.text("protocol") or config.eval_protocol
    overrides = {} if max_shift is None else {"max_shift": max_shift}
    get_protocol(protocol, **overrides)  # the protocol and its overrides, before any data
    target = check_output_file(
        output or Path(args.checkpoint).with_name(f"evaluation-{protocol}.json"), "--output")
    set_threads(opts.integer("num_threads"))
    result = evaluate_model(model, config, metrics=opts["metrics"], protocol=protocol,
                            max_images=max_images, **overrides)
    run = {"checkpoint": str(args.checkpoint), "device": config.device,
           "num_threads": _threads_used()}
    atomic_write_json(target, {**result.to_dict(), "run": run})
    print(_summary_table(result))
    print(f"saved {target}")
    return EXIT_OK


def _summary_table(result: EvaluationResult) -> str:
    lines = [f"{result.n} images, protocol {result.protocol.name}"]
    lines += [f"  {key:<12} {100 * value:7.2f}" for key, value in result.summary().items()]
    return "\n".join(lines)


# -- compare ----------------------------------------------------------------------------------

COMPARE_EXCLUDED = ("downsample", "downsample_options")
COMPARE_OPTIONS = (
    Option("methods", "methods to compare, e.g. max,blur,aps,lps,tips,s3pool", _names,
           metavar="A,B,...", main_flag="--downsample", flags=("--methods",)),
    Option("method_options", 'per-method operator options as JSON, e.g. '
           '\'{"blur": {"filter_size": 5}}\'', _method_options, default={}, shown="none",
           metavar="JSON"),
    Option("figures", "draw figures (needs matplotlib)", _bool, default=True, switch=True),
)


def _add_compare(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "compare", help="train and evaluate several downsampling methods, write one table",
        description="Train each method with the same seed and budget, evaluate each under the "
        "same protocol, write results.json/.csv/.md and figures into --out-dir (default "
        f"{COMPARE_OUT_DIR}). An interrupted compare resumes where it stopped.")
    _add_config_file(parser)
    parser.add_argument("--fresh", action="store_true",
                        help="train and evaluate every method again, ignoring earlier results")
    add_options(parser, COMPARE_OPTIONS, "comparison options (also as keys of --config; "
                "`downsample:` may name the methods in a file)")
    add_config_options(parser, exclude=COMPARE_EXCLUDED, defaults={"out_dir": COMPARE_OUT_DIR})
    parser.set_defaults(handler=_cmd_compare)


def compare_settings(
    args: argparse.Namespace,
) -> tuple[TrainConfig, list[str], dict[str, dict[str, object]], bool]:
    """``(shared config, methods, per-method options, figures)``: defaults < --config < flags.

    The methods and their options are checked by :func:`shiftpool.harness.compare.compare`
    itself (:func:`~shiftpool.harness.compare.plan_comparison`) before anything trains.
    """
    values = merge_settings(args, COMPARE_OPTIONS, fields=_config_fields(COMPARE_EXCLUDED),
                            aliases={"downsample": "methods"})
    methods = values.pop("methods")
    options = values.pop("method_options")
    figures = values.pop("figures")
    values.setdefault("out_dir", COMPARE_OUT_DIR)
    config = TrainConfig.from_dict(values)
    if methods is None:
        raise InputError("compare needs --downsample METHOD,METHOD,... (or `methods:` in "
                         "--config)")
    assert isinstance(methods, list) and isinstance(options, dict)
    return config, methods, options, bool(figures)


def _cmd_compare(args: argparse.Namespace) -> int:
    from shiftpool.harness.compare import compare

    config, methods, options, figures = compare_settings(args)
    check_run(config, check_model=False)  # compare() checks each method's model first
    set_threads(config.num_threads)  # train() sets them for training; evaluation needs them too
    result = compare(config, methods, config.out_dir, method_options=options, figures=figures,
                     fresh=args.fresh, log=_stderr)
    if not result.rows:  # a torchrun process other than rank 0: it trained, rank 0 reports
        return EXIT_OK
    print(result.table)
    for kind, path in result.files.items():
        print(f"wrote {kind}: {path}")
    return EXIT_OK


def _stderr(text: str) -> None:
    """Progress of a comparison (which method trains, evaluates): a few lines, always shown."""
    print(text, file=sys.stderr, flush=True)


# -- homogeneity ------------------------------------------------------------------------------

HOMOGENEITY_OPTIONS = (
    Option("dataset", "comma-separated data sets", _names,
           default=list(HOMOGENEITY_DATASETS), shown=",".join(HOMOGENEITY_DATASETS),
           metavar="A,B,..."),
    Option("split", "split: train or test", _text, default="test"),
    Option("window", "window size k, >= 1 (2: a stride of 2)", _int(), default=2, metavar="K"),
    Option("eps", "tolerance relative to the image's range, in [0, 1]", _float, default=0.05,
           metavar="EPS"),
    Option("max_images", "use a seeded random subset of N images of each set, >= 1", _int(),
           shown="every image", metavar="N"),
    Option("data_dir", "data root", shown="$SHIFTPOOL_DATA, else a cache", metavar="DIR"),
    Option("download", "download missing data sets", _bool, default=True, switch=True),
    Option("output", "also write the results to this JSON file", metavar="FILE"),
    NUM_THREADS,
)


def _add_homogeneity(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("homogeneity", help="local homogeneity of data sets (Mouton et al.)",
                            description="Local homogeneity of the images of each data set, with "
                            "95% intervals (our reading of Mouton et al.).")
    _add_config_file(parser)
    add_options(parser, HOMOGENEITY_OPTIONS)
    parser.set_defaults(handler=_cmd_homogeneity)


def _cmd_homogeneity(args: argparse.Namespace) -> int:
    from shiftpool.core.io import atomic_write_json
    from shiftpool.harness.homogeneity import (
        check_homogeneity_settings,
        homogeneity_rows,
        markdown_table,
    )

    opts = merge_settings(args, HOMOGENEITY_OPTIONS)
    split, window = opts.text("split") or "test", opts.integer("window")
    eps, max_images = opts.number("eps"), opts.integer("max_images")
    assert window is not None
    datasets = check_homogeneity_settings(opts.names("dataset"), split=split, window=window,
                                          eps=eps, max_images=max_images)
    data_dir, output = opts.text("data_dir"), opts.text("output")
    check_input_dir(data_dir, "--data-dir")
    target = None if output is None else check_output_file(output, "--output")
    set_threads(opts.integer("num_threads"))
    rows: list[HomogeneityRow] = homogeneity_rows(
        datasets, split=split, window=window, eps=eps, max_images=max_images,
        data_dir=data_dir, download=opts.switch("download"))
    print(markdown_table(rows))
    if target is not None:
        print(f"wrote {atomic_write_json(target, [row.to_dict() for row in rows])}")
    return EXIT_OK


# -- benchmark --------------------------------------------------------------------------------


def _add_benchmark(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "benchmark", help="time every downsampling operator against max pooling",
        description="Run the operator benchmark shipped with shiftpool "
        "(shiftpool.benchmarks.downsample; nothing is loaded from the current folder). "
        "Arguments after the command go to it unchanged; `shiftpool benchmark -- --help` lists "
        "them (e.g. --quick, --device cuda, --op blur, --out FOLDER).")
    parser.add_argument("bench_args", nargs=argparse.REMAINDER, help="arguments of the benchmark")
    parser.set_defaults(handler=_cmd_benchmark)


def _cmd_benchmark(args: argparse.Namespace) -> int:
    return run_benchmark(args.bench_args)


def run_benchmark(argv: Sequence[str]) -> int:
    """Run :mod:`shiftpool.benchmarks.downsample` (installed code only) with ``argv``; a leading
    ``--`` is dropped. Its own parser checks the arguments (one line each)."""
    from shiftpool.benchmarks import downsample

    arguments = list(argv)
    if arguments[:1] == ["--"]:
        arguments = arguments[1:]
    return int(downsample.main(arguments) or 0)


# -- export -----------------------------------------------------------------------------------


def _export_options() -> tuple[Option, ...]:
    from shiftpool.harness.export import EXPORT_FORMATS, onnx_opset_range

    low, high = onnx_opset_range()
    return (
        Option("format", f"export format: {', '.join(EXPORT_FORMATS)} (required)",
               _choice(lambda: EXPORT_FORMATS)),
        Option("output", "output file", shown="model.onnx or model.torchscript.pt beside the "
               "checkpoint", metavar="FILE"),
        Option("batch_size", "batch of the example input, >= 1", _int(minimum=1), default=2,
               metavar="N"),
        Option("opset", f"ONNX opset, {low}..{high}", _int(), shown="the exporter's",
               metavar="N"),
        Option("verify", "compare the export's outputs with the model's", _bool, default=True,
               switch=True),
        NUM_THREADS,
    )


def _add_export(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("export", help="export a checkpoint's model to ONNX or TorchScript",
                            description="Export the model of a checkpoint (eval mode, CPU) and "
                            "check the export's outputs against the eager model.")
    parser.add_argument("checkpoint", metavar="CHECKPOINT", help="a checkpoint from train")
    _add_config_file(parser)
    add_options(parser, _export_options())
    parser.set_defaults(handler=_cmd_export)


def _cmd_export(args: argparse.Namespace) -> int:
    import torch

    from shiftpool.harness.export import check_export_options, default_export_path, export_model
    from shiftpool.train.checkpoint import load_trained_model

    opts = merge_settings(args, _export_options())
    fmt, opset, batch = opts.text("format"), opts.integer("opset"), opts.integer("batch_size")
    if fmt is None:
        raise InputError("export needs --format onnx or torchscript (or `format:` in --config)")
    assert batch is not None
    check_export_options(fmt, opset)
    output = check_output_file(opts.text("output") or default_export_path(args.checkpoint, fmt),
                               "--output")
    model, _, checkpoint = load_trained_model(args.checkpoint)
    info = checkpoint["model_args"]
    set_threads(opts.integer("num_threads"))
    example = torch.randn(batch, info["in_channels"], *info["input_size"],
                          generator=torch.Generator().manual_seed(0))
    result = export_model(model, example, output, fmt, opset=opset,
                          verify=opts.switch("verify"))
    opset = "" if result.opset is None else f", opset {result.opset}"
    diff = "" if result.max_abs_diff is None else f"; max |diff| vs eager {result.max_abs_diff:.2e}"
    print(f"wrote {result.path} ({result.format} via {result.method}{opset}{diff})")
    return EXIT_OK


# -- list -------------------------------------------------------------------------------------


def _add_list(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("list", help="list models, operators, data sets and protocols",
                            description="List the names every option accepts.")
    parser.set_defaults(handler=_cmd_list)


def _cmd_list(args: argparse.Namespace) -> int:
    import shiftpool.data as sdata
    import shiftpool.downsample as sds
    import shiftpool.metrics as smetrics
    import shiftpool.models as smodels

    print("models:     " + ", ".join(smodels.list_models()))
    print("operators:  " + ", ".join(sds.list_downsamples()))
    print("data sets:  " + ", ".join(sdata.list_datasets()))
    print("protocols:  " + ", ".join(smetrics.list_protocols()))
    print("metrics:    " + ", ".join(smetrics.METRICS))
    return EXIT_OK


# -- main -------------------------------------------------------------------------------------

_COMMANDS: tuple[Callable[[argparse._SubParsersAction], None], ...] = (
    _add_train, _add_evaluate, _add_compare, _add_homogeneity, _add_benchmark, _add_export,
    _add_list,
)


def build_parser() -> argparse.ArgumentParser:
    """The ``shiftpool`` argument parser with every subcommand."""
    from shiftpool import __version__

    parser = OneLineParser(
        prog="shiftpool", allow_abbrev=False,
        description="Shift-aware downsampling for CNNs: train, evaluate and compare methods.")
    parser.add_argument("--version", action="version", version=f"shiftpool {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for add in _COMMANDS:
        add(sub)
    for choice in sub.choices.values():
        choice.allow_abbrev = False  # `--max` must not silently mean `--max-images`
    return parser


@functools.cache
def _parser() -> argparse.ArgumentParser:
    """:func:`build_parser`, built once per process (parsing leaves it unchanged)."""
    return build_parser()


def _training_diverged() -> type[BaseException] | None:
    """``shiftpool.train.TrainingDiverged``, looked up by name (None where it is absent)."""
    import shiftpool.train as strain

    found = getattr(strain, "TrainingDiverged", None)
    return found if isinstance(found, type) and issubclass(found, BaseException) else None


def _one_line(error: BaseException) -> str:
    return " ".join(str(error).split("\n")).strip() or type(error).__name__


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``shiftpool`` command; returns the exit status.

    Exit status:
        0: done.
        2: bad input — an unknown name, a value out of range, a malformed config file, a
           missing or corrupt file, an output path that cannot be written, a device that is
           not there. One line on stderr names it and what is allowed; nothing was computed.
        3: training diverged (a NaN or infinite loss); the line names where, and the last good
           checkpoint is kept.
        130: interrupted (Ctrl-C); training saves a checkpoint first, and the same command
           resumes.

    ``--help`` exits with 0. Set ``SHIFTPOOL_DEBUG=1`` for tracebacks of input errors.
    """
    command = "shiftpool"
    arguments = list(sys.argv[1:] if argv is None else argv)
    try:
        if arguments[:1] == ["benchmark"]:  # every argument after it is the benchmark's
            command = "shiftpool benchmark"
            return run_benchmark(arguments[1:])
        args, unknown = _parser().parse_known_args(arguments)
        command = f"shiftpool {args.command}"
        if unknown:
            raise UsageError(command, f"unrecognized arguments: {' '.join(unknown)}")
        return int(args.handler(args))
    except KeyboardInterrupt as stop:  # TrainingInterrupted is a KeyboardInterrupt
        checkpoint = getattr(stop, "checkpoint", None)
        if checkpoint is not None:
            print(f"{command}: interrupted; checkpoint {checkpoint}. Run the same command again "
                  "to resume.", file=sys.stderr)
        else:
            print(f"{command}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except UsageError as error:
        if os.environ.get("SHIFTPOOL_DEBUG"):
            raise
        print(f"{error.prog}: error: {_one_line(error)}", file=sys.stderr)
        return EXIT_ERROR
    except InputError as error:
        if os.environ.get("SHIFTPOOL_DEBUG"):
            raise
        print(f"{command}: error: {_one_line(error)}", file=sys.stderr)
        return EXIT_ERROR
    except Exception as error:
        diverged = _training_diverged()
        if diverged is None or not isinstance(error, diverged) or os.environ.get(
                "SHIFTPOOL_DEBUG"):
            raise
        message = _one_line(error)
        if "diverged" not in message:
            message = f"training diverged: {message}"
        checkpoint = getattr(error, "checkpoint", None)
        if checkpoint is not None and str(checkpoint) not in message:
            message += f"; last good checkpoint {checkpoint}"
        print(f"{command}: {message}", file=sys.stderr)
        return EXIT_DIVERGED


if __name__ == "__main__":
    sys.exit(main())
