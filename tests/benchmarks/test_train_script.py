"""``benchmarks/train.py``: the multiply-add count it reports beside each step ratio."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch
from torch import nn

SCRIPT = Path(__file__).parents[2] / "benchmarks" / "train.py"


@pytest.fixture(scope="module")
def script():
    spec = importlib.util.spec_from_file_location("benchmark_train_script", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("channels_last", [False, True])
def test_forward_macs_counts_convolutions_and_products_exactly(script, channels_last):
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                          nn.Conv2d(8, 4, 1), nn.Flatten(), nn.Linear(4 * 4 * 4, 10))
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    expected = 3 * 8 * 9 * 8 * 8 + 8 * 4 * 4 * 4 + 4 * 4 * 4 * 10
    assert script.forward_macs(model, 8) == expected


def test_markdown_reports_the_macs_ratio_of_each_row(script):
    row = {"setting": "fp32, contiguous", "operator": "lps", "ms": 2.0, "max_ms": 1.0,
           "ratio": 2.0, "ratio_iqr": [1.9, 2.1], "target": 1.5, "meets_target": False,
           "forward_macs": 456, "macs_ratio": 2.28}
    meta = {"threads": 1, "cores": 2, "batch_size": 8, "rounds": 1, "warmup_steps": 0,
            "clock": "cpu", "torch": "x", "date": "d", "quick": True,
            "malloc": {"detail": "glibc"}, "load_average": {"before": [], "after": []},
            "resnet18_batch_size": 2}
    text = script.markdown({"operators": [row], "meta": meta})
    assert "| MACs / max |" in text and "| **no** | 2.28 |" in text
