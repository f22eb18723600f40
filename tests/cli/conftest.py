"""Shared helpers of the command-line tests: a real (untrained) checkpoint, in-process runs,
and a guard that fails a test as soon as a command starts real work."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

import shiftpool.benchmarks.downsample as bench
import shiftpool.data as sdata
import shiftpool.harness.comparison as hcompare
import shiftpool.harness.evaluation as hevaluation
import shiftpool.harness.export as hexport
import shiftpool.harness.homogeneity as hhomogeneity
import shiftpool.train as strain
from shiftpool.cli import main

# A narrow CNN for 1x28x28 digits: tiny to build, save and load.
CHANNELS = [4, 8, 8]


def make_checkpoint(path: Path, **config_changes: object) -> Path:
    """Save an untrained ``simple_cnn`` checkpoint for ``mnist5k`` at ``path`` the way training
    saves one (through ``save_checkpoint``, so it carries whatever integrity data that adds)."""
    import torch

    from shiftpool.models import create_model
    from shiftpool.train import TrainConfig, model_signature
    from shiftpool.train.checkpoint import save_checkpoint

    config = TrainConfig(model="simple_cnn", model_options={"channels": CHANNELS},
                         dataset="mnist5k", device="cpu", amp="off", progress=False,
                         tensorboard=False, **config_changes)
    torch.manual_seed(0)
    model = create_model("simple_cnn", downsample=config.downsample, num_classes=10,
                         in_channels=1, channels=CHANNELS).eval()
    save_checkpoint(path, {
        "config": config.to_dict(),
        "model": model.state_dict(),
        "signature": model_signature(model),
        "model_args": {"num_classes": 10, "in_channels": 1, "input_size": [28, 28],
                       "dataset": "mnist5k"},
        "epoch": 1,
        "finished": True,
    })
    return path


@pytest.fixture(scope="session")
def checkpoint_factory() -> Callable[..., Path]:
    """:func:`make_checkpoint`, for tests that need a run with settings of their own."""
    return make_checkpoint


@pytest.fixture(scope="session")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An untrained but valid checkpoint (simple_cnn, max pooling, mnist5k)."""
    return make_checkpoint(tmp_path_factory.mktemp("checkpoint") / "last.pt")


@pytest.fixture
def run(capsys: pytest.CaptureFixture[str]) -> Callable[..., tuple[int, str, str]]:
    """``run(*argv) -> (exit status, stdout, stderr)`` of ``main`` in this process."""

    def call(*argv: str) -> tuple[int, str, str]:
        capsys.readouterr()
        status = main([str(a) for a in argv])
        out, err = capsys.readouterr()
        return status, out, err

    return call


def _work_started(what: str) -> Callable[..., None]:
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError(f"{what} started although the input was bad")

    return refuse


@pytest.fixture
def no_work(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """Make every entry point of real work fail the test (training, comparing, evaluating,
    exporting, loading data, timing); run in an empty folder. Returns that folder."""
    # compare() itself checks its inputs first (then locks, trains, evaluates): its training
    # and evaluation are what must not start
    for owner, name in ((strain, "train"), (hcompare, "train"), (hcompare, "evaluate_model"),
                        (hevaluation, "evaluate_model"), (hexport, "export_model"),
                        (hhomogeneity, "homogeneity_rows"), (sdata, "load_dataset"),
                        (bench, "run_benchmark")):
        monkeypatch.setattr(owner, name, _work_started(f"{owner.__name__}.{name}"))
    work = tmp_path / "cwd"
    work.mkdir()
    monkeypatch.chdir(work)
    return work
