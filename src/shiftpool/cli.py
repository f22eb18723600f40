"""The ``shiftpool`` command: train, evaluate and compare downsampling methods.

Every subcommand takes ``--config FILE.yaml`` (keys are the long option names, with ``_`` or
``-``); options given on the command line override the file. ``shiftpool <command> --help``
lists each command's options.

Example::

    shiftpool compare --downsample max,blur,aps,tips --model simple_cnn --dataset mnist --epochs 3
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import json
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from shiftpool.core.errors import InputError, MissingFileError
from shiftpool.train.config import (
    FIELD_CHOICES,
    FIELD_HELP,
    TrainConfig,
    field_type,
    parse_mapping,
    read_yaml_mapping,
)

EXIT_ERROR = 2
EXIT_INTERRUPTED = 130
COMPARE_OUT_DIR = "runs/compare"
# Short names accepted besides the generated ``--eval-...`` options.
ALIASES = {"eval_metrics": ("--metrics",), "eval_protocol": ("--protocol",)}


# -- options generated from TrainConfig -------------------------------------------------------


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def add_config_options(parser: argparse.ArgumentParser, exclude: Sequence[str] = ()) -> None:
    """Add one option per :class:`TrainConfig` field (help and default from the config).

    Options default to "not given" so that a ``--config`` file can fill them in.
    """
    defaults = TrainConfig()
    group = parser.add_argument_group("training options (also as keys of --config)")
    for f in dataclasses.fields(TrainConfig):
        if f.name in exclude:
            continue
        default = getattr(defaults, f.name)
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


def _given(args: argparse.Namespace, names: Sequence[str]) -> dict[str, Any]:
    return {n: getattr(args, n) for n in names if hasattr(args, n)}


def _file_values(args: argparse.Namespace) -> dict[str, Any]:
    if getattr(args, "config", None) is None:
        return {}
    return {str(k).replace("-", "_"): v for k, v in read_yaml_mapping(args.config).items()}


def train_config(values: dict[str, Any]) -> TrainConfig:
    """A :class:`TrainConfig` from merged file and command-line values."""
    return TrainConfig.from_dict(values)


# -- names ------------------------------------------------------------------------------------


def _check_name(kind: str, name: str, available: Sequence[str]) -> None:
    if name not in available:
        raise InputError(f"unknown {kind} {name!r}; available: {', '.join(available)}")


def check_names(model: str, downsamples: Sequence[str], dataset: str) -> None:
    """Fail early, listing the valid names, if a model, operator or data set is unknown."""
    import shiftpool.data as sdata
    import shiftpool.downsample as sds
    import shiftpool.models as smodels

    _check_name("model", model, smodels.list_models())
    for name in downsamples:
        _check_name("downsampling operator", name, sds.list_downsamples())
    _check_name("data set", dataset, sdata.list_datasets())


def _split_list(value: Any) -> list[str]:
    items = value.split(",") if isinstance(value, str) else list(value)
    return [str(item).strip() for item in items if str(item).strip()]


# -- train ------------------------------------------------------------------------------------


def _add_train(sub: Any) -> None:
    parser = sub.add_parser("train", help="train one model",
                            description="Train a model with one downsampling operator; "
                            "resumes from OUT_DIR/last.pt when present.")
    _add_config_file(parser)
    parser.add_argument("--fresh", action="store_true",
                        help="ignore an existing checkpoint in --out-dir and start over")
    add_config_options(parser)
    parser.set_defaults(handler=_cmd_train)


def _add_config_file(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", metavar="FILE.yaml", help="read options from a YAML file; "
                        "options on the command line override it")


def train_settings(args: argparse.Namespace) -> TrainConfig:
    """The run ``shiftpool train`` was asked for: defaults < --config file < flags."""
    return train_config({**_file_values(args), **_given(args, _config_fields())})


def _cmd_train(args: argparse.Namespace) -> int:
    from shiftpool.train import train

    config = train_settings(args)
    check_names(config.model, [config.downsample], config.dataset)
    result = train(config, resume=not args.fresh)
    if result.checkpoint is not None:
        acc = "n/a" if result.test_acc is None else f"{100 * result.test_acc:.2f}%"
        print(f"done: test accuracy {acc}, {result.train_time_s:.1f} s of training; "
              f"checkpoint {result.checkpoint}")
    return 0


def _config_fields() -> list[str]:
    return [f.name for f in dataclasses.fields(TrainConfig)]


# -- evaluate ---------------------------------------------------------------------------------


def _add_evaluate(sub: Any) -> None:
    parser = sub.add_parser("evaluate", help="accuracy and shift invariance of a checkpoint",
                            description="Evaluate a trained checkpoint with shiftpool.metrics.")
    parser.add_argument("checkpoint", metavar="CHECKPOINT", help="a checkpoint from train")
    _add_config_file(parser)
    parser.add_argument("--metrics", help="comma-separated metrics (default: accuracy, "
                        "consistency, fidelity; 'all' for every one)")
    parser.add_argument("--protocol", help="protocol: tips, aps or zhang (default: the run's)")
    parser.add_argument("--max-shift", type=int, help="override the protocol's largest shift")
    parser.add_argument("--max-images", type=int,
                        help="evaluate a seeded random subset of N test images")
    parser.add_argument("--batch-size", type=int, help="evaluation batch size")
    parser.add_argument("--device", help="cpu, cuda or auto (default: the run's)")
    parser.add_argument("--data-dir", help="data root (default: $SHIFTPOOL_DATA, else a cache)")
    parser.add_argument("--seed", type=int, help="seed of the shifts (default: the run's)")
    parser.add_argument("--output", help="JSON file (default: evaluation-PROTOCOL.json beside "
                        "the checkpoint)")
    parser.add_argument("--progress", action=argparse.BooleanOptionalAction, default=True,
                        help="progress bar")
    parser.set_defaults(handler=_cmd_evaluate)


def _merged(args: argparse.Namespace, names: Sequence[str]) -> dict[str, Any]:
    """Values from --config, overridden by those given on the command line (not None)."""
    values = _file_values(args)
    values.update({n: getattr(args, n) for n in names if getattr(args, n, None) is not None})
    return values


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from shiftpool.harness.evaluation import evaluate_model
    from shiftpool.train.checkpoint import load_trained_model

    names = ("metrics", "protocol", "max_shift", "max_images", "batch_size", "device",
             "data_dir", "seed", "output")
    opts = _merged(args, names)
    unknown = sorted(set(opts) - set(names))
    if unknown:
        raise InputError(f"unknown key(s) in {args.config}: {', '.join(unknown)}; "
                         f"valid: {', '.join(names)}")
    model, config, _ = load_trained_model(args.checkpoint)
    changes = {k: opts[k] for k in ("device", "data_dir", "seed") if k in opts}
    if "batch_size" in opts:
        changes["eval_batch_size"] = opts["batch_size"]
    config = config.replace(progress=args.progress, **changes)
    metrics = opts.get("metrics")
    metrics = metrics if metrics is None or metrics == "all" else _split_list(metrics)
    overrides = {"max_shift": opts["max_shift"]} if "max_shift" in opts else {}
    result = evaluate_model(model, config, metrics=metrics, protocol=opts.get("protocol"),
                            max_images=opts.get("max_images"), **overrides)
    protocol = result.protocol.name
    output = Path(opts.get("output") or Path(args.checkpoint).with_name(
        f"evaluation-{protocol}.json"))
    result.save_json(output)
    print(_summary_table(result))
    print(f"saved {output}")
    return 0


def _summary_table(result: Any) -> str:
    lines = [f"{result.n} images, protocol {result.protocol.name}"]
    lines += [f"  {key:<12} {100 * value:7.2f}" for key, value in result.summary().items()]
    return "\n".join(lines)


# -- compare ----------------------------------------------------------------------------------

COMPARE_KEYS = ("methods", "method_options", "figures")


def _add_compare(sub: Any) -> None:
    parser = sub.add_parser(
        "compare", help="train and evaluate several downsampling methods, write one table",
        description="Train each method with the same seed and budget, evaluate each under the "
        "same protocol, write results.json/.csv/.md and figures into --out-dir (default "
        f"{COMPARE_OUT_DIR}). An interrupted compare resumes where it stopped.")
    _add_config_file(parser)
    parser.add_argument("--downsample", "--methods", dest="methods", metavar="A,B,...",
                        help="methods to compare, e.g. max,blur,aps,lps,tips,s3pool")
    parser.add_argument("--method-options", metavar="JSON",
                        help='per-method operator options, e.g. \'{"blur": {"filter_size": 5}}\'')
    parser.add_argument("--figures", action=argparse.BooleanOptionalAction, default=None,
                        help="draw figures (needs matplotlib; default: yes)")
    parser.add_argument("--fresh", action="store_true",
                        help="train and evaluate every method again, ignoring earlier results")
    add_config_options(parser, exclude=("downsample", "downsample_options"))
    parser.set_defaults(handler=_cmd_compare)


def compare_settings(args: argparse.Namespace) -> tuple[TrainConfig, list[str], dict, bool]:
    """``(shared config, methods, per-method options, figures)`` from --config and flags."""
    values = _file_values(args)
    if "downsample" in values:  # in a file, `downsample:` may name the methods too
        values.setdefault("methods", values.pop("downsample"))
    extra = {k: values.pop(k) for k in COMPARE_KEYS if k in values}
    for key in ("methods", "figures"):
        if getattr(args, key, None) is not None:
            extra[key] = getattr(args, key)
    if args.method_options is not None:
        extra["method_options"] = json.loads(args.method_options)
    values.update(_given(args, _config_fields()))
    values.setdefault("out_dir", COMPARE_OUT_DIR)
    if "methods" not in extra:
        raise InputError("compare needs --downsample METHOD,METHOD,... (or `methods:` in --config)")
    options = extra.get("method_options") or {}
    options = parse_mapping(options) if isinstance(options, str) else dict(options)
    return (train_config(values), _split_list(extra["methods"]), options,
            bool(extra.get("figures", True)))


def _cmd_compare(args: argparse.Namespace) -> int:
    from shiftpool.harness.compare import compare

    config, methods, options, figures = compare_settings(args)
    check_names(config.model, methods, config.dataset)
    unknown = sorted(set(options) - set(methods))
    if unknown:
        raise InputError(f"method options for {', '.join(unknown)}, which are not compared")
    log = _stderr if config.progress else _quiet
    result = compare(config, methods, config.out_dir, method_options=options, figures=figures,
                     fresh=args.fresh, log=log)
    if not result.rows:  # a torchrun process other than rank 0: it trained, rank 0 reports
        return 0
    print(result.table)
    for kind, path in result.files.items():
        print(f"wrote {kind}: {path}")
    return 0


def _stderr(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def _quiet(text: str) -> None:
    pass


# -- homogeneity ------------------------------------------------------------------------------


def _add_homogeneity(sub: Any) -> None:
    parser = sub.add_parser("homogeneity", help="local homogeneity of data sets (Mouton et al.)",
                            description="Local homogeneity of the images of each data set, with "
                            "95% intervals (our reading of Mouton et al.).")
    _add_config_file(parser)
    parser.add_argument("--dataset", help="comma-separated data sets (default: "
                        "mnist,fashionmnist,cifar10)")
    parser.add_argument("--split", choices=("train", "test"), help="split (default: test)")
    parser.add_argument("--window", type=int, help="window size k (default: 2, a stride of 2)")
    parser.add_argument("--eps", type=float, help="tolerance relative to the range "
                        "(default: 0.05)")
    parser.add_argument("--max-images", type=int,
                        help="use a seeded random subset of N images of each set")
    parser.add_argument("--data-dir", help="data root (default: $SHIFTPOOL_DATA, else a cache)")
    parser.add_argument("--download", action=argparse.BooleanOptionalAction, default=None,
                        help="download missing data sets (default: yes)")
    parser.add_argument("--output", help="also write the results to this JSON file")
    parser.set_defaults(handler=_cmd_homogeneity)


def _cmd_homogeneity(args: argparse.Namespace) -> int:
    names = ("dataset", "split", "window", "eps", "max_images", "data_dir", "download", "output")
    opts = _merged(args, names)
    from shiftpool.harness.homogeneity import homogeneity_rows

    rows = homogeneity_rows(
        _split_list(opts.get("dataset", "mnist,fashionmnist,cifar10")),
        split=opts.get("split", "test"), window=opts.get("window", 2), eps=opts.get("eps", 0.05),
        max_images=opts.get("max_images"), data_dir=opts.get("data_dir"),
        download=opts.get("download", True))
    print("| data set | images | fraction (95% CI) | score (95% CI) |")
    print("|---|---|---|---|")
    for row in rows:
        cells = [_interval(row[q]) for q in ("fraction", "score")]
        print(f"| {row['dataset']} | {row['images']} | {cells[0]} | {cells[1]} |")
    if opts.get("output"):
        from shiftpool.core.io import atomic_write_json

        print(f"wrote {atomic_write_json(opts['output'], rows)}")
    return 0


def _interval(estimate: dict[str, Any]) -> str:
    return f"{estimate['value']:.4f} [{estimate['low']:.4f}, {estimate['high']:.4f}]"


# -- benchmark --------------------------------------------------------------------------------


def _add_benchmark(sub: Any) -> None:
    parser = sub.add_parser(
        "benchmark", help="time every downsampling operator against max pooling",
        description="Run the operator benchmark (benchmarks/downsample.py of the source tree). "
        "Arguments after the command go to it unchanged; `shiftpool benchmark -- --help` lists "
        "them (e.g. --quick, --device cuda, --op blur).")
    parser.add_argument("bench_args", nargs=argparse.REMAINDER, help="arguments of the benchmark")
    parser.set_defaults(handler=_cmd_benchmark)


def benchmark_script() -> Path:
    """``benchmarks/downsample.py`` of the source tree this shiftpool runs from (or the cwd)."""
    import shiftpool

    candidates = [Path(shiftpool.__file__).resolve().parents[2], Path.cwd()]
    for root in candidates:
        script = root / "benchmarks" / "downsample.py"
        if script.is_file():
            return script
    raise MissingFileError(
        "the operator benchmark ships with the source repository (benchmarks/downsample.py); "
        f"looked in {', '.join(str(c / 'benchmarks') for c in candidates)}"
    )


def _cmd_benchmark(args: argparse.Namespace) -> int:
    script = benchmark_script()
    spec = importlib.util.spec_from_file_location("shiftpool_benchmark_downsample", script)
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    argv = [a for a in args.bench_args if a != "--"] if args.bench_args[:1] == ["--"] else \
        list(args.bench_args)
    return int(module.main(argv) or 0)


# -- export -----------------------------------------------------------------------------------


def _add_export(sub: Any) -> None:
    from shiftpool.harness.export import EXPORT_FORMATS

    parser = sub.add_parser("export", help="export a checkpoint's model to ONNX or TorchScript",
                            description="Export the model of a checkpoint (eval mode, CPU) and "
                            "check the export's outputs against the eager model.")
    parser.add_argument("checkpoint", metavar="CHECKPOINT", help="a checkpoint from train")
    parser.add_argument("--format", required=True, choices=EXPORT_FORMATS, help="export format")
    parser.add_argument("--output", help="output file (default: model.onnx or "
                        "model.torchscript.pt beside the checkpoint)")
    parser.add_argument("--batch-size", type=int, default=2, help="batch of the example input")
    parser.add_argument("--opset", type=int, help="ONNX opset (default: the exporter's)")
    parser.add_argument("--verify", action=argparse.BooleanOptionalAction, default=True,
                        help="compare the export's outputs with the model's")
    parser.set_defaults(handler=_cmd_export)


def _cmd_export(args: argparse.Namespace) -> int:
    import torch

    from shiftpool.harness.export import default_export_path, export_model
    from shiftpool.train.checkpoint import load_trained_model

    model, _, checkpoint = load_trained_model(args.checkpoint)
    info = checkpoint["model_args"]
    example = torch.randn(args.batch_size, info["in_channels"], *info["input_size"],
                          generator=torch.Generator().manual_seed(0))
    output = args.output or default_export_path(args.checkpoint, args.format)
    result = export_model(model, example, output, args.format, opset=args.opset,
                          verify=args.verify)
    diff = "" if result.max_abs_diff is None else f"; max |diff| vs eager {result.max_abs_diff:.2e}"
    print(f"wrote {result.path} ({result.format} via {result.method}{diff})")
    return 0


# -- list -------------------------------------------------------------------------------------


def _add_list(sub: Any) -> None:
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
    return 0


# -- main -------------------------------------------------------------------------------------

_COMMANDS: tuple[Callable[[Any], None], ...] = (
    _add_train, _add_evaluate, _add_compare, _add_homogeneity, _add_benchmark, _add_export,
    _add_list,
)


def build_parser() -> argparse.ArgumentParser:
    """The ``shiftpool`` argument parser with every subcommand."""
    from shiftpool import __version__

    parser = argparse.ArgumentParser(
        prog="shiftpool",
        description="Shift-aware downsampling for CNNs: train, evaluate and compare methods.")
    parser.add_argument("--version", action="version", version=f"shiftpool {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for add in _COMMANDS:
        add(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``shiftpool`` command; returns the exit status.

    Errors in the input (unknown names, bad options, missing or corrupt files) print one line
    and return 2; Ctrl-C during training saves a checkpoint and returns 130. Set
    ``SHIFTPOOL_DEBUG=1`` for tracebacks.
    """
    from shiftpool.train import TrainingInterrupted

    args = build_parser().parse_args(argv)
    try:
        return args.handler(args)
    except TrainingInterrupted as stop:
        print(f"shiftpool {args.command}: interrupted; checkpoint {stop.checkpoint}. Run the same "
              "command again to resume.", file=sys.stderr)
        return EXIT_INTERRUPTED
    except KeyboardInterrupt:
        print(f"shiftpool {args.command}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except InputError as error:
        if os.environ.get("SHIFTPOOL_DEBUG"):
            raise
        print(f"shiftpool {args.command}: error: {error}", file=sys.stderr)
        return EXIT_ERROR


if __name__ == "__main__":
    sys.exit(main())
