"""The name → object table behind the operator and model registries."""

import pytest

from shiftpool._registry import Registry


def test_add_get_and_sorted_names():
    table = Registry("widget")
    table.add("b", 2)
    table.add("a", 1)
    assert table.names() == ["a", "b"]
    assert table.get("b") == 2


def test_adding_the_same_item_twice_is_allowed_but_not_another_under_the_name():
    table = Registry("widget")
    item = object()
    table.add("x", item)
    assert table.add("x", item) is item
    with pytest.raises(ValueError, match="a widget named 'x' is already registered"):
        table.add("x", object())


def test_unknown_name_lists_the_valid_ones():
    table = Registry("widget")
    table.add("a", 1)
    with pytest.raises(ValueError, match=r"unknown widget 'z'; available: a"):
        table.get("z")
    with pytest.raises(ValueError, match="unknown widget"):
        table.get(["not", "hashable"])
