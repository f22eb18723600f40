"""The robustness cost benchmark: what it records, and what it refuses before timing."""

from __future__ import annotations

import json

import pytest

from shiftpool.benchmarks import robustness as bench
from shiftpool.core.errors import InputError

TINY = ["--batch", "2", "--attack-batch", "2", "--steps", "2", "--corruptions",
        "contrast,gaussian_noise", "--severities", "1,5", "--warmup", "0", "--rounds", "3"]


def test_records_overhead_shares_and_throughput(tmp_path) -> None:
    out = tmp_path / "out"
    assert bench.main([*TINY, "--out", str(out)]) == 0
    results = json.loads((out / "robustness.json").read_text())
    assert results["meta"]["clock"] == "cpu" and results["meta"]["threads"] == 1
    assert set(results["meta"]["load_average"]) == {"before", "after"}
    attack = results["attack"]
    assert [(r["attack"], r["norm"]) for r in attack] == [("pgd-2", "linf"), ("pgd-2", "l2")]
    for r in attack:
        q1, q3 = r["ratio_iqr"]
        assert q1 <= r["ratio"] <= q3 and r["target"] == bench.ATTACK_TARGET
        assert r["target_ok"] == (r["ratio"] <= bench.ATTACK_TARGET)
    corruption = results["corruptions"]
    assert [(r["corruption"], r["severity"]) for r in corruption["rows"]] == [
        ("contrast", 1), ("contrast", 5), ("gaussian_noise", 1), ("gaussian_noise", 5)]
    for r in corruption["rows"]:
        assert 0 <= r["share_iqr"][0] <= r["share"] <= r["share_iqr"][1] <= 1
        assert r["images_per_s"] > 0
    assert 0 <= corruption["share"] <= 1
    assert corruption["target_ok"] == all(r["share"] <= 0.30 for r in corruption["rows"])
    text = (out / "robustness.md").read_text()
    assert "PGD-k against k forward+backward passes" in text and "| contrast | 5 |" in text


def test_one_part_alone(tmp_path) -> None:
    out = tmp_path / "out"
    assert bench.main([*TINY, "--no-attack", "--out", str(out)]) == 0
    assert "attack" not in json.loads((out / "robustness.json").read_text())


@pytest.mark.parametrize(("argv", "message"), [
    (["--steps", "0"], "--steps"),
    (["--batch", "0"], "--batch"),
    (["--severities", "6"], "severity must be one of 1, 2, 3, 4, 5"),
    (["--corruptions", "rain"], "unknown corruption 'rain'"),
    (["--threads", "2"], "use --threads 1"),
    (["--no-attack", "--no-corruptions"], "nothing to time"),
    (["--rounds", "0"], "--rounds"),
])
def test_bad_arguments_fail_before_timing(tmp_path, monkeypatch, argv, message) -> None:
    def refuse(*args, **kwargs):
        raise AssertionError("timed although an argument was bad")

    monkeypatch.setattr(bench, "time_attack", refuse)
    monkeypatch.setattr(bench, "time_corruptions", refuse)
    with pytest.raises(InputError, match=message):
        bench.main([*argv, "--out", str(tmp_path / "o")])
    assert not (tmp_path / "o").exists()


def test_the_command_line_picks_the_benchmark_by_name(monkeypatch) -> None:
    from shiftpool.benchmarks import downsample
    from shiftpool.cli.benchmark import run_benchmark

    called = []
    monkeypatch.setattr(bench, "main", lambda argv: called.append(("robustness", argv)) or 0)
    monkeypatch.setattr(downsample, "main", lambda argv: called.append(("downsample", argv)))
    run_benchmark(["robustness", "--quick"])
    run_benchmark(["--", "robustness", "--", "--quick"])
    run_benchmark(["--", "--quick"])
    run_benchmark(["downsample", "--op", "blur"])
    assert called == [("robustness", ["--quick"]), ("robustness", ["--quick"]),
                      ("downsample", ["--quick"]), ("downsample", ["--op", "blur"])]
