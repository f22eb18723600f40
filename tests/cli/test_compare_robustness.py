"""``shiftpool compare --metrics ...,adversarial,corruption,flip_rate --eps ...``: every
robustness flag and config key reaches ``compare`` (wiring by effect), and a flag without its
metric is refused."""

from __future__ import annotations

import pytest

import shiftpool.harness.comparison as hcompare
from shiftpool.cli import build_parser, main
from shiftpool.cli.compare import compare_run_settings
from shiftpool.metrics.adversarial import Attack
from shiftpool.metrics.robustness import RobustnessOptions

FLAGS = ["--eps", "1/255,8/255", "--eps-unit", "input", "--attack", "pgd", "--norm", "l2",
         "--steps", "3", "--step-size", "0.5", "--restarts", "2", "--no-random-start",
         "--eot", "2", "--corruptions", "noise,fog", "--severities", "5,1",
         "--perturbations", "translate", "--frames", "4", "--robustness-baseline", "blur"]
EXPECTED = RobustnessOptions(
    attack=Attack("pgd", "l2", steps=3, step_size=0.5, random_start=False, restarts=2, eot=2),
    eps=(1 / 255, 8 / 255), eps_unit="input", corruptions="noise,fog", severities=(1, 5),
    perturbations="translate", frames=4)


def _captured(monkeypatch, tmp_path, argv: list[str]) -> dict:
    seen: dict = {}

    def fake_compare(config, methods, out_dir, **kwargs):
        seen.update(kwargs, methods=methods)
        return hcompare.Comparison([])

    monkeypatch.setattr(hcompare, "compare", fake_compare)
    assert main(["compare", "--out-dir", str(tmp_path / "o"), *argv]) == 0
    return seen


def test_every_robustness_flag_reaches_compare(monkeypatch, tmp_path) -> None:
    seen = _captured(monkeypatch, tmp_path, ["--downsample", "max,blur", "--metrics",
                                             "accuracy,adversarial,corruption,flip_rate",
                                             *FLAGS])
    assert seen["metrics"] == ("accuracy", "adversarial", "corruption", "flip_rate")
    assert seen["robustness"] == EXPECTED
    assert seen["robustness_baseline"] == "blur"


def test_the_same_options_as_config_keys(monkeypatch, tmp_path) -> None:
    path = tmp_path / "cmp.yaml"
    path.write_text(
        "methods: [max, blur]\neval_metrics: [adversarial, corruption, flip_rate]\n"
        "eps: [1/255, 0.03137254901960784]\neps_unit: input\nattack: pgd\nnorm: l2\n"
        "steps: 3\nstep_size: 0.5\nrestarts: 2\nrandom_start: false\neot: 2\n"
        "corruptions: [noise, fog]\nseverities: [5, 1]\nperturbations: translate\n"
        "frames: 4\nrobustness_baseline: blur\n")
    seen = _captured(monkeypatch, tmp_path, ["--config", str(path)])
    assert seen["robustness"] == EXPECTED and seen["robustness_baseline"] == "blur"


def test_without_robustness_flags_compare_gets_none(monkeypatch, tmp_path) -> None:
    seen = _captured(monkeypatch, tmp_path, ["--downsample", "max"])
    assert seen["robustness"] is None and seen["metrics"] is None


@pytest.mark.parametrize("metrics", [None, "accuracy,consistency", "all"])
def test_a_robustness_flag_without_its_metric_is_refused(tmp_path, capsys, metrics) -> None:
    argv = ["compare", "--downsample", "max", "--out-dir", str(tmp_path / "o"), "--steps", "3"]
    if metrics:
        argv += ["--metrics", metrics]
    settings = build_parser().parse_args(argv)
    with pytest.raises(Exception, match="--steps given, but --metrics names none"):
        compare_run_settings(settings)
    assert main(argv) == 2 and not (tmp_path / "o").exists()
