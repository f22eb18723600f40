"""Robustness metrics inside :func:`shiftpool.metrics.evaluate` (SPEC §7): ``adversarial``
(robust accuracy per ε), ``corruption`` (accuracy per corruption and severity) and ``flip_rate``
(ImageNet-P style flip probabilities).

They are asked for by name (``metrics=[..., "adversarial"]``), never by ``"all"`` (they cost
many passes: PGD-k about k forward+backward passes per ε; corruptions one forward pass per
corruption and severity; flip rates one per frame). Each batch is attacked, corrupted or
perturbed as it passes, so the data is read once.

Example:
    >>> import torch
    >>> from torch import nn
    >>> from shiftpool.metrics import evaluate
    >>> net = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 4))
    >>> data = [(torch.rand(6, 3, 8, 8), torch.randint(0, 4, (6,)))]
    >>> r = evaluate(net, data, metrics=["adversarial"], eps="0,8/255", progress=False)
    >>> sorted(r.summary())
    ['rob_acc@0', 'rob_acc@8/255']
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import torch
from torch import Tensor, nn

from shiftpool.core.errors import InputError
from shiftpool.metrics.adversarial import Attack, RobustCurve, RobustMeter, Space, parse_eps
from shiftpool.metrics.corruptions import (
    CorruptionErrors,
    check_corruptions,
    check_severities,
    clipped_zoom,
    corrupt,
    corruption_errors,
)
from shiftpool.metrics.stats import Estimate, MeanMeter, wilson_interval

__all__ = [
    "DEFAULT_EPS",
    "PERTURBATIONS",
    "ROBUSTNESS_METRICS",
    "CorruptionResult",
    "FlipRates",
    "RobustnessOptions",
    "RobustnessResult",
    "RobustnessRun",
    "relative_to_baseline",
]

#: The metrics this module adds to :func:`~shiftpool.metrics.evaluate`.
ROBUSTNESS_METRICS: tuple[str, ...] = ("adversarial", "corruption", "flip_rate")
#: The default ε grid, pixel units (input units without a normalisation).
DEFAULT_EPS: tuple[float, ...] = (0.0, 1 / 255, 2 / 255, 4 / 255, 8 / 255)
#: ImageNet-P style perturbation sequences :func:`perturbation_frames` generates; the noise
#: sequence compares each frame with the first, the others consecutive frames (SPEC §7).
PERTURBATIONS: tuple[str, ...] = ("translate", "gaussian_noise", "shot_noise", "brightness",
                                  "zoom", "rotate")
_NOISE_SEQUENCES = ("gaussian_noise", "shot_noise")


@dataclass(frozen=True)
class RobustnessOptions:
    """What the robustness metrics do.

    Attributes:
        attack: the :class:`~shiftpool.metrics.adversarial.Attack` (default PGD-10 L∞, random
            start, step 2.5ε/10).
        corruptions: names or groups (:func:`~shiftpool.metrics.corruptions.check_corruptions`;
            default all 15, frost from a procedural texture); severities: default 1–5.
        baseline: the baseline method's corruption result (a
            :class:`CorruptionResult` or its ``to_dict()``), for CE and mCE; ``None``: none.
        perturbations: flip-rate sequences from :data:`PERTURBATIONS` (default all);
            frames: frames per sequence; flip_baseline: the baseline's ``{perturbation: FP}``
            for FR and mFR.
        seed: seeds corruption and perturbation draws (per batch, in order).
        eps: the ε grid (ε = 0, the clean accuracy, is always added).
        eps_unit: ``"pixel"`` (ε in ``[0, 1]`` pixel units, converted per channel through the
            normalisation; needs ``normalization``) or ``"input"`` (the model's input units);
            ``None``: pixel when the normalisation is known, else input.

    Example:
        >>> RobustnessOptions(eps="8/255").eps
        (0.0, 0.03137254901960784)
    """

    attack: Attack = field(default_factory=Attack)
    eps: tuple[float, ...] | str = DEFAULT_EPS
    eps_unit: str | None = None
    corruptions: tuple[str, ...] | str | None = None
    severities: tuple[int, ...] | None = None
    baseline: Mapping[str, Any] | None = None
    perturbations: tuple[str, ...] | str | None = None
    frames: int = 10
    flip_baseline: Mapping[str, float] | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "eps", parse_eps((0.0, *parse_eps(self.eps))))
        object.__setattr__(self, "corruptions", check_corruptions(self.corruptions))
        object.__setattr__(self, "severities", check_severities(self.severities))
        object.__setattr__(self, "perturbations", check_perturbations(self.perturbations))
        if isinstance(self.frames, bool) or not isinstance(self.frames, int) or self.frames < 2:
            raise InputError(
                f"shiftpool.metrics.evaluate: frames must be an integer >= 2, got {self.frames!r}"
            )
        if not isinstance(self.attack, Attack):
            raise InputError(
                "shiftpool.metrics.evaluate: attack must be a shiftpool.metrics.Attack, got "
                f"{type(self.attack).__name__}"
            )
        if self.eps_unit not in (None, "pixel", "input"):
            raise InputError(
                f"shiftpool.metrics.evaluate: eps_unit must be 'pixel' or 'input', got "
                f"{self.eps_unit!r}"
            )

    def to_dict(self) -> dict[str, Any]:
        """Every setting that decides the numbers (the baselines aside, which only add CE/FR
        on top), JSON-ready: the key of a saved result.

        Example:
            >>> RobustnessOptions(eps="8/255", corruptions="fog").to_dict()["corruptions"]
            ['fog']
        """
        return {"attack": self.attack.to_dict(), "eps": list(self.eps),  # type: ignore[arg-type]
                "eps_unit": self.eps_unit, "corruptions": list(self.corruptions or ()),
                "severities": list(self.severities or ()),
                "perturbations": list(self.perturbations or ()), "frames": self.frames,
                "seed": self.seed}

    def space(self, normalization: tuple[Sequence[float], Sequence[float]] | None) -> Space:
        """The :class:`~shiftpool.metrics.adversarial.Space` ε is measured in."""
        unit = self.eps_unit or ("pixel" if normalization is not None else "input")
        if unit == "pixel" and normalization is None:
            raise InputError(
                "shiftpool.metrics.evaluate: eps_unit='pixel' needs the data's normalization "
                "(mean, std); pass normalization=... or eps_unit='input'"
            )
        return Space.pixels(normalization) if unit == "pixel" else Space.inputs(normalization)


@dataclass
class CorruptionResult:
    """Accuracy per corruption and severity (Wilson intervals), and CE/mCE when a baseline
    was given.

    Attributes:
        names, severities: the rows and columns of ``accuracy``.
        accuracy: ``[corruption][severity]`` :class:`~shiftpool.metrics.stats.Estimate`.
        clean: the clean accuracy on the same images.
        errors: CE per corruption, relative CE, mCE, relative mCE (with a baseline).
    """

    names: tuple[str, ...]
    severities: tuple[int, ...]
    accuracy: list[list[Estimate]]
    clean: Estimate
    errors: CorruptionErrors | None = None
    mean: Estimate | None = None

    @property
    def mean_accuracy(self) -> float:
        """Mean corruption accuracy over every corruption and severity."""
        return sum(a.value for row in self.accuracy for a in row) / sum(map(len, self.accuracy))

    def mean_estimate(self) -> Estimate:
        """The mean corruption accuracy with its Student t interval over images (each image's
        fraction of corruption × severity cells classified correctly); without the per-image
        means (a result saved by an earlier version), the value alone."""
        if self.mean is not None:
            return self.mean
        n = self.clean.n
        return Estimate(self.mean_accuracy, math.nan, math.nan, n, "mean", self.clean.confidence)

    def error_table(self) -> dict[str, list[float]]:
        """``{corruption: [top-1 error per severity]}``."""
        return {c: [1 - a.value for a in row] for c, row in zip(self.names, self.accuracy,
                                                                strict=True)}

    def summary(self) -> dict[str, float]:
        out = {"corr_acc": self.mean_accuracy}
        if self.errors is not None:
            out["mce"] = self.errors.mce
            if not math.isnan(self.errors.relative_mce):
                out["rel_mce"] = self.errors.relative_mce
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "names": list(self.names), "severities": list(self.severities),
            "accuracy": [[a.to_dict() for a in row] for row in self.accuracy],
            "clean": self.clean.to_dict(), "mean_accuracy": self.mean_accuracy,
            "mean": None if self.mean is None else self.mean.to_dict(),
            "errors": None if self.errors is None else self.errors.to_dict(),
        }


def _baseline_errors(baseline: Any) -> tuple[dict[str, list[float]], float]:
    """``({corruption: errors per severity}, clean error)`` of a baseline result or dict."""
    if isinstance(baseline, CorruptionResult):
        return baseline.error_table(), 1 - baseline.clean.value
    if isinstance(baseline, Mapping) and "accuracy" in baseline and "names" in baseline:
        table = {c: [1 - a["value"] for a in row]
                 for c, row in zip(baseline["names"], baseline["accuracy"], strict=True)}
        return table, 1 - baseline["clean"]["value"]
    raise InputError(
        "shiftpool.metrics.evaluate: baseline must be the baseline's CorruptionResult or its "
        f"to_dict(), got {type(baseline).__name__}"
    )


@dataclass
class FlipRates:
    """Flip probabilities per perturbation sequence (ImageNet-P; SPEC §7), Wilson intervals
    over the image × frame comparisons (frames of one image are not independent: the
    intervals are narrower than the truth), and FR/mFR against a baseline when given."""

    frames: int
    flip_probability: dict[str, Estimate]
    flip_rate: dict[str, float] = field(default_factory=dict)

    @property
    def mfr(self) -> float | None:
        return (sum(self.flip_rate.values()) / len(self.flip_rate)) if self.flip_rate else None

    def summary(self) -> dict[str, float]:
        out = {f"fp_{k}": v.value for k, v in self.flip_probability.items()}
        if self.mfr is not None:
            out["mfr"] = self.mfr
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"frames": self.frames,
                "flip_probability": {k: v.to_dict() for k, v in self.flip_probability.items()},
                "flip_rate": dict(self.flip_rate), "mfr": self.mfr}


@dataclass
class RobustnessResult:
    """The robustness part of an :class:`~shiftpool.metrics.result.EvaluationResult`; each
    part ``None`` when not asked for."""

    adversarial: RobustCurve | None = None
    corruption: CorruptionResult | None = None
    flip_rate: FlipRates | None = None

    def summary(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for part in (self.adversarial, self.corruption, self.flip_rate):
            if part is not None:
                out.update(part.summary())
        return out

    def to_dict(self) -> dict[str, Any]:
        return {k: None if v is None else v.to_dict() for k, v in (
            ("adversarial", self.adversarial), ("corruption", self.corruption),
            ("flip_rate", self.flip_rate))}


def check_perturbations(names: str | Sequence[str] | None) -> tuple[str, ...]:
    """Perturbation names (``None``/``"all"``: every one of :data:`PERTURBATIONS`).

    Example:
        >>> check_perturbations("translate")
        ('translate',)
    """
    if names is None or names == "all":
        return PERTURBATIONS
    if isinstance(names, str):
        names = [n.strip() for n in names.split(",") if n.strip()]
    bad = [n for n in names if n not in PERTURBATIONS]
    if bad or not names:
        raise InputError(
            f"shiftpool.metrics.evaluate: unknown perturbation(s) {bad or 'none'}; allowed: "
            f"{', '.join(PERTURBATIONS)}"
        )
    return tuple(dict.fromkeys(names))


def perturbation_frames(
    pixels: Tensor, name: str, frames: int, generator: torch.Generator
) -> list[Tensor]:
    """The sequence ``x_1 .. x_frames`` of pixel images ``(N, C, H, W)`` in ``[0, 1]``:

    * ``translate``: circular shifts by ``j`` pixels, ``j = 0 .. frames − 1``, along a
      direction drawn per batch among the 8 neighbours (one pixel per frame and axis);
    * ``gaussian_noise``: ``clip(x + N(0, 0.03²))``, fresh noise per frame;
    * ``shot_noise``: ``clip(Poisson(60·x) / 60)``, fresh noise per frame;
    * ``brightness``: HSV value raised by ``0.01·j``;
    * ``zoom``: :func:`~shiftpool.metrics.corruptions.clipped_zoom` by ``1 + 0.01·j``;
    * ``rotate``: rotation about the centre by ``0.5°·j`` (bilinear, border replicated).

    Our generators, not ImageNet-P's files (whose steps differ per perturbation); FP values are
    comparable between methods evaluated here, not with published ImageNet-P numbers.

    Example:
        >>> f = perturbation_frames(torch.rand(2, 3, 8, 8), "translate", 3,
        ...                         torch.Generator().manual_seed(0))
        >>> len(f), f[0].shape
        (3, torch.Size([2, 3, 8, 8]))
    """
    if name == "translate":
        dy, dx = 0, 0
        while dy == 0 and dx == 0:
            dy, dx = (int(v) for v in torch.randint(-1, 2, (2,), generator=generator))
        return [torch.roll(pixels, (j * dy, j * dx), dims=(-2, -1)) for j in range(frames)]
    if name == "gaussian_noise":
        return [(pixels + 0.03 * torch.randn(pixels.shape, generator=generator).to(pixels))
                .clamp(0, 1) for _ in range(frames)]
    if name == "brightness":
        v = pixels.amax(dim=1, keepdim=True)
        out = [pixels]
        for j in range(1, frames):
            v2 = (v + 0.01 * j).clamp(0, 1)
            out.append(torch.where(v > 0, pixels * v2 / v.clamp_min(1e-12),
                                   v2.expand_as(pixels)).clamp(0, 1))
        return out
    if name == "shot_noise":
        return [(torch.poisson((pixels.detach().cpu().float() * 60).clamp_min(0),
                               generator=generator) / 60).to(pixels).clamp(0, 1)
                for _ in range(frames)]
    if name == "rotate":
        return [pixels if j == 0 else _rotate(pixels, 0.5 * j) for j in range(frames)]
    return [pixels if j == 0 else clipped_zoom(pixels, 1 + 0.01 * j) for j in range(frames)]


def _rotate(pixels: Tensor, degrees: float) -> Tensor:
    """Rotation about the image centre (bilinear, border replicated), pixel-exact aspect."""
    n, _, h, w = pixels.shape
    a = math.radians(degrees)
    cos, sin = math.cos(a), math.sin(a)
    theta = torch.tensor([[cos, -sin * h / w, 0.0], [sin * w / h, cos, 0.0]],
                         dtype=pixels.dtype, device=pixels.device).expand(n, 2, 3)
    grid = torch.nn.functional.affine_grid(theta, list(pixels.shape), align_corners=False)
    return torch.nn.functional.grid_sample(pixels, grid, mode="bilinear", padding_mode="border",
                                           align_corners=False)


class RobustnessRun:
    """The robustness meters of one evaluation; fed batch by batch by ``evaluate``."""

    def __init__(
        self, wanted: Iterable[str], options: RobustnessOptions,
        normalization: tuple[Sequence[float], Sequence[float]] | None = None,
        per_image: bool = False,
    ) -> None:
        self.wanted = set(wanted) & set(ROBUSTNESS_METRICS)
        self.options = options
        self.normalization = normalization
        self.adversarial = (
            RobustMeter(options.eps, options.attack, options.space(normalization), per_image)
            if "adversarial" in self.wanted else None
        )
        names, severities = options.corruptions, options.severities
        self.corruption_hits = {c: [0] * len(severities) for c in names}  # type: ignore[arg-type]
        self.flips = {p: [0, 0] for p in options.perturbations}  # type: ignore[union-attr]
        self.corruption_mean = MeanMeter()
        # per image: (N, corruptions, severities) bool, batch by batch (with per_image)
        self.corrupted: list[Tensor] | None = [] if per_image else None
        # per image: (N, perturbations) fraction of frame pairs whose prediction flipped
        self.flipped: list[Tensor] | None = [] if per_image else None
        self.clean_hits = 0
        self.n = 0
        self.batches = 0

    @classmethod
    def create(
        cls, wanted: Iterable[str], options: RobustnessOptions | None,
        normalization: tuple[Sequence[float], Sequence[float]] | None, per_image: bool = False,
    ) -> RobustnessRun | None:
        """A run when ``wanted`` names a robustness metric, else ``None``."""
        wanted = set(wanted)
        if not wanted & set(ROBUSTNESS_METRICS):
            return None
        return cls(wanted, options or RobustnessOptions(), normalization, per_image)

    # pixels <-> inputs

    def _stats(self, x: Tensor) -> tuple[Tensor, Tensor]:
        if self.normalization is None:
            one = torch.ones(1, x.shape[1], 1, 1, dtype=x.dtype, device=x.device)
            return one * 0, one
        mean, std = (torch.tensor([float(v) for v in part], dtype=x.dtype, device=x.device)
                     .expand(x.shape[1]).reshape(1, -1, 1, 1) for part in self.normalization)
        return mean, std

    def _pixels(self, x: Tensor) -> Tensor:
        mean, std = self._stats(x)
        pixels = x * std + mean
        if self.normalization is None and (pixels.min() < -1e-4 or pixels.max() > 1 + 1e-4):
            raise InputError(
                "shiftpool.metrics.evaluate: corruption and flip_rate need pixels in [0, 1]: "
                "pass the data's normalization=(mean, std), or give unnormalised images"
            )
        return pixels.clamp(0, 1)

    def _inputs(self, pixels: Tensor) -> Tensor:
        mean, std = self._stats(pixels)
        return (pixels - mean) / std

    def _generator(self, *keys: int) -> torch.Generator:
        seed = self.options.seed
        for k in (self.batches, *keys):
            seed = (seed * 1_000_003 + k) % (2**62)
        return torch.Generator().manual_seed(seed)

    @torch.no_grad()
    def _predict(self, model: nn.Module, pixels: Tensor) -> Tensor:
        return model(self._inputs(pixels)).argmax(dim=1)

    def batch(self, model: nn.Module, x: Tensor, y: Tensor) -> None:
        if self.adversarial is not None:
            self.adversarial.update(model, x, y)
        if "corruption" in self.wanted:
            pixels = self._pixels(x)
            with torch.no_grad():
                self.clean_hits += int((model(x).argmax(dim=1) == y).sum())
            table = torch.zeros((x.shape[0], len(self.corruption_hits),
                                 len(self.options.severities)),  # type: ignore[arg-type]
                                dtype=torch.bool, device=x.device)
            for i, name in enumerate(self.corruption_hits):
                for j, severity in enumerate(self.options.severities):  # type: ignore[arg-type]
                    corrupted = corrupt(pixels, name, severity, self._generator(i, severity))
                    hits = self._predict(model, corrupted) == y
                    self.corruption_hits[name][j] += int(hits.sum())
                    table[:, i, j] = hits
            self.corruption_mean.update(table.flatten(1).float().mean(dim=1))
            if self.corrupted is not None:
                self.corrupted.append(table.cpu())
        if "flip_rate" in self.wanted:
            pixels = self._pixels(x)
            flipped = torch.zeros((x.shape[0], len(self.flips)), device=x.device)
            for i, name in enumerate(self.flips):
                frames = perturbation_frames(pixels, name, self.options.frames,
                                             self._generator(100 + i))
                predictions = [self._predict(model, f) for f in frames]
                for j in range(1, len(predictions)):
                    before = predictions[0] if name in _NOISE_SEQUENCES else predictions[j - 1]
                    changed = predictions[j] != before
                    self.flips[name][0] += int(changed.sum())
                    self.flips[name][1] += predictions[j].numel()
                    flipped[:, i] += changed.float()
            if self.flipped is not None:
                self.flipped.append((flipped / (len(frames) - 1)).cpu())
        self.n += x.shape[0]
        self.batches += 1

    def result(self, confidence: float = 0.95) -> RobustnessResult:
        out = RobustnessResult(
            adversarial=None if self.adversarial is None else self.adversarial.curve(confidence),
        )
        if "corruption" in self.wanted:
            names = tuple(self.corruption_hits)
            table = CorruptionResult(
                names, self.options.severities,  # type: ignore[arg-type]
                [[wilson_interval(k, self.n, confidence) for k in self.corruption_hits[c]]
                 for c in names],
                wilson_interval(self.clean_hits, self.n, confidence),
                mean=_clip_fraction(self.corruption_mean.estimate(confidence)),
            )
            if self.options.baseline is not None:
                base, base_clean = _baseline_errors(self.options.baseline)
                table.errors = corruption_errors(table.error_table(), base,
                                                 1 - table.clean.value, base_clean)
            out.corruption = table
        if "flip_rate" in self.wanted:
            fp = {p: wilson_interval(k, total, confidence) for p, (k, total) in self.flips.items()}
            rates = {}
            for p, est in fp.items():
                base = (self.options.flip_baseline or {}).get(p)
                if base is not None:
                    rates[p] = est.value / base if base > 0 else math.nan
            out.flip_rate = FlipRates(self.options.frames, fp, rates)
        return out


    def per_image(self) -> dict[str, Any]:
        """Each image's robust outcomes, in loader order, for
        :class:`~shiftpool.metrics.result.PerImage`: ``robust`` ``(N, E)`` bool (robust at
        each ε of ``robust_eps``, as counted: also at every smaller ε), ``corrupted``
        ``(N, C, S)`` bool (correct under each corruption and severity); only the parts
        measured; ``flipped`` ``(N, P)`` float32, the fraction of each image's frame pairs
        whose prediction flipped per perturbation of ``flip_perturbations``."""
        out: dict[str, Any] = {}
        if self.adversarial is not None and self.adversarial.outcomes:
            out["robust"] = torch.cat(self.adversarial.outcomes).numpy()
            out["robust_eps"] = list(self.adversarial.eps)
        if self.corrupted:
            out["corrupted"] = torch.cat(self.corrupted).numpy()
            out["corruption_names"] = list(self.corruption_hits)
            out["corruption_severities"] = list(self.options.severities)  # type: ignore[arg-type]
        if self.flipped:
            out["flipped"] = torch.cat(self.flipped).numpy()
            out["flip_perturbations"] = list(self.flips)
        return out


def _clip_fraction(estimate: Estimate) -> Estimate:
    """A mean of fractions with its interval clipped to ``[0, 1]`` (where the mean lies)."""
    return replace(estimate, low=max(estimate.low, 0.0), high=min(estimate.high, 1.0))


def relative_to_baseline(mine: Any, baseline: Any) -> dict[str, Any]:
    """A method's corruption and flip-rate results relative to a baseline method's (Hendrycks &
    Dietterich: CE/mCE, relative CE/mCE; FR = FP / FP(baseline) per perturbation, mFR their
    mean), from their :class:`RobustnessResult` or its ``to_dict()`` (an evaluation's
    ``"robustness"`` section). Only the parts both measured.

    Returns:
        ``{"corruption_errors": CorruptionErrors.to_dict(), "flip_rate": {perturbation: FR},
        "mfr": float}`` (keys present where both have the part).

    Example:
        >>> table = lambda acc: {"names": ["fog"], "severities": [1], "clean": {"value": 0.9},
        ...                      "accuracy": [[{"value": acc}]]}
        >>> r = relative_to_baseline({"corruption": table(0.7)}, {"corruption": table(0.6)})
        >>> round(r["corruption_errors"]["mce"], 4)
        0.75
    """
    mine, baseline = (part.to_dict() if isinstance(part, RobustnessResult) else part or {}
                      for part in (mine, baseline))
    out: dict[str, Any] = {}
    table, base = mine.get("corruption"), baseline.get("corruption")
    if table and base:
        errors, clean = _baseline_errors(table)
        base_errors, base_clean = _baseline_errors(base)
        out["corruption_errors"] = corruption_errors(errors, base_errors, clean,
                                                     base_clean).to_dict()
    flips, base_flips = mine.get("flip_rate"), baseline.get("flip_rate")
    if flips and base_flips:
        rates = {}
        for p, estimate in flips["flip_probability"].items():
            if p in base_flips["flip_probability"]:
                b = base_flips["flip_probability"][p]["value"]
                rates[p] = estimate["value"] / b if b else math.nan
        if rates:
            out["flip_rate"] = rates
            out["mfr"] = sum(rates.values()) / len(rates)
    return out


def robustness_options(
    options: RobustnessOptions | None = None, attack: Attack | None = None,
    eps: Iterable[float] | str | None = None, eps_unit: str | None = None,
    **fields: Any,
) -> RobustnessOptions | None:
    """``options`` with the given fields replaced (``None``: left as they are); ``fields`` are
    other :class:`RobustnessOptions` fields (``corruptions=``, ``severities=``, ``baseline=``,
    ``perturbations=``, ``frames=``, ``flip_baseline=``).

    Example:
        >>> robustness_options(eps="4/255").eps[-1] == 4 / 255
        True
    """
    given = {k: v for k, v in dict(attack=attack, eps=eps, eps_unit=eps_unit, **fields).items()
             if v is not None}
    if options is None and not given:
        return None
    base = options or RobustnessOptions()
    values = {f: getattr(base, f) for f in base.__dataclass_fields__}
    unknown = sorted(set(given) - set(values))
    if unknown:
        raise InputError(f"shiftpool.metrics.evaluate: unknown robustness option(s) {unknown}")
    values.update(given)
    return RobustnessOptions(**values)
