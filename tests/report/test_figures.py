"""Figures: each writes a readable PNG from results, their JSON dicts, or table rows."""

from __future__ import annotations

import json
import os
import stat

import pytest
import torch
from torch import nn

from shiftpool import report
from shiftpool.metrics import dataset_homogeneity, evaluate

pytest.importorskip("matplotlib", reason="figures need matplotlib (shiftpool[plots])")

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def results():
    torch.manual_seed(0)
    out = {}
    for name, pool in (("max", nn.MaxPool2d(2)), ("avg", nn.AvgPool2d(2))):
        net = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), pool,
                            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3))
        data = [(torch.randn(12, 1, 8, 8), torch.randint(0, 3, (12,)))]
        out[name] = evaluate(net, data, metrics="all", protocol="aps", max_shift=1,
                             progress=False)
    return out


def _is_png(path) -> bool:
    return path.read_bytes()[:8] == PNG_MAGIC and path.stat().st_size > 5000


def test_each_figure(results, tmp_path) -> None:
    for plot in (report.plot_accuracy_vs_offset, report.plot_consistency_map,
                 report.plot_sensitivity_map, report.plot_msb):
        assert _is_png(plot(results, tmp_path / f"{plot.__name__}.png"))
    assert not list(tmp_path.glob(".*"))  # no temporary files left


def test_figures_take_one_result_or_json_dicts(results, tmp_path) -> None:
    as_json = {k: json.loads(json.dumps(v.to_dict())) for k, v in results.items()}
    assert _is_png(report.plot_consistency_map(as_json, tmp_path / "json.png", "accuracy"))
    assert _is_png(report.plot_msb(results["max"], tmp_path / "one.png"))


def test_homogeneity_from_estimates_and_rows(tmp_path) -> None:
    sets = {"flat": dataset_homogeneity([torch.zeros(4, 1, 6, 6)]),
            "noise": dataset_homogeneity([torch.rand(4, 1, 6, 6)])}
    assert _is_png(report.plot_homogeneity(sets, tmp_path / "a.png"))
    rows = [{"dataset": k, **v.to_dict()} for k, v in sets.items()]
    assert _is_png(report.plot_homogeneity(rows, tmp_path / "b.png"))


def test_write_figures_from_rows_and_results(results, tmp_path) -> None:
    rows = [{"method": k, **v.summary()} for k, v in results.items()]
    files = report.write_figures(rows, tmp_path)
    assert sorted(files) == ["consistency_vs_accuracy", "msb", "summary"]
    files = report.write_figures(rows, tmp_path, results=results)
    assert {"accuracy_vs_offset", "consistency_map", "consistency_vs_accuracy", "msb",
            "msb_layers", "sensitivity_map", "summary"} <= set(files)
    assert all(_is_png(p) for p in files.values())


def test_missing_metric_is_a_clear_error(tmp_path) -> None:
    net = nn.Sequential(nn.Flatten(), nn.Linear(16, 2))
    plain = evaluate(net, [(torch.rand(4, 1, 4, 4), torch.zeros(4, dtype=torch.long))],
                     protocol="aps", max_shift=1, progress=False)
    with pytest.raises(ValueError, match=r"no offset maps.*'offset_map'"):
        report.plot_consistency_map(plain, tmp_path / "x.png")
    with pytest.raises(ValueError, match="quantity"):
        report.plot_consistency_map(plain, tmp_path / "x.png", quantity="loss")
    with pytest.raises(TypeError, match="EvaluationResult"):
        report.plot_msb(42, tmp_path / "x.png")


def test_summary_draws_worst_case_and_sensitivity_with_intervals(tmp_path) -> None:
    def estimate(value, half):
        return {"value": value, "low": value - half, "high": value + half}

    rows = [{"method": "max", "c_worst": estimate(0.5, 0.1), "c_sens": 0.9},
            {"method": "aps", "c_worst": estimate(0.7, 0.1), "c_sens": 0.95}]
    plain = [{k: v["value"] if isinstance(v, dict) else v for k, v in r.items()} for r in rows]
    with_bars = report.plot_summary(rows, tmp_path / "bars.png").read_bytes()
    without = report.plot_summary(plain, tmp_path / "plain.png").read_bytes()
    assert with_bars[:8] == PNG_MAGIC and with_bars != without  # the error bars are drawn
    assert {"c_worst", "c_sens", "s_worst", "s_sens", "r_worst", "crop_sens"} <= set(
        report.figures.SUMMARY_KEYS)


def test_write_figures_writes_a_whole_set_or_nothing(results, tmp_path, monkeypatch) -> None:
    rows = [{"method": k, **v.summary()} for k, v in results.items()]
    old = os.umask(0o022)
    try:
        first = report.write_figures(rows, tmp_path)
    finally:
        os.umask(old)
    assert {stat.S_IMODE(p.stat().st_mode) for p in first.values()} == {0o644}
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    drawn = []
    real_render = report.figures._render

    def fail_on_the_second(fig, image_format):
        drawn.append(fig)
        if len(drawn) == 2:
            raise RuntimeError("planted failure")
        return real_render(fig, image_format)

    monkeypatch.setattr(report.figures, "_render", fail_on_the_second)
    with pytest.raises(RuntimeError, match="planted"):
        report.write_figures(rows[:1], tmp_path)
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before
