"""The one entry point: run a chosen set of metrics over a data set under a protocol.

Every batch goes through the model whole: the unshifted (reference) view once, then per shift
mode the two randomly shifted copies (consistency, fidelity), one copy per diagonal shift
``(d, d)`` (the diagonal curve) and one copy per grid offset (offset map, worst case,
sensitivity). Offsets are drawn per image: those of the ``i``-th image depend only on ``seed``,
the shift mode and ``i`` (:class:`~shiftpool.metrics.shifts.OffsetStream`), not on the batch
size or the model, so methods evaluated with one seed on the same images see the same shifts
(``per_image=True`` keeps each image's outcome for paired tests). A protocol with
``reference=True`` draws one offset per batch instead, as the papers' code does.

Cost in forward passes per batch: 1 (unshifted) + per mode 2 (consistency, fidelity) +
``D`` (diagonal, ``D`` shifts less the unshifted one, which is reused) + grid cells (offset map,
worst case, sensitivity). ``tips`` at 32×32 with the default metrics: 1 + 2 × (2 + 16) = 37; the
offset map adds 2 × 289.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from shiftpool.core.errors import InputError, InputTypeError
from shiftpool.metrics.consistency import (
    DiagonalMeter,
    OffsetMapMeter,
    Predictions,
    check_labels,
    offset_grid,
)
from shiftpool.metrics.homogeneity import (
    QUANTITIES,
    Homogeneity,
    homogeneity_probe,
    local_homogeneity,
)
from shiftpool.metrics.msb import msb_probe
from shiftpool.metrics.protocols import (
    DEFAULT_METRICS,
    METRICS,
    Protocol,
    ShiftGeometry,
    check_metrics,
    get_protocol,
    resolve_fill,
    resolve_geometry,
)
from shiftpool.metrics.result import EvaluationResult, PerImage
from shiftpool.metrics.robustness import (
    ROBUSTNESS_METRICS,
    RobustnessOptions,
    RobustnessRun,
    robustness_options,
)
from shiftpool.metrics.sensitivity import FeatureHook, SensitivityMeter
from shiftpool.metrics.shifts import OffsetStream, center_offset, draw_in_ranges, shift_images
from shiftpool.metrics.stats import MeanMeter, ProportionMeter

__all__ = ["DEFAULT_METRICS", "METRICS", "check_metrics", "evaluate"]

_NEEDS_REFERENCE = {"accuracy", "fidelity", "diagonal", "offset_map", "worst_case", "sensitivity",
                    "msb", "homogeneity"}
_NEEDS_PAIR = {"consistency", "fidelity"}
_NEEDS_GRID = {"offset_map", "worst_case", "sensitivity"}


def evaluate(
    model: nn.Module,
    batches: Iterable[tuple[Tensor, Tensor]],
    metrics: Iterable[str] | str | None = None,
    protocol: str | Protocol = "tips",
    device: str | torch.device | None = None,
    seed: int = 0,
    progress: bool = True,
    *,
    layer: str | nn.Module | None = None,
    per_image: bool = False,
    normalization: tuple[Sequence[float], Sequence[float]] | None = None,
    robustness: RobustnessOptions | None = None,
    attack: Any = None,
    eps: Any = None,
    eps_unit: str | None = None,
    corruptions: Any = None,
    severities: Any = None,
    perturbations: Any = None,
    frames: int | None = None,
    **overrides: Any,
) -> EvaluationResult:
    """Measure accuracy and translation invariance of a classifier.

    Args:
        model: maps ``(N, C, H, W)`` images to ``(N, classes)`` logits; run in eval mode
            without gradients, in the dtype of its parameters and under whatever autocast the
            caller holds (none: float32 for a float32 model). The train/eval mode of every
            submodule is restored afterwards, as the caller had it.
        batches: any iterable of ``(images (N, C, H, W), labels (N,))``; images are floating
            point, normalised as the model was trained (uint8 pixels are refused: their
            normalisation is not known here).
        metrics: names from :data:`METRICS`, or ``"all"``; default the protocol's
            (:data:`DEFAULT_METRICS` for the presets: accuracy, consistency, fidelity and the
            diagonal curve).
        protocol: a preset name (``zhang``, ``aps``, ``tips``) or a
            :class:`~shiftpool.metrics.protocols.Protocol`; it fixes every detail of the shifts
            (:meth:`~shiftpool.metrics.protocols.Protocol.describe`), so one name gives one
            number here and in ``shiftpool compare``.
        device: where the images go; default the model's device (the model must be there
            already: it is not moved).
        seed: seeds the per-image offsets (the same seed gives every model the same offsets
            for the same images in the same order).
        progress: show a progress bar (tqdm when installed, else plain lines on stderr).
        layer: the sensitivity layer (name or module; its output); default the input of the
            classifier head.
        per_image: keep each image's outcome (correct, consistent, faithful, its offsets) in
            ``result.per_image`` (:class:`~shiftpool.metrics.result.PerImage`), for paired
            tests between methods.
        normalization: the data's per-channel ``(mean, std)``; needed only by ``fill="black"``
            (the default ``"mean"`` fills with 0, the mean colour of normalised inputs).
        robustness, attack, eps, eps_unit, corruptions, severities, perturbations, frames:
            options of the robustness metrics ``adversarial``, ``corruption``, ``flip_rate``
            (asked for by name, not in ``"all"``): a
            :class:`~shiftpool.metrics.robustness.RobustnessOptions`, or its fields
            (:class:`~shiftpool.metrics.adversarial.Attack`, the ε grid as numbers or
            ``"1/255,8/255"``, ``"pixel"``/``"input"``, corruption names or groups, severities
            of 1..5, perturbation names, frames per sequence).
        **overrides: protocol fields, e.g. ``max_shift=3``.

    Returns:
        An :class:`~shiftpool.metrics.result.EvaluationResult`.

    Example:
        >>> net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        ...                     nn.Linear(4, 10))
        >>> data = [(torch.randn(8, 3, 16, 16), torch.randint(0, 10, (8,)))]
        >>> evaluate(net, data, protocol="aps", progress=False).summary().keys()
        dict_keys(['acc', 'c_cons', 'c_fid'])
    """
    protocol = get_protocol(protocol, **overrides)
    wanted = set(check_metrics(protocol.metrics if metrics is None else metrics))
    device = _check_device(model, device)
    run = _Run(model, protocol, wanted, device, seed, layer, per_image, normalization)
    options = robustness_options(robustness, attack, eps, eps_unit, corruptions=corruptions,
                                 severities=severities, perturbations=perturbations,
                                 frames=frames)
    run.robustness = RobustnessRun.create(wanted, options, normalization, per_image)
    start = time.perf_counter()
    with _eval_mode(model), torch.no_grad(), ExitStack() as stack:
        run.enter(stack)
        for images, labels in _with_progress(batches, progress):
            run.batch(images, labels)
    return run.result(time.perf_counter() - start)


@contextmanager
def _eval_mode(model: nn.Module) -> Iterator[None]:
    """``model`` in eval mode inside the block; afterwards every submodule has its own mode back
    (a model in train mode with, say, frozen BatchNorm layers keeps them frozen)."""
    modes = [(module, module.training) for module in model.modules()]
    model.eval()
    try:
        yield
    finally:
        for module, training in modes:  # parents first: each train() call sets its subtree
            module.train(training)


class _Run:
    """State of one evaluation: meters, hooks and the resolved geometry."""

    def __init__(
        self, model: nn.Module, protocol: Protocol, wanted: set[str], device: torch.device,
        seed: int, layer: str | nn.Module | None, per_image: bool = False,
        normalization: tuple[Sequence[float], Sequence[float]] | None = None,
    ) -> None:
        self.model, self.protocol, self.wanted, self.device = model, protocol, wanted, device
        self.seed, self.normalization = seed, normalization
        self.dtype = _model_dtype(model)
        self.streams: dict[str, OffsetStream] = {}
        self.batch_generator = torch.Generator().manual_seed(seed)  # reference=True only
        self.fill: float | tuple[float, ...] | None = None
        self.diagonals: dict[str, DiagonalMeter] = {}
        self.outcomes: _Outcomes | None = _Outcomes() if per_image else None
        self.geometry: ShiftGeometry | None = None
        self.n = 0
        self.nan_logits: Tensor | int = 0
        self.forward_passes = 0
        self.images_forwarded = 0
        self.accuracy = ProportionMeter()
        self.consistency = {m: ProportionMeter() for m in protocol.shifts}
        self.fidelity = {m: ProportionMeter() for m in protocol.shifts}
        self.maps: dict[str, OffsetMapMeter] = {}
        self.sensitivity: dict[str, SensitivityMeter] = {}
        self.input_homogeneity = {q: MeanMeter() for q in QUANTITIES}
        self._labels_checked = False
        self.robustness: RobustnessRun | None = None
        self._reference_features: Tensor | None = None
        self.features = FeatureHook(model, layer) if "sensitivity" in wanted else None
        self.msb = msb_probe(model, protocol.msb_rtol) if "msb" in wanted else None
        self.layer_homogeneity = (
            homogeneity_probe(model, protocol.homogeneity_eps) if "homogeneity" in wanted else None
        )

    def enter(self, stack: ExitStack) -> None:
        for hook in (self.features, self.msb, self.layer_homogeneity):
            if hook is not None:
                stack.enter_context(hook)

    # -- one batch ---------------------------------------------------------------------------

    def batch(self, images: Tensor, labels: Tensor) -> None:
        images = _check_images(images)
        n = images.shape[0]
        if n == 0:
            return
        geometry = self._geometry(images)
        x = images.to(self.device, dtype=self.dtype)
        y = labels.to(self.device) if isinstance(labels, Tensor) else labels
        self._labels_checked = False
        reference = None
        if self.outcomes is not None:
            self.outcomes.add("labels", y)
        if self.wanted & _NEEDS_REFERENCE:
            reference = self._reference_pass(x, y, geometry)
        for mode in self.protocol.shifts:
            if self.wanted & _NEEDS_PAIR:
                self._pair_pass(x, y, mode, geometry, reference)
            if "diagonal" in self.wanted:
                self._diagonal_pass(x, y, mode, geometry, reference)
            if self.wanted & _NEEDS_GRID:
                self._grid_pass(x, y, mode, geometry, reference)
        if self.robustness is not None:
            self.robustness.batch(self.model, x, y)
        self.n += n

    def _reference_pass(self, x: Tensor, y: Tensor, geometry: ShiftGeometry) -> Predictions:
        view = self._reference_view(x, geometry)
        with ExitStack() as stack:
            for probe in (self.msb, self.layer_homogeneity):
                if probe is not None:
                    stack.enter_context(probe.recording())
            predictions = self._predict(view, y)
        correct = predictions.correct(y)
        self.accuracy.update(correct)
        if self.outcomes is not None:
            self.outcomes.add("correct", correct)
        self._reference_features = self.features.take() if self.features is not None else None
        if "homogeneity" in self.wanted:
            k = self.protocol.homogeneity_window
            values = local_homogeneity(view, k, self.protocol.homogeneity_eps)
            for q, v in zip(QUANTITIES, values, strict=True):
                self.input_homogeneity[q].update(v)
        return predictions

    def _pair_pass(
        self, x: Tensor, y: Tensor, mode: str, geometry: ShiftGeometry,
        reference: Predictions | None,
    ) -> None:
        offsets = self._pair_offsets(mode, geometry, x.shape[0])
        fill = self.fill
        first, second = (
            self._predict(shift_images(x, offsets[:, view], mode, geometry.crop_size, fill), y)
            for view in (0, 1)
        )
        consistent = first.agree(second)
        self.consistency[mode].update(consistent)
        if self.outcomes is not None:
            self.outcomes.add(f"offsets.{mode}", offsets)
            self.outcomes.add(f"consistent.{mode}", consistent)
        if reference is not None:
            faithful = reference.agree(first, second) & reference.correct(y)
            self.fidelity[mode].update(faithful)
            if self.outcomes is not None:
                self.outcomes.add(f"faithful.{mode}", faithful)

    def _pair_offsets(self, mode: str, geometry: ShiftGeometry, n: int) -> Tensor:
        """``(n, 2, 2)`` offsets of the next ``n`` images: ``[image, view, (dy, dx)]``; with
        ``reference=True``, one draw per view shared by the batch (in the order the papers'
        code draws them: per mode, the first view, then the second)."""
        ranges = geometry.ranges[mode]
        if self.protocol.reference:
            views = [draw_in_ranges(1, ranges, self.batch_generator) for _ in range(2)]
            return torch.stack(views, dim=1).expand(n, 2, 2)
        if mode not in self.streams:
            self.streams[mode] = OffsetStream(self.seed, f"pair/{mode}", ranges)
        return self.streams[mode].take(n)

    def _diagonal_pass(
        self, x: Tensor, y: Tensor, mode: str, geometry: ShiftGeometry, reference: Predictions
    ) -> None:
        shifts = geometry.diagonal[mode]
        ref = self._reference_offset(mode, geometry)
        if mode not in self.diagonals:
            self.diagonals[mode] = DiagonalMeter(mode, shifts, ref)
        points = [
            reference if (d, d) == ref else self._predict(
                shift_images(x, torch.tensor((d, d)), mode, geometry.crop_size, self.fill), y
            )
            for d in shifts
        ]
        correct, agree = self.diagonals[mode].update(points, reference, y)
        if self.outcomes is not None:
            self.outcomes.add(f"diagonal_correct.{mode}", correct)
            self.outcomes.add(f"diagonal_agree.{mode}", agree)

    def _grid_pass(
        self, x: Tensor, y: Tensor, mode: str, geometry: ShiftGeometry, reference: Predictions
    ) -> None:
        dys, dxs = offset_grid(geometry.grid_max_shift, geometry.grid_step, mode == "crop")
        if mode not in self.maps:
            ref = self._reference_offset(mode, geometry)
            self.maps[mode] = OffsetMapMeter(mode, dys, dxs, ref)
            if self.features is not None:
                self.sensitivity[mode] = SensitivityMeter(mode, self.features, dys, dxs, ref)
        cells = []
        for cell, offset in enumerate((dy, dx) for dy in dys for dx in dxs):
            shifted = shift_images(x, torch.tensor(offset), mode, geometry.crop_size, self.fill)
            cells.append(self._predict(shifted, y))
            if mode in self.sensitivity:
                self.sensitivity[mode].update(cell, self._reference_features, self.features.take())
        self.maps[mode].update(cells, reference, y)

    def _predict(self, images: Tensor, labels: Tensor) -> Predictions:
        n = images.shape[0]
        logits = self.model(images)
        predictions = Predictions.from_logits(logits, n)
        if not self._labels_checked:
            check_labels(labels, n, logits.shape[1])
            self._labels_checked = True
        self.forward_passes += 1
        self.images_forwarded += n
        self.nan_logits = self.nan_logits + predictions.invalid_count
        return predictions

    # -- geometry ----------------------------------------------------------------------------

    def _geometry(self, images: Tensor) -> ShiftGeometry:
        size = (images.shape[-2], images.shape[-1])
        if self.geometry is None:
            self.geometry = resolve_geometry(self.protocol, size)
            self.fill = resolve_fill(self.protocol.fill, images.shape[1], self.normalization)
        elif self.geometry.image_size != size:
            raise InputError(
                "shiftpool.metrics.evaluate: every batch must hold images of one size; "
                f"got {size} after {self.geometry.image_size}"
            )
        return self.geometry

    def _reference_offset(self, mode: str, geometry: ShiftGeometry) -> tuple[int, int]:
        if mode == "crop" and geometry.crop_size is not None:
            return center_offset(geometry.image_size, geometry.crop_size)
        return (0, 0)

    def _reference_view(self, x: Tensor, geometry: ShiftGeometry) -> Tensor:
        """The unshifted image: ``x`` itself, or its centre crop for the ``crop`` protocol."""
        if geometry.crop_size is None:
            return x
        corner = torch.tensor(self._reference_offset("crop", geometry))
        return shift_images(x, corner, "crop", geometry.crop_size)

    # -- result ------------------------------------------------------------------------------

    def result(self, seconds: float) -> EvaluationResult:
        if self.n == 0:
            raise InputError("shiftpool.metrics.evaluate: the data set is empty (no images)")
        c = self.protocol.confidence
        geometry = self.geometry
        result = EvaluationResult(
            protocol=self.protocol,
            metrics=tuple(m for m in (*METRICS, *ROBUSTNESS_METRICS) if m in self.wanted),
            seed=self.seed,
            n=self.n,
            image_size=geometry.image_size,
            max_shift=geometry.max_shift,
            crop_size=geometry.crop_size,
            fill=self.fill,
            offsets=dict(geometry.ranges),
            details=self.protocol.describe(geometry.image_size, self.normalization),
            nan_logits=int(self.nan_logits),
            forward_passes=self.forward_passes,
            images_forwarded=self.images_forwarded,
            seconds=seconds,
        )
        if self.accuracy.n:
            result.accuracy = self.accuracy.estimate(c)
        if "consistency" in self.wanted:
            result.consistency = {m: v.estimate(c) for m, v in self.consistency.items()}
        if "fidelity" in self.wanted:
            result.fidelity = {m: v.estimate(c) for m, v in self.fidelity.items()}
        result.diagonal = {m: v.result(c) for m, v in self.diagonals.items()}
        if "offset_map" in self.wanted:
            result.offset_maps = {m: v.result() for m, v in self.maps.items()}
        if "worst_case" in self.wanted:
            result.worst_case = {m: v.worst_case_estimate(c) for m, v in self.maps.items()}
        result.sensitivity = {m: v.result(c) for m, v in self.sensitivity.items()}
        if self.msb is not None:
            result.msb = {k: v["msb"] for k, v in self.msb.estimates(c).items()}
        if self.layer_homogeneity is not None:
            k = self.protocol.homogeneity_window
            result.homogeneity = Homogeneity(
                *(self.input_homogeneity[q].estimate(c) for q in QUANTITIES),
                window=(k, k) if isinstance(k, int) else tuple(k),
                eps=self.protocol.homogeneity_eps,
            )
            result.layer_homogeneity = self.layer_homogeneity.estimates(c)
            result.skipped_layers = sorted(self.layer_homogeneity.skipped)
        if self.robustness is not None:
            result.robustness = self.robustness.result(c)
        if self.outcomes is not None:
            diagonal = geometry.diagonal if "diagonal" in self.wanted else {}
            result.per_image = self.outcomes.result(diagonal)
            if self.robustness is not None:
                for name, value in self.robustness.per_image().items():
                    setattr(result.per_image, name, value)
        return result


class _Outcomes:
    """Per-image outcomes gathered batch by batch (on the CPU), joined at the end."""

    def __init__(self) -> None:
        self.parts: dict[str, list[Tensor]] = {}

    def add(self, key: str, values: Tensor) -> None:
        self.parts.setdefault(key, []).append(values.detach().cpu())

    def result(self, diagonal: dict[str, list[int]]) -> PerImage:
        joined = {k: torch.cat(v).numpy() for k, v in self.parts.items()}
        tables: dict[str, dict[str, np.ndarray]] = {
            "consistent": {}, "faithful": {}, "offsets": {}, "diagonal_correct": {},
            "diagonal_agree": {},
        }
        for key, value in joined.items():
            if "." in key:
                name, mode = key.split(".", 1)
                tables[name][mode] = _small_ints(value) if name == "offsets" else value
        return PerImage(labels=joined["labels"].astype(np.int64), correct=joined.get("correct"),
                        diagonal={k: list(v) for k, v in diagonal.items()}, **tables)


def _small_ints(values: np.ndarray) -> np.ndarray:
    """``values`` as int8 where they fit (they compress better), else int16."""
    fits = values.size == 0 or int(np.abs(values).max()) <= 127
    return values.astype(np.int8 if fits else np.int16)


def _check_images(images: Any) -> Tensor:
    if not isinstance(images, Tensor) or images.dim() != 4:
        shape = tuple(images.shape) if isinstance(images, Tensor) else type(images).__name__
        raise InputError(
            f"shiftpool.metrics.evaluate: each batch must be (images (N, C, H, W), labels (N,)), "
            f"got images {shape}"
        )
    if not images.is_floating_point():
        kind = str(images.dtype).removeprefix("torch.")
        raise InputTypeError(
            f"shiftpool.metrics.evaluate: images are {kind}; convert them to float and normalise "
            "them as the model was trained (e.g. images.float() / 255, then the data set's mean "
            "and std)"
        )
    return images


def _check_device(model: nn.Module, device: str | torch.device | None) -> torch.device:
    """The device to run on: ``device``, else the model's; the model must already be there."""
    model_device = next((t.device for t in (*model.parameters(), *model.buffers())), None)
    if device is None:
        return model_device or torch.device("cpu")
    device = torch.device(device)
    if model_device is not None and model_device.type != device.type:
        raise InputError(
            f"shiftpool.metrics.evaluate: the model is on {model_device} but device={device} "
            "was asked for; move the model there first (model.to(device))"
        )
    return device


def _model_dtype(model: nn.Module) -> torch.dtype | None:
    for tensor in model.parameters():
        if tensor.is_floating_point():
            return tensor.dtype
    return None


def _with_progress(batches: Iterable[Any], enabled: bool) -> Iterator[tuple[Tensor, Tensor]]:
    """Yield ``(images, labels)`` pairs, with a progress bar when ``enabled``."""
    total = len(batches) if hasattr(batches, "__len__") else None  # type: ignore[arg-type]
    bar = _progress_bar(total) if enabled else None
    for i, batch in enumerate(batches, start=1):
        if not isinstance(batch, (tuple, list)) or len(batch) != 2:
            raise InputError(
                "shiftpool.metrics.evaluate: each batch must be a pair (images, labels), got "
                f"{type(batch).__name__}" + (f" of length {len(batch)}" if hasattr(batch, "__len__")
                                              else "")
            )
        yield batch[0], batch[1]
        if bar is not None:
            bar(i)
    if bar is not None:
        bar(None)


def _progress_bar(total: int | None):
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return _plain_progress(total)
    bar = tqdm(total=total, desc="evaluate", unit="batch", leave=False)

    def update(i: int | None) -> None:
        if i is None:
            bar.close()
        else:
            bar.update(1)

    return update


def _plain_progress(total: int | None):
    every = max(1, (total or 100) // 10)

    def update(i: int | None) -> None:
        if i is not None and (i % every == 0 or i == total):
            of = f"/{total}" if total else ""
            print(f"evaluate: {i}{of} batches", file=sys.stderr, flush=True)

    return update
