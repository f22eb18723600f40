"""The harness: what the ``shiftpool`` command runs on top of the library.

It sits above :mod:`shiftpool.train` (the training loop) and :mod:`shiftpool.report` (tables and
figures): comparing methods (:func:`compare`; :func:`compare_segmentation` for the segmentation
task), evaluating trained models (:func:`evaluate_model`, :func:`evaluate_segmentation`,
:func:`evaluate_checkpoint`), the homogeneity of data sets
(:func:`homogeneity_rows`, one :class:`HomogeneityRow` per set) and exporting models
(:func:`export_model`, at an ONNX opset within :func:`onnx_opset_range`). Each checks its
arguments before any work starts.

Example:
    >>> from shiftpool.harness import compare
    >>> from shiftpool.train import TrainConfig
    >>> base = TrainConfig(model="simple_cnn", dataset="mnist5k", epochs=1)
    >>> compare(base, ["max", "blur"], "runs/compare").table  # doctest: +SKIP
"""

from shiftpool.harness.comparison import Comparison, MethodResult, compare
from shiftpool.harness.correlate import CorrelationReport, correlate
from shiftpool.harness.evaluation import (
    COMPARE_METRICS,
    evaluate_checkpoint,
    evaluate_model,
    evaluate_segmentation,
)
from shiftpool.harness.export import EXPORT_FORMATS, ExportResult, export_model, onnx_opset_range
from shiftpool.harness.homogeneity import HomogeneityRow, homogeneity_rows
from shiftpool.harness.segmentation import SegmentationComparison, compare_segmentation

__all__ = [
    "COMPARE_METRICS",
    "EXPORT_FORMATS",
    "Comparison",
    "CorrelationReport",
    "ExportResult",
    "HomogeneityRow",
    "MethodResult",
    "SegmentationComparison",
    "compare",
    "compare_segmentation",
    "correlate",
    "evaluate_checkpoint",
    "evaluate_model",
    "evaluate_segmentation",
    "export_model",
    "homogeneity_rows",
    "onnx_opset_range",
]
