"""``shiftpool compare``: train and evaluate several downsampling methods, one table."""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass

from shiftpool.cli.checks import check_run, set_threads
from shiftpool.cli.options import (
    ROBUSTNESS_OPTIONS,
    Option,
    add_config_file,
    add_config_options,
    add_options,
    bool_value,
    choice_value,
    config_fields,
    int_value,
    merge_settings,
    method_options_value,
    metric_names_value,
    names_value,
    robustness_settings,
    text_value,
)
from shiftpool.core.errors import InputError, InputTypeError
from shiftpool.core.log import stderr_log
from shiftpool.harness.launch import LAUNCHERS, SweepError
from shiftpool.train.config import (
    TrainConfig,
)

COMPARE_OUT_DIR = "runs/compare"


# -- compare ----------------------------------------------------------------------------------

def seeds_value(value: object, what: str) -> list[int]:
    """``"0,1,2"`` or a YAML list of integers >= 0 → ``[0, 1, 2]`` (repeats are refused by
    :func:`~shiftpool.harness.comparison.plan_comparison`).

    Example:
        >>> seeds_value("0, 1,2", "--seeds")
        [0, 1, 2]
    """
    if isinstance(value, str):
        items: list[object] = value.split(",")
    elif isinstance(value, (list, tuple)):
        items = list(value)
    else:
        raise InputTypeError(f"{what} must be comma-separated integers >= 0, got {value!r}")
    try:
        return [int_value(0)(item, what) for item in items]
    except InputError:
        raise InputError(f"{what} must be comma-separated integers >= 0, got {value!r}") from None


#: Exit status of a sweep (compare, study) in which some units failed after their retries.
EXIT_UNITS_FAILED = 1

#: Where the units of a sweep run (``compare`` and ``study``).
LAUNCH_OPTIONS = (
    Option("launcher", "where the runs go: local (one after another in this process) or ray "
           "(each run a Ray task with its CPUs/GPU; needs shiftpool[ray]; output folder and "
           "data on a file system every node sees)", choice_value(lambda: LAUNCHERS),
           default="local", metavar="NAME"),
    Option("ray_address", "the Ray cluster to join, e.g. auto or HOST:6379 (with --launcher "
           "ray)", text_value, shown="a local Ray instance", metavar="ADDRESS"),
    Option("retries", "further attempts at a run that failed (the others go on)",
           int_value(0), default=0, metavar="N"),
)


def launch_settings(values: dict[str, object]) -> tuple[str, str | None, int]:
    """``(launcher, ray address, retries)`` popped from merged ``values``; an address without
    ``--launcher ray`` is refused.

    Example:
        >>> launch_settings({"launcher": "ray", "ray_address": "auto", "retries": 2})
        ('ray', 'auto', 2)
    """
    launcher, address, retries = (values.pop(k) for k in ("launcher", "ray_address", "retries"))
    assert isinstance(launcher, str) and isinstance(retries, int)
    assert address is None or isinstance(address, str)
    if address is not None and launcher != "ray":
        raise InputError(f"--ray-address needs --launcher ray (got --launcher {launcher})")
    return launcher, address, retries


def report_failed_sweep(error: SweepError) -> int:
    """Each failed unit with the end of its log, then the one-line summary, on stderr;
    returns :data:`EXIT_UNITS_FAILED`."""
    print(error.result.report(), file=sys.stderr)
    print(str(error), file=sys.stderr, flush=True)
    return EXIT_UNITS_FAILED


COMPARE_EXCLUDED = ("downsample", "downsample_options")
COMPARE_OPTIONS = (
    Option("methods", "methods to compare, e.g. max,blur,aps,lps,tips,s3pool", names_value,
           metavar="A,B,...", main_flag="--downsample", flags=("--methods",)),
    Option("method_options", 'per-method operator options as JSON, e.g. '
           '\'{"blur": {"filter_size": 5}}\'', method_options_value, default={}, shown="none",
           metavar="JSON"),
    Option("seeds", "train every method once per seed, e.g. 0,1,2; the table shows the mean "
           "and a 95%% interval over seeds (default: --seed alone)", seeds_value,
           metavar="K,K,..."),
    Option("baseline", "the method the others are compared with: differences, intervals and "
           "p-values (default: the first method)", text_value, metavar="METHOD"),
    Option("figures", "draw figures (needs matplotlib)", bool_value, default=True, switch=True),
    Option("robustness_baseline", "the method mCE, relative mCE and mFR are relative to "
           "(default: max when compared, else --baseline)", text_value, metavar="METHOD"),
    *ROBUSTNESS_OPTIONS,
    *LAUNCH_OPTIONS,
)


@dataclass(frozen=True)
class CompareSettings:
    """What ``shiftpool compare`` runs: the shared config and the comparison's own options."""

    config: TrainConfig
    methods: list[str]
    method_options: dict[str, dict[str, object]]
    figures: bool
    seeds: list[int] | None = None
    baseline: str | None = None
    launcher: str = "local"
    ray_address: str | None = None
    retries: int = 0
    metrics: tuple[str, ...] | str | None = None
    robustness: dict[str, object] | None = None
    robustness_baseline: str | None = None


def add_compare(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "compare", help="train and evaluate several downsampling methods, write one table",
        description="Train each method with the same seed(s) and budget, evaluate each under "
        "the same protocol, compare each with a baseline (paired tests over seeds and over "
        "the same test images), write results.json/.csv/.md and figures into --out-dir "
        f"(default {COMPARE_OUT_DIR}). An interrupted compare resumes where it stopped. "
        "Runs go one after another here, or on a Ray cluster (--launcher ray); a run that "
        "fails is reported with its log (--out-dir/logs/) and the others go on; exit status 1 "
        "when any failed.")
    add_config_file(parser)
    parser.add_argument("--fresh", action="store_true",
                        help="train and evaluate every method again, ignoring earlier results")
    add_options(parser, COMPARE_OPTIONS, "comparison options (also as keys of --config; "
                "`downsample:` may name the methods in a file)")
    add_config_options(parser, exclude=COMPARE_EXCLUDED, defaults={"out_dir": COMPARE_OUT_DIR})
    parser.set_defaults(handler=_cmd_compare)


def compare_settings(
    args: argparse.Namespace,
) -> tuple[TrainConfig, list[str], dict[str, dict[str, object]], bool]:
    """``(shared config, methods, per-method options, figures)``: defaults < --config < flags
    (:func:`compare_run_settings` gives the seeds and the baseline too)."""
    settings = compare_run_settings(args)
    return settings.config, settings.methods, settings.method_options, settings.figures


def compare_run_settings(args: argparse.Namespace) -> CompareSettings:
    """Every setting of ``shiftpool compare``: defaults < --config < flags.

    The methods, their options, the seeds and the baseline are checked by
    :func:`shiftpool.harness.comparison.compare` itself
    (:func:`~shiftpool.harness.comparison.plan_comparison`) before anything trains.
    """
    values = merge_settings(args, COMPARE_OPTIONS, fields=config_fields(COMPARE_EXCLUDED),
                            aliases={"downsample": "methods"})
    methods = values.pop("methods")
    options = values.pop("method_options")
    figures = values.pop("figures")
    seeds = values.pop("seeds")
    baseline = values.pop("baseline")
    robust_baseline = values.pop("robustness_baseline")
    given = [o.flag for o in ROBUSTNESS_OPTIONS if values.get(o.name) is not None]
    robustness = robustness_settings(values)
    # the metrics go to compare() itself: the robustness metrics are not training settings
    metrics = (metric_names_value(values.pop("eval_metrics"), "--eval-metrics/--metrics")
               if values.get("eval_metrics") is not None else None)
    launcher, address, retries = launch_settings(values)
    if seeds is not None and "seed" in values:
        # a flag overrides the file's other spelling; both in one place are refused
        if hasattr(args, "seeds") and not hasattr(args, "seed"):
            del values["seed"]
        elif hasattr(args, "seed") and not hasattr(args, "seeds"):
            seeds = None
        else:
            raise InputError("compare: give either --seed (one run per method) or --seeds "
                             "(one run per method and seed), not both")
    values.setdefault("out_dir", COMPARE_OUT_DIR)
    config = TrainConfig.from_dict(values)
    if methods is None:
        raise InputError("compare needs --downsample METHOD,METHOD,... (or `methods:` in "
                         "--config)")
    assert isinstance(methods, list) and isinstance(options, dict)
    assert seeds is None or isinstance(seeds, list)
    assert baseline is None or isinstance(baseline, str)
    assert robust_baseline is None or isinstance(robust_baseline, str)
    if given and (metrics == "all" or not set(metrics or ()) & {"adversarial", "corruption",
                                                                  "flip_rate"}):
        raise InputError(f"compare: {', '.join(given)} given, but --metrics names none of "
                         "adversarial, corruption, flip_rate (it would change nothing)")
    return CompareSettings(config, methods, options, bool(figures), seeds, baseline, launcher,
                           address, retries, metrics, robustness or None, robust_baseline)


def _cmd_compare(args: argparse.Namespace) -> int:
    from shiftpool.harness.comparison import compare
    from shiftpool.metrics.robustness import RobustnessOptions

    settings = compare_run_settings(args)
    config = settings.config
    # compare() checks each method's model first; on Ray the device is the workers' (the
    # launcher finds a node with it), not this process's
    check_run(config.replace(device="cpu") if settings.launcher == "ray" else config,
              check_model=False)
    set_threads(config.num_threads)  # train() sets them for training; evaluation needs them too
    if config.task == "segmentation":
        return _compare_segmentation(settings, args.fresh)
    try:
        result = compare(config, settings.methods, config.out_dir,
                         method_options=settings.method_options, seeds=settings.seeds,
                         baseline=settings.baseline, metrics=settings.metrics,
                         robustness=(None if settings.robustness is None
                                     else RobustnessOptions(**settings.robustness)),
                         robustness_baseline=settings.robustness_baseline,
                         figures=settings.figures, fresh=args.fresh,
                         log=stderr_log, launcher=settings.launcher,
                         ray_address=settings.ray_address, retries=settings.retries)
    except SweepError as error:
        return report_failed_sweep(error)
    if not result.rows:  # a torchrun process other than rank 0: it trained, rank 0 reports
        return 0
    print(result.table)
    for kind, path in result.files.items():
        print(f"wrote {kind}: {path}")
    return 0


def _compare_segmentation(settings: CompareSettings, fresh: bool) -> int:
    """``compare --task segmentation``: rows mIoU, pixel accuracy, mASSC, equivariance error,
    MSB (:func:`shiftpool.harness.segmentation.compare_segmentation`)."""
    from shiftpool.harness.segmentation import compare_segmentation

    config = settings.config
    result = compare_segmentation(config, settings.methods, config.out_dir, seeds=settings.seeds,
                                  method_options=settings.method_options,
                                  figures=settings.figures, fresh=fresh, log=stderr_log,
                                  baseline=settings.baseline, launcher=settings.launcher,
                                  metrics=settings.metrics)
    if result.rows:  # a torchrun process other than rank 0 reports nothing
        print(result.table)
        for kind, path in result.files.items():
            print(f"wrote {kind}: {path}")
    return 0
