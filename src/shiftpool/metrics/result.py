"""The result of :func:`shiftpool.metrics.evaluate`: every estimate, JSON-ready, and a summary;
and, when asked for, the outcome of every image (:class:`PerImage`) for paired tests."""

from __future__ import annotations

import io
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from shiftpool.core.errors import InputError
from shiftpool.core.io import atomic_write, atomic_write_json
from shiftpool.core.jsonable import finite_or_none
from shiftpool.metrics.consistency import DiagonalCurve, OffsetMap
from shiftpool.metrics.homogeneity import Homogeneity
from shiftpool.metrics.protocols import Protocol
from shiftpool.metrics.robustness import RobustnessResult
from shiftpool.metrics.sensitivity import SensitivityMap
from shiftpool.metrics.stats import Estimate

# Short names of the shift modes in summary keys; "s" (standard) and "c" as in the TIPS paper.
MODE_PREFIX: dict[str, str] = {"zero": "s", "circular": "c", "reflect": "r", "crop": "crop"}


@dataclass
class PerImage:
    """What happened to each test image, in loader order (index ``i``: the ``i``-th image the
    batches yielded), for paired comparisons of methods over the same images.

    Two evaluations with the same seed over the same images in the same order draw the same
    offsets for every image whatever the model and the batch size
    (:class:`~shiftpool.metrics.shifts.OffsetStream`); :meth:`check_paired` verifies it.

    Attributes:
        labels: ``(N,)`` int64, the true classes.
        correct: ``(N,)`` bool, ``ŷ(x) = y`` on the unshifted view (the centre crop for
            ``crop``); ``None`` when no metric needed the unshifted view.
        consistent: ``{mode: (N,) bool}``, ``ŷ(T_δ1 x) = ŷ(T_δ2 x)`` (with ``consistency``).
        faithful: ``{mode: (N,) bool}``, ``ŷ(x) = ŷ(T_δ1 x) = ŷ(T_δ2 x) = y`` (with
            ``fidelity``).
        offsets: ``{mode: (N, 2, 2) int8}`` (int16 beyond ±127), ``[image, view, (dy, dx)]``:
            the offsets δ1, δ2 each image was shifted by.
        diagonal: ``{mode: list of d}``, the diagonal shifts ``δ = (d, d)`` measured.
        diagonal_correct, diagonal_agree: ``{mode: (N, D) bool}``, correct and agreeing with
            ``ŷ(x)`` at each diagonal shift (with ``diagonal``).
        robust_eps, robust: the ε grid and ``(N, E)`` bool, correct under the attack at each
            ε (and every smaller one: as the robust accuracy counts it; with ``adversarial``).
        corruption_names, corruption_severities, corrupted: ``(N, C, S)`` bool, correct under
            each corruption and severity (with ``corruption``).
        flip_perturbations, flipped: ``(N, P)`` float32, the fraction of each image's frame
            pairs whose prediction flipped, per perturbation (with ``flip_rate``).

    Example:
        >>> outcomes = PerImage(labels=np.array([0, 1]), correct=np.array([True, False]))
        >>> outcomes.n, outcomes.to_dict()["correct"]
        (2, [True, False])
    """

    labels: np.ndarray
    correct: np.ndarray | None = None
    consistent: dict[str, np.ndarray] = field(default_factory=dict)
    faithful: dict[str, np.ndarray] = field(default_factory=dict)
    offsets: dict[str, np.ndarray] = field(default_factory=dict)
    diagonal: dict[str, list[int]] = field(default_factory=dict)
    diagonal_correct: dict[str, np.ndarray] = field(default_factory=dict)
    diagonal_agree: dict[str, np.ndarray] = field(default_factory=dict)
    robust_eps: list[float] = field(default_factory=list)
    robust: np.ndarray | None = None
    corruption_names: list[str] = field(default_factory=list)
    corruption_severities: list[int] = field(default_factory=list)
    corrupted: np.ndarray | None = None
    flip_perturbations: list[str] = field(default_factory=list)
    flipped: np.ndarray | None = None

    _ROBUST = ("robust", "corrupted", "flipped")
    _TABLES = ("consistent", "faithful", "offsets", "diagonal_correct", "diagonal_agree")

    @property
    def n(self) -> int:
        """The number of images."""
        return int(self.labels.shape[0])

    def to_dict(self) -> dict[str, Any]:
        """Plain lists (JSON-ready); large: prefer :meth:`save` for whole test sets."""
        out: dict[str, Any] = {"labels": self.labels.tolist(),
                               "correct": None if self.correct is None else self.correct.tolist()}
        for name in self._TABLES:
            out[name] = {k: v.tolist() for k, v in getattr(self, name).items()}
        out["diagonal"] = {k: list(v) for k, v in self.diagonal.items()}
        out.update(self._robust_meta())
        for name in self._ROBUST:
            value = getattr(self, name)
            out[name] = None if value is None else value.tolist()
        return out

    def _robust_meta(self) -> dict[str, Any]:
        return {"robust_eps": list(self.robust_eps),
                "corruption_names": list(self.corruption_names),
                "corruption_severities": list(self.corruption_severities),
                "flip_perturbations": list(self.flip_perturbations)}

    def robust_at(self, eps: float) -> np.ndarray | None:
        """``(N,)`` bool: robust at ``eps`` (a value of :attr:`robust_eps`, to 1e-12), or
        ``None`` when not measured.

        Example:
            >>> p = PerImage(np.array([0, 1]), robust_eps=[0.0, 0.5],
            ...              robust=np.array([[True, False], [True, True]]))
            >>> p.robust_at(0.5).tolist(), p.robust_at(0.25)
            ([False, True], None)
        """
        if self.robust is None:
            return None
        for i, e in enumerate(self.robust_eps):
            if abs(e - eps) <= 1e-12:
                return self.robust[:, i]
        return None

    def corrupted_under(self, corruption: str, severity: int) -> np.ndarray | None:
        """``(N,)`` bool: correct under ``corruption`` at ``severity``, or ``None``."""
        if (self.corrupted is None or corruption not in self.corruption_names
                or severity not in self.corruption_severities):
            return None
        return self.corrupted[:, self.corruption_names.index(corruption),
                              self.corruption_severities.index(severity)]

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write a compressed ``.npz`` atomically (2–3 bytes per image and mode); keys
        ``labels``, ``correct``, ``consistent.<mode>``, ``faithful.<mode>``, ``offsets.<mode>``,
        ``diagonal_correct.<mode>``, ``diagonal_agree.<mode>``, ``robust``, ``corrupted``,
        ``flipped`` and ``meta`` (JSON: the diagonal shifts, the ε grid, the corruptions and
        severities, the perturbations).
        Read it back with :meth:`load`."""
        arrays: dict[str, np.ndarray] = {"labels": self.labels}
        if self.correct is not None:
            arrays["correct"] = self.correct
        for name in self._TABLES:
            arrays.update({f"{name}.{mode}": v for mode, v in getattr(self, name).items()})
        for name in self._ROBUST:
            if getattr(self, name) is not None:
                arrays[name] = getattr(self, name)
        arrays["meta"] = np.array(json.dumps({"diagonal": self.diagonal, **self._robust_meta()}))
        buffer = io.BytesIO()
        np.savez_compressed(buffer, **arrays)  # type: ignore[arg-type]
        return atomic_write(path, lambda f: f.write(buffer.getvalue()))

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> PerImage:
        """Read a file written by :meth:`save`."""
        with np.load(path, allow_pickle=False) as data:
            arrays = {key: data[key] for key in data.files}
        meta = json.loads(str(arrays.pop("meta")))
        tables: dict[str, dict[str, np.ndarray]] = {name: {} for name in cls._TABLES}
        for key, value in arrays.items():
            if "." in key:
                name, mode = key.split(".", 1)
                tables[name][mode] = value
        return cls(labels=arrays["labels"], correct=arrays.get("correct"),
                   diagonal={k: list(v) for k, v in meta["diagonal"].items()},
                   robust_eps=[float(e) for e in meta.get("robust_eps", [])],
                   robust=arrays.get("robust"),
                   corruption_names=list(meta.get("corruption_names", [])),
                   corruption_severities=[int(v) for v in meta.get("corruption_severities", [])],
                   corrupted=arrays.get("corrupted"),
                   flip_perturbations=list(meta.get("flip_perturbations", [])),
                   flipped=arrays.get("flipped"), **tables)

    def check_paired(self, other: PerImage) -> None:
        """Raise :class:`~shiftpool.core.errors.InputError` unless ``other`` holds the same
        images (labels, in the same order) shifted by the same offsets in every mode both have:
        the condition of a paired test between two methods."""
        if self.n != other.n or not np.array_equal(self.labels, other.labels):
            raise InputError(
                f"shiftpool.metrics: not paired: the labels differ ({self.n} and {other.n} "
                "images); evaluate both methods on the same images in the same order"
            )
        for mode in sorted(set(self.offsets) & set(other.offsets)):
            if not np.array_equal(self.offsets[mode], other.offsets[mode]):
                raise InputError(
                    f"shiftpool.metrics: not paired: the {mode!r} offsets differ; evaluate both "
                    "methods with the same seed and protocol"
                )


@dataclass
class EvaluationResult:
    """Everything :func:`~shiftpool.metrics.evaluate` measured.

    Proportions (accuracy, consistency, fidelity, worst case, MSB, homogeneity) are fractions
    in ``[0, 1]``, each an :class:`~shiftpool.metrics.stats.Estimate` with its interval and
    ``n``. Dicts keyed by shift mode hold one entry per mode of the protocol.

    Attributes:
        fill: the value ``zero`` shifts brought in (the protocol's ``fill`` resolved).
        offsets: ``{mode: ((dy_low, dy_high), (dx_low, dx_high))}``, where the consistency and
            fidelity offsets were drawn (inclusive).
        details: every detail of the protocol as used, in words
            (:meth:`~shiftpool.metrics.protocols.Protocol.describe`), for a report.
        diagonal: ``{mode: DiagonalCurve}``: accuracy and agreement with ``ŷ(x)`` per diagonal
            shift ``(d, d)``, with Wilson intervals.
        nan_logits: forward-pass rows whose logits held a NaN (each counted as a wrong,
            disagreeing prediction).
        forward_passes, images_forwarded: the model calls made and the images they carried.
        msb: ``{layer: Estimate}`` plus ``"mean"`` (per-image mean over layers).
        layer_homogeneity: ``{layer: {"fraction": Estimate, "score": Estimate}}`` plus ``"mean"``.
        skipped_layers: layers whose maps were smaller than the homogeneity window.
        per_image: each image's outcome (:class:`PerImage`) when ``evaluate(...,
            per_image=True)``; else ``None``.
    """

    protocol: Protocol
    metrics: tuple[str, ...]
    seed: int
    n: int
    image_size: tuple[int, int]
    max_shift: tuple[int, int]
    crop_size: tuple[int, int] | None
    nan_logits: int
    forward_passes: int
    images_forwarded: int
    seconds: float
    fill: float | tuple[float, ...] | None = None
    offsets: dict[str, tuple[tuple[int, int], tuple[int, int]]] = field(default_factory=dict)
    details: dict[str, str] = field(default_factory=dict)
    accuracy: Estimate | None = None
    consistency: dict[str, Estimate] = field(default_factory=dict)
    fidelity: dict[str, Estimate] = field(default_factory=dict)
    diagonal: dict[str, DiagonalCurve] = field(default_factory=dict)
    worst_case: dict[str, Estimate] = field(default_factory=dict)
    offset_maps: dict[str, OffsetMap] = field(default_factory=dict)
    sensitivity: dict[str, SensitivityMap] = field(default_factory=dict)
    msb: dict[str, Estimate] = field(default_factory=dict)
    homogeneity: Homogeneity | None = None
    layer_homogeneity: dict[str, dict[str, Estimate]] = field(default_factory=dict)
    skipped_layers: list[str] = field(default_factory=list)
    per_image: PerImage | None = None
    robustness: RobustnessResult | None = None

    def summary(self) -> dict[str, float]:
        """Flat values for a table: ``acc``, ``s_cons``, ``s_fid``, ``c_cons``, ``c_fid``,
        ``msb``, ... — only those computed. Fractions in ``[0, 1]``.

        Keys: ``acc``; per shift mode with prefix ``s`` (zero), ``c`` (circular), ``r``
        (reflect), ``crop``: ``{p}_cons``, ``{p}_fid``, ``{p}_worst`` (worst-case accuracy),
        ``{p}_sens`` (mean cosine similarity over the grid); ``msb``; ``homogeneity`` (the
        fraction measure of the model's input); the robustness keys
        (:meth:`~shiftpool.metrics.robustness.RobustnessResult.summary`, e.g. ``rob_acc@8/255``);
        ``nan_logits`` when any occurred.
        """
        out: dict[str, float] = {}
        if self.accuracy is not None:
            out["acc"] = self.accuracy.value
        for mode in self.protocol.shifts:
            p = MODE_PREFIX[mode]
            for key, table in (("cons", self.consistency), ("fid", self.fidelity),
                               ("worst", self.worst_case)):
                if mode in table:
                    out[f"{p}_{key}"] = table[mode].value
            if mode in self.sensitivity:
                out[f"{p}_sens"] = self.sensitivity[mode].overall
        if "mean" in self.msb:
            out["msb"] = self.msb["mean"].value
        if self.homogeneity is not None:
            out["homogeneity"] = self.homogeneity.fraction.value
        if self.robustness is not None:
            out.update(self.robustness.summary())
        if self.nan_logits:
            out["nan_logits"] = float(self.nan_logits)
        return out

    def to_dict(self, per_image: bool = False) -> dict[str, Any]:
        """A JSON-serialisable dict of everything (``nan`` as ``None``); the per-image outcomes
        only when ``per_image`` (as lists: large; :meth:`save_per_image` is compact)."""

        def estimates(table: dict[str, Estimate]) -> dict[str, Any]:
            return {k: v.to_dict() for k, v in table.items()}

        return {
            "protocol": self.protocol.to_dict(),
            "metrics": list(self.metrics),
            "seed": self.seed,
            "n": self.n,
            "image_size": list(self.image_size),
            "max_shift": list(self.max_shift),
            "crop_size": None if self.crop_size is None else list(self.crop_size),
            "fill": list(self.fill) if isinstance(self.fill, tuple) else self.fill,
            "offsets": {k: [list(axis) for axis in v] for k, v in self.offsets.items()},
            "details": dict(self.details),
            "nan_logits": self.nan_logits,
            "forward_passes": self.forward_passes,
            "images_forwarded": self.images_forwarded,
            "seconds": self.seconds,
            "summary": {k: finite_or_none(v) for k, v in self.summary().items()},
            "accuracy": None if self.accuracy is None else self.accuracy.to_dict(),
            "consistency": estimates(self.consistency),
            "fidelity": estimates(self.fidelity),
            "diagonal": {k: v.to_dict() for k, v in self.diagonal.items()},
            "worst_case": estimates(self.worst_case),
            "offset_maps": {k: v.to_dict() for k, v in self.offset_maps.items()},
            "sensitivity": {k: v.to_dict() for k, v in self.sensitivity.items()},
            "msb": estimates(self.msb),
            "homogeneity": None if self.homogeneity is None else self.homogeneity.to_dict(),
            "layer_homogeneity": {k: estimates(v) for k, v in self.layer_homogeneity.items()},
            "skipped_layers": list(self.skipped_layers),
            "robustness": None if self.robustness is None else self.robustness.to_dict(),
            **({"per_image": self._per_image().to_dict()} if per_image else {}),
        }

    def describe(self) -> str:
        """The protocol's details as used, one ``name: value`` line each, for a report.

        Example:
            >>> import torch
            >>> from torch import nn
            >>> from shiftpool.metrics import evaluate
            >>> net = nn.Sequential(nn.Flatten(), nn.Linear(64, 2))
            >>> data = [(torch.randn(4, 1, 8, 8), torch.tensor([0, 1, 0, 1]))]
            >>> print(evaluate(net, data, protocol="aps", progress=False).describe())
            ... # doctest: +ELLIPSIS
            protocol: aps
            shifts: circular
            source: Chaman & Dokmanić 2021 ...
            image size: 8×8
            offsets: circular: dy in [-3, 2], dx in [-3, 2]
            draw: one offset per image and view, seeded (the same for every model)
            diagonal: circular: d = -3 .. 3 (7 shifts)
            metrics: accuracy, consistency, fidelity, diagonal
            intervals: 95% Wilson (proportions), Student t (means), over images
        """
        return "\n".join(f"{k}: {v}" for k, v in self.details.items())

    def save_json(self, path: str | os.PathLike[str]) -> Path:
        """Write :meth:`to_dict` as JSON, atomically; returns the path."""
        return atomic_write_json(path, self.to_dict())

    def save_per_image(self, path: str | os.PathLike[str]) -> Path:
        """Write the per-image outcomes as ``.npz`` (:meth:`PerImage.save`); returns the path."""
        return self._per_image().save(path)

    def _per_image(self) -> PerImage:
        if self.per_image is None:
            raise InputError(
                "shiftpool.metrics: this result has no per-image outcomes; evaluate with "
                "per_image=True"
            )
        return self.per_image
