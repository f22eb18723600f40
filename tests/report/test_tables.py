"""Result tables: Markdown, CSV and JSON, written atomically."""

from __future__ import annotations

import csv
import json
import math

import pytest

from shiftpool.report import csv_text, format_value, markdown_table, write_results

ROWS = [
    {"method": "max", "acc": 0.91234, "c_cons": 0.9, "params": 1200},
    {"method": "aps", "acc": 0.9, "c_cons": 1.0, "msb": {"value": 0.25, "low": 0.2, "high": 0.3}},
]


def test_markdown_table() -> None:
    lines = markdown_table(ROWS).splitlines()
    assert lines[0] == "| method | acc | c_cons | params | msb |"
    assert lines[1] == "|---|---|---|---|---|"
    assert lines[2] == "| max | 0.9123 | 0.9000 | 1200 |  |"
    assert lines[3] == "| aps | 0.9000 | 1.0000 |  | 0.2500 [0.2000, 0.3000] |"


def test_cells() -> None:
    assert format_value(math.nan) == "nan"
    assert format_value(True) == "True"
    assert format_value({"value": 0.5, "low": None, "high": None}) == "0.5000"
    assert format_value([1, 2]) == "[1, 2]"
    assert markdown_table([{"a|b": "x|y"}]).splitlines()[2] == "| x\\|y |"


def test_csv_spreads_intervals_over_columns() -> None:
    parsed = list(csv.DictReader(csv_text(ROWS).splitlines()))
    assert list(parsed[0]) == ["method", "acc", "c_cons", "params", "msb", "msb_low", "msb_high"]
    assert parsed[1]["msb_low"] == "0.2" and parsed[0]["msb"] == ""


def test_write_results(tmp_path) -> None:
    rows = [*ROWS, {"method": "lps", "acc": math.nan}]
    files = write_results(rows, tmp_path / "out", stem="cmp")
    assert sorted(files) == ["csv", "json", "md"]
    assert files["md"].name == "cmp.md"
    data = json.loads(files["json"].read_text())
    assert data[0] == ROWS[0] and data[2]["acc"] is None
    assert files["md"].read_text() == markdown_table(rows) + "\n"
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["cmp.csv", "cmp.json",
                                                                    "cmp.md"]


def test_no_rows_is_an_error(tmp_path) -> None:
    with pytest.raises(ValueError, match="no rows"):
        write_results([], tmp_path)
    with pytest.raises(ValueError, match="no rows"):
        markdown_table([])
