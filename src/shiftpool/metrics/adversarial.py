"""Adversarial attacks (FGSM, PGD; L∞ and L2) and robust accuracy over a grid of budgets ε.

SPEC §7: robust accuracy at budget ε is the accuracy on ``x + δ`` with ``‖δ‖ ≤ ε`` and ``x + δ``
inside the valid pixel range; ``δ`` from FGSM (one gradient step of size ε: the signed gradient
for L∞, the normalised gradient for L2) or PGD (``steps`` steps of size ``step_size``, projected
onto the ball after each, optional uniform random start in the ball, ``restarts`` tries of which
the worst per image counts).

Units. ``ε`` is measured in a :class:`Space`: :meth:`Space.pixels` (the default when the data's
normalisation is known) measures it in pixel units ``[0, 1]`` before normalisation, so ``8/255``
is ``8/255 / std_c`` in the model's input space for channel ``c``; :meth:`Space.inputs` measures
it in the model's input space directly. Either way ``x + δ`` is clamped to the valid pixel range
mapped into input space, ``[(0 − mean_c) / std_c, (1 − mean_c) / std_c]`` (no clamp when the
range is unknown: ``Space.inputs()`` without a normalisation). The attack runs in the model's
input space throughout (no round trip through pixels), so the clean images are untouched.

Model mode. The attacks do not change the model's train/eval mode: :func:`robust_accuracy`
puts it in eval mode, so stochastic downsamplers (S3Pool, LPS) are attacked in their
deterministic eval behaviour. With ``Attack(eot=k)`` (expectation over transformation) the
shiftpool downsamplers are switched to their training (random) behaviour for the gradient
passes only, each gradient is the mean over ``k`` draws, and the attack's success is judged
in eval mode; other layers (BatchNorm, dropout) stay in eval mode.

Loss: cross-entropy summed over the batch, so each image's gradient is independent of the
batch it sits in.

Example:
    >>> import torch
    >>> from torch import nn
    >>> net = nn.Sequential(nn.Flatten(), nn.Linear(12, 3))
    >>> x, y = torch.rand(4, 3, 2, 2), torch.tensor([0, 1, 2, 0])
    >>> adv = attack(net, x, y, 8 / 255, Attack("pgd", steps=5))
    >>> bool((adv - x).abs().max() <= 8 / 255 + 1e-6)
    True
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from fractions import Fraction
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from shiftpool.core.errors import InputError
from shiftpool.metrics.stats import Estimate, wilson_interval

__all__ = [
    "ATTACKS",
    "NORMS",
    "Attack",
    "RobustCurve",
    "RobustMeter",
    "Space",
    "attack",
    "fgsm",
    "parse_eps",
    "pgd",
    "robust_accuracy",
]

ATTACKS: tuple[str, ...] = ("fgsm", "pgd")
NORMS: tuple[str, ...] = ("linf", "l2")
_OP = "shiftpool.metrics.adversarial"


@dataclass(frozen=True)
class Space:
    """Where ε is measured and what the valid range is, per channel, in the model's input space.

    ``scale[c]``: one unit of ε is ``1 / scale[c]`` input units in channel ``c`` (``std`` for
    pixel units, 1 for input units). ``low``, ``high``: the valid range of the inputs (the pixel
    range ``[0, 1]`` mapped through the normalisation), or ``None`` for no clamp.

    Example:
        >>> s = Space.pixels(((0.5,), (0.25,)))
        >>> s.scale, s.low, s.high
        ((0.25,), (-2.0,), (2.0,))
    """

    scale: tuple[float, ...] = (1.0,)
    low: tuple[float, ...] | None = (0.0,)
    high: tuple[float, ...] | None = (1.0,)
    unit: str = "pixel"

    @classmethod
    def pixels(
        cls, normalization: tuple[Sequence[float], Sequence[float]] | None = None
    ) -> Space:
        """ε in pixel units ``[0, 1]``; ``normalization = (mean, std)`` per channel (``None``:
        the inputs are the pixels themselves, range ``[0, 1]``)."""
        if normalization is None:
            return cls()
        mean, std = (tuple(float(v) for v in part) for part in normalization)
        if len(mean) != len(std) or not all(s > 0 and math.isfinite(s) for s in std):
            raise InputError(
                f"{_OP}: normalization must be (mean, std) of equal lengths with std > 0, got "
                f"{normalization}"
            )
        low = tuple((0.0 - m) / s for m, s in zip(mean, std, strict=True))
        high = tuple((1.0 - m) / s for m, s in zip(mean, std, strict=True))
        return cls(std, low, high, "pixel")

    @classmethod
    def inputs(
        cls, normalization: tuple[Sequence[float], Sequence[float]] | None = None
    ) -> Space:
        """ε in the model's input units; clamped to the pixel range mapped into input space
        when ``normalization`` is given, else not clamped."""
        if normalization is None:
            return cls((1.0,), None, None, "input")
        pixel = cls.pixels(normalization)
        return cls(tuple(1.0 for _ in pixel.scale), pixel.low, pixel.high, "input")

    def tensors(self, x: Tensor) -> tuple[Tensor, Tensor | None, Tensor | None]:
        """``scale``, ``low``, ``high`` as ``(1, C, 1, 1)`` tensors matching ``x``."""
        channels = x.shape[1]

        def per_channel(values: tuple[float, ...] | None, what: str) -> Tensor | None:
            if values is None:
                return None
            if len(values) not in (1, channels):
                raise InputError(
                    f"{_OP}: the normalization has {len(values)} channels ({what}) but the "
                    f"images have {channels}"
                )
            t = torch.tensor(values, dtype=x.dtype, device=x.device)
            return t.expand(channels).reshape(1, channels, 1, 1)

        scale = per_channel(self.scale, "std")
        return scale, per_channel(self.low, "low"), per_channel(self.high, "high")  # type: ignore[return-value]


@dataclass(frozen=True)
class Attack:
    """One attack's settings.

    Attributes:
        method: ``"fgsm"`` or ``"pgd"``.
        norm: ``"linf"`` or ``"l2"`` (over all pixels of an image, in ε's units).
        steps: PGD steps (``>= 1``; ignored by FGSM).
        step_size: PGD step as a fraction of ε (``α = step_size · ε``); default ``2.5 / steps``
            (Madry et al.).
        random_start: PGD starts from a uniform draw in the ε-ball.
        restarts: PGD tries per image (``>= 1``); an image counts as robust only if it survives
            every try.
        eot: ``0``: attack the deterministic eval mode; ``k >= 1``: gradients averaged over
            ``k`` draws of the stochastic downsamplers (expectation over transformation).
        seed: seeds the random starts (a generator of its own; the global RNG is untouched
            except by EOT's stochastic layers).

    Example:
        >>> Attack("pgd", steps=10).alpha(0.1)
        0.025
    """

    method: str = "pgd"
    norm: str = "linf"
    steps: int = 10
    step_size: float | None = None
    random_start: bool = True
    restarts: int = 1
    eot: int = 0
    seed: int = 0

    def __post_init__(self) -> None:
        if self.method not in ATTACKS:
            raise InputError(
                f"{_OP}: unknown attack {self.method!r}; allowed: {', '.join(ATTACKS)}"
            )
        if self.norm not in NORMS:
            raise InputError(f"{_OP}: unknown norm {self.norm!r}; allowed: {', '.join(NORMS)}")
        for name, low in (("steps", 1), ("restarts", 1), ("eot", 0)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise InputError(f"{_OP}: {name} must be an integer >= {low}, got {value!r}")
        if self.step_size is not None and not (
            math.isfinite(self.step_size) and self.step_size > 0
        ):
            raise InputError(f"{_OP}: step_size must be a finite number > 0, got {self.step_size}")

    def alpha(self, eps: float) -> float:
        """The PGD step in ε's units."""
        fraction = self.step_size if self.step_size is not None else 2.5 / self.steps
        return fraction * eps

    @property
    def passes(self) -> int:
        """Forward+backward passes per image and ε."""
        return (1 if self.method == "fgsm" else self.steps * self.restarts) * max(1, self.eot)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def check_eps(eps: Any) -> float:
    """``eps`` as a float; ``InputError`` unless finite and ``>= 0``."""
    if isinstance(eps, bool) or not isinstance(eps, (int, float)) or not math.isfinite(eps) \
            or eps < 0:
        raise InputError(f"{_OP}: ε must be a finite number >= 0, got {eps!r}")
    return float(eps)


def parse_eps(text: str | Iterable[float]) -> tuple[float, ...]:
    """A grid of ε from ``"0,1/255,2/255"`` (fractions allowed) or numbers; sorted, each once.

    Example:
        >>> parse_eps("2/255, 0, 1/255") == (0.0, 1 / 255, 2 / 255)
        True
    """
    if isinstance(text, str):
        values = []
        for part in text.split(","):
            part = part.strip()
            try:
                values.append(float(Fraction(part)))
            except (ValueError, ZeroDivisionError):
                raise InputError(
                    f"{_OP}: cannot read ε {part!r}; give numbers or fractions such as 8/255"
                ) from None
    else:
        values = list(text)
    if not values:
        raise InputError(f"{_OP}: the ε grid is empty")
    return tuple(sorted({check_eps(v) for v in values}))


# -- gradients -----------------------------------------------------------------------------------


@contextmanager
def _stochastic_downsamplers(model: nn.Module, on: bool) -> Iterator[None]:
    """The shiftpool downsamplers of ``model`` in training (random) mode inside the block."""
    if not on:
        yield
        return
    from shiftpool.downsample.base import Downsample

    saved = [(m, m.training) for m in model.modules() if isinstance(m, Downsample)]
    for m, _ in saved:
        m.train(True)
    try:
        yield
    finally:
        for m, training in saved:
            m.train(training)


def _gradient(model: nn.Module, x: Tensor, y: Tensor, eot: int) -> tuple[Tensor, Tensor | None]:
    """``∇_x Σ CE(model(x), y)``, averaged over ``eot`` stochastic draws when ``eot >= 1``;
    and the logits of that pass when it was deterministic (``eot == 0``), else ``None``."""
    x = x.detach().requires_grad_(True)
    draws = max(1, eot)
    with torch.enable_grad(), _stochastic_downsamplers(model, eot >= 1):
        total = torch.zeros_like(x)
        for _ in range(draws):
            logits = model(x)
            loss = F.cross_entropy(logits.float(), y, reduction="sum")
            (grad,) = torch.autograd.grad(loss, x)
            total = total + grad
    grad = (total / draws).detach() if draws > 1 else total.detach()
    return grad, (logits.detach() if eot == 0 else None)


def _norms(v: Tensor) -> Tensor:
    return v.flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, *([1] * (v.dim() - 1)))


def _clamp(x: Tensor, low: Tensor | None, high: Tensor | None) -> Tensor:
    if low is None or high is None:
        return x
    return torch.maximum(torch.minimum(x, high), low)


def _project(delta_z: Tensor, eps: float, norm: str) -> Tensor:
    """``delta_z`` (in ε's units) projected onto the ε-ball."""
    if norm == "linf":
        return delta_z.clamp(-eps, eps)
    norms = _norms(delta_z)
    # leave vectors within rounding of the sphere untouched (PGD-1 from 0 is then FGSM exactly)
    factor = torch.where(norms > eps * (1 + 1e-6), eps / norms, torch.ones_like(norms))
    return delta_z * factor


def _steepest(grad_z: Tensor, norm: str) -> Tensor:
    """The unit-norm steepest ascent direction for the norm, from a gradient in ε's units."""
    if norm == "linf":
        return grad_z.sign()
    return grad_z / _norms(grad_z)


# -- attacks -------------------------------------------------------------------------------------


def fgsm(
    model: nn.Module, x: Tensor, y: Tensor, eps: float, norm: str = "linf",
    space: Space | None = None, eot: int = 0,
) -> Tensor:
    """The fast gradient (sign) method: one step of size ε, then the valid range.

    L∞: ``x + ε/scale · sign(∇)``; L2: ``x + ε · g / ‖g‖ / scale`` with ``g = ∇ / scale`` the
    gradient in ε's units.

    Args:
        model: ``(N, C, H, W) → (N, K)`` logits, in the mode to attack (see the module docs).
        x: ``(N, C, H, W)`` inputs as the model takes them; y: ``(N,)`` true classes.
        eps: the budget in ``space``'s units; norm: ``"linf"`` or ``"l2"``.
        space: :class:`Space` (default ``Space.pixels()``: unnormalised pixels in ``[0, 1]``).

    Returns:
        ``(N, C, H, W)`` adversarial inputs (no gradient attached).

    Example:
        >>> net = nn.Sequential(nn.Flatten(), nn.Linear(4, 2))
        >>> x = torch.full((1, 1, 2, 2), 0.5)
        >>> (fgsm(net, x, torch.tensor([0]), 0.1) - x).abs().max().item() <= 0.1 + 1e-7
        True
    """
    eps = check_eps(eps)
    Attack("fgsm", norm)
    space = space or Space.pixels()
    scale, low, high = space.tensors(x)
    grad_z = _gradient(model, x, y, eot)[0] / scale
    return _clamp(x + eps * _steepest(grad_z, norm) / scale, low, high).detach()


def pgd(
    model: nn.Module, x: Tensor, y: Tensor, eps: float, settings: Attack | None = None,
    space: Space | None = None,
) -> Tensor:
    """Projected gradient descent (Madry et al.): ``settings.steps`` steps of size
    ``settings.alpha(ε)`` along the steepest ascent direction of the norm, each followed by the
    projection onto the ε-ball and the valid range; ``settings.restarts`` tries, keeping per
    image the first iterate (after at least one step) that fools the model, else the last.
    Hence PGD fools every image that its first iterate fools: with ``step_size=1`` and no random
    start, every image FGSM fools (PGD accuracy ≤ FGSM accuracy per image).

    With ``steps=1``, ``random_start=False``, ``step_size=1`` this is exactly :func:`fgsm`.

    Args: as :func:`fgsm`; ``settings``: an :class:`Attack` (its ``method`` is ignored).

    Returns:
        ``(N, C, H, W)`` adversarial inputs.

    Example:
        >>> net = nn.Sequential(nn.Flatten(), nn.Linear(4, 2))
        >>> x = torch.full((1, 1, 2, 2), 0.5)
        >>> adv = pgd(net, x, torch.tensor([0]), 0.1, Attack(steps=3, norm="l2"))
        >>> bool((adv - x).norm() <= 0.1 + 1e-6)
        True
    """
    eps = check_eps(eps)
    settings = settings or Attack()
    space = space or Space.pixels()
    scale, low, high = space.tensors(x)
    x = x.detach()
    alpha = settings.alpha(eps)
    generator = torch.Generator(device="cpu").manual_seed(settings.seed)
    best = x.clone()
    fooled = torch.zeros(x.shape[0], dtype=torch.bool, device=x.device)

    def keep(adv: Tensor, logits: Tensor | None) -> None:
        """Freeze each image at the first iterate that fools the model (judged in the model's
        own mode); the others follow the latest iterate."""
        nonlocal best, fooled
        if logits is None:
            with torch.no_grad():
                logits = model(adv)
        wrong = logits.argmax(dim=1) != y
        best = torch.where((~fooled).view(-1, 1, 1, 1), adv, best)
        fooled = fooled | wrong

    for _ in range(settings.restarts):
        if settings.random_start and eps > 0:
            delta_z = _random_in_ball(x, eps, settings.norm, generator)
        else:
            delta_z = torch.zeros_like(x)
        adv = _clamp(x + delta_z / scale, low, high)
        for step in range(settings.steps):
            delta_z = (adv - x) * scale
            grad, logits = _gradient(model, adv, y, settings.eot)
            if step > 0:  # the iterate the gradient was taken at (never the start point)
                keep(adv, logits)
            delta_z = _project(delta_z + alpha * _steepest(grad / scale, settings.norm), eps,
                               settings.norm)
            adv = _clamp(x + delta_z / scale, low, high)
        keep(adv, None)
    return best.detach()


def _random_in_ball(x: Tensor, eps: float, norm: str, generator: torch.Generator) -> Tensor:
    """A uniform draw in the ε-ball of the norm (ε's units), one per image."""
    if norm == "linf":
        u = torch.rand(x.shape, generator=generator, dtype=torch.float64)
        return ((2 * u - 1) * eps).to(x)
    direction = torch.randn(x.shape, generator=generator, dtype=torch.float64)
    direction = direction / _norms(direction)
    d = x[0].numel()
    radius = torch.rand(x.shape[0], generator=generator, dtype=torch.float64) ** (1.0 / d)
    return (direction * radius.view(-1, 1, 1, 1) * eps).to(x)


def attack(
    model: nn.Module, x: Tensor, y: Tensor, eps: float, settings: Attack | None = None,
    space: Space | None = None,
) -> Tensor:
    """:func:`fgsm` or :func:`pgd` as ``settings.method`` says (default PGD-10 L∞)."""
    settings = settings or Attack()
    if settings.method == "fgsm":
        return fgsm(model, x, y, eps, settings.norm, space, settings.eot)
    return pgd(model, x, y, eps, settings, space)


# -- robust accuracy -----------------------------------------------------------------------------


@dataclass
class RobustCurve:
    """Robust accuracy per ε (SPEC §7), with Wilson intervals.

    Attributes:
        eps: the budgets, ascending, in ``unit`` (``"pixel"`` or ``"input"``).
        accuracy: one :class:`~shiftpool.metrics.stats.Estimate` per ε.
        attack: the :class:`Attack` settings used.

    Example:
        >>> from shiftpool.metrics.stats import wilson_interval
        >>> c = RobustCurve((0.0, 0.1), [wilson_interval(9, 10), wilson_interval(5, 10)], Attack())
        >>> c.summary()
        {'rob_acc@0': 0.9, 'rob_acc@0.1': 0.5}
    """

    eps: tuple[float, ...]
    accuracy: list[Estimate]
    attack: Attack
    unit: str = "pixel"
    per_image: Any = field(default=None, repr=False)

    def summary(self) -> dict[str, float]:
        """``{"rob_acc@<ε>": accuracy}`` (ε printed as ``8/255`` when it is one)."""
        return {f"rob_acc@{format_eps(e)}": a.value for e, a in zip(self.eps, self.accuracy,
                                                                      strict=True)}

    def to_dict(self) -> dict[str, Any]:
        return {"eps": list(self.eps), "unit": self.unit, "attack": self.attack.to_dict(),
                "accuracy": [a.to_dict() for a in self.accuracy]}


def format_eps(eps: float) -> str:
    """``8/255`` for multiples of 1/255, else the shortest float text.

    Example:
        >>> format_eps(8 / 255), format_eps(0.0), format_eps(0.5)
        ('8/255', '0', '0.5')
    """
    k = eps * 255
    if eps > 0 and abs(k - round(k)) < 1e-9:
        return f"{round(k)}/255"
    return f"{eps:g}"


class RobustMeter:
    """Accumulates robust correctness per ε, batch by batch.

    An image counts as robust at ε only if it is also robust at every smaller ε of the grid
    (the attack at ε could have used the smaller budget), which makes the curve non-increasing
    by construction, as the true robust accuracy is; ε = 0 is the clean accuracy.

    Example:
        >>> net = nn.Sequential(nn.Flatten(), nn.Linear(4, 2))
        >>> meter = RobustMeter((0.0, 0.5), Attack("fgsm"))
        >>> meter.update(net, torch.rand(3, 1, 2, 2), torch.tensor([0, 1, 1])).shape
        torch.Size([3, 2])
        >>> [round(a.value, 3) >= round(b.value, 3) for a, b in zip(meter.curve().accuracy,
        ...                                                         meter.curve().accuracy[1:])]
        [True]
    """

    def __init__(
        self, eps: Iterable[float] | str, settings: Attack | None = None,
        space: Space | None = None, per_image: bool = False,
    ) -> None:
        self.eps = parse_eps(eps)
        self.settings = settings or Attack()
        self.space = space or Space.pixels()
        self.hits = [0] * len(self.eps)
        self.n = 0
        self.outcomes: list[Tensor] | None = [] if per_image else None

    def update(self, model: nn.Module, x: Tensor, y: Tensor) -> Tensor:
        """Attack a batch at every ε; returns ``(N, E)`` bool robust correctness."""
        robust = torch.ones(x.shape[0], dtype=torch.bool, device=x.device)
        columns = []
        for i, eps in enumerate(self.eps):
            adv = x if eps == 0 else attack(model, x, y, eps, self.settings, self.space)
            with torch.no_grad():
                robust = robust & (model(adv).argmax(dim=1) == y)
            self.hits[i] += int(robust.sum())
            columns.append(robust)
        self.n += x.shape[0]
        table = torch.stack(columns, dim=1)
        if self.outcomes is not None:
            self.outcomes.append(table.cpu())
        return table

    def curve(self, confidence: float = 0.95) -> RobustCurve:
        if self.n == 0:
            raise InputError(f"{_OP}: no images were attacked")
        per_image = torch.cat(self.outcomes).numpy() if self.outcomes else None
        return RobustCurve(
            self.eps, [wilson_interval(h, self.n, confidence) for h in self.hits], self.settings,
            self.space.unit, per_image,
        )


def robust_accuracy(
    model: nn.Module, batches: Iterable[tuple[Tensor, Tensor]], eps: Iterable[float] | str,
    settings: Attack | None = None, space: Space | None = None, confidence: float = 0.95,
) -> RobustCurve:
    """Robust accuracy of ``model`` (in eval mode, restored afterwards) per ε of the grid.

    Args:
        batches: ``(images (N, C, H, W), labels (N,))`` as the model takes them.
        eps: the grid (numbers, or text such as ``"0,1/255,8/255"``).
        settings, space: :class:`Attack` and :class:`Space`.

    Example:
        >>> net = nn.Sequential(nn.Flatten(), nn.Linear(4, 2))
        >>> data = [(torch.rand(8, 1, 2, 2), torch.randint(0, 2, (8,)))]
        >>> curve = robust_accuracy(net, data, "0,0.1,0.3", Attack("fgsm"))
        >>> [a.n for a in curve.accuracy]
        [8, 8, 8]
    """
    meter = RobustMeter(eps, settings, space)
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        for images, labels in batches:
            meter.update(model, images, labels)
    finally:
        for m, training in modes:
            m.train(training)
    return meter.curve(confidence)
