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
    real_render = report.figures.figure_bytes

    def fail_on_the_second(fig, image_format="png", dpi=120):
        drawn.append(fig)
        if len(drawn) == 2:
            raise RuntimeError("planted failure")
        return real_render(fig, image_format, dpi)

    monkeypatch.setattr(report.figures, "figure_bytes", fail_on_the_second)
    with pytest.raises(RuntimeError, match="planted"):
        report.write_figures(rows[:1], tmp_path)
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before


INFO = report.ReportInfo("mnist5k", "simple_cnn", 3, (0, 1, 2), n=500, protocol="aps")


def _seeded(value, half, per_seed):
    return {"value": value, "low": value - half, "high": value + half, "per_seed": per_seed}


SEEDED_ROWS = [
    {"method": "max", "acc": _seeded(0.90, 0.02, [0.89, 0.90, 0.91]),
     "c_cons": _seeded(0.80, 0.05, [0.75, 0.80, 0.85]), "seeds": [0, 1, 2]},
    {"method": "aps", "acc": _seeded(0.91, 0.01, [0.90, 0.91, 0.92]),
     "c_cons": _seeded(1.00, 0.0, [1.0, 1.0, 1.0]), "seeds": [0, 1, 2],
     "paired": {"acc": {"baseline": "max", "difference": {"value": 0.01, "low": -0.01,
                                                          "high": 0.03}, "marks": ""},
                "c_cons": {"baseline": "max", "difference": {"value": 0.2, "low": 0.1,
                                                             "high": 0.3}, "marks": "*†"}}},
]


@pytest.fixture
def drawn(monkeypatch) -> dict:
    """The matplotlib figures render_figures draws, by kind, instead of their bytes."""
    figures: list = []
    monkeypatch.setattr(report.figures, "figure_bytes",
                        lambda fig, fmt="png", dpi=120: figures.append(fig) or b"")
    return figures


def test_every_figure_states_what_it_rests_on(results, tmp_path, drawn) -> None:
    rows = [{"method": k, **v.summary()} for k, v in results.items()] + SEEDED_ROWS[1:]
    kinds = report.render_figures(rows, tmp_path, results, info=INFO)
    assert len(drawn) == len(kinds) >= 8
    caption = "mnist5k · simple_cnn · 3 epochs · seeds 0, 1, 2 · n = 500 test images per seed"
    for kind, fig in zip(kinds, drawn, strict=True):
        assert caption in fig.get_suptitle(), kind


def test_the_scatter_has_whiskers_on_both_axes_and_a_dot_per_seed(tmp_path, drawn) -> None:
    files = report.render_figures(SEEDED_ROWS, tmp_path, info=INFO)
    figure = dict(zip(files, drawn, strict=True))["consistency_vs_accuracy"]
    ax = figure.axes[0]
    bars = ax.containers
    assert len(bars) == 2 and all(b.has_xerr and b.has_yerr for b in bars)
    xerr = bars[0].lines[2][0].get_segments()[0]  # max's accuracy whisker: 0.88 .. 0.92
    assert [round(x, 6) for x, _ in xerr] == [0.88, 0.92]
    dots = [c for c in ax.collections if type(c).__name__ == "PathCollection"]
    assert [len(c.get_offsets()) for c in dots] == [3, 3]  # each method's three seeds
    assert "dots: seeds" in figure.get_suptitle()


def test_differences_figure_draws_intervals_around_zero_and_marks(tmp_path, drawn) -> None:
    files = report.render_figures(SEEDED_ROWS, tmp_path, info=INFO)
    figure = dict(zip(files, drawn, strict=True))["differences"]
    ax = figure.axes[0]
    (bars,) = ax.containers
    whiskers = [segment[:, 1].tolist() for segment in bars.lines[2][0].get_segments()]
    assert [[round(v, 6) for v in w] for w in whiskers] == [[-0.01, 0.03], [0.1, 0.3]]
    assert [t.get_text() for t in ax.texts] == ["*†"]
    assert ax.get_ylabel() == "method − max"


def test_summary_bars_show_the_seeds(tmp_path, drawn) -> None:
    report.render_figures(SEEDED_ROWS, tmp_path)
    from matplotlib.collections import PathCollection

    ax = drawn[0].axes[0]
    dots = [c for c in ax.collections if isinstance(c, PathCollection)]
    assert sum(len(c.get_offsets()) for c in dots) == 12  # 2 methods x 2 columns x 3 seeds


def test_report_info_caption() -> None:
    assert report.ReportInfo("cifar10", "resnet18", 1, (4,), n=100).caption() == (
        "cifar10 · resnet18 · 1 epoch · seed 4 · n = 100 test images")
    assert INFO.to_dict()["seeds"] == [0, 1, 2]


def test_figures_of_one_seed_say_so_beside_rows_over_seeds(results, tmp_path, drawn) -> None:
    one = report.ReportInfo("mnist5k", "simple_cnn", 3, (0,), n=500, protocol="aps")
    kinds = report.render_figures(SEEDED_ROWS, tmp_path, results, info=INFO, results_info=one)
    titles = {kind: fig.get_suptitle() for kind, fig in zip(kinds, drawn, strict=True)}
    assert "seeds 0, 1, 2" in titles["summary"] and "seeds 0, 1, 2" in titles["differences"]
    for kind in ("msb_layers", "consistency_map", "accuracy_vs_offset"):
        assert "· seed 0 · n = 500 test images ·" in titles[kind], kind
