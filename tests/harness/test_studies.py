"""Study presets: the decision rule on hand-made cells, every preset's plan at every scale, the
preset analyses on synthetic cells, and one preset (zhang, smoke scale) end to end on real
CIFAR-10 (reused on a second call, refused while its folder is locked)."""

from __future__ import annotations

import importlib.util
import json
import math
import os
from pathlib import Path

import pytest

from shiftpool.core.errors import InputError
from shiftpool.core.io import FolderLock, FolderLockedError
from shiftpool.harness.studies import (
    SCALES,
    Cell,
    Claim,
    Term,
    decide,
    get_study,
    list_studies,
    plan_study,
    pool_seeds,
    run_study,
)
from shiftpool.harness.studies import tips as tips_study
from shiftpool.harness.studies.framework import (
    INCONCLUSIVE,
    NOT_REPRODUCED,
    REPRODUCED,
    contrast,
)
from shiftpool.harness.studies.plan import StudyContext
from shiftpool.metrics import Estimate

pytestmark = pytest.mark.usefixtures("one_thread")


def _cell(arm: str, seed: int, **values: float) -> Cell:
    """A cell whose estimates have a +-0.01 interval (se ~ 0.0051)."""
    return Cell(arm, seed, {k: Estimate(v, v - 0.01, v + 0.01, 1000, "wilson")
                            for k, v in values.items()})


def _pair_claim(direction: int = 1) -> Claim:
    return Claim("k", "b above a", "m", (Term("b"), Term("a", -1.0)), direction)


# -- the decision rule ------------------------------------------------------------------------


def test_pool_seeds_is_t_over_seeds_with_a_test_sampling_floor():
    spread = pool_seeds({0: (0.10, 0.001), 1: (0.14, 0.001), 2: (0.12, 0.001)})
    # sd 0.02 over 3 seeds: t(2) = 4.303, se = 0.02 / sqrt(3)
    assert spread.value == pytest.approx(0.12)
    assert spread.high - spread.value == pytest.approx(4.3027 * 0.02 / math.sqrt(3), rel=1e-3)
    # seeds that agree exactly: the test-sampling error is the floor, not a zero width
    agree = pool_seeds({0: (0.1, 0.01), 1: (0.1, 0.01)})
    assert agree.high - agree.value == pytest.approx(12.706 * math.sqrt(2 * 0.01**2) / 2,
                                                     rel=1e-3)
    one = pool_seeds({3: (0.1, 0.01)})
    assert one.method == "test sampling (one seed)" and one.seeds == (3,)
    assert one.high - one.value == pytest.approx(1.96 * 0.01, rel=1e-3)


@pytest.mark.parametrize(("b_values", "direction", "outcome"), [
    ((0.80, 0.81, 0.79), 1, REPRODUCED),        # well above a, as claimed
    ((0.80, 0.81, 0.79), -1, NOT_REPRODUCED),   # the paper claims the other side
    ((0.70, 0.76, 0.74), 1, INCONCLUSIVE),      # the interval straddles 0
])
def test_decide_by_the_side_of_zero_the_interval_lies_on(b_values, direction, outcome):
    cells = [_cell("a", s, m=v) for s, v in enumerate((0.73, 0.74, 0.72))]
    cells += [_cell("b", s, m=v) for s, v in enumerate(b_values)]
    verdict = decide(_pair_claim(direction), cells)
    assert verdict.outcome == outcome
    assert verdict.estimate is not None and verdict.estimate.seeds == (0, 1, 2)
    assert "3 seed(s)" in verdict.reason


def test_arms_are_paired_by_seed_and_a_missing_arm_is_inconclusive():
    cells = [_cell("a", 0, m=0.5), _cell("b", 0, m=0.9), _cell("b", 1, m=0.9)]
    estimate = contrast(_pair_claim(), cells)
    assert estimate is not None and estimate.seeds == (0,)  # seed 1 has no "a"
    verdict = decide(_pair_claim(), [_cell("b", 0, m=0.9)])
    assert verdict.outcome == INCONCLUSIVE and verdict.estimate is None


def test_a_contrast_of_four_arms_is_a_difference_of_differences():
    claim = Claim("x", "gain larger on c", "m", (Term("c4"), Term("c2", -1.0), Term("m4", -1.0),
                                                Term("m2")), 1)
    cells = [_cell(arm, 0, m=v) for arm, v in (("c4", 0.8), ("c2", 0.7), ("m4", 0.95),
                                               ("m2", 0.94))]
    estimate = contrast(claim, cells)
    assert estimate is not None and estimate.value == pytest.approx(0.09)
    assert claim.contrast_text() == "m[c4] - m[c2] - m[m4] + m[m2] > 0"


def test_exact_claims_need_every_run_exactly():
    claim = Claim("aps", "exact", "c_cons", (Term("aps"),), exact=1.0)
    exact = [_cell("aps", s, c_cons=1.0) for s in range(3)]
    assert decide(claim, exact).outcome == REPRODUCED
    one_off = [*exact[:2], _cell("aps", 2, c_cons=0.999)]
    verdict = decide(claim, one_off)
    assert verdict.outcome == NOT_REPRODUCED and "aps seed 2: 0.9990" in verdict.reason
    assert decide(claim, []).outcome == INCONCLUSIVE


def test_one_measured_quantity_keeps_its_own_asymmetric_interval():
    claim = Claim("r", "negative", "pearson", (Term("corr"),), -1)
    cell = Cell("corr", 0, {"pearson": Estimate(-0.6, -0.9, -0.05, 18, "bca")})
    verdict = decide(claim, [cell])
    assert verdict.outcome == REPRODUCED
    assert verdict.estimate is not None
    assert (verdict.estimate.low, verdict.estimate.high) == (-0.9, -0.05)


# -- presets ----------------------------------------------------------------------------------


@pytest.mark.parametrize("scale", SCALES)
@pytest.mark.parametrize("name", ["mouton", "s3pool", "tips", "zhang"])
def test_every_preset_plans_at_every_scale(name: str, scale: str):
    preset = get_study(name)
    plan = plan_study(preset, scale)  # builds every arm's model on the meta device
    arms = {arm.name for arm in plan.arms}
    assert len(arms) == len(plan.arms) and plan.seeds and plan.claims
    for claim in plan.claims:
        for term in claim.terms:  # an arm trained here, or a measurement of the analysis
            assert term.arm in arms or term.arm.startswith(("data:", "msb-")), term
    assert plan.scaled_down or scale == "paper"
    runs = plan.config(plan.arms[0], plan.seeds[0], "out")
    assert runs.out_dir == str(Path("out") / "runs" / plan.arms[0].name / f"seed{plan.seeds[0]}")


def test_arms_merge_model_options_into_the_base():
    plan = get_study("mouton").plan("cpu")
    config = plan.config(plan.arm("cifar10:k4s3"), 0, "out")
    assert config.model_options == {"channels": [16, 32, 64], "pool_kernel": 4, "pool_stride": 3}


def test_bad_study_inputs_are_one_line_errors(tmp_path: Path):
    assert list_studies() == ["mouton", "s3pool", "tips", "zhang"]
    with pytest.raises(InputError, match="unknown study 'nosuch'; available: mouton"):
        run_study("nosuch", out_dir=tmp_path)
    with pytest.raises(InputError, match="scale must be one of smoke, cpu, paper"):
        run_study("zhang", "huge", out_dir=tmp_path)
    with pytest.raises(InputError, match="seeds repeat"):
        run_study("zhang", seeds=[0, 0], out_dir=tmp_path)
    with pytest.raises(InputError, match="num_threads"):
        run_study("zhang", num_threads=0, out_dir=tmp_path)
    assert not any(tmp_path.iterdir())  # nothing written


def test_tips_analysis_correlates_msb_over_every_model(tmp_path: Path):
    plan = get_study("tips").plan("smoke")
    msb = {"max": 1.0, "blur": 0.6, "aps": 0.5, "lps": 0.45, "tips": 0.3, "tips-no-undo": 0.35,
           "tips-no-fm": 0.4}
    cells = [_cell(arm, seed, msb=m + 0.01 * seed, s_cons=0.95 - 0.3 * m + 0.005 * seed,
                   c_cons=1.0 - 0.2 * m, s_fid=0.5, c_fid=0.6 - 0.1 * m, acc=0.6 + 0.01 * seed)
             for arm, m in msb.items() for seed in range(2)]
    extras = tips_study.analyse(StudyContext(plan, cells, tmp_path, None, lambda _: None))
    assert [c.arm for c in extras.cells] == [tips_study.CORRELATION_ARM]
    claim = next(c for c in plan.claims if c.key == "msb_correlation")
    verdict = decide(claim, cells + extras.cells)
    assert verdict.outcome == REPRODUCED and verdict.estimate is not None
    assert verdict.estimate.value < -0.9
    # no run folders here: computed from the cells; a constant metric is reported, not correlated
    assert "computed from the cells" in extras.sections["MSB against shift invariance"]
    assert isinstance(extras.data["msb_correlations"]["s_fid"], str)


# -- end to end -------------------------------------------------------------------------------


@pytest.fixture
def cifar_root() -> str:
    root = os.environ.get("SHIFTPOOL_DATA")
    if not root or not (Path(root) / "cifar-10-batches-py").is_dir():
        pytest.skip(f"CIFAR-10 not found under SHIFTPOOL_DATA={root!r}")
    return root


def test_zhang_smoke_end_to_end_then_reused(tmp_path: Path, cifar_root: str):
    pytest.importorskip("matplotlib")
    out = tmp_path / "zhang"
    lines: list[str] = []
    result = run_study("zhang", "smoke", out_dir=out, num_threads=1, device="cpu",
                       data_dir=cifar_root, log=lines.append)
    assert (result.trained, result.reused) == (5, 0)
    assert [v.claim.key for v in result.verdicts] == [c.key for c in result.plan.claims]
    for name in ("report.md", "report.json", "report.html", "figures/verdicts.png",
                 "figures/accuracy_vs_consistency.png",
                 "figures/accuracy_vs_diagonal_shift.png"):
        assert (out / name).is_file(), name
    report = (out / "report.md").read_text()
    assert "wiring check" in report and "## What this scale changes from the paper" in report
    assert "| f1 | 1 |" in report and "crop_cons" in report
    data = json.loads((out / "report.json").read_text())
    assert {v["outcome"] for v in data["verdicts"]} <= {REPRODUCED, NOT_REPRODUCED, INCONCLUSIVE}
    assert len(data["cells"]) == 5 and data["decision_rule"]
    assert "data:image/png;base64," in (out / "report.html").read_text()

    again = run_study("zhang", "smoke", out_dir=out, num_threads=1, device="cpu",
                      data_dir=cifar_root, log=lines.append)
    assert (again.trained, again.reused) == (0, 5)
    assert [v.estimate for v in again.verdicts] == [v.estimate for v in result.verdicts]
    with FolderLock(out, "test"), pytest.raises(FolderLockedError):
        run_study("zhang", "smoke", out_dir=out, data_dir=cifar_root, log=lines.append)


def test_mouton_sensitivity_maps_are_measured_once_per_run(tiny_config, tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch):
    from shiftpool.harness.studies import mouton
    from shiftpool.train import train

    plan = get_study("mouton").plan("smoke")
    arm = mouton.arm_name("mnist", 2, 2)
    run_dir = tmp_path / "run"
    train(tiny_config)
    (run_dir / "cell.json").write_text('{"cell": 1}')
    cells = [Cell(arm, plan.seeds[0], {}, run_dir=str(run_dir)),
             Cell(arm, 99, {}, run_dir=str(run_dir)),  # not the first seed: no map
             Cell(mouton.arm_name("mnist", 3, 3), plan.seeds[0], {}, run_dir=str(run_dir))]
    context = StudyContext(plan, cells, tmp_path, None, lambda _: None)
    maps = mouton.sensitivity_maps(context)
    assert list(maps) == [arm]
    grid = maps[arm]["sensitivity"]["circular"]
    assert set(maps[arm]["sensitivity"]) == {"circular"} and grid["n"] == 16
    centre = grid["mean"][grid["dys"].index(0)][grid["dxs"].index(0)]
    assert centre == pytest.approx(1.0, abs=1e-5)  # the unshifted image's own features
    assert min(v for row in grid["mean"] for v in row) < 1.0 - 1e-3

    def no_evaluation(*args, **kwargs):
        raise AssertionError("measured again")

    monkeypatch.setattr(mouton.hevaluation, "evaluate_checkpoint", no_evaluation)
    assert mouton.sensitivity_maps(context) == maps  # kept in the run's folder
    (run_dir / "cell.json").write_text('{"cell": 2}')  # the run changed: measured again
    with pytest.raises(AssertionError, match="measured again"):
        mouton.sensitivity_maps(context)
    table = mouton._sensitivity_table(maps, context)
    assert f"| {arm} | {grid['overall']:.4f} | " in table and "16 test images" in table
    if importlib.util.find_spec("matplotlib"):
        assert mouton.sensitivity_map_png(maps).startswith(b"\x89PNG\r\n\x1a\n")


def test_a_saved_cell_survives_a_setting_added_since_at_its_default(tmp_path: Path):
    from shiftpool.core.io import atomic_write_json
    from shiftpool.harness.studies.runner import CELL_JSON, _cell_settings, _saved_cell

    plan = get_study("tips").plan("smoke")
    config = plan.config(plan.arm("tips"), 0, tmp_path)
    settings = _cell_settings(plan, config)
    cell = Cell("tips", 0, {"acc": Estimate(0.5, 0.4, 0.6, 100, "wilson")})
    old = {**settings, "config": {k: v for k, v in settings["config"].items()
                                  if k != "tips_fm_weight"}}  # saved before the field existed
    atomic_write_json(tmp_path / CELL_JSON, {"settings": old, "cell": cell.to_dict()})
    assert _saved_cell(tmp_path, settings) == cell
    changed = _cell_settings(plan, config.replace(tips_fm_weight=0.0))
    assert _saved_cell(tmp_path, changed) is None
