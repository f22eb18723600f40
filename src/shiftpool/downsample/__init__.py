"""Downsampling operators behind one size contract.

Every operator maps ``(N, C, H, W)`` to ``(N, C, ceil(H / sh), ceil(W / sw))``. Build one by
name with :func:`create_downsample`; :func:`list_downsamples` names them all.
"""

from shiftpool.downsample import blur, polyphase, pool, s3pool, tips  # noqa: F401  (registers)
from shiftpool.downsample.base import Downsample, check_input
from shiftpool.downsample.blur import (
    BlurDownsample,
    MaxBlurDownsample,
    binomial_filter,
    blur_downsample,
    maxblur_downsample,
)
from shiftpool.downsample.polyphase import (
    APS,
    LPS,
    PhaseFollower,
    PhaseSelector,
    set_lps_temperature,
)
from shiftpool.downsample.pool import (
    AvgDownsample,
    MaxDownsample,
    Subsample,
    avg_downsample,
    max_downsample,
    subsample,
)
from shiftpool.downsample.registry import (
    check_downsample_options,
    create_downsample,
    downsample_class,
    downsample_options,
    list_downsamples,
    register_downsample,
)
from shiftpool.downsample.s3pool import S3Pool
from shiftpool.downsample.tips import TIPS, TipsObjective, has_tips, tips_losses

__all__ = [
    "APS",
    "LPS",
    "TIPS",
    "AvgDownsample",
    "BlurDownsample",
    "Downsample",
    "MaxBlurDownsample",
    "MaxDownsample",
    "PhaseFollower",
    "PhaseSelector",
    "S3Pool",
    "Subsample",
    "TipsObjective",
    "avg_downsample",
    "binomial_filter",
    "blur_downsample",
    "check_downsample_options",
    "check_input",
    "create_downsample",
    "downsample_class",
    "downsample_options",
    "has_tips",
    "list_downsamples",
    "max_downsample",
    "maxblur_downsample",
    "register_downsample",
    "set_lps_temperature",
    "subsample",
    "tips_losses",
]
