"""The top-level ``shiftpool`` namespace."""

import importlib

import pytest
import torch

import shiftpool


def test_convert_stays_the_function_after_its_module_is_imported():
    importlib.import_module("shiftpool.convert")
    assert callable(shiftpool.convert)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, stride=2, padding=1))
    converted = shiftpool.convert(model, "blur")
    assert callable(shiftpool.convert)
    assert converted(torch.randn(1, 3, 8, 8)).shape == (1, 4, 4, 4)


@pytest.mark.parametrize("name", ["metrics", "data", "train", "report", "harness", "core"])
def test_subpackages_load_on_first_use(name):
    assert getattr(shiftpool, name).__name__ == f"shiftpool.{name}"


def test_unknown_attribute_is_an_attribute_error():
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        _ = shiftpool.nope
