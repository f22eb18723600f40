"""The TIPS correlation framework: does maximum-sampling bias go with less shift invariance?

:func:`correlate` gathers every finished run under the folders it is given (a ``compare``
output, its ``<method>/`` or ``<method>/seed<k>/`` run folders, single ``train`` runs evaluated
with ``shiftpool evaluate``), reads each model's MSB (overall and per downsampling layer) and its
shift metrics (accuracy, S-Cons, C-Cons, S-Fid, C-Fid, and any other consistency or fidelity
its protocol measured), and correlates MSB with each metric across models: Pearson and
Spearman, each with a seeded bootstrap interval over models and a permutation p-value
(:mod:`shiftpool.metrics.correlation`). It does so over all models, and within each
architecture, each data set and each (architecture, data set) pair where those differ from
"all"; a group with fewer than 3 models is listed with a note instead of numbers. Per-layer MSB
is correlated within groups of one architecture (layer names mean nothing across models).

A method's models (one per seed) are not independent evidence about methods: with at least 4
methods in a group, each coefficient also gets the interval of a bootstrap over methods (every
model of each drawn method; ``pearson_methods``, ``spearman_methods``), the one to read when
the models cluster by method.

A run folder is a folder holding an evaluation (``evaluation.json`` from ``compare``,
``evaluation-PROTOCOL.json`` from ``shiftpool evaluate``) and the run's settings
(``result.json``, ``row.json``, ``config.yaml`` or ``config.json``). All models must be evaluated
under one protocol (chosen with ``protocol``, or the one every run has).

Writes ``correlation.json``, ``.csv``, ``.md``, ``.html`` (self-contained) and
``figures/correlation*.png`` (matplotlib, the ``plots`` extra; skipped with a note without it)
into ``out_dir``, as one set, under the folder's lock.

Example:
    >>> report = correlate(["runs/compare"], "runs/correlate")  # doctest: +SKIP
    >>> print(report.table)  # doctest: +SKIP
"""

from __future__ import annotations

import glob as globbing
import json
import math
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from shiftpool.core.checks import check_choice, check_int, check_range
from shiftpool.core.errors import InputError, MissingExtraError, MissingFileError
from shiftpool.core.io import FolderLock, atomic_write_set, json_text
from shiftpool.core.log import Log, stderr_log
from shiftpool.metrics.correlation import (
    CORRELATIONS,
    INTERVALS,
    Correlation,
    LinearFit,
    correlation,
    linear_fit_band,
)
from shiftpool.metrics.result import MODE_PREFIX
from shiftpool.metrics.stats import Estimate
from shiftpool.report.correlation import (
    ScatterPanel,
    ScatterPoint,
    coefficient_text,
    correlation_figure,
)
from shiftpool.report.html import Code, Figure, Paragraph, Section, Table, html_report
from shiftpool.report.tables import ReportFile, csv_text, markdown_table
from shiftpool.train import TrainConfig

#: Fewest models a group needs for a correlation.
MIN_MODELS = 3
#: The metrics correlated with MSB by default, in this order, where the runs have them; then
#: every other consistency and fidelity their protocol measured.
DEFAULT_METRICS: tuple[str, ...] = ("acc", "s_cons", "c_cons", "s_fid", "c_fid")
#: How the tables and figures name the quantities.
DISPLAY_NAMES: dict[str, str] = {"acc": "Acc", "s_cons": "S-Cons", "c_cons": "C-Cons",
                                 "s_fid": "S-Fid", "c_fid": "C-Fid", "msb": "MSB"}
STEM = "correlation"
FIGURES_DIR = "figures"
LOCK_PURPOSE = "correlate"
# the files that hold a run's settings, in the order they are tried
_SETTINGS_FILES = ("result.json", "row.json", "config.yaml", "config.json")
_EVALUATION = re.compile(r"^evaluation(-.+)?\.json$")
_SKIPPED_DIRS = {FIGURES_DIR, "__pycache__", "tensorboard"}
_BAND_RESAMPLES = 2000
_LISTED = 5
_FEW_MODELS = 10



def display_name(key: str) -> str:
    """``"S-Cons"`` for ``"s_cons"``, ``"MSB features.3"`` for ``"msb:features.3"``.

    Example:
        >>> display_name("c_fid"), display_name("msb:features.3"), display_name("r_cons")
        ('C-Fid', 'MSB features.3', 'r_cons')
    """
    if key.startswith("msb:"):
        return f"MSB {key[4:]}"
    return DISPLAY_NAMES.get(key, key)


@dataclass(frozen=True)
class RunRecord:
    """One trained model, as :func:`find_runs` read it.

    Attributes:
        run_dir: the run's folder.
        evaluation: the evaluation file read.
        label: the run's folder relative to the folders searched (a short, unique name).
        method: the downsampling method, with its options if any (``blur(filter_size=5)``).
        model, dataset: the architecture's and data set's names.
        seed, epochs: the training seed and epochs (None when not recorded).
        protocol: the evaluation protocol's name.
        images: test images the evaluation used.
        msb: the model's MSB (mean over its downsampling layers, per image).
        msb_layers: MSB of each downsampling layer.
        metrics: ``{"acc" | "s_cons" | "c_cons" | "s_fid" | "c_fid" | ...: Estimate}``.
    """

    run_dir: Path
    evaluation: Path
    label: str
    method: str
    model: str
    dataset: str
    seed: int | None
    epochs: int | None
    protocol: str
    images: int
    msb: Estimate
    msb_layers: dict[str, Estimate]
    metrics: dict[str, Estimate]

    def value(self, key: str) -> Estimate | None:
        """The estimate of ``"msb"``, ``"msb:LAYER"`` or a metric; None when not measured."""
        if key == "msb":
            return self.msb
        if key.startswith("msb:"):
            return self.msb_layers.get(key[4:])
        return self.metrics.get(key)

    def table_row(self) -> dict[str, Any]:
        """The row of the models table: names, MSB and each metric (value and interval)."""
        return {"run": self.label, "method": self.method, "model": self.model,
                "dataset": self.dataset, "seed": self.seed, "msb": self.msb.to_dict(),
                **{key: e.to_dict() for key, e in self.metrics.items()}}

    def to_dict(self) -> dict[str, Any]:
        return {"run": self.label, "run_dir": str(self.run_dir),
                "evaluation": str(self.evaluation), "method": self.method, "model": self.model,
                "dataset": self.dataset, "seed": self.seed, "epochs": self.epochs,
                "protocol": self.protocol, "images": self.images, "msb": self.msb.to_dict(),
                "msb_layers": {k: e.to_dict() for k, e in self.msb_layers.items()},
                "metrics": {k: e.to_dict() for k, e in self.metrics.items()}}


@dataclass(frozen=True)
class CorrelationRow:
    """The correlation of one MSB quantity with one metric within one group of models.

    Attributes:
        group: ``"all"``, ``"model=NAME"``, ``"dataset=NAME"`` or ``"model=A, dataset=B"``.
        x: ``"msb"`` (the model's MSB) or ``"msb:LAYER"``.
        y: the metric (``"c_cons"``...).
        n: models with both values.
        correlations: ``{"pearson": Correlation, "spearman": Correlation}``; empty when not
            computed (see ``note``).
        note: why there are no numbers (too few models, a constant quantity), else ``""``.
    """

    group: str
    x: str
    y: str
    n: int
    correlations: dict[str, Correlation] = field(default_factory=dict)
    note: str = ""

    def table_row(self) -> dict[str, Any]:
        """A row of the correlation table: each coefficient as ``value [low, high]`` with its
        p-value beside it, then with the interval of methods resampled (``{kind}_methods``,
        empty with fewer than :data:`~shiftpool.metrics.correlation.MIN_CLUSTERS` methods)."""
        row: dict[str, Any] = {"group": self.group, "x": display_name(self.x),
                               "y": display_name(self.y), "n": self.n}
        for kind in CORRELATIONS:
            c = self.correlations.get(kind)
            row[kind] = None if c is None else {"value": c.value, "low": c.low, "high": c.high}
            row[f"{kind}_p"] = None if c is None else c.p_value
        for kind in CORRELATIONS:
            c = self.correlations.get(kind)
            row[f"{kind}_methods"] = None if c is None or not c.clusters else {
                "value": c.value, "low": c.cluster_low, "high": c.cluster_high}
        row["methods"] = next((c.clusters for c in self.correlations.values()), 0) or None
        row["note"] = self.note
        return row

    def to_dict(self) -> dict[str, Any]:
        return {"group": self.group, "x": self.x, "y": self.y, "n": self.n,
                "correlations": {k: c.to_dict() for k, c in self.correlations.items()},
                "note": self.note}


@dataclass(frozen=True)
class CorrelationSettings:
    """How the correlations are computed (see :func:`correlate`)."""

    resamples: int = 9999
    permutations: int = 9999
    confidence: float = 0.95
    interval: str = "bca"
    seed: int = 0

    def __post_init__(self) -> None:
        what = "shiftpool.correlate"
        check_int(self.resamples, f"{what}: resamples", minimum=100)
        check_int(self.permutations, f"{what}: permutations", minimum=1)
        check_range(self.confidence, f"{what}: confidence", 0, 1, low_open=True, high_open=True)
        check_choice(self.interval, f"{what}: interval", list(INTERVALS))
        check_int(self.seed, f"{what}: seed", minimum=0)

    def to_dict(self) -> dict[str, Any]:
        return {"resamples": self.resamples, "permutations": self.permutations,
                "confidence": self.confidence, "interval": self.interval, "seed": self.seed,
                "min_models": MIN_MODELS}


@dataclass
class CorrelationReport:
    """What :func:`correlate` returns.

    Attributes:
        runs: the models, one :class:`RunRecord` each.
        rows: every :class:`CorrelationRow` (overall MSB first, then per layer).
        protocol: the evaluation protocol all models share.
        notes: what the reader must know (groups too small, constant metrics, mixed settings).
        sections: the HTML report's sections (tables and figures), to embed in another report
            (:func:`shiftpool.report.html.html_report`).
        files: the files written, by kind (``json``, ``csv``, ``md``, ``html``, ``figure`` /
            ``figure:GROUP``).
        table: the Markdown table of the overall MSB's correlations (as in correlation.md).
    """

    runs: list[RunRecord]
    rows: list[CorrelationRow]
    protocol: str
    notes: list[str] = field(default_factory=list)
    sections: list[Section] = field(default_factory=list)
    files: dict[str, Path] = field(default_factory=dict)
    table: str = ""


# -- finding runs ----------------------------------------------------------------------------


def find_runs(paths: Sequence[str | os.PathLike[str]] = (), *,
              glob: str | Sequence[str] | None = None, protocol: str | None = None,
              notes: list[str] | None = None) -> list[RunRecord]:
    """Every finished, evaluated run under ``paths`` (folders searched recursively, or
    evaluation files) and the matches of the ``glob`` pattern(s) (``**`` allowed).

    Args:
        protocol: the evaluations to read; default the one protocol every run was evaluated
            with.
        notes: gets a line for each thing worth saying (a run with several evaluations of the
            protocol: the newest is read).

    Raises:
        InputError: a path that does not exist, a pattern that matches nothing, no runs, a
            run without its settings, runs that share no protocol, several shared protocols
            (choose one), runs without that protocol's evaluation, or runs without MSB.

    Example:
        >>> find_runs(["/nonexistent/runs"])
        Traceback (most recent call last):
        ...
        shiftpool.core.errors.MissingFileError: shiftpool.correlate: '/nonexistent/runs' not found
    """
    notes = [] if notes is None else notes
    sources = _sources(paths, glob)
    evaluations: dict[Path, list[Path]] = {}
    for source in sources:
        for run_dir, files in _evaluation_files(source).items():
            known = evaluations.setdefault(run_dir, [])
            known += [f for f in files if f not in known]
    if not evaluations:
        searched = ", ".join(repr(str(s)) for s in sources[:_LISTED])
        raise InputError(f"shiftpool.correlate: no evaluated runs found in {searched}: a run "
                         "folder holds evaluation.json (from compare) or evaluation-PROTOCOL."
                         "json (from shiftpool evaluate)")
    read = {run_dir: [(f, d) for f in files if (d := _read_evaluation(f, notes)) is not None]
            for run_dir, files in sorted(evaluations.items())}
    read = {run_dir: found for run_dir, found in read.items() if found}
    if not read:
        raise InputError("shiftpool.correlate: no readable evaluation file in the runs found")
    chosen = _choose_protocol(read, protocol)
    base = _common_parent(list(read))
    records = [_record(run_dir, found, chosen, base, notes) for run_dir, found in read.items()]
    without = [r for r in records if isinstance(r, str)]
    if without:
        raise InputError(
            f"shiftpool.correlate: {len(without)} run(s) have no MSB in their {chosen} "
            f"evaluation: {_listing(without)}; measure it with `shiftpool evaluate CHECKPOINT "
            f"--protocol {chosen} --metrics accuracy,consistency,fidelity,msb` (or compare with "
            "msb among --metrics), or leave those runs out")
    return [r for r in records if isinstance(r, RunRecord)]


def _sources(paths: Sequence[str | os.PathLike[str]],
             patterns: str | Sequence[str] | None) -> list[Path]:
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    sources = []
    for path in paths:
        if not str(path).strip():
            raise InputError("shiftpool.correlate: a run folder's name is empty")
        if not Path(path).exists():
            raise MissingFileError(f"shiftpool.correlate: {str(path)!r} not found")
        sources.append(Path(path))
    for pattern in [patterns] if isinstance(patterns, str) else list(patterns or ()):
        if not str(pattern).strip():
            raise InputError("shiftpool.correlate: the --glob pattern is empty")
        matches = sorted(globbing.glob(os.path.expanduser(pattern), recursive=True))
        if not matches:
            raise InputError(f"shiftpool.correlate: --glob {pattern!r} matches nothing")
        sources += [Path(m) for m in matches]
    if not sources:
        raise InputError("shiftpool.correlate: give run folders (or --glob PATTERN)")
    return sources


def _evaluation_files(source: Path) -> dict[Path, list[Path]]:
    """``{run folder: [evaluation files]}`` under ``source`` (a folder or one file)."""
    if source.is_file():
        if source.suffix != ".json":
            raise InputError(f"shiftpool.correlate: {str(source)!r} is neither a folder nor an "
                             "evaluation JSON file")
        return {source.parent.resolve(): [source.resolve()]}
    found: dict[Path, list[Path]] = {}
    for folder, dirs, files in os.walk(source):
        dirs[:] = sorted(d for d in dirs if not d.startswith(".") and d not in _SKIPPED_DIRS)
        matches = sorted(f for f in files if _EVALUATION.match(f))
        if matches:
            run_dir = Path(folder).resolve()
            found[run_dir] = [run_dir / f for f in matches]
    return found


def _read_evaluation(path: Path, notes: list[str]) -> dict[str, Any] | None:
    """The evaluation's dict, or None (with a note) when the file is not one."""
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        notes.append(f"{path}: skipped, not readable JSON ({error})")
        return None
    if not isinstance(data, dict) or not isinstance(data.get("protocol"), dict) or not isinstance(
            data.get("msb", {}), dict):
        notes.append(f"{path}: skipped, not an evaluation of shiftpool")
        return None
    return data


def _protocol_name(data: Mapping[str, Any]) -> str:
    return str(data["protocol"].get("name", "unnamed"))


def _choose_protocol(read: Mapping[Path, list[tuple[Path, dict[str, Any]]]],
                     protocol: str | None) -> str:
    per_run = {run: {_protocol_name(d) for _, d in found} for run, found in read.items()}
    if protocol is not None:
        lacking = [run for run, names in per_run.items() if protocol not in names]
        if lacking:
            raise InputError(
                f"shiftpool.correlate: {len(lacking)} of {len(per_run)} run(s) have no "
                f"evaluation under the {protocol} protocol: {_listing(lacking)}; evaluate them "
                f"with `shiftpool evaluate CHECKPOINT --protocol {protocol}` or leave them out")
        return protocol
    shared = set.intersection(*per_run.values())
    if len(shared) == 1:
        return shared.pop()
    counts: dict[str, int] = {}
    for names in per_run.values():
        for name in names:
            counts[name] = counts.get(name, 0) + 1
    found = ", ".join(f"{name} ({count} of {len(per_run)} runs)"
                      for name, count in sorted(counts.items()))
    if not shared:
        raise InputError(f"shiftpool.correlate: the runs share no evaluation protocol ({found}); "
                         "choose one with --protocol and evaluate the runs that lack it")
    raise InputError(f"shiftpool.correlate: the runs were evaluated under several protocols "
                     f"({found}); choose one with --protocol")


def _record(run_dir: Path, found: list[tuple[Path, dict[str, Any]]], protocol: str, base: Path,
            notes: list[str]) -> RunRecord | str:
    """The run's record, or its label when its evaluation has no MSB."""
    candidates = [(f, d) for f, d in found if _protocol_name(d) == protocol]
    with_msb = [(f, d) for f, d in candidates if "mean" in (d.get("msb") or {})]
    pool = with_msb or candidates
    path, data = max(pool, key=lambda item: (item[0].stat().st_mtime, item[0].name))
    label = _label(run_dir, base)
    if len(pool) > 1:
        notes.append(f"{label}: {len(pool)} evaluations under {protocol}; read the newest, "
                     f"{path.name}")
    if not with_msb:
        return label
    config = _run_settings(run_dir, data, path)
    msb = {str(k): Estimate.from_dict(dict(v)) for k, v in data["msb"].items()}
    metrics = _metrics(data)
    return RunRecord(
        run_dir=run_dir, evaluation=path, label=label, method=_method(config),
        model=str(config.get("model", "?")), dataset=str(config.get("dataset", "?")),
        seed=_int_or_none(config.get("seed")), epochs=_int_or_none(config.get("epochs")),
        protocol=protocol, images=int(data.get("n") or msb["mean"].n),
        msb=msb.pop("mean"), msb_layers=msb, metrics=metrics)


def _metrics(data: Mapping[str, Any]) -> dict[str, Estimate]:
    metrics: dict[str, Estimate] = {}
    if isinstance(data.get("accuracy"), dict):
        metrics["acc"] = Estimate.from_dict(dict(data["accuracy"]))
    for kind in ("cons", "fid"):
        table = data.get("consistency" if kind == "cons" else "fidelity") or {}
        for mode, estimate in table.items():
            metrics[f"{MODE_PREFIX.get(mode, mode)}_{kind}"] = Estimate.from_dict(dict(estimate))
    return {k: e for k, e in metrics.items() if math.isfinite(e.value)}


def _run_settings(run_dir: Path, data: Mapping[str, Any], evaluation: Path) -> dict[str, Any]:
    """The run's training settings, from the first settings file there is: in its folder, or
    beside the checkpoint an evaluation names."""
    folders = [run_dir]
    run = data.get("run")
    checkpoint = run.get("checkpoint") if isinstance(run, dict) else None
    if isinstance(checkpoint, str) and checkpoint:
        folders.append(Path(checkpoint).expanduser().resolve().parent)
    for folder in folders:
        for name in _SETTINGS_FILES:
            settings = _settings_in(folder / name)
            if settings is not None:
                return settings
    raise InputError(f"shiftpool.correlate: {str(evaluation)!r} has no run settings beside it "
                     f"({', '.join(_SETTINGS_FILES)}): the method, model and data set are "
                     "unknown; keep the evaluation in its run's folder")


def _settings_in(path: Path) -> dict[str, Any] | None:
    if not path.is_file():
        return None
    try:
        if path.suffix == ".yaml":
            import yaml

            data = yaml.safe_load(path.read_text())
        else:
            data = json.loads(path.read_text())
    except ImportError:
        return None  # config.yaml without PyYAML: try the next file
    except (OSError, ValueError) as error:
        raise InputError(f"shiftpool.correlate: cannot read {str(path)!r} ({error})") from None
    if isinstance(data, dict) and path.name == "result.json":
        data = data.get("config")
    elif isinstance(data, dict) and path.name == "row.json":
        data = (data.get("settings") or {}).get("config")
    return data if isinstance(data, dict) and "downsample" in data else None


#: Training settings that make another method of the same operator (the TIPS objective's
#: weights: the tips study's ablations), by their names in a method's label.
_OBJECTIVE_SETTINGS = {"tips_alpha": "alpha", "tips_undo_start_epoch": "undo_start_epoch",
                       "tips_fm_weight": "fm_weight"}
_OBJECTIVE_DEFAULTS = {f.name: f.default for f in fields(TrainConfig)
                       if f.name in _OBJECTIVE_SETTINGS}


def _method(config: Mapping[str, Any]) -> str:
    """The method's label: the operator, with its options and any objective setting that is
    not the default (``tips(fm_weight=0.0)``, the ablation without ``L_FM``)."""
    name = str(config.get("downsample", "?"))
    options = dict(config.get("downsample_options") or {})
    for key, label in _OBJECTIVE_SETTINGS.items():
        if key in config and config[key] != _OBJECTIVE_DEFAULTS[key]:
            options[label] = config[key]
    if not options:
        return name
    return f"{name}({', '.join(f'{k}={v}' for k, v in sorted(options.items()))})"


def _int_or_none(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _common_parent(folders: Sequence[Path]) -> Path:
    common = Path(os.path.commonpath([str(f) for f in folders]))
    return common.parent if len(folders) == 1 or common in folders else common


def _label(run_dir: Path, base: Path) -> str:
    try:
        return run_dir.relative_to(base).as_posix() or run_dir.name
    except ValueError:
        return str(run_dir)


def _listing(items: Sequence[object]) -> str:
    shown = ", ".join(str(item) for item in items[:_LISTED])
    return shown + (f" (+{len(items) - _LISTED} more)" if len(items) > _LISTED else "")


# -- correlating -----------------------------------------------------------------------------


def model_groups(runs: Sequence[RunRecord]) -> list[tuple[str, list[RunRecord]]]:
    """``[(group, runs)]``: all runs, then each architecture, each data set and each
    (architecture, data set) pair, leaving out a group with the same runs as an earlier one.

    Example:
        >>> model_groups([])
        [('all', [])]
    """
    groups: list[tuple[str, list[RunRecord]]] = [("all", list(runs))]
    models = sorted({r.model for r in runs})
    datasets = sorted({r.dataset for r in runs})
    candidates = [(f"model={m}", [r for r in runs if r.model == m]) for m in models]
    candidates += [(f"dataset={d}", [r for r in runs if r.dataset == d]) for d in datasets]
    candidates += [(f"model={m}, dataset={d}",
                    [r for r in runs if (r.model, r.dataset) == (m, d)])
                   for m in models for d in datasets]
    seen = [{id(r) for r in runs}]
    for name, members in candidates:
        key = {id(r) for r in members}
        if members and key not in seen:
            seen.append(key)
            groups.append((name, members))
    return groups


def correlation_rows(runs: Sequence[RunRecord], metrics: Sequence[str] | None = None, *,
                     settings: CorrelationSettings | None = None, layers: bool = True,
                     ) -> list[CorrelationRow]:
    """Correlate MSB with each metric in every group of :func:`model_groups` (and, with
    ``layers``, each layer's MSB within groups of one architecture).

    Args:
        metrics: the metrics (default :data:`DEFAULT_METRICS` and every other consistency and
            fidelity the runs have).

    Example:
        >>> correlation_rows([])
        []
    """
    settings = settings or CorrelationSettings()
    chosen = list(metrics) if metrics is not None else available_metrics(runs)
    rows: list[CorrelationRow] = []
    groups = model_groups(runs) if runs else []
    for group, members in groups:
        rows += [_row(group, members, "msb", y, settings) for y in chosen]
    if layers:
        for group, members in groups:
            if len({r.model for r in members}) != 1:
                continue
            for layer in _shared_layers(members):
                rows += [_row(group, members, f"msb:{layer}", y, settings) for y in chosen]
    return rows


def available_metrics(runs: Sequence[RunRecord]) -> list[str]:
    """:data:`DEFAULT_METRICS` the runs have, then their other ``*_cons`` and ``*_fid``."""
    present = list(dict.fromkeys(k for r in runs for k in r.metrics))
    extra = [k for k in present if k not in DEFAULT_METRICS and k.endswith(("_cons", "_fid"))]
    return [k for k in DEFAULT_METRICS if k in present] + extra


def _shared_layers(members: Sequence[RunRecord]) -> list[str]:
    counts: dict[str, int] = {}
    for r in members:
        for layer in r.msb_layers:
            counts[layer] = counts.get(layer, 0) + 1
    return [layer for layer, count in counts.items() if count >= MIN_MODELS]


def _row(group: str, members: Sequence[RunRecord], x: str, y: str,
         settings: CorrelationSettings) -> CorrelationRow:
    pairs = [(ex.value, ey.value, r.method) for r in members
             if (ex := r.value(x)) is not None and (ey := r.value(y)) is not None]
    n = len(pairs)
    if n < MIN_MODELS:
        return CorrelationRow(group, x, y, n, note=f"too few models ({n} < {MIN_MODELS})")
    xs, ys = [p[0] for p in pairs], [p[1] for p in pairs]
    for key, values in ((x, xs), (y, ys)):
        if max(values) == min(values):
            return CorrelationRow(group, x, y, n, note=f"{display_name(key)} is constant "
                                  f"({values[0]:.4f}) in this group: no correlation")
    found = {kind: correlation(xs, ys, kind, resamples=settings.resamples,
                               permutations=settings.permutations,
                               confidence=settings.confidence, interval=settings.interval,
                               seed=settings.seed, clusters=[p[2] for p in pairs])
             for kind in CORRELATIONS}
    return CorrelationRow(group, x, y, n, found)


# -- the report ------------------------------------------------------------------------------


def correlate(
    run_dirs: Sequence[str | os.PathLike[str]],
    out_dir: str | os.PathLike[str],
    *,
    glob: str | Sequence[str] | None = None,
    protocol: str | None = None,
    metrics: Sequence[str] | None = None,
    layers: bool = True,
    resamples: int = 9999,
    permutations: int = 9999,
    confidence: float = 0.95,
    interval: str = "bca",
    seed: int = 0,
    figures: bool = True,
    log: Log = stderr_log,
) -> CorrelationReport:
    """Correlate MSB with shift invariance across the finished runs under ``run_dirs``.

    Args:
        run_dirs: folders to search (recursively) and evaluation files.
        out_dir: where correlation.json/.csv/.md/.html and figures/ go.
        glob: pattern(s) adding more folders or files (``runs/*/seed*``, ``**`` allowed).
        protocol: the evaluations to read (default: the one every run has).
        metrics: the metrics to correlate with MSB (default: accuracy, S-Cons, C-Cons, S-Fid,
            C-Fid and any other consistency/fidelity the runs have).
        layers: also correlate each layer's MSB (within groups of one architecture).
        resamples, permutations, confidence, interval, seed: see
            :func:`shiftpool.metrics.correlation.correlation`.
        figures: draw the scatter figures (skipped with a note without matplotlib).
        log: gets a few lines: what was found, notes, figures skipped.

    Returns:
        A :class:`CorrelationReport`.

    Raises:
        InputError: no runs, runs without MSB, fewer than 3 models, an unknown metric, mixed
            protocols, bad settings, an output folder that cannot be written — before anything
            is written. :class:`~shiftpool.core.io.FolderLockedError` when another process
            writes into ``out_dir``.

    Example:
        >>> correlate([], "runs/correlate")
        Traceback (most recent call last):
        ...
        shiftpool.core.errors.InputError: shiftpool.correlate: give run folders (or --glob \
PATTERN)
    """
    settings = CorrelationSettings(resamples, permutations, confidence, interval, seed)
    notes: list[str] = []
    runs = find_runs(run_dirs, glob=glob, protocol=protocol, notes=notes)
    if len(runs) < MIN_MODELS:
        raise InputError(f"shiftpool.correlate: a correlation needs at least {MIN_MODELS} "
                         f"models with MSB, found {len(runs)}: "
                         f"{_listing([r.label for r in runs])}")
    chosen = _check_metrics(runs, metrics)
    log(f"correlate: {len(runs)} models ({', '.join(sorted({r.method for r in runs}))}) under "
        f"the {runs[0].protocol} protocol")
    out = Path(out_dir)
    with FolderLock(out, LOCK_PURPOSE):  # taken before the work: a second writer fails at once
        report, files = _report(runs, chosen, settings, layers, figures, notes, out, log)
        atomic_write_set({f.path: f.content for f in files.values()})
        keep = {f.path.name for f in files.values()}
        for stale in (out / FIGURES_DIR).glob(f"{STEM}*.png"):
            if stale.name not in keep:
                stale.unlink(missing_ok=True)
    report.files = {kind: f.path for kind, f in files.items()}
    for note in notes:
        log(f"note: {note}")
    return report


def _report(runs: list[RunRecord], metrics: list[str], settings: CorrelationSettings,
            layers: bool, figures: bool, notes: list[str], out: Path,
            log: Log) -> tuple[CorrelationReport, dict[str, ReportFile]]:
    """The correlations, figures and report files, not yet written."""
    rows = correlation_rows(runs, metrics, settings=settings, layers=layers)
    notes += _notes(runs, rows, settings)
    drawn: dict[str, bytes] = {}
    if figures:
        try:
            drawn = _figures(runs, rows, metrics, settings)
        except MissingExtraError as error:
            notes.append(f"figures skipped: {error}")
            log(f"figures skipped: {error}")
    report = CorrelationReport(runs, rows, runs[0].protocol, notes)
    report.sections = report_sections(report, settings, drawn)
    report.table = markdown_table([r.table_row() for r in rows if r.x == "msb"])
    files: dict[str, ReportFile] = {}
    for group, data in drawn.items():
        files["figure" if group == "all" else f"figure:{group}"] = ReportFile(
            out / FIGURES_DIR / _figure_name(group), data)
    files.update(_text_files(report, settings, out))
    return report, files


def _check_metrics(runs: Sequence[RunRecord], metrics: Sequence[str] | None) -> list[str]:
    available = available_metrics(runs)
    if metrics is None:
        if not available:
            raise InputError("shiftpool.correlate: the runs' evaluations hold no shift metric "
                             "(accuracy, consistency, fidelity) to correlate MSB with")
        return available
    if isinstance(metrics, str):
        metrics = [m.strip() for m in metrics.split(",")]
    measured = {k for r in runs for k in r.metrics}
    names = {v.lower(): k for k, v in DISPLAY_NAMES.items()}
    chosen = []
    for metric in metrics:
        key = names.get(str(metric).lower(), str(metric))
        if key not in measured:
            raise InputError(f"shiftpool.correlate: no run measured {metric!r}; the runs have: "
                             f"{', '.join(sorted(measured)) or 'none'}")
        if key not in chosen:
            chosen.append(key)
    if not chosen:
        raise InputError("shiftpool.correlate: give at least one metric")
    return chosen


def _notes(runs: Sequence[RunRecord], rows: Sequence[CorrelationRow],
           settings: CorrelationSettings) -> list[str]:
    notes = []
    images = sorted({r.images for r in runs})
    if len(images) > 1:
        notes.append(f"models were evaluated on different numbers of test images "
                     f"({', '.join(map(str, images))})")
    for group in dict.fromkeys(r.group for r in rows if r.note.startswith("too few")):
        notes.append(f"group {group}: too few models for a correlation (needs {MIN_MODELS})")
    computed = [r.n for r in rows if r.correlations]
    if computed and min(computed) < _FEW_MODELS:
        exact = max(n for n in range(1, 13) if math.factorial(n) <= settings.permutations)
        notes.append(f"with fewer than {_FEW_MODELS} models a bootstrap over models has few "
                     "distinct resamples (many hold two or three models, whose correlation is "
                     "near ±1): the intervals are wide; the permutation p-value (exact for up "
                     f"to {exact} models) is the sounder statement")
    models, datasets = {r.model for r in runs}, {r.dataset for r in runs}
    if len(models) == 1 and len(datasets) == 1:
        notes.append(f"every model is a {next(iter(models))} on {next(iter(datasets))}: the "
                     "architecture and data-set groups are 'all'")
    return notes


def _figure_name(group: str) -> str:
    if group == "all":
        return f"{STEM}.png"
    return f"{STEM}-{re.sub(r'[^A-Za-z0-9_.-]+', '-', group).strip('-')}.png"


def _figures(runs: Sequence[RunRecord], rows: Sequence[CorrelationRow], metrics: Sequence[str],
             settings: CorrelationSettings) -> dict[str, bytes]:
    """One scatter figure per group with enough models: MSB against each metric."""
    drawn: dict[str, bytes] = {}
    by_key = {(r.group, r.x, r.y): r for r in rows}
    for group, members in model_groups(runs):
        if len(members) < MIN_MODELS:
            continue
        panels = []
        for y in metrics:
            points = [_point(r, y) for r in members if r.value(y) is not None]
            if not points:
                continue
            row = by_key.get((group, "msb", y))
            fit = _band([p.x for p in points], [p.y for p in points], settings)
            panels.append(ScatterPanel(display_name(y), points, fit,
                                       row.correlations if row and row.correlations else None,
                                       row.note if row else ""))
        if panels:
            drawn[group] = correlation_figure(
                panels, x_name="MSB (mean over downsampling layers)",
                title=f"MSB vs shift metrics: {group}", subtitle=_caption(members))
    return drawn


def _point(run: RunRecord, y: str) -> ScatterPoint:
    ey = run.value(y)
    assert ey is not None
    return ScatterPoint(run.msb.value, ey.value, run.method, run.msb.low, run.msb.high,
                        ey.low, ey.high)


def _band(xs: list[float], ys: list[float], settings: CorrelationSettings) -> LinearFit | None:
    if len(xs) < MIN_MODELS or max(xs) == min(xs):
        return None
    return linear_fit_band(xs, ys, resamples=min(settings.resamples, _BAND_RESAMPLES),
                           confidence=settings.confidence, seed=settings.seed)


def _caption(runs: Sequence[RunRecord]) -> str:
    """Data sets, models, epochs, seeds and n of a set of runs, in one line."""

    def listed(values: Iterable[object]) -> str:
        found = sorted({str(v) for v in values if v is not None})
        return ", ".join(found) if found else "?"

    return (f"{listed(r.dataset for r in runs)} · {listed(r.model for r in runs)} · "
            f"epochs {listed(r.epochs for r in runs)} · seeds {listed(r.seed for r in runs)} · "
            f"{len(runs)} models · n = {listed(r.images for r in runs)} test images · "
            f"{runs[0].protocol} protocol")


def report_sections(report: CorrelationReport, settings: CorrelationSettings,
                    figures: Mapping[str, bytes] | None = None) -> list[Section]:
    """The HTML report's sections (also what another report may embed)."""
    overall = [r.table_row() for r in report.rows if r.x == "msb"]
    layered = [r.table_row() for r in report.rows if r.x != "msb"]
    method = (
        f"Each coefficient has a {100 * settings.confidence:.0f}% bootstrap interval over models "
        f"({settings.interval}, {settings.resamples} resamples, seed {settings.seed}) and a "
        "two-sided permutation p-value of no association (exact over all pairings when n! <= "
        f"{settings.permutations}, else {settings.permutations} random pairings with the +1 "
        f"correction). Groups need at least {MIN_MODELS} models. The TIPS paper's claim: MSB "
        "is negatively correlated with shift invariance (a negative r for S-Cons, C-Cons, "
        "S-Fid, C-Fid).")
    sections = [
        Section("Models", [Paragraph(_caption(report.runs)),
                           Table([r.table_row() for r in report.runs],
                                 caption="MSB and shift metrics per model (95% intervals over "
                                 "test images)")]),
        Section("Correlation of MSB with each metric", [Paragraph(method), Table(overall)]),
    ]
    if layered:
        sections.append(Section("Per-layer MSB", [Table(layered, caption="within groups of "
                                                        "one architecture")]))
    if figures:
        sections.append(Section("Figures", [
            Figure(data, caption=f"MSB vs each metric, {group}: one point per model (whiskers: "
                   "its intervals), least-squares line with its bootstrap band")
            for group, data in figures.items()]))
    if report.notes:
        sections.append(Section("Notes", [Paragraph("\n".join(f"- {n}" for n in report.notes))]))
    sections.append(Section("Runs read", [Code("\n".join(
        f"{r.label}: {r.evaluation}" for r in report.runs))]))
    return sections


def _text_files(report: CorrelationReport, settings: CorrelationSettings,
                out: Path) -> dict[str, ReportFile]:
    title = f"MSB and shift invariance: {len(report.runs)} models"
    data = {"protocol": report.protocol, "settings": settings.to_dict(),
            "runs": [r.to_dict() for r in report.runs],
            "correlations": [r.to_dict() for r in report.rows], "notes": report.notes}
    markdown = [f"# {title}", "", _caption(report.runs), "", "## Models", "",
                markdown_table([r.table_row() for r in report.runs]), "",
                "## Correlation of MSB with each metric", "", report.table, ""]
    layered = [r.table_row() for r in report.rows if r.x != "msb"]
    if layered:
        markdown += ["## Per-layer MSB", "", markdown_table(layered), ""]
    if report.notes:
        markdown += ["## Notes", "", *[f"- {n}" for n in report.notes], ""]
    texts = {"json": json_text(data), "csv": csv_text([r.table_row() for r in report.rows]),
             "md": "\n".join(markdown),
             "html": html_report(title, report.sections, subtitle=coefficient_summary(report))}
    return {kind: ReportFile(out / f"{STEM}.{kind}", text) for kind, text in texts.items()}


def coefficient_summary(report: CorrelationReport) -> str:
    """One line: Pearson's r of MSB with each metric over all models, e.g.
    ``all models: C-Cons r = -0.81 [-0.95, -0.40], p = 0.012; ...``."""
    parts = [f"{display_name(r.y)} {coefficient_text({'pearson': r.correlations['pearson']})}"
             for r in report.rows
             if r.group == "all" and r.x == "msb" and "pearson" in r.correlations]
    return "all models: " + ("; ".join(parts) if parts else "no correlation defined")
