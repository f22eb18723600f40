"""Tests of the downsampler registry: names, construction by name and option checking."""

from __future__ import annotations

import inspect

import pytest
import torch

import shiftpool
from shiftpool.downsample import Downsample, registry
from shiftpool.downsample.registry import (
    create_downsample,
    downsample_class,
    downsample_options,
    list_downsamples,
    register_downsample,
)

OPERATORS = ("aps", "avg", "blur", "lps", "max", "maxblur", "s3pool", "subsample", "tips")


@pytest.fixture
def isolated_registry(monkeypatch):
    """A copy of the registry that the test may extend; the real one is restored afterwards."""
    monkeypatch.setattr(registry._OPERATORS, "_items", dict(registry._OPERATORS._items))


def test_every_operator_of_the_spec_is_registered_in_sorted_order():
    assert list_downsamples() == sorted(OPERATORS)


def test_package_exports_the_registry():
    assert shiftpool.create_downsample is create_downsample
    assert shiftpool.list_downsamples is list_downsamples


@pytest.mark.parametrize("name", list_downsamples())
def test_registered_class_is_a_downsample_named_as_registered(name):
    cls = downsample_class(name)
    assert issubclass(cls, Downsample)
    assert cls.name == name


@pytest.mark.parametrize("name", list_downsamples())
def test_every_class_takes_channels_and_stride_keywords(name):
    params = inspect.signature(downsample_class(name).__init__).parameters
    for keyword in ("channels", "stride"):
        assert keyword in params
        assert params[keyword].kind in (
            inspect.Parameter.KEYWORD_ONLY,
            inspect.Parameter.POSITIONAL_OR_KEYWORD,
        )


@pytest.mark.parametrize("name", list_downsamples())
def test_options_exclude_channels_and_stride_and_all_have_defaults(name):
    options = downsample_options(name)
    assert not {"self", "channels", "stride"} & set(options)
    params = inspect.signature(downsample_class(name).__init__).parameters
    for option in options:
        assert params[option].default is not inspect.Parameter.empty, option


@pytest.mark.parametrize("name", list_downsamples())
@pytest.mark.parametrize("stride", [2, (1, 3)])
def test_create_downsample_builds_the_registered_class(name, stride):
    module = create_downsample(name, channels=4, stride=stride)
    assert type(module) is downsample_class(name)
    assert module.stride == ((stride, stride) if isinstance(stride, int) else stride)
    assert module.channels == 4
    y = module.eval()(torch.randn(1, 4, 5, 6))
    assert y.shape == (1, 4, *module.output_size(5, 6))


@pytest.mark.parametrize("name", ["", "maxpool", "BLUR", "blurpool"])
def test_unknown_name_lists_the_valid_names(name):
    with pytest.raises(ValueError, match=rf"unknown downsampler '{name}'; available: ") as info:
        create_downsample(name, channels=4)
    assert ", ".join(list_downsamples()) in str(info.value)


def test_non_string_name_is_an_unknown_name():
    with pytest.raises(ValueError, match=r"unknown downsampler None"):
        downsample_class(None)


@pytest.mark.parametrize("name", list_downsamples())
def test_unknown_option_names_the_operator_and_lists_allowed_options(name):
    with pytest.raises(TypeError, match=rf"shiftpool\.{name}: unknown option\(s\) bogus") as info:
        create_downsample(name, channels=4, bogus=1)
    allowed = ", ".join(downsample_options(name)) or "none"
    assert str(info.value).endswith(f"allowed: {allowed}")


@pytest.mark.parametrize("name", list_downsamples())
def test_every_option_can_be_passed_by_name_with_its_default(name):
    params = inspect.signature(downsample_class(name).__init__).parameters
    defaults = {option: params[option].default for option in downsample_options(name)}
    module = create_downsample(name, channels=3, stride=2, **defaults)
    assert isinstance(module, Downsample)


def test_a_new_operator_registers_lists_and_builds(isolated_registry):
    @register_downsample
    class Identityish(Downsample):
        name = "every_other"

        def __init__(self, channels=None, stride=2, offset=0):
            super().__init__(stride=stride, channels=channels)
            self.offset = offset

        def forward(self, x):
            return x[..., :: self.stride[0], :: self.stride[1]]

    assert "every_other" in list_downsamples()
    assert downsample_options("every_other") == ["offset"]
    module = create_downsample("every_other", stride=3, offset=1)
    assert isinstance(module, Identityish) and module.offset == 1
    assert register_downsample(Identityish) is Identityish  # re-registering the same class is fine


def test_a_second_class_under_a_taken_name_is_refused(isolated_registry):
    class First(Downsample):
        name = "twin"

    class Second(Downsample):
        name = "twin"

    register_downsample(First)
    with pytest.raises(ValueError, match=r"downsampler named 'twin' is already registered"):
        register_downsample(Second)
    assert downsample_class("twin") is First
