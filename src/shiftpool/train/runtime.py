"""Where and how a run executes: device, process group under ``torchrun``, mixed precision."""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from shiftpool.core.errors import InputError


@dataclass(frozen=True)
class Runtime:
    """The process's place in a (possibly distributed) run.

    Attributes:
        device: where the model and batches live.
        rank / world_size / local_rank: from ``torchrun``'s environment (0 / 1 / 0 alone).
        owns_group: True if :func:`setup_runtime` created the process group (and must end it).
    """

    device: torch.device
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    owns_group: bool = False

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Only the main process writes files and prints."""
        return self.rank == 0


def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    """``"auto"`` → ``cuda:<local_rank>`` when CUDA is available, else ``cpu``."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda":
        if not torch.cuda.is_available():
            raise InputError(
                "shiftpool.train: device 'cuda' requested but CUDA is not available; "
                "use --device cpu or auto"
            )
        return torch.device("cuda", local_rank)
    return torch.device(name)


def setup_runtime(device: str = "auto") -> Runtime:
    """Join the process group ``torchrun`` describes (gloo on CPU, nccl on CUDA), if any.

    Without ``WORLD_SIZE`` > 1 in the environment this is a single-process run.
    """
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    resolved = resolve_device(device, local_rank)
    if world_size <= 1:
        return Runtime(resolved)
    if resolved.type == "cuda":
        torch.cuda.set_device(resolved)
    owns = not dist.is_initialized()
    if owns:
        backend = "nccl" if resolved.type == "cuda" else "gloo"
        dist.init_process_group(backend=backend, rank=rank, world_size=world_size)
    return Runtime(resolved, rank, world_size, local_rank, owns)


#: Seconds :func:`teardown_runtime` leaves the GIL free after its barrier (see there).
TEARDOWN_SETTLE_S = 0.1


def teardown_runtime(runtime: Runtime) -> None:
    """End the process group if :func:`setup_runtime` started it.

    Every process first waits at a barrier: a process that tears its group down while another
    still has collective work in flight can abort the other's gloo threads at exit.

    Then it sleeps briefly, the GIL free, for gloo's worker thread. That thread frees each
    operation it has run itself, and a finished barrier still refers to the operations that
    were running when it was queued: on a rank that reaches the barrier straight from
    :func:`gather_objects`, its all-gather, whose tensors are Python objects and need the GIL
    to be freed. Left until the interpreter shuts down, taking the GIL ends that thread inside
    C++ code and aborts the process ("terminate called without an active exception": 2 runs in
    157 of a 3-process training under torchrun, after all work was saved; the core showed the
    thread freeing a barrier's all-gather during ``Py_FinalizeEx``). A second barrier does not
    avoid it (1 run in 132: it can be queued before the thread has let go of the first, and
    then refers to it). The thread needs microseconds; the wait bounds its chance of not
    being scheduled.
    """
    if runtime.owns_group and dist.is_initialized():
        dist.barrier()
        time.sleep(TEARDOWN_SETTLE_S)
        dist.destroy_process_group()


def barrier(runtime: Runtime) -> None:
    if runtime.distributed:
        dist.barrier()


def all_reduce_sum(runtime: Runtime, values: torch.Tensor) -> torch.Tensor:
    """Sum of ``values`` over the processes (``values`` itself when alone)."""
    if runtime.distributed:
        values = values.clone()
        dist.all_reduce(values)
    return values


def gather_objects(runtime: Runtime, obj: Any) -> list[Any]:
    """``[obj of rank 0, obj of rank 1, ...]`` on every process."""
    if not runtime.distributed:
        return [obj]
    gathered: list[Any] = [None] * runtime.world_size
    dist.all_gather_object(gathered, obj)
    return gathered


def broadcast_object(runtime: Runtime, obj: Any) -> Any:
    """Rank 0's ``obj`` on every process (so that all take the same decision)."""
    if not runtime.distributed:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def average_buffers(runtime: Runtime, model: nn.Module) -> None:
    """Make every process hold the same buffers: floating ones averaged (BatchNorm running
    statistics), the others taken from rank 0. So all ranks end an epoch with equal models."""
    if not runtime.distributed:
        return
    for buffer in model.buffers():
        if buffer.is_floating_point():
            dist.all_reduce(buffer)
            buffer.div_(runtime.world_size)
        else:
            dist.broadcast(buffer, src=0)


def cpu_supports_bf16() -> bool:
    """True where the CPU has native bf16 arithmetic (AVX512-BF16 or AMX), so bf16 pays off."""
    with contextlib.suppress(Exception):
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    return False


def resolve_amp(mode: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for ``mode`` on ``device``; ``None`` means full fp32.

    ``auto`` picks bf16 on CUDA devices that support it (else fp16) and on CPUs with native bf16;
    fp32 elsewhere.

    Example:
        >>> resolve_amp("off", torch.device("cpu")) is None
        True
    """
    if mode == "off":
        return None
    if mode == "bf16":
        return torch.bfloat16
    if mode == "fp16":
        return torch.float16
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.bfloat16 if device.type == "cpu" and cpu_supports_bf16() else None


def autocast(device: torch.device, dtype: torch.dtype | None) -> contextlib.AbstractContextManager:
    """``torch.autocast`` for ``dtype`` on ``device``, or a no-op for fp32."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=dtype)


def make_grad_scaler(device: torch.device, dtype: torch.dtype | None) -> torch.amp.GradScaler:
    """A gradient scaler, enabled only for fp16 (bf16 has fp32's range and needs none)."""
    return torch.amp.GradScaler(device.type, enabled=dtype is torch.float16)


def configure_determinism(deterministic: bool, device: torch.device) -> None:
    """Ask for deterministic kernels (exact resume on CPU; best effort on CUDA)."""
    if device.type == "cuda":
        torch.backends.cudnn.deterministic = deterministic
        torch.backends.cudnn.benchmark = not deterministic


@contextlib.contextmanager
def cpu_threads(count: int | None) -> Iterator[None]:
    """torch's CPU threads set to ``count`` inside the block (unchanged when None), and
    restored afterwards.

    Example:
        >>> before = torch.get_num_threads()
        >>> with cpu_threads(1):
        ...     torch.get_num_threads()
        1
        >>> torch.get_num_threads() == before
        True
    """
    before = torch.get_num_threads()
    if count is not None:
        torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(before)
