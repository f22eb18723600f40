"""Downsampling operators behind one size contract.

Every operator maps ``(N, C, H, W)`` to ``(N, C, ceil(H / sh), ceil(W / sw))``. Build one by
name with :func:`create_downsample`; :func:`list_downsamples` names them all.
"""

from shiftpool.downsample import blur, polyphase, pool, s3pool, tips  # noqa: F401  (registers)
from shiftpool.downsample.base import Downsample, check_input
from shiftpool.downsample.registry import (
    create_downsample,
    downsample_class,
    downsample_options,
    list_downsamples,
    register_downsample,
)

__all__ = [
    "Downsample",
    "check_input",
    "create_downsample",
    "downsample_class",
    "downsample_options",
    "list_downsamples",
    "register_downsample",
]
