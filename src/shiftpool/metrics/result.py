"""The result of :func:`shiftpool.metrics.evaluate`: every estimate, JSON-ready, and a summary."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from shiftpool.core.io import atomic_write_json
from shiftpool.core.jsonable import finite_or_none
from shiftpool.metrics.consistency import OffsetMap
from shiftpool.metrics.homogeneity import Homogeneity
from shiftpool.metrics.protocols import Protocol
from shiftpool.metrics.sensitivity import SensitivityMap
from shiftpool.metrics.stats import Estimate

# Short names of the shift modes in summary keys; "s" (standard) and "c" as in the TIPS paper.
MODE_PREFIX: dict[str, str] = {"zero": "s", "circular": "c", "reflect": "r", "crop": "crop"}


@dataclass
class EvaluationResult:
    """Everything :func:`~shiftpool.metrics.evaluate` measured.

    Proportions (accuracy, consistency, fidelity, worst case, MSB, homogeneity) are fractions
    in ``[0, 1]``, each an :class:`~shiftpool.metrics.stats.Estimate` with its interval and
    ``n``. Dicts keyed by shift mode hold one entry per mode of the protocol.

    Attributes:
        nan_logits: forward-pass rows whose logits held a NaN (each counted as a wrong,
            disagreeing prediction).
        forward_passes, images_forwarded: the model calls made and the images they carried.
        msb: ``{layer: Estimate}`` plus ``"mean"`` (per-image mean over layers).
        layer_homogeneity: ``{layer: {"fraction": Estimate, "score": Estimate}}`` plus ``"mean"``.
        skipped_layers: layers whose maps were smaller than the homogeneity window.
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
    accuracy: Estimate | None = None
    consistency: dict[str, Estimate] = field(default_factory=dict)
    fidelity: dict[str, Estimate] = field(default_factory=dict)
    worst_case: dict[str, Estimate] = field(default_factory=dict)
    offset_maps: dict[str, OffsetMap] = field(default_factory=dict)
    sensitivity: dict[str, SensitivityMap] = field(default_factory=dict)
    msb: dict[str, Estimate] = field(default_factory=dict)
    homogeneity: Homogeneity | None = None
    layer_homogeneity: dict[str, dict[str, Estimate]] = field(default_factory=dict)
    skipped_layers: list[str] = field(default_factory=list)

    def summary(self) -> dict[str, float]:
        """Flat values for a table: ``acc``, ``s_cons``, ``s_fid``, ``c_cons``, ``c_fid``,
        ``msb``, ... — only those computed. Fractions in ``[0, 1]``.

        Keys: ``acc``; per shift mode with prefix ``s`` (zero), ``c`` (circular), ``r``
        (reflect), ``crop``: ``{p}_cons``, ``{p}_fid``, ``{p}_worst`` (worst-case accuracy),
        ``{p}_sens`` (mean cosine similarity over the grid); ``msb``; ``homogeneity`` (the
        fraction measure of the model's input); ``nan_logits`` when any occurred.
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
        if self.nan_logits:
            out["nan_logits"] = float(self.nan_logits)
        return out

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dict of everything (``nan`` as ``None``)."""

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
            "nan_logits": self.nan_logits,
            "forward_passes": self.forward_passes,
            "images_forwarded": self.images_forwarded,
            "seconds": self.seconds,
            "summary": {k: finite_or_none(v) for k, v in self.summary().items()},
            "accuracy": None if self.accuracy is None else self.accuracy.to_dict(),
            "consistency": estimates(self.consistency),
            "fidelity": estimates(self.fidelity),
            "worst_case": estimates(self.worst_case),
            "offset_maps": {k: v.to_dict() for k, v in self.offset_maps.items()},
            "sensitivity": {k: v.to_dict() for k, v in self.sensitivity.items()},
            "msb": estimates(self.msb),
            "homogeneity": None if self.homogeneity is None else self.homogeneity.to_dict(),
            "layer_homogeneity": {k: estimates(v) for k, v in self.layer_homogeneity.items()},
            "skipped_layers": list(self.skipped_layers),
        }

    def save_json(self, path: str | os.PathLike[str]) -> Path:
        """Write :meth:`to_dict` as JSON, atomically; returns the path."""
        return atomic_write_json(path, self.to_dict())
