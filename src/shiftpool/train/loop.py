"""The training loop: ``train(config) -> TrainResult``.

One loop for one CPU, one GPU or ``torchrun`` processes. It checkpoints every epoch (and on
Ctrl-C/SIGTERM, at the end of the running step) so that a killed run resumes to exactly the
weights an uninterrupted run reaches: the loader of each epoch is rebuilt from ``(seed, epoch)``,
and the random states at the epoch's start and at the interruption are saved.

When resuming is exact (bitwise, on CPU with ``deterministic=True``; best effort on CUDA):

- one process, from any checkpoint (end of epoch, or mid-epoch after Ctrl-C/SIGTERM);
- ``torchrun`` with 2 processes, from any checkpoint (tested): a mid-epoch checkpoint also
  holds each rank's BatchNorm running statistics and partial epoch sums, which differ between
  ranks until the epoch's end averages them (without them BN statistics differed by 5e-3).
- ``torchrun`` with 3 or more processes: not bitwise, equal to about 1e-8. DDP lays out its
  gradient buckets again after the first step of each process group, so the first step after
  any resume all-reduces with another layout than the uninterrupted run, and 3 or more ranks'
  gradients then add in another order (2 add commutatively). DDP's
  ``find_unused_parameters=True`` skips that re-layout and was bit-identical with 3 processes,
  at the cost of a graph traversal per step; this loop does not use it.
- a mid-epoch checkpoint with another number of processes is refused (its shards and random
  streams cannot be replayed); an end-of-epoch checkpoint continues with any number: the
  learning-rate schedule is laid out again for the new steps per epoch and each rank draws
  fresh random streams, so the run is sound but not bit-identical to either process count.

A loss that is NaN or infinite stops the run with :class:`TrainingDiverged` (epoch and step
named, 1-based); the last checkpoint written is kept as it was. Each loss is read one step late
(one ``isfinite`` per step, in the all-reduce that agrees on Ctrl-C under DDP), so the device
never waits for it: callbacks may see that step's non-finite loss before the error. Weights
and optimizer state are checked for NaN before every save, so none is ever written.

Test accuracy during training is computed in fp32 (no autocast, even when training uses bf16
or fp16), like :func:`shiftpool.metrics.evaluate`: a checkpoint has one accuracy.

Every task runs through this one loop (``config.task``): what differs (loss, what a step
counts, the test metrics of an epoch) is a :class:`~shiftpool.train.tasks.Task`; the batches
come from :mod:`shiftpool.train.inputs`. A segmentation run trains with per-pixel cross-entropy
(label 255 ignored) and reports pixel accuracy (``train_acc``, ``test_acc``) and ``test_miou``.
"""

from __future__ import annotations

import signal
import threading
import time
import warnings
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

import shiftpool.downsample as sds
from shiftpool.core.errors import InputError, MissingFileError
from shiftpool.core.io import atomic_write_json
from shiftpool.train import checkpoint as ckpt
from shiftpool.train import inputs
from shiftpool.train.checkpoint import CheckpointError
from shiftpool.train.config import TrainConfig
from shiftpool.train.optim import build_optimizer, build_scheduler, lps_temperature
from shiftpool.train.runlog import RunLogger, progress
from shiftpool.train.runtime import (
    Runtime,
    all_reduce_sum,
    autocast,
    average_buffers,
    configure_determinism,
    gather_objects,
    make_grad_scaler,
    resolve_amp,
    setup_runtime,
    teardown_runtime,
)
from shiftpool.train.tasks import Task, make_task

RESULT_JSON = "result.json"
CONFIG_YAML = "config.yaml"


class TrainingInterrupted(KeyboardInterrupt):
    """Raised by :func:`train` after Ctrl-C once the checkpoint is saved.

    Attributes:
        checkpoint: the checkpoint to resume from (run :func:`train` again with the same config).
    """

    def __init__(self, checkpoint: Path | None) -> None:
        super().__init__(f"training interrupted; checkpoint saved to {checkpoint}")
        self.checkpoint = checkpoint


class TrainingDiverged(RuntimeError):
    """Raised by :func:`train` when the loss (or, at a checkpoint, a weight) is NaN or infinite.

    Nothing is saved after the failure: the last checkpoint written stays as it was.

    Attributes:
        checkpoint: the last good checkpoint of this run (resume from it with a lower ``lr``
            or a ``grad_clip``), or None when none was written yet.
        epoch / step: where it happened, 1-based (``step`` 0: at the end of the epoch).
    """

    def __init__(self, message: str, checkpoint: Path | None, epoch: int, step: int) -> None:
        super().__init__(message)
        self.checkpoint = checkpoint
        self.epoch = epoch
        self.step = step


@dataclass
class TrainResult:
    """What :func:`train` returns.

    Attributes:
        config: the run's configuration.
        out_dir: where its checkpoint, logs and ``result.json`` are.
        checkpoint: path of the final checkpoint (None on non-main processes).
        history: one dict per epoch (losses, accuracies, learning rate, time).
        test_acc: accuracy on the test split after the last epoch (pixel accuracy for
            segmentation).
        train_time_s: seconds spent in training steps, summed over resumed sessions.
        params: number of trainable parameters.
        num_threads: CPU threads torch used (intra-op) in this session.
        model: the trained model (unwrapped, eval mode).
        test_miou: mIoU on the test split after the last epoch (segmentation; else None).
    """

    config: TrainConfig
    out_dir: Path
    checkpoint: Path | None
    history: list[dict[str, Any]]
    test_acc: float | None
    train_time_s: float
    params: int
    num_threads: int
    model: nn.Module = field(repr=False, compare=False)
    test_miou: float | None = None

    def to_dict(self) -> dict[str, Any]:
        """Everything but the model, JSON-serialisable."""
        miou = {} if self.test_miou is None else {"test_miou": self.test_miou}
        return {
            "config": self.config.to_dict(),
            "out_dir": str(self.out_dir),
            "checkpoint": None if self.checkpoint is None else str(self.checkpoint),
            "history": self.history,
            "test_acc": self.test_acc,
            "train_time_s": self.train_time_s,
            "params": self.params,
            "num_threads": self.num_threads,
            **miou,
        }


@dataclass
class StepInfo:
    """Passed to callbacks: where the loop is (``epoch`` is 0-based)."""

    epoch: int
    step_in_epoch: int
    steps_per_epoch: int
    global_step: int
    loss: torch.Tensor
    model: nn.Module


class Callback:
    """Hooks into :func:`train`; override what you need. Raising ``KeyboardInterrupt`` in a
    hook stops the run like Ctrl-C (checkpoint, then :class:`TrainingInterrupted`)."""

    def on_step_end(self, info: StepInfo) -> None:
        """After each optimiser step."""

    def on_epoch_end(self, info: StepInfo, row: dict[str, Any]) -> None:
        """After each epoch's checkpoint is written."""


class _StopFlag:
    """Defers Ctrl-C (and SIGTERM) to the end of the running step, so the checkpoint holds a
    consistent state; a second Ctrl-C interrupts at once."""

    def __init__(self) -> None:
        self.requested = False
        self.forced = False
        self._previous: dict[int, Any] = {}

    def _handle(self, signum: int, frame: Any) -> None:
        if self.requested and signum == signal.SIGINT:
            self.forced = True
            raise KeyboardInterrupt
        self.requested = True

    def __enter__(self) -> _StopFlag:
        if threading.current_thread() is threading.main_thread():
            for signum in (signal.SIGINT, signal.SIGTERM):
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)


def _agree(runtime: Runtime, *flags: bool | torch.Tensor) -> list[bool]:
    """Each flag True on every process if it is set on any process (so that all stop at the
    same step); one all-reduce for all of them, none when alone."""
    if not runtime.distributed:
        return [bool(flag) for flag in flags]
    values = torch.stack([torch.as_tensor(flag, device=runtime.device).float().reshape(())
                          for flag in flags])
    return [bool(v) for v in (all_reduce_sum(runtime, values) > 0).tolist()]


@dataclass
class _Session:
    """The mutable state of one run, as a checkpoint stores it."""

    config: TrainConfig
    runtime: Runtime
    model: nn.Module
    model_args: dict[str, Any]
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    scaler: torch.amp.GradScaler
    loader: inputs.Loader
    steps_per_epoch: int
    task: Task
    epoch: int = 0
    step_in_epoch: int = 0
    global_step: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)
    train_time_s: float = 0.0
    partial: dict[str, float] = field(default_factory=dict)
    rng_epoch_start: list[Any] = field(default_factory=list)
    rng_resume: list[Any] | None = None  # random states of the interrupted process(es)
    last_checkpoint: Path | None = None  # the last good checkpoint of this run

    @property
    def out_dir(self) -> Path:
        return Path(self.config.out_dir)

    @property
    def checkpoint_path(self) -> Path:
        return self.out_dir / ckpt.LAST

    def state(self, *, finished: bool = False) -> dict[str, Any]:
        """The checkpoint payload; collective under DDP (gathers every rank's RNG)."""
        return {
            "config": self.config.to_dict(),
            "model_args": self.model_args,
            "signature": ckpt.model_signature(self.model),
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict() if self.scaler.is_enabled() else None,
            "epoch": self.epoch,
            "step_in_epoch": self.step_in_epoch,
            "loader": {"seed": self.loader.seed, "epoch": self.epoch,
                       "batches_done": self.step_in_epoch},
            "global_step": self.global_step,
            "rng": gather_objects(self.runtime, ckpt.rng_state()),
            "rng_epoch_start": self.rng_epoch_start,
            "history": self.history,
            "train_time_s": self.train_time_s,
            "partial": self.partial,
            "rank_state": self._rank_states(),
            "finished": finished,
            "world_size": self.runtime.world_size,
            "torch_version": str(torch.__version__),
        }

    def _rank_states(self) -> list[dict[str, Any]] | None:
        """Mid-epoch under DDP: every rank's buffers and partial sums (collective), which
        differ between ranks until the epoch's end averages them; else None."""
        if not self.runtime.distributed or self.step_in_epoch == 0:
            return None
        buffers = {name: b.detach().cpu().clone() for name, b in self.model.named_buffers()}
        return gather_objects(self.runtime, {"buffers": buffers, "partial": dict(self.partial)})

    def check_finite(self, step: int) -> None:
        """Raise :class:`TrainingDiverged` if a weight or optimizer state is NaN or infinite on
        any process (collective); called before each save, so that none holds them."""
        bad = _nonfinite_entry(self)
        if _agree(self.runtime, bad is not None)[0]:
            raise _diverged(self, f"{bad or 'a tensor on another process'} is not finite",
                            step=step)

    def save(self, *, finished: bool = False) -> Path | None:
        """Write the checkpoint (rank 0 writes; collective under DDP)."""
        payload = self.state(finished=finished)
        if self.runtime.is_main:
            ckpt.save_checkpoint(self.checkpoint_path, payload)
        self.last_checkpoint = self.checkpoint_path
        return self.checkpoint_path if self.runtime.is_main else None

    def restore(self, checkpoint: dict[str, Any]) -> None:
        self.model.load_state_dict(checkpoint["model"])
        self.optimizer.load_state_dict(checkpoint["optimizer"])
        self.scheduler.load_state_dict(checkpoint["scheduler"])
        if checkpoint.get("scaler") is not None:
            self.scaler.load_state_dict(checkpoint["scaler"])
        self.epoch = checkpoint["epoch"]
        self.step_in_epoch = checkpoint["step_in_epoch"]
        self.global_step = checkpoint["global_step"]
        self.history = list(checkpoint["history"])
        self.train_time_s = float(checkpoint["train_time_s"])
        self.partial = dict(checkpoint.get("partial") or {})
        self.rng_epoch_start = list(checkpoint["rng_epoch_start"])
        self.rng_resume = list(checkpoint["rng"])
        ranks = checkpoint.get("rank_state")
        if ranks is not None and len(ranks) == self.runtime.world_size:
            mine = ranks[self.runtime.rank]
            own = dict(self.model.named_buffers())
            for name, value in mine["buffers"].items():
                own[name].copy_(value)
            self.partial = dict(mine["partial"])


def _rank_state(states: Sequence[Any], rank: int) -> Any:
    return states[rank % len(states)]


def _nonfinite_entry(session: _Session) -> str | None:
    """The name of the first model or optimizer tensor holding a NaN or infinity, else None."""
    tensors = [(f"model {name}", t) for name, t in session.model.state_dict().items()]
    for state in session.optimizer.state.values():
        tensors += [(f"optimizer state {key}", t) for key, t in state.items()
                    if isinstance(t, torch.Tensor) and t.is_floating_point()]
    tensors = [(name, t) for name, t in tensors if t.is_floating_point()]
    if not tensors:
        return None
    finite = torch.stack([torch.isfinite(t).all() for _, t in tensors])
    if bool(finite.all()):
        return None
    return tensors[int((~finite).nonzero()[0])][0]


def _diverged(session: _Session, what: str, *, step: int) -> TrainingDiverged:
    """The error (and log line) of a run whose loss or state turned NaN or infinite."""
    config = session.config
    epoch = session.epoch + 1
    where = (f"epoch {epoch}/{config.epochs}, step {step}/{session.steps_per_epoch}" if step
             else f"the end of epoch {epoch}/{config.epochs}")
    kept = (f"the last good checkpoint {str(session.last_checkpoint)!r} is kept"
            if session.last_checkpoint is not None else "no checkpoint was written yet")
    message = (f"shiftpool.train: training diverged: {what} at {where}; {kept}; try a lower lr "
               f"(now {config.lr:g}) or a grad_clip")
    return TrainingDiverged(message, session.last_checkpoint, epoch, step)


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def _build_session(
    config: TrainConfig, runtime: Runtime, train_set: inputs.Dataset
) -> _Session:
    model_args = inputs.model_args(train_set)
    torch.manual_seed(config.seed)  # identical initial weights on every process
    model = ckpt.build_model(config, model_args)
    if config.channels_last:
        model = model.to(memory_format=torch.channels_last)
    model = model.to(runtime.device)
    loader = inputs.train_loader(train_set, config, runtime)
    steps = len(loader)
    if steps < 1:
        raise InputError(
            f"shiftpool.train: batch_size {config.batch_size} is larger than the training shard "
            f"({len(train_set)} images over {runtime.world_size} process(es))"
        )
    optimizer = build_optimizer(model, config)
    scheduler = build_scheduler(optimizer, config, steps)
    scaler = make_grad_scaler(runtime.device, resolve_amp(config.amp, runtime.device))
    task = make_task(config, int(model_args["num_classes"]))
    return _Session(config, runtime, model, model_args, optimizer, scheduler, scaler, loader, steps,
                    task)


def _resume(session: _Session, source: Path) -> bool:
    """Load ``source`` into ``session`` if it exists; True if it did.

    A mid-epoch checkpoint of another number of processes is refused; an end-of-epoch one
    continues with the schedule laid out for this run's steps per epoch and fresh random
    streams per rank (see the module docstring).
    """
    if not source.is_file():
        return False
    runtime = session.runtime
    checkpoint = ckpt.load_checkpoint(source, map_location=runtime.device)
    ckpt.check_compatible(checkpoint, session.model, str(source))
    ckpt.check_same_run(checkpoint, session.config, str(source))
    saved_world = int(checkpoint.get("world_size", 1))
    if saved_world != runtime.world_size and checkpoint["step_in_epoch"] > 0:
        raise CheckpointError(
            f"shiftpool.train: cannot resume {str(source)!r} with {runtime.world_size} "
            f"process(es): it was saved mid-epoch (epoch {checkpoint['epoch'] + 1}, after step "
            f"{checkpoint['step_in_epoch']}) by {saved_world} process(es), whose data shards "
            f"and random streams {runtime.world_size} cannot replay; resume it with "
            f"{saved_world} process(es), or from an end-of-epoch checkpoint (any number)"
        )
    session.restore(checkpoint)
    session.last_checkpoint = source
    if saved_world != runtime.world_size:
        # an end-of-epoch checkpoint: lay the schedule out for this run's steps per epoch
        session.scheduler = build_scheduler(session.optimizer, session.config,
                                            session.steps_per_epoch,
                                            start_step=session.epoch * session.steps_per_epoch)
        torch.manual_seed(inputs.process_seed(session.config.seed + session.epoch, runtime.rank))
        session.rng_epoch_start = gather_objects(runtime, ckpt.rng_state())
        session.rng_resume = None
    return True


def evaluate_accuracy(
    model: nn.Module, loader: Iterable[tuple[torch.Tensor, torch.Tensor]], runtime: Runtime
) -> tuple[float, float]:
    """``(mean cross-entropy, accuracy)`` of ``model`` over ``loader``, summed across processes.

    Always in fp32, in eval mode (the mode is restored): the same precision as
    :func:`shiftpool.metrics.evaluate`, whatever ``amp`` training used. Under ``torchrun`` each
    process passes its unpadded shard (:func:`shiftpool.train.inputs.eval_loader`), so every
    image counts once.

    Example:
        >>> net = nn.Sequential(nn.Flatten(), nn.Linear(4, 2))
        >>> batches = [(torch.zeros(3, 1, 2, 2), torch.zeros(3, dtype=torch.long))]
        >>> loss, acc = evaluate_accuracy(net, batches, Runtime(torch.device("cpu")))
        >>> 0.0 <= acc <= 1.0
        True
    """
    was_training = model.training
    model.eval()
    row = Task().evaluate(model, loader, runtime)
    model.train(was_training)
    return row["test_loss"], row["test_acc"]


def _epoch_batches(session: _Session, epoch: int) -> Iterator:
    """The batches of ``epoch`` still to run, with the random state a continuous run would have.

    On a resumed epoch the loader is replayed from the epoch's start and the batches already
    trained on are skipped; then the RNG state of the interruption is restored.
    """
    rank = session.runtime.rank
    if session.rng_resume is not None:
        ckpt.set_rng_state(_rank_state(session.rng_epoch_start, rank))
    session.loader.set_epoch(epoch)
    batches = iter(session.loader)
    for _ in range(session.step_in_epoch):
        next(batches)
    if session.rng_resume is not None:
        ckpt.set_rng_state(_rank_state(session.rng_resume, rank))
        session.rng_resume = None
    return batches


def _train_step(
    session: _Session, step_model: nn.Module, objective: sds.TipsObjective | None,
    criterion: nn.Module,
    images: torch.Tensor, labels: torch.Tensor, epoch: int, amp_dtype: torch.dtype | None,
) -> tuple[torch.Tensor, torch.Tensor, int | torch.Tensor]:
    """One optimiser step; returns the (detached) loss, the number of correct predictions and
    the number of units the loss averages over (images; labelled pixels for segmentation)."""
    config = session.config
    with autocast(session.runtime.device, amp_dtype):
        logits = step_model(images)
    loss = criterion(logits.float(), labels)
    if objective is not None:
        loss = objective(loss, session.model, epoch)
    session.optimizer.zero_grad(set_to_none=True)
    session.scaler.scale(loss).backward()
    if config.grad_clip is not None:
        session.scaler.unscale_(session.optimizer)
        nn.utils.clip_grad_norm_(session.model.parameters(), config.grad_clip)
    session.scaler.step(session.optimizer)
    session.scaler.update()
    session.scheduler.step()
    return loss.detach(), *session.task.batch_counts(logits, labels)


def _step_model(session: _Session) -> nn.Module:
    """The module the training step calls: DDP-wrapped under torchrun, compiled if asked."""
    model = session.model
    if session.runtime.distributed:
        device = session.runtime.device
        device_ids = [device.index] if device.type == "cuda" else None
        with warnings.catch_warnings():
            # newer torch deprecates broadcast_buffers (printed once per process); its named
            # successor, forward_sync_buffers=False, also broadcasts the buffers at start
            warnings.filterwarnings("ignore", message=".*broadcast_buffers", category=FutureWarning)
            model = nn.parallel.DistributedDataParallel(
                model, device_ids=device_ids, broadcast_buffers=False
            )
    if session.config.compile:
        model = torch.compile(model)
    return model


def _objective(session: _Session) -> sds.TipsObjective | None:
    """The TIPS objective when the model has TIPS layers, else None (plain cross-entropy)."""
    if not sds.has_tips(session.model):
        return None
    return sds.TipsObjective(
        alpha=session.config.tips_alpha,
        undo_start_epoch=session.config.tips_undo_start_epoch,
        fm_weight=session.config.tips_fm_weight,
    )


def _has_lps(model: nn.Module) -> bool:
    lps = sds.downsample_class("lps") if "lps" in sds.list_downsamples() else None
    return lps is not None and any(isinstance(m, lps) for m in model.modules())


def train(
    config: TrainConfig, *, resume: bool | str | Path = True, callbacks: Sequence[Callback] = ()
) -> TrainResult:
    """Train ``config.model`` with ``config.downsample`` on ``config.dataset``.

    Writes ``config.yaml``, ``last.pt`` (each epoch), ``log.csv`` and ``result.json`` into
    ``config.out_dir``. Under ``torchrun`` each process trains on its shard with DDP and only
    rank 0 writes.

    Args:
        config: the run.
        resume: True: continue from ``out_dir/last.pt`` if present (a finished run returns at
            once); False: start over; a path: continue from that checkpoint.
        callbacks: :class:`Callback` hooks.

    Returns:
        A :class:`TrainResult`.

    Raises:
        TrainingInterrupted: after Ctrl-C/SIGTERM, once the checkpoint is written.
        TrainingDiverged: the loss (or a weight) became NaN or infinite; nothing more is saved.
        CheckpointError: the checkpoint to resume from is corrupt, from another run, or
            mid-epoch from another number of processes.

    Example:
        >>> config = TrainConfig(model="simple_cnn", dataset="mnist", epochs=1)
        >>> result = train(config)  # doctest: +SKIP
        >>> result.test_acc  # doctest: +SKIP
        0.97
    """
    runtime = setup_runtime(config.device)
    threads = torch.get_num_threads()
    try:
        return _run(config, runtime, resume, callbacks)
    finally:
        torch.set_num_threads(threads)
        teardown_runtime(runtime)


def _run(config: TrainConfig, runtime: Runtime, resume: bool | str | Path,
         callbacks: Sequence[Callback]) -> TrainResult:
    if config.num_threads is not None:
        torch.set_num_threads(config.num_threads)
    num_threads = torch.get_num_threads()
    configure_determinism(config.deterministic, runtime.device)
    amp_dtype = resolve_amp(config.amp, runtime.device)
    train_set = inputs.subset(inputs.load_split(config, "train"), config.train_subset, config.seed)
    test_set = inputs.load_split(config, "test")
    session = _build_session(config, runtime, train_set)
    source = session.checkpoint_path if resume is True else Path(resume) if resume else None
    if source is not None and resume is not True and not source.is_file():
        raise MissingFileError(f"shiftpool.train: checkpoint {str(source)!r} not found")
    resumed = source is not None and _resume(session, source)
    if not resumed:
        # Each process draws its own randomness (S3Pool rows, Gumbel noise, TIPS shifts).
        torch.manual_seed(inputs.process_seed(config.seed, runtime.rank))
        session.rng_epoch_start = gather_objects(runtime, ckpt.rng_state())
    logger = RunLogger(session.out_dir, config.epochs, enabled=runtime.is_main,
                       tensorboard=config.tensorboard)
    if runtime.is_main:
        _write_config(config, session.out_dir)
        logger.message(f"training {config.model} with {config.downsample} on {config.dataset}: "
                       f"{runtime.device}, {runtime.world_size} process(es), {num_threads} CPU "
                       f"thread(s) each")
        if resumed:
            logger.message(f"resuming {source} at epoch {session.epoch + 1}, "
                           f"step {session.step_in_epoch}")
    test_loader = inputs.eval_loader(test_set, config, runtime)
    try:
        _loop(session, test_loader, amp_dtype, logger, callbacks)
    finally:
        logger.close()
    test_acc = next((r["test_acc"] for r in reversed(session.history)
                     if r.get("test_acc") is not None), None)
    test_miou = next((r["test_miou"] for r in reversed(session.history)
                      if r.get("test_miou") is not None), None)
    result = TrainResult(
        config=config,
        out_dir=session.out_dir,
        checkpoint=session.checkpoint_path if runtime.is_main else None,
        history=session.history,
        test_acc=test_acc,
        train_time_s=session.train_time_s,
        params=count_parameters(session.model),
        num_threads=num_threads,
        model=session.model.eval(),
        test_miou=test_miou,
    )
    if runtime.is_main:
        atomic_write_json(session.out_dir / RESULT_JSON, result.to_dict())
    return result


def _write_config(config: TrainConfig, out_dir: Path) -> None:
    """``config.yaml`` (``--config`` reads it back), or ``config.json`` without PyYAML."""
    try:
        config.to_yaml(out_dir / CONFIG_YAML)
    except ImportError:
        atomic_write_json(out_dir / "config.json", config.to_dict())


def _loop(session: _Session, test_loader: inputs.Loader, amp_dtype: torch.dtype | None,
          logger: RunLogger, callbacks: Sequence[Callback]) -> None:
    """Run the remaining epochs (none if the checkpoint was of a finished run)."""
    config = session.config
    if session.epoch >= config.epochs:
        return
    step_model = _step_model(session)
    objective = _objective(session)
    has_lps = _has_lps(session.model)
    criterion = session.task.criterion(config)
    with _StopFlag() as stop:
        try:
            while session.epoch < config.epochs:
                epoch = session.epoch
                if has_lps:
                    sds.set_lps_temperature(session.model, lps_temperature(config, epoch))
                session.model.train()
                row = _train_epoch(session, step_model, objective, criterion, amp_dtype, stop,
                                   callbacks)
                _finish_epoch(session, row, test_loader, logger)
                info = StepInfo(epoch, session.steps_per_epoch, session.steps_per_epoch,
                                session.global_step, torch.tensor(row["train_loss"]), session.model)
                for callback in callbacks:
                    callback.on_epoch_end(info, row)
        except KeyboardInterrupt:
            if stop.forced:  # a second Ctrl-C may have cut a step in half: keep the last save
                logger.message(f"interrupted twice: {session.checkpoint_path} holds the last epoch")
                raise
            session.check_finite(step=session.step_in_epoch)
            path = session.save()
            logger.message(f"interrupted: checkpoint saved to {path}; run again to resume")
            raise TrainingInterrupted(path) from None


def _train_epoch(session: _Session, step_model: nn.Module, objective: sds.TipsObjective | None,
                 criterion: nn.Module,
                 amp_dtype: torch.dtype | None, stop: _StopFlag,
                 callbacks: Sequence[Callback]) -> dict[str, Any]:
    """Train the rest of the current epoch; returns its statistics row."""
    config, runtime, epoch = session.config, session.runtime, session.epoch
    batches = _epoch_batches(session, epoch)
    device = runtime.device
    sums = torch.zeros(3, dtype=torch.float64, device=device)  # loss * units, correct, units
    partial = session.partial or {"loss_sum": 0.0, "correct": 0.0, "count": 0.0, "time_s": 0.0}
    count, elapsed = partial["count"], partial["time_s"]
    units = partial.get("units", count)  # what loss and accuracy average over (images, pixels)
    bar = progress(batches, total=session.steps_per_epoch, initial=session.step_in_epoch,
                   desc=f"epoch {epoch + 1}/{config.epochs}",
                   enabled=config.progress and runtime.is_main)
    start = time.perf_counter()
    unchecked: tuple[int, torch.Tensor] | None = None  # (1-based step, its loss)
    try:
        for images, labels in bar:
            loss, correct, n = _train_step(session, step_model, objective, criterion, images,
                                           labels, epoch, amp_dtype)
            # The previous step's loss is checked now, with this step already queued: the device
            # never waits for a loss to be read. Nothing is saved before a check of the weights.
            stop_requested = _check_loss(session, unchecked, stop.requested)
            unchecked = (session.step_in_epoch + 1, loss)
            sums[0] += loss.double() * n
            sums[1] += correct
            sums[2] += n
            count += labels.shape[0]
            session.step_in_epoch += 1
            session.global_step += 1
            info = StepInfo(epoch, session.step_in_epoch, session.steps_per_epoch,
                            session.global_step, loss, session.model)
            for callback in callbacks:
                callback.on_step_end(info)
            if stop_requested:
                raise KeyboardInterrupt
        _check_loss(session, unchecked, False)
    finally:
        elapsed += time.perf_counter() - start
        session.train_time_s += time.perf_counter() - start
        session.partial = {"loss_sum": partial["loss_sum"] + sums[0].item(),
                           "correct": partial["correct"] + sums[1].item(),
                           "count": count, "time_s": elapsed}
        if session.task.name != "classification":  # (units are images there)
            session.partial["units"] = units + sums[2].item()
    totals = all_reduce_sum(runtime, torch.tensor(
        [session.partial["loss_sum"], session.partial["correct"],
         session.partial.get("units", count), count], dtype=torch.float64, device=device))
    images_seen = max(1.0, totals[3].item())
    units_seen = max(1.0, totals[2].item())
    return {
        "epoch": epoch + 1,
        "train_loss": totals[0].item() / units_seen,
        "train_acc": totals[1].item() / units_seen,
        "lr": session.optimizer.param_groups[0]["lr"],
        "epoch_time_s": elapsed,
        "images_per_s": images_seen / max(elapsed, 1e-9),
        "num_threads": torch.get_num_threads(),
    }


def _check_loss(session: _Session, unchecked: tuple[int, torch.Tensor] | None,
                stop_requested: bool) -> bool:
    """Raise :class:`TrainingDiverged` if the ``(step, loss)`` is NaN or infinite on any process;
    else whether any process asks to stop. One all-reduce under DDP for both, none alone."""
    flag = ~torch.isfinite(unchecked[1]) if unchecked is not None else False
    nonfinite, stop_now = _agree(session.runtime, flag, stop_requested)
    if nonfinite and unchecked is not None:
        step, loss = unchecked
        what = (f"the loss is {loss.item()}" if not torch.isfinite(loss)
                else "the loss of another process is not finite")
        raise _diverged(session, what, step=step)
    return stop_now


def _finish_epoch(session: _Session, row: dict[str, Any], test_loader: inputs.Loader,
                  logger: RunLogger) -> None:
    """Sync buffers, evaluate if due, advance the epoch counter, checkpoint and log."""
    config = session.config
    average_buffers(session.runtime, session.model)
    session.check_finite(step=0)
    last = session.epoch + 1 == config.epochs
    due = config.eval_every > 0 and (last or (session.epoch + 1) % config.eval_every == 0)
    if due:  # in eval mode (restored after), fp32: no autocast here
        was_training = session.model.training
        session.model.eval()
        row.update(session.task.evaluate(session.model, test_loader, session.runtime))
        session.model.train(was_training)
    if _has_lps(session.model):
        row["lps_tau"] = lps_temperature(config, session.epoch)
    session.history.append(row)
    session.epoch += 1
    session.step_in_epoch = 0
    session.partial = {}
    session.rng_epoch_start = gather_objects(session.runtime, ckpt.rng_state())
    session.save(finished=session.epoch == config.epochs)
    logger.epoch(row, session.history)

