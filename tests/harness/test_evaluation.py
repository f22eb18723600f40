"""evaluate_model: the model in eval mode, in float32 whatever autocast the caller holds."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from shiftpool.harness.evaluation import evaluate_model
from shiftpool.models import create_model


class _Watched(nn.Module):
    """A small CNN that records how it is run, and raises when run in train mode."""

    def __init__(self) -> None:
        super().__init__()
        self.net = create_model("simple_cnn", channels=(4,), in_channels=1)
        self.seen: set[tuple[torch.dtype, torch.dtype, bool]] = set()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training:
            raise AssertionError("evaluated in train mode")
        logits = self.net(x)
        self.seen.add((x.dtype, logits.dtype, torch.is_autocast_enabled("cpu")))
        return logits


def test_runs_the_model_in_eval_mode_and_restores_its_mode(tiny_config) -> None:
    model = _Watched().train()
    result = evaluate_model(model, tiny_config, metrics=["accuracy", "consistency"])
    assert result.n == 50
    assert model.training and model.net.training


def test_evaluates_in_float32_inside_a_callers_autocast(tiny_config) -> None:
    model = _Watched()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        evaluate_model(model, tiny_config, metrics=["accuracy"])
        assert torch.is_autocast_enabled("cpu")  # the caller's context is left as it was
    assert model.seen == {(torch.float32, torch.float32, False)}


def test_a_half_precision_model_is_evaluated_in_float32(tiny_config) -> None:
    model = _Watched().to(torch.bfloat16)
    evaluate_model(model, tiny_config, metrics=["accuracy"])
    assert model.seen == {(torch.float32, torch.float32, False)}
    assert {p.dtype for p in model.parameters()} == {torch.float32}


def test_metrics_and_protocol_from_the_config_or_the_call(tiny_config) -> None:
    model = _Watched()
    assert set(evaluate_model(model, tiny_config).summary()) == {"acc", "c_cons", "c_fid"}
    chosen = evaluate_model(model, tiny_config, metrics=["consistency"], protocol="tips")
    assert set(chosen.summary()) == {"s_cons", "c_cons"}
    with pytest.raises(ValueError, match="unknown protocol 'nosuch'"):
        evaluate_model(model, tiny_config, protocol="nosuch")


def test_one_protocol_name_gives_the_numbers_of_metrics_evaluate(tiny_config) -> None:
    """The harness adds nothing to the protocol: evaluate() on the same batches agrees image by
    image, the fill included (tips fills zero shifts with the mean colour, 0 after
    normalisation)."""
    from shiftpool.metrics import evaluate
    from shiftpool.train import inputs
    from shiftpool.train.runtime import Runtime

    torch.manual_seed(0)
    model = create_model("simple_cnn", channels=(4, 8), in_channels=1)
    harness = evaluate_model(model, tiny_config, protocol="tips", per_image=True)
    test_set = inputs.subset(inputs.load_split(tiny_config, "test"), 50, tiny_config.seed)
    loader = inputs.eval_loader(test_set, tiny_config, Runtime(torch.device("cpu")),
                                sharded=False)
    direct = evaluate(model, loader, protocol="tips", seed=tiny_config.seed, per_image=True,
                      progress=False)
    assert harness.summary() == direct.summary()
    assert harness.fill == direct.fill == 0.0
    assert harness.to_dict(per_image=True)["per_image"] == direct.to_dict(per_image=True)[
        "per_image"]
    assert harness.details == direct.details
    assert harness.details["fill"] == "0 in normalised space (the data set's mean colour)"
    # black is a choice the protocol names, resolved from the test set's statistics
    black = evaluate_model(model, tiny_config, protocol="tips", fill="black")
    (mean,), (std,) = test_set.mean, test_set.std
    assert black.fill == (-mean / std,)
    assert black.details["fill"].startswith("black (-mean / std = ")
