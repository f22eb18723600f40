"""Compare downsampling methods: train each with the same seeds and budget, evaluate each under
the same protocol, and write one table (JSON, CSV, Markdown) plus figures. Under ``torchrun``
every process trains each method (DDP) and rank 0 evaluates and writes.

Each (method, seed) run is one unit of a sweep (:mod:`shiftpool.harness.launch`): by default
the units run one after another in this process (``launcher="local"``); with
``launcher="ray"`` each is a Ray task on a cluster (or a local Ray instance), and this process
only holds the folder's lock, follows the sweep and writes the results. Either way the results
are rebuilt from the finished run folders, the same files whichever launcher trained them.
A unit that fails is retried up to ``retries`` times and the others go on; if any still failed,
:class:`~shiftpool.harness.launch.SweepError` is raised after the sweep (each failure with its
log, ``out_dir/logs/<method>-seed<k>.log``) and no results are written.

Everything the user chose (methods and their options, seeds, baseline, metrics, protocol,
model) is checked before the first method trains. The output folder is locked for the whole run
(a second ``compare`` into it fails at once, naming the holder's PID), and the results and
figures are written as one set: a reader never sees files of two runs side by side.

Seeds: by default each method is trained once, with ``config.seed``, in ``out_dir/<method>/``
(the single-seed layout). With ``seeds=[0, 1, 2]`` each method is trained once per seed, in
``out_dir/<method>/seed<k>/``; the table then shows, for every column, the mean over seeds with
a 95% Student t interval over seeds (with one seed: that run's per-image Wilson/t intervals), and
``results.json`` keeps every seed's value. A run of the single-seed layout is reused for the seed
it was trained with when its settings match (so adding seeds to an earlier comparison trains
only the new seeds).

Each run's folder holds its checkpoint, logs, ``evaluation.json``, ``per_image.npz`` (every test
image's outcome, for the paired tests) and ``row.json``. A comparison that was interrupted
resumes: a run whose ``row.json`` matches the settings is not run again; a run cut short
continues from its checkpoint.

Paired comparison with a baseline (default: the first method): for every column the difference
method − baseline with a 95% interval and p-values (see :mod:`shiftpool.metrics.paired`): a
paired t-test over seeds (two or more seeds) and, for accuracy, consistency, fidelity and
robust accuracy at each ε, McNemar's exact test over the same test images and offsets
(discordant images summed over seeds, and per seed) with a paired bootstrap interval over
images (the mean corruption accuracy: the bootstrap over images alone).

Robustness (metrics ``adversarial``, ``corruption``, ``flip_rate``; options in
:class:`~shiftpool.metrics.robustness.RobustnessOptions`): the columns ``rob_acc@<ε>``,
``corr_acc``, ``mce``, ``rel_mce`` and ``mfr`` (against the robustness baseline: ``max`` when
compared, else the baseline, or the method named) and ``fp_translate`` beside consistency;
every cell per seed in results.json (``robustness``); figures accuracy_vs_eps,
corruption_heatmap and mce. The Markdown table marks
p < 0.05: ``*`` by the t-test over seeds, ``†`` by McNemar's test over images.

This module plans and runs a comparison; the result types are in
:mod:`~shiftpool.harness.compare_results`, the paired tests against the baseline in
:mod:`~shiftpool.harness.compare_paired` and the written report in
:mod:`~shiftpool.harness.compare_report` (their public names are importable from here too).
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Any

import torch

from shiftpool.core.checks import is_int
from shiftpool.core.errors import InputError, InputTypeError
from shiftpool.core.io import FolderLock, FolderLockedError, atomic_write_json
from shiftpool.core.log import Log, stderr_log
from shiftpool.harness.compare_paired import paired_differences
from shiftpool.harness.compare_report import (
    FIGURES_DIR,
    TABLE_DIGITS,
    comparison_markdown,
    write_report,
)
from shiftpool.harness.compare_results import (
    ACROSS_SEEDS,
    BASELINE_RATIO,
    GRID_MEAN,
    Comparison,
    MethodResult,
)
from shiftpool.harness.evaluation import COMPARE_METRICS, EVALUATION_JSON, evaluate_model
from shiftpool.harness.launch import (
    LOGS_DIR,
    Launcher,
    LocalLauncher,
    Resources,
    SweepError,
    Unit,
    UnitContext,
    get_launcher,
    unit_key,
)
from shiftpool.metrics import Estimate, EvaluationResult, PerImage, get_protocol
from shiftpool.metrics.evaluate import check_metrics
from shiftpool.metrics.robustness import (
    ROBUSTNESS_METRICS,
    RobustnessOptions,
    relative_to_baseline,
)
from shiftpool.models import create_model
from shiftpool.report import ReportInfo
from shiftpool.train.config import TrainConfig
from shiftpool.train.loop import train
from shiftpool.train.runtime import (
    Runtime,
    barrier,
    broadcast_object,
    resolve_device,
    setup_runtime,
    teardown_runtime,
)

__all__ = [
    "ACROSS_SEEDS", "BASELINE_RATIO", "EVALUATION_JSON", "FIGURES_DIR", "GRID_MEAN",
    "LOCK_PURPOSE", "PER_IMAGE_FILE", "ROW_JSON", "SEED_FOLDER", "TABLE_DIGITS", "ComparePlan",
    "Comparison", "MethodResult", "RunOutcome", "check_seeds", "compare", "comparison_markdown",
    "method_config", "paired_differences", "plan_comparison", "run_compare_unit", "run_method",
]

ROW_JSON = "row.json"
PER_IMAGE_FILE = "per_image.npz"
#: The folder of seed ``k`` inside a method's folder (with ``seeds``).
SEED_FOLDER = "seed{}"
LOCK_PURPOSE = "compare"


@dataclass(frozen=True)
class ComparePlan:
    """A comparison's checked settings: what :func:`compare` will run, decided before any run.

    Attributes:
        configs: the run of each method with the first seed, by method, in the order asked.
        metrics: metric names, each once.
        protocol: the protocol's name.
        seeds: the training seeds, in the order asked (``(config.seed,)`` by default).
        baseline: the method the others are compared with.
        per_seed_folders: runs go in ``<method>/seed<k>/`` (``seeds`` given), else in
            ``<method>/``.
        runs: every run, ``{(method, seed): config}``, seed by seed (every method of the first
            seed, then of the second...): an interrupted comparison has whole seeds first.
        robustness: the options of the robustness metrics (``None`` without them).
        robustness_baseline: the method mCE, relative mCE and mFR are relative to.
    """

    configs: dict[str, TrainConfig]
    metrics: tuple[str, ...]
    protocol: str
    seeds: tuple[int, ...] = ()
    baseline: str = ""
    per_seed_folders: bool = False
    runs: dict[tuple[str, int], TrainConfig] = field(default_factory=dict)
    robustness: RobustnessOptions | None = None
    robustness_baseline: str = ""


def method_config(config: TrainConfig, method: str, out_dir: Path,
                  options: Mapping[str, Mapping[str, Any]] | None = None,
                  seed: int | None = None) -> TrainConfig:
    """The run of ``method`` in a comparison: ``config`` with that operator and its folder;
    with ``seed``, that seed and the folder ``<method>/seed<k>``."""
    folder = out_dir / method if seed is None else out_dir / method / SEED_FOLDER.format(seed)
    changes: dict[str, Any] = {} if seed is None else {"seed": seed}
    return config.replace(
        downsample=method,
        downsample_options=dict((options or {}).get(method, {})),
        out_dir=str(folder),
        **changes,
    )


def check_seeds(seeds: object) -> tuple[int, ...]:
    """``seeds`` as a tuple if it is a non-empty list of distinct integers >= 0.

    Example:
        >>> check_seeds([0, 1, 2])
        (0, 1, 2)
        >>> check_seeds([1, 1])
        Traceback (most recent call last):
        ...
        shiftpool.core.errors.InputError: shiftpool.compare: seeds repeat: 1, 1
    """
    if isinstance(seeds, (str, bytes)) or not isinstance(seeds, Sequence) or not seeds or not all(
        is_int(seed) and seed >= 0 for seed in seeds
    ):
        raise InputTypeError(f"shiftpool.compare: seeds must be a non-empty list of integers "
                             f">= 0, got {seeds!r}")
    if len(set(seeds)) != len(seeds):
        raise InputError(f"shiftpool.compare: seeds repeat: {', '.join(map(str, seeds))}")
    return tuple(int(seed) for seed in seeds)


def plan_comparison(config: TrainConfig, methods: Sequence[str], out_dir: str | Path, *,
                    method_options: Mapping[str, Mapping[str, Any]] | None = None,
                    metrics: Sequence[str] | str | None = None,
                    protocol: str | None = None,
                    seeds: Sequence[int] | None = None,
                    baseline: str | None = None,
                    robustness: RobustnessOptions | None = None,
                    robustness_baseline: str | None = None) -> ComparePlan:
    """Check everything a comparison was given, before anything runs; the arguments are
    :func:`compare`'s.

    Each method's model is built once (on the CPU, then dropped; the global RNG is left as it
    was) so that its operator options and the model options are checked with the values
    given, not only their names.

    Raises:
        InputError: one line naming the bad value and what is allowed.

    Example:
        >>> base = TrainConfig(model="simple_cnn", dataset="mnist5k")
        >>> plan_comparison(base, ["max", "blur"], "runs/compare", metrics=["accuracy"]).metrics
        ('accuracy',)
        >>> plan = plan_comparison(base, ["max", "blur"], "runs/compare", seeds=[0, 1],
        ...                        baseline="blur")
        >>> plan.baseline, list(plan.runs)
        ('blur', [('max', 0), ('blur', 0), ('max', 1), ('blur', 1)])
        >>> plan.runs["blur", 1].out_dir
        'runs/compare/blur/seed1'
        >>> plan_comparison(base, ["max"], "runs/compare", protocol="nosuch")
        Traceback (most recent call last):
        ...
        shiftpool.core.errors.InputError: shiftpool.metrics: unknown protocol 'nosuch'; \
available: aps, tips, zhang
    """
    if isinstance(methods, str) or not methods:
        raise InputError("shiftpool.compare: give at least one downsampling method, as a list")
    if len(set(methods)) != len(methods):
        raise InputError(f"shiftpool.compare: methods repeat: {', '.join(methods)}")
    options = dict(method_options or {})
    if not all(isinstance(v, Mapping) for v in options.values()):
        raise InputTypeError(
            "shiftpool.compare: method options must map each method to its options, e.g. "
            f"{{'blur': {{'filter_size': 5}}}}; got {options!r}"
        )
    strays = sorted(set(options) - set(methods))
    if strays:
        raise InputError(
            f"shiftpool.compare: method options for {', '.join(map(str, strays))}, which are not "
            f"compared (methods: {', '.join(methods)})"
        )
    chosen_seeds = (config.seed,) if seeds is None else check_seeds(seeds)
    chosen_baseline = methods[0] if baseline is None else baseline
    if chosen_baseline not in methods:
        raise InputError(f"shiftpool.compare: the baseline {chosen_baseline!r} is not compared "
                         f"(methods: {', '.join(methods)})")
    chosen_metrics = check_metrics(metrics or config.eval_metrics or COMPARE_METRICS)
    chosen_protocol = get_protocol(protocol or config.eval_protocol).name
    chosen_robustness, robust_baseline = _check_robustness(
        chosen_metrics, methods, chosen_baseline, robustness, robustness_baseline)
    out = Path(out_dir)
    folder_seed = None if seeds is None else chosen_seeds
    runs = {(m, seed): method_config(config, m, out, options,
                                     None if folder_seed is None else seed)
            for seed in chosen_seeds for m in methods}  # a bad seed fails here (TrainConfig)
    configs = {m: runs[m, chosen_seeds[0]] for m in methods}
    with torch.random.fork_rng(devices=[]):  # building draws weights: leave the caller's RNG
        for method_run in configs.values():
            create_model(method_run.model, downsample=method_run.downsample,
                         downsample_options=method_run.downsample_options,
                         circular=method_run.circular, **method_run.model_options)
    return ComparePlan(configs, chosen_metrics, chosen_protocol, chosen_seeds, chosen_baseline,
                       seeds is not None, runs, chosen_robustness, robust_baseline)


def _check_robustness(
    metrics: Sequence[str], methods: Sequence[str], baseline: str,
    options: RobustnessOptions | None, robustness_baseline: str | None,
) -> tuple[RobustnessOptions | None, str]:
    """The robustness options (the defaults when a robustness metric is asked for without
    them) and the method mCE/mFR are relative to: ``robustness_baseline``, else ``max`` when
    compared, else ``baseline``. Options without a robustness metric are refused (they would
    change nothing)."""
    wanted = [m for m in metrics if m in ROBUSTNESS_METRICS]
    if options is not None and not isinstance(options, RobustnessOptions):
        raise InputTypeError("shiftpool.compare: robustness must be a "
                             "shiftpool.metrics.robustness.RobustnessOptions, got "
                             f"{type(options).__name__}")
    if options is not None and not wanted:
        raise InputError("shiftpool.compare: robustness options were given but the metrics "
                         f"({', '.join(metrics)}) name none of {', '.join(ROBUSTNESS_METRICS)}; "
                         "add them to the metrics")
    chosen = robustness_baseline or ("max" if "max" in methods else baseline)
    if chosen not in methods:
        raise InputError(f"shiftpool.compare: the robustness baseline {chosen!r} is not "
                         f"compared (methods: {', '.join(methods)})")
    if not wanted:
        return None, chosen
    return options or RobustnessOptions(), chosen


def _run_robustness(options: RobustnessOptions | None,
                    config: TrainConfig) -> RobustnessOptions | None:
    """The options a run evaluates with: corruption and perturbation draws seeded with the
    run's seed (like its offsets), the same for every method."""
    return None if options is None else replace(options, seed=config.seed)


def _row_settings(config: TrainConfig, metrics: Sequence[str], protocol: str,
                  robustness: RobustnessOptions | None = None) -> dict[str, Any]:
    """What a saved row depends on: the trained weights' settings and the evaluation's — the
    protocol's whole definition, not only its name, so a row saved under an earlier definition
    (e.g. black fill) or without per-image outcomes is evaluated again; and with robustness
    metrics every robustness setting (ε grid, attack, corruptions, severities, perturbations),
    so changing ε evaluates again."""
    settings = {"config": config.result_fields(), "metrics": list(metrics),
                "protocol": protocol, "protocol_definition": get_protocol(protocol).to_dict(),
                "max_images": config.eval_max_images, "per_image": True}
    options = _run_robustness(robustness, config)
    if options is not None and any(m in ROBUSTNESS_METRICS for m in metrics):
        settings["robustness"] = options.to_dict()
    return json.loads(json.dumps(settings))  # as it reads back from row.json


@dataclass(frozen=True)
class RunOutcome:
    """One finished run of a comparison (one method, one seed).

    Attributes:
        row: its :class:`MethodResult` (with its seed).
        evaluation: the :class:`~shiftpool.metrics.EvaluationResult`, or its dict when reused
            from ``evaluation.json``.
        per_image: every test image's outcome (:class:`~shiftpool.metrics.PerImage`).
        folder: the folder it was run in (or reused from).
    """

    row: MethodResult
    evaluation: EvaluationResult | dict[str, Any]
    per_image: PerImage
    folder: Path


def _finished(run_dir: Path, settings: dict[str, Any]) -> RunOutcome | None:
    """The outcome of a run already done in ``run_dir`` with the same settings, else None."""
    try:
        saved = json.loads((run_dir / ROW_JSON).read_text())
        if saved.get("settings") != settings:
            return None
        evaluation = json.loads((run_dir / EVALUATION_JSON).read_text())
        per_image = PerImage.load(run_dir / PER_IMAGE_FILE)
        return RunOutcome(MethodResult.from_dict(saved["row"]), evaluation, per_image, run_dir)
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None  # missing, from another version or other settings: run it again


def run_method(config: TrainConfig, metrics: Sequence[str], protocol: str,
               runtime: Runtime | None = None, log: Log = stderr_log, fresh: bool = False,
               label: str | None = None, *, reuse: Sequence[Path] = (),
               robustness: RobustnessOptions | None = None) -> RunOutcome | None:
    """Train (or resume) and evaluate one method with one seed; ``fresh`` ignores earlier
    results.

    Under ``torchrun`` every process trains; rank 0 alone evaluates (in float32, see
    :func:`~shiftpool.harness.evaluation.evaluate_model`, keeping every image's outcome) and
    writes ``evaluation.json``, ``per_image.npz`` and ``row.json`` (last; a stale one is removed
    before training, so a folder with ``row.json`` is a finished run). ``log`` gets one line:
    what is done for the run. ``reuse``: other folders whose finished result is taken
    when its settings match (the single-seed layout's ``<method>/``). ``robustness``: the
    options of the robustness metrics in ``metrics`` (their draws seeded with the run's seed).

    Returns:
        The :class:`RunOutcome` on rank 0 (``None`` on other ranks).
    """
    runtime = runtime or Runtime(resolve_device(config.device))
    run_dir = Path(config.out_dir)
    name = label or config.downsample
    settings = _row_settings(config, metrics, protocol, robustness)
    done = None
    if not fresh and runtime.is_main:
        for folder in (run_dir, *reuse):
            done = _finished(folder, settings)
            if done is not None:
                break
    found = broadcast_object(runtime, None if done is None else str(done.folder))
    if found is not None:
        log(f"{name}: already done ({Path(found) / ROW_JSON})")
        return done if runtime.is_main else None
    log(f"{name}: training {config.model} on {config.dataset} for {config.epochs} epoch(s), "
        f"then evaluating ({protocol} protocol: {', '.join(metrics)})")
    if runtime.is_main:  # the folder is finished again only once its new row.json is written
        (run_dir / ROW_JSON).unlink(missing_ok=True)
    result = train(config, resume=not fresh)
    if not runtime.is_main:
        barrier(runtime)  # wait while rank 0 evaluates
        return None
    options = _run_robustness(robustness, config)
    evaluation = evaluate_model(result.model, config, metrics=list(metrics), protocol=protocol,
                                per_image=True,
                                **({} if options is None else {"robustness": options}))
    evaluation.save_json(run_dir / EVALUATION_JSON)
    evaluation.save_per_image(run_dir / PER_IMAGE_FILE)
    row = MethodResult.from_evaluation(config.downsample, evaluation, result.params,
                                       result.train_time_s)
    atomic_write_json(run_dir / ROW_JSON, {"settings": settings, "row": row.to_dict()})
    barrier(runtime)
    assert evaluation.per_image is not None
    return RunOutcome(row, evaluation, evaluation.per_image, run_dir)


def compare(
    config: TrainConfig,
    methods: Sequence[str],
    out_dir: str | Path,
    *,
    method_options: Mapping[str, Mapping[str, Any]] | None = None,
    metrics: Sequence[str] | str | None = None,
    protocol: str | None = None,
    seeds: Sequence[int] | None = None,
    baseline: str | None = None,
    robustness: RobustnessOptions | None = None,
    robustness_baseline: str | None = None,
    figures: bool = True,
    fresh: bool = False,
    log: Log = stderr_log,
    launcher: str | Launcher = "local",
    ray_address: str | None = None,
    retries: int = 0,
) -> Comparison:
    """Train and evaluate each of ``methods`` (once per seed) and write the comparison into
    ``out_dir``.

    Every input is checked first (:func:`plan_comparison`): a bad method, option, seed,
    baseline, metric or protocol fails before anything is trained or written. The folder is
    then locked for the whole run (rank 0 holds the lock under ``torchrun``).

    Args:
        config: the shared settings (model, data, budget, seed); its ``downsample`` and
            ``out_dir`` (and ``seed``, with ``seeds``) are replaced per run.
        methods: operator names, e.g. ``["max", "blur", "aps", "tips"]``.
        out_dir: output folder (one sub-folder per method, results.* and figures at the top).
        method_options: per-method operator options, e.g. ``{"blur": {"filter_size": 5}}``.
        metrics / protocol: default ``config.eval_metrics`` (else accuracy, consistency,
            fidelity, MSB) and ``config.eval_protocol``; ``worst_case`` and ``sensitivity``
            add columns to the table and the summary figure.
        seeds: train every method once per seed, in ``out_dir/<method>/seed<k>/``; the table
            shows the mean over seeds with a 95% t interval. Default: ``config.seed`` alone, in
            ``out_dir/<method>/`` (the single-seed layout). The evaluation of seed ``k`` uses
            seed ``k`` too (its test subset and offsets), the same for every method.
        baseline: the method the others are compared with (default: the first); the
            differences, intervals and p-values are in ``paired`` (table, JSON, CSV).
        robustness: options of the robustness metrics ``adversarial``, ``corruption`` and
            ``flip_rate`` when ``metrics`` names them (ε grid, attack, corruptions, severities,
            perturbations; default :class:`~shiftpool.metrics.robustness.RobustnessOptions`);
            their corruption and perturbation draws use each run's seed. Columns: ``acc``,
            ``rob_acc@<ε>`` (Wilson), ``corr_acc`` (t over images), ``mce``, ``rel_mce``,
            ``mfr`` (against ``robustness_baseline``), ``fp_translate`` beside consistency;
            paired tests over images for robust and corruption accuracy. Options given
            without a robustness metric are refused.
        robustness_baseline: the method of mCE, relative mCE and mFR (default ``max`` when
            compared, else ``baseline``).
        figures: also draw the figures (skipped with a note without matplotlib); figures of
            an earlier run into ``out_dir`` that this run does not draw are removed.
        fresh: train and evaluate every run again, ignoring earlier results and checkpoints
            (by default a run already done is reused and one cut short resumes).
        log: gets one line per run (what is being done), progress bars or not, and a note
            where figures or paired image tests are skipped; default: stderr. With the ray
            launcher: the sweep's progress (done, running, failed, ETA); what each run says
            is in its log, ``out_dir/logs/<method>[-seed<k>].log``.
        launcher: ``"local"`` (each run in this process, one after another), ``"ray"`` (each
            run a Ray task with ``config.num_threads`` CPUs, or 1, and one GPU on device
            ``cuda``, or on ``auto`` where the cluster has GPUs; needs ``shiftpool[ray]``; the
            output folder and data root must be on a file system every node sees), or a
            :class:`~shiftpool.harness.launch.Launcher`.
        ray_address: the Ray cluster (``"auto"``, ``"HOST:6379"``); default: a local Ray
            instance (or the one this process is already connected to).
        retries: further attempts at a run that failed (the others go on meanwhile).

    Returns:
        A :class:`Comparison`.

    Raises:
        InputError: a bad input (before anything runs).
        FolderLockedError: another process is writing into ``out_dir``; names its PID.
        SweepError: some runs failed (after their retries); the others are kept, the results
            are not written, and the same call runs only what is missing.

    Example:
        >>> base = TrainConfig(model="simple_cnn", dataset="mnist5k", epochs=2)
        >>> compare(base, ["max", "blur", "tips"], "runs/compare", seeds=[0, 1, 2],
        ...         baseline="max").table  # doctest: +SKIP
    """
    chosen = get_launcher(launcher, address=ray_address, retries=retries)
    in_process = isinstance(chosen, LocalLauncher)
    if not in_process:  # paths as every node sees them; this process only drives the sweep
        if int(os.environ.get("WORLD_SIZE", "1")) > 1:
            raise InputError("shiftpool.compare: the ray launcher runs each run as a Ray task; "
                             "do not start it under torchrun")
        out_dir = Path(out_dir).absolute()
        if config.data_dir is not None:
            config = config.replace(data_dir=str(Path(config.data_dir).absolute()))
    plan = plan_comparison(config, methods, out_dir, method_options=method_options,
                           metrics=metrics, protocol=protocol, seeds=seeds, baseline=baseline,
                           robustness=robustness, robustness_baseline=robustness_baseline)
    out = Path(out_dir)
    # under torchrun: one process group for all runs; the driver of remote units trains nothing
    runtime = setup_runtime(config.device) if in_process else Runtime(torch.device("cpu"))
    if isinstance(chosen, LocalLauncher) and chosen.runtime is None:
        chosen = replace(chosen, runtime=runtime)
    try:
        with _rank0_lock(runtime, out):
            quiet = log if runtime.is_main else _silent
            reused = _reused_runs(plan, out, runtime, fresh)
            units = []
            for i, ((method, seed), run) in enumerate(plan.runs.items(), start=1):
                label = f"[{i}/{len(plan.runs)}] {_run_name(plan, method, seed)}"
                if (method, seed) in reused:
                    quiet(f"{label}: already done ({reused[method, seed] / ROW_JSON})")
                else:
                    units.append(_unit(plan, method, seed, run, label, fresh, in_process))
            sweep = chosen.run(units, out / LOGS_DIR, quiet, reused=len(reused))
            if not runtime.is_main:
                return Comparison([])
            if not sweep.ok:
                raise SweepError("shiftpool.compare", sweep)
            done = _read_runs(plan, reused, units)
            comparison = _assemble(plan, done, config, log)
            comparison.sweep = sweep
            first = {m: done[m, plan.seeds[0]].evaluation for m in plan.configs}
            comparison.files = write_report(comparison, first, out, figures, log)
    finally:
        if in_process:
            teardown_runtime(runtime)
    return comparison


def _run_name(plan: ComparePlan, method: str, seed: int) -> str:
    return f"{method} seed {seed}" if plan.per_seed_folders else method


def _reused_runs(plan: ComparePlan, out: Path, runtime: Runtime,
                 fresh: bool) -> dict[tuple[str, int], Path]:
    """The folder of every run already done with the same settings (rank 0 looks; every rank
    learns it): its own folder, or for seeds the single-seed layout's ``<method>/``."""
    found: dict[tuple[str, int], Path] = {}
    if runtime.is_main and not fresh:
        for (method, seed), run in plan.runs.items():
            settings = _row_settings(run, plan.metrics, plan.protocol, plan.robustness)
            legacy = (out / method,) if plan.per_seed_folders else ()
            for folder in (Path(run.out_dir), *legacy):
                if _finished(folder, settings) is not None:
                    found[method, seed] = folder
                    break
    return broadcast_object(runtime, found)


def _unit(plan: ComparePlan, method: str, seed: int, run: TrainConfig, label: str,
          fresh: bool, in_process: bool) -> Unit:
    """The unit of one run: its CPUs are its threads (1 when not set), a GPU on ``cuda``
    (``auto``: where the cluster has one); a remote unit shows no progress bars (its output
    goes to its log)."""
    if not in_process:
        run = run.replace(progress=False)
    gpus = {"cpu": 0, "cuda": 1}.get(run.device, "auto")
    resources = Resources(cpus=run.num_threads or 1, gpus=gpus, threads=run.num_threads)
    work = partial(run_compare_unit, config=run, metrics=plan.metrics, protocol=plan.protocol,
                   fresh=fresh, label=label, robustness=plan.robustness)
    return Unit(unit_key(method, seed if plan.per_seed_folders else None),
                _run_name(plan, method, seed), method, seed, Path(run.out_dir), work, resources)


def run_compare_unit(context: UnitContext, *, config: TrainConfig, metrics: Sequence[str],
                     protocol: str, fresh: bool, label: str,
                     robustness: RobustnessOptions | None = None) -> str:
    """A comparison's unit, wherever it runs: :func:`run_method` of one run; returns its
    folder (the results are read from there)."""
    run_method(config, metrics, protocol, context.runtime, context.log, fresh, label,
               robustness=robustness)
    return config.out_dir


def _read_runs(plan: ComparePlan, reused: Mapping[tuple[str, int], Path],
               units: Sequence[Unit]) -> dict[tuple[str, int], RunOutcome]:
    """Every run's outcome, read from its finished folder."""
    folders = dict(reused)
    folders.update({(unit.method, unit.seed): unit.run_dir for unit in units})
    done = {}
    for (method, seed), run in plan.runs.items():
        outcome = _finished(folders[method, seed], _row_settings(run, plan.metrics,
                                                                 plan.protocol, plan.robustness))
        if outcome is None:
            raise RuntimeError(f"shiftpool.compare: {_run_name(plan, method, seed)} finished, "
                               f"but {folders[method, seed]} holds no result of its settings "
                               "(did another process change it?)")
        done[method, seed] = outcome
    return done


def _assemble(plan: ComparePlan, done: Mapping[tuple[str, int], RunOutcome],
              config: TrainConfig, log: Log) -> Comparison:
    """The comparison of the finished runs: rows (over seeds), paired differences, info."""
    confidence = get_protocol(plan.protocol).confidence
    relative = _relative_robustness(plan, done) if plan.robustness is not None else {}
    runs = {key: replace(outcome.row, estimates={**outcome.row.estimates,
                                                 **relative.get(key, {}).get("columns", {})})
            for key, outcome in done.items()}
    if plan.per_seed_folders:
        rows = [MethodResult.over_seeds([runs[m, k] for k in plan.seeds], confidence)
                for m in plan.configs]
    else:
        rows = [runs[m, plan.seeds[0]] for m in plan.configs]
    per_image = {key: outcome.per_image for key, outcome in done.items()}
    paired = paired_differences(rows, per_image, plan.baseline, log=log)
    first = done[plan.baseline, plan.seeds[0]].evaluation
    n = first.n if isinstance(first, EvaluationResult) else first.get("n")
    info = ReportInfo(config.dataset, config.model, config.epochs, plan.seeds,
                      None if n is None else int(n), plan.protocol)
    comparison = Comparison(rows, baseline=plan.baseline, seeds=plan.seeds, paired=paired,
                            info=info, robustness_baseline=plan.robustness_baseline)
    if plan.robustness is not None:
        comparison.robustness = {
            m: [{"seed": k, **_robustness_section(done[m, k].evaluation),
                 "relative": relative[m, k]["relative"]} for k in plan.seeds]
            for m in plan.configs}
    comparison.table = comparison_markdown(comparison)
    return comparison


def _robustness_section(evaluation: EvaluationResult | Mapping[str, Any]) -> dict[str, Any]:
    """The ``robustness`` part of an evaluation (or of its saved dict), as a dict."""
    if isinstance(evaluation, EvaluationResult):
        return {} if evaluation.robustness is None else evaluation.robustness.to_dict()
    return dict(evaluation.get("robustness") or {})


def _relative_robustness(plan: ComparePlan, done: Mapping[tuple[str, int], RunOutcome]
                         ) -> dict[tuple[str, int], dict[str, Any]]:
    """Per run, its corruption and flip results relative to the robustness baseline's run of
    the same seed: ``{"relative": relative_to_baseline(...) + {"baseline"}, "columns":
    {"mce", "rel_mce", "mfr": Estimate}}`` (columns where measured; no interval within a seed)."""
    base_name = plan.robustness_baseline
    out = {}
    for (method, seed), outcome in done.items():
        evaluation = outcome.evaluation
        n = evaluation.n if isinstance(evaluation, EvaluationResult) else evaluation.get("n", 0)
        relative = relative_to_baseline(_robustness_section(evaluation),
                                        _robustness_section(done[base_name, seed].evaluation))
        columns = {}
        errors = relative.get("corruption_errors")
        if errors is not None:
            columns["mce"] = errors["mce"]
            columns["rel_mce"] = errors["relative_mce"]
        if "mfr" in relative:
            columns["mfr"] = relative["mfr"]
        confidence = get_protocol(plan.protocol).confidence
        out[method, seed] = {
            "relative": {"baseline": base_name, **relative},
            "columns": {k: Estimate(float(v), math.nan, math.nan, int(n), BASELINE_RATIO,
                                    confidence) for k, v in columns.items()},
        }
    return out


@contextmanager
def _rank0_lock(runtime: Runtime, folder: Path) -> Iterator[None]:
    """Lock ``folder`` on rank 0; every rank learns whether that worked (none waits forever)."""
    lock = FolderLock(folder, LOCK_PURPOSE)
    refused = None
    if runtime.is_main:
        try:
            lock.acquire()
        except FolderLockedError as error:
            refused = str(error)
    refused = broadcast_object(runtime, refused)
    if refused is not None:
        raise FolderLockedError(refused)
    try:
        yield
    finally:
        lock.release()


def _silent(text: str) -> None:
    pass
