"""Options of the subcommands and the one merge of defaults, ``--config`` and flags.

Every value, from the command line (text) or from a config file (any YAML value), goes through
the same converter, which raises one :class:`~shiftpool.core.errors.InputError` line naming the
flag or the key."""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
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
    pass


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


def text_value(value: object, what: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise InputTypeError(f"{what} must be a non-empty text, got {value!r}")
    return value


def int_value(minimum: int | None = None) -> Convert:
    def convert(value: object, what: str) -> int:
        if isinstance(value, str):
            with contextlib.suppress(ValueError):
                value = int(value.strip())
        return check_int(value, what, minimum=minimum)

    return convert


def float_value(value: object, what: str) -> float:
    if isinstance(value, str):
        try:
            return float(value.strip())
        except ValueError:
            pass
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InputTypeError(f"{what} must be a number, got {value!r}")
    return float(value)


def bool_value(value: object, what: str) -> bool:
    if not isinstance(value, bool):
        raise InputTypeError(f"{what} must be true or false, got {value!r}")
    return value


def choice_value(choices: Callable[[], Sequence[str]]) -> Convert:
    def convert(value: object, what: str) -> str:
        return check_choice(value, what, list(choices()))

    return convert


def names_value(value: object, what: str) -> list[str]:
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


def metric_names_value(value: object, what: str) -> tuple[str, ...] | str:
    """Metric names (or ``"all"``), checked by :func:`shiftpool.metrics.check_metrics`."""
    from shiftpool.metrics.evaluate import METRICS, check_metrics
    from shiftpool.metrics.robustness import ROBUSTNESS_METRICS

    if isinstance(value, str) and value.strip() == "all":
        return "all"
    try:
        names = names_value(value, what)
    except InputError:
        raise InputError(f"{what} names no metric (got {value!r}); allowed: "
                         f"{', '.join((*METRICS, *ROBUSTNESS_METRICS))} or 'all'") from None
    return check_metrics(names)


def method_options_value(value: object, what: str) -> dict[str, dict[str, object]]:
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
    convert: Convert = text_value
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


def config_fields(exclude: Sequence[str] = ()) -> list[str]:
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


def add_config_file(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", metavar="FILE.yaml", help="read options from a YAML file; "
                        "options on the command line override it")


# -- the robustness metrics' options (evaluate, compare) --------------------------------------


def _checked(check: Callable[[object], object]) -> Convert:
    """A converter from a checker of the library: its one-line error, prefixed by the flag."""

    def convert(value: object, what: str) -> object:
        try:
            return check(value)
        except InputError as error:
            raise InputError(f"{what}: {error}") from None

    return convert


def _listed(value: object) -> object:
    """Comma-separated text as a list of stripped items; anything else as it is."""
    if isinstance(value, str):
        return [item.strip() for item in value.split(",")]
    return value


def _eps_grid(value: object) -> tuple[float, ...]:
    from shiftpool.metrics.adversarial import parse_eps

    if isinstance(value, (int, float)) and not isinstance(value, bool):
        value = [value]
    if isinstance(value, (list, tuple)):
        value = ",".join(str(v) for v in value)
    if not isinstance(value, str):
        raise InputTypeError(f"ε must be numbers or fractions such as 8/255, got {value!r}")
    return parse_eps(value)


def _severities(value: object) -> tuple[int, ...]:
    from shiftpool.metrics.corruptions import check_severities

    items = _listed(value) if not isinstance(value, int) else [value]
    if not isinstance(items, (list, tuple)):
        raise InputTypeError(f"severities must be integers 1..5, got {value!r}")
    numbers = []
    for item in items:
        try:
            numbers.append(int(item) if isinstance(item, str) else item)
        except ValueError:
            numbers.append(item)
    return check_severities(numbers)  # type: ignore[arg-type]


def _corruption_names(value: object) -> tuple[str, ...]:
    from shiftpool.metrics.corruptions import check_corruptions

    return check_corruptions(_listed(value))  # type: ignore[arg-type]


def _perturbation_names(value: object) -> tuple[str, ...]:
    from shiftpool.metrics.robustness import check_perturbations

    return check_perturbations(_listed(value))  # type: ignore[arg-type]


def _fraction(value: object, what: str) -> float:
    number = float_value(value, what)
    if not (number > 0 and number == number and number != float("inf")):
        raise InputError(f"{what} must be a finite number > 0 (a fraction of ε), got {value!r}")
    return number


#: The options of the robustness metrics ``adversarial``, ``corruption`` and ``flip_rate``,
#: shared by the commands that evaluate (read back with :func:`robustness_settings`).
ROBUSTNESS_OPTIONS: tuple[Option, ...] = (
    Option("eps", "ε grid of the 'adversarial' metric, e.g. 1/255,8/255 (ε = 0 is always "
           "added)", _checked(_eps_grid), shown="0,1/255,2/255,4/255,8/255", metavar="E,E,..."),
    Option("eps_unit", "unit of ε: pixel ([0, 1] pixels, converted through the data's "
           "normalisation) or input (the model's input units)",
           choice_value(lambda: ("pixel", "input")), shown="pixel", metavar="UNIT"),
    Option("attack", "attack of the 'adversarial' metric: fgsm or pgd",
           choice_value(lambda: ("fgsm", "pgd")), shown="pgd", metavar="NAME"),
    Option("norm", "norm of the ε-ball: linf or l2", choice_value(lambda: ("linf", "l2")),
           shown="linf", metavar="NORM"),
    Option("steps", "PGD steps, >= 1", int_value(minimum=1), shown=10, metavar="N"),
    Option("step_size", "PGD step as a fraction of ε, > 0", _fraction, shown="2.5/steps",
           metavar="F"),
    Option("restarts", "PGD tries per image, >= 1", int_value(minimum=1), shown=1,
           metavar="N"),
    Option("random_start", "PGD starts from a uniform draw in the ε-ball", bool_value,
           shown=True, switch=True),
    Option("eot", "expectation over transformation: gradients averaged over N draws of the "
           "stochastic downsamplers (0: attack the eval mode), >= 0", int_value(minimum=0),
           shown=0, metavar="N"),
    Option("corruptions", "corruptions or groups (noise, blur, weather, digital) of the "
           "'corruption' metric", _checked(_corruption_names),
           shown="all 15 (frost: procedural texture)", metavar="A,B,..."),
    Option("severities", "corruption severities, of 1..5", _checked(_severities),
           shown="1,2,3,4,5", metavar="S,S,..."),
    Option("perturbations", "perturbation sequences of the 'flip_rate' metric",
           _checked(_perturbation_names), shown="all", metavar="A,B,..."),
    Option("frames", "frames per perturbation sequence, >= 2", int_value(minimum=2), shown=10,
           metavar="N"),
)

_ATTACK_FIELDS = {"attack": "method", "norm": "norm", "steps": "steps", "step_size": "step_size",
                  "restarts": "restarts", "random_start": "random_start", "eot": "eot"}


def robustness_settings(values: dict[str, object]) -> dict[str, object]:
    """The robustness options popped from merged ``values`` (those of
    :data:`ROBUSTNESS_OPTIONS`), as the keyword arguments of
    :class:`~shiftpool.metrics.robustness.RobustnessOptions` for those given (``attack`` an
    :class:`~shiftpool.metrics.adversarial.Attack` when any attack option was given); checked
    together (e.g. the attack's fields) here, before any work.

    Example:
        >>> robustness_settings({"eps": (0.0, 0.5), "steps": 3, "frames": None})["attack"].steps
        3
    """
    from shiftpool.metrics.adversarial import Attack
    from shiftpool.metrics.robustness import RobustnessOptions

    given = {o.name: values.pop(o.name) for o in ROBUSTNESS_OPTIONS if o.name in values}
    given = {k: v for k, v in given.items() if v is not None}
    attack = {field: given.pop(name) for name, field in _ATTACK_FIELDS.items() if name in given}
    if attack:
        given["attack"] = Attack(**attack)  # type: ignore[arg-type]
    RobustnessOptions(**given)  # type: ignore[arg-type]
    return given


# -- YAML config files ------------------------------------------------------------------------


def read_config_file(path: str | os.PathLike[str]) -> dict[str, object]:
    """The top-level mapping of the YAML file ``path``.

    Read by :func:`shiftpool.train.config.read_yaml_mapping` (safe tags only, a repeated key
    refused); every problem is one :class:`InputError` line naming the file (and the line).
    """
    if Path(path).is_dir():
        raise InputError(f"config file {str(path)!r} is a folder, not a YAML file")
    return read_yaml_mapping(path)
