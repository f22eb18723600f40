"""The operator benchmark against the references: what it records, and what it refuses."""

from __future__ import annotations

import json

import pytest

from shiftpool.benchmarks import downsample as bench
from shiftpool.benchmarks.references import ANCHORS_ENV
from shiftpool.core.errors import InputError

TINY = ["--shape", "2,4,8,8", "--only-extra-shapes", "--dtype", "fp32", "--warmup", "0",
        "--repeats", "2"]


def test_references_are_timed_in_the_same_rounds_and_missing_anchors_noted(tmp_path,
                                                                           monkeypatch):
    monkeypatch.setenv(ANCHORS_ENV, str(tmp_path / "no-anchors"))
    out = tmp_path / "out"
    assert bench.main([*TINY, "--op", "blur", "--op", "lps", "--out", str(out)]) == 0
    results = json.loads((out / "downsample.json").read_text())
    meta = results["meta"]
    assert meta["clock"] == "cpu" and meta["threads"] == 1
    assert meta["malloc"]["setting"] in ("fast", "preloaded", "unavailable")
    assert set(meta["load_average"]) == {"before", "after"}
    assert {row["op"] for row in results["rows"]} == {"max_pool2d", "blur", "lps"}
    assert any("official.LPS: skipped" in note for note in results["notes"])
    for row in results["references"]:
        assert row["op"] == "blur" and row["pass"] in ("fwd", "fwd_bwd")
        q1, q3 = row["ratio_iqr"]
        assert q1 <= row["ratio"] <= q3
    fastest = [r for r in results["references"] if r["reference"] == "fastest"]
    assert all(r["target"] == 1.0 and isinstance(r["target_ok"], bool) for r in fastest)
    text = (out / "downsample.md").read_text()
    assert "Clock: cpu" in text and "Load average" in text
    if results["references"]:
        assert "## Against the reference implementations" in text


def test_no_references_times_max_pool_only(tmp_path):
    out = tmp_path / "out"
    assert bench.main([*TINY, "--op", "aps", "--no-references", "--malloc", "default",
                       "--clock", "wall", "--threads", "1", "--out", str(out)]) == 0
    results = json.loads((out / "downsample.json").read_text())
    assert results["references"] == [] and results["meta"]["clock"] == "wall"


@pytest.mark.parametrize(("argv", "message"), [
    (["--threads", "2"], r"--clock cpu reads one thread's CPU time: use --threads 1"),
    (["--clock", "cpu", "--threads", "3"], r"use --threads 1 \(got 3\), or --clock wall"),
])
def test_cpu_clock_needs_one_thread(argv, message):
    with pytest.raises(InputError, match=message):
        bench.parse_args(argv)
