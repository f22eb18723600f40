"""Result tables: Markdown, CSV and JSON, written atomically."""

from __future__ import annotations

import csv
import json
import math
import os
import stat

import pytest

from shiftpool.report import (
    csv_text,
    format_value,
    markdown_table,
    result_files,
    tables,
    write_results,
)

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


def test_column_digits_round_one_column_of_the_markdown_only(tmp_path) -> None:
    rows = [{"method": "max", "acc": 0.91234, "train_time_s": 234.62}]
    table = markdown_table(rows, column_digits={"train_time_s": 1})
    assert table.splitlines()[2] == "| max | 0.9123 | 234.6 |"
    files = write_results(rows, tmp_path, column_digits={"train_time_s": 1})
    assert "| 234.6 |" in files["md"].read_text()
    assert json.loads(files["json"].read_text())[0]["train_time_s"] == 234.62  # every digit kept
    assert "234.62" in files["csv"].read_text()


def test_result_files_are_the_written_files_without_writing(tmp_path) -> None:
    files = result_files(ROWS, tmp_path / "out")
    assert not (tmp_path / "out").exists()
    written = write_results(ROWS, tmp_path / "out")
    assert {k: f.path for k, f in files.items()} == written
    assert all(written[k].read_text() == f.content for k, f in files.items())


def test_results_get_the_usual_file_mode(tmp_path) -> None:
    old = os.umask(0o022)
    try:
        files = write_results(ROWS, tmp_path)
    finally:
        os.umask(old)
    assert {stat.S_IMODE(p.stat().st_mode) for p in files.values()} == {0o644}


def test_a_failed_write_keeps_the_earlier_set_whole(tmp_path, monkeypatch) -> None:
    first = write_results(ROWS, tmp_path)
    before = {k: p.read_text() for k, p in first.items()}
    # the Markdown table fails after JSON and CSV are drawn up: nothing is replaced
    monkeypatch.setattr(tables, "markdown_table", _fail)
    with pytest.raises(RuntimeError, match="planted"):
        write_results([{"method": "new", "acc": 0.1}], tmp_path)
    assert {k: p.read_text() for k, p in first.items()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["results.csv", "results.json",
                                                          "results.md"]


def _fail(*args, **kwargs):
    raise RuntimeError("planted failure")


def test_result_files_take_other_csv_rows_and_markdown(tmp_path) -> None:
    files = result_files(ROWS, tmp_path, csv_rows=[{"method": "max", "d_acc": -0.01}],
                         markdown="| a |\n|---|\n\nnotes\n\n")
    assert files["csv"].content == "method,d_acc\nmax,-0.01\n"
    assert files["md"].content == "| a |\n|---|\n\nnotes\n"
    assert json.loads(files["json"].content) == ROWS


def test_signed_cells_for_differences() -> None:
    assert format_value(-0.5, 2, signed=True) == "-0.50"
    assert format_value({"value": 0.0, "low": -0.1, "high": 0.1}, 1, signed=True) == (
        "+0.0 [-0.1, +0.1]")
