"""``shiftpool study``: the plan without training, bad inputs refused before any work, and a
real smoke study end to end through the command line."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

pytestmark = pytest.mark.usefixtures("one_thread")

Run = Callable[..., tuple[int, str, str]]


def test_plan_prints_the_grid_without_training(run: Run, no_work: Path):
    status, out, err = run("study", "mouton", "--scale", "cpu", "--plan")
    assert status == 0, err
    lines = out.splitlines()
    assert lines[0] == "mouton at scale cpu: 27 arm(s) x 3 seed(s) = 81 run(s)"
    assert "  cifar10:k4s3: " in out and "kernel_invariance_cifar10" in out
    assert "scaled down: " in out
    status, out, _ = run("study", "tips", "--plan", "--seeds", "4,5")
    assert status == 0 and "7 arm(s) x 2 seed(s) = 14 run(s)" in out
    assert not any(no_work.iterdir())  # nothing written


@pytest.mark.parametrize(("argv", "named"), [
    (("study", "nosuch"), "nosuch"),
    (("study", "zhang", "--scale", "huge"), "huge"),
    (("study", "zhang", "--seeds", "0,0"), "seeds repeat"),
    (("study", "zhang", "--seeds", "0,-1"), "--seeds"),
    (("study", "zhang", "--seeds", "a"), "--seeds"),
    (("study", "zhang", "--num-threads", "0"), "--num-threads"),
    (("study", "zhang", "--data-dir", "/nonexistent/data"), "/nonexistent/data"),
    (("study", "zhang", "--device", "tpu"), "tpu"),
    (("study", "zhang", "--nosuch"), "--nosuch"),
    (("study",), "NAME"),
])
def test_bad_inputs_are_one_line_and_start_nothing(run: Run, no_work: Path,
                                                   argv: tuple[str, ...], named: str):
    status, out, err = run(*argv)
    assert status == 2, (out, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and named in lines[0] and "Traceback" not in err
    assert not any(no_work.iterdir())


def test_an_output_folder_under_a_file_is_refused_before_training(run: Run, no_work: Path):
    (no_work / "file").write_text("x")
    status, _, err = run("study", "zhang", "--out-dir", str(no_work / "file" / "study"))
    assert status == 2 and "--out-dir" in err


def test_smoke_study_through_the_command_line(run: Run, tmp_path: Path):
    root = os.environ.get("SHIFTPOOL_DATA")
    if not root or not (Path(root) / "cifar-10-batches-py").is_dir():
        pytest.skip(f"CIFAR-10 not found under SHIFTPOOL_DATA={root!r}")
    pytest.importorskip("matplotlib")
    out = tmp_path / "zhang"
    status, stdout, err = run("study", "zhang", "--out-dir", str(out), "--num-threads", "1",
                              "--device", "cpu", "--data-dir", root, "--no-figures")
    assert status == 0, err
    assert "blur_consistency:" in stdout and "5 run(s) trained, 0 reused" in stdout
    assert f"wrote report_html: {out / 'report.html'}" in stdout
    assert "[5/5] f7 seed 0: training" in err
    assert not (out / "figures").exists()  # --no-figures
