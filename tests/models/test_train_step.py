"""Every model builds with every operator and trains one step on CPU."""

from __future__ import annotations

import pytest
import torch

from shiftpool.downsample import list_downsamples
from shiftpool.models import create_model, list_models

# Small widths and inputs keep the 126 combinations fast; the ImageNet stem needs 32 px.
SMALL = {"width": 0.125}
OPTIONS = {name: SMALL for name in list_models("classification")
           if name.startswith(("resnet", "vgg"))}
OPTIONS["simple_cnn"] = {"channels": (4, 8)}
SIZE = {"resnet18": 32, "resnet34": 32, "resnet50": 32}


@pytest.mark.parametrize("downsample", [None, *list_downsamples()])
@pytest.mark.parametrize("name", list_models("classification"))
def test_one_training_step(name, downsample):
    torch.manual_seed(0)
    net = create_model(name, downsample=downsample, num_classes=3, **OPTIONS[name])
    size = SIZE.get(name, 16)
    x, y = torch.randn(2, 3, size, size), torch.tensor([0, 2])
    head = net.fc if hasattr(net, "fc") else net.classifier
    before = head.weight.detach().clone()
    optimizer = torch.optim.SGD(net.parameters(), lr=0.1)
    loss = torch.nn.functional.cross_entropy(net(x), y)
    loss.backward()
    assert torch.isfinite(loss)
    missing = [k for k, p in net.named_parameters() if p.grad is None]
    assert not missing, f"no gradient reached {missing}"
    assert all(torch.isfinite(p.grad).all() for p in net.parameters())
    optimizer.step()
    assert not torch.equal(head.weight, before)
