"""Translation-invariance metrics for any classifier and any iterable of (images, labels).

The entry point is :func:`evaluate`; SPEC §4 defines every metric. Where the papers' exact
definition could not be confirmed, the docs of the module say "our reading" (fidelity, MSB,
local homogeneity).

Example:
    >>> import torch
    >>> from torch import nn
    >>> net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
    ...                     nn.Linear(4, 10))
    >>> data = [(torch.randn(8, 3, 16, 16), torch.randint(0, 10, (8,)))]
    >>> result = evaluate(net, data, protocol="aps", progress=False)
    >>> sorted(result.summary())
    ['acc', 'c_cons', 'c_fid']
"""

from shiftpool.metrics.adversarial import Attack, RobustCurve, Space, fgsm, pgd, robust_accuracy
from shiftpool.metrics.consistency import DiagonalCurve, OffsetMap, Predictions, offset_grid
from shiftpool.metrics.corruptions import CORRUPTIONS, corrupt, corruption_errors
from shiftpool.metrics.evaluate import DEFAULT_METRICS, METRICS, evaluate
from shiftpool.metrics.homogeneity import (
    Homogeneity,
    dataset_homogeneity,
    homogeneity_probe,
    local_homogeneity,
)
from shiftpool.metrics.layers import (
    classifier_head,
    downsampling_layers,
    find_layer,
    layer_stride,
    sampled_map,
)
from shiftpool.metrics.msb import block_max, msb_per_image, msb_probe
from shiftpool.metrics.probe import LayerProbe
from shiftpool.metrics.protocols import (
    PROTOCOLS,
    Protocol,
    check_metrics,
    get_protocol,
    list_protocols,
    resolve_fill,
)
from shiftpool.metrics.result import MODE_PREFIX, EvaluationResult, PerImage
from shiftpool.metrics.robustness import ROBUSTNESS_METRICS, RobustnessOptions, RobustnessResult
from shiftpool.metrics.sensitivity import FeatureHook, SensitivityMap, cosine_similarity
from shiftpool.metrics.shifts import (
    SHIFT_MODES,
    OffsetStream,
    center_offset,
    draw_offsets,
    shift_images,
)
from shiftpool.metrics.stats import (
    Estimate,
    MeanMeter,
    ProportionMeter,
    mean_interval,
    t_quantile,
    wilson_interval,
)

__all__ = [
    "CORRUPTIONS",
    "DEFAULT_METRICS",
    "METRICS",
    "MODE_PREFIX",
    "PROTOCOLS",
    "ROBUSTNESS_METRICS",
    "SHIFT_MODES",
    "Attack",
    "DiagonalCurve",
    "Estimate",
    "EvaluationResult",
    "FeatureHook",
    "Homogeneity",
    "LayerProbe",
    "MeanMeter",
    "OffsetMap",
    "OffsetStream",
    "PerImage",
    "Predictions",
    "ProportionMeter",
    "Protocol",
    "RobustCurve",
    "RobustnessOptions",
    "RobustnessResult",
    "SensitivityMap",
    "Space",
    "block_max",
    "center_offset",
    "check_metrics",
    "classifier_head",
    "corrupt",
    "corruption_errors",
    "cosine_similarity",
    "dataset_homogeneity",
    "downsampling_layers",
    "draw_offsets",
    "evaluate",
    "fgsm",
    "find_layer",
    "get_protocol",
    "homogeneity_probe",
    "layer_stride",
    "list_protocols",
    "local_homogeneity",
    "mean_interval",
    "msb_per_image",
    "msb_probe",
    "offset_grid",
    "pgd",
    "resolve_fill",
    "robust_accuracy",
    "sampled_map",
    "shift_images",
    "t_quantile",
    "wilson_interval",
]
