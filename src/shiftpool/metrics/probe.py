"""Forward hooks that measure every downsampling layer of a model on real data."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch
from torch import Tensor, nn

from shiftpool.metrics.layers import downsampling_layers
from shiftpool.metrics.stats import Estimate, MeanMeter

# measure(module, inputs, output) -> {quantity: per-image values (N,)}, or None to skip the call
Measure = Callable[[nn.Module, tuple[Tensor, ...], Tensor], "dict[str, Tensor] | None"]

MEAN_OVER_LAYERS = "mean"


class LayerProbe:
    """Measure per-image quantities at every downsampling layer while recording is on.

    Each recorded forward pass adds, for every layer, its per-image values to that layer's
    meters, and adds the per-image mean over the measured layers to the ``"mean"`` entry (so
    its interval respects that the layers see the same images). A layer called twice in one
    pass contributes the mean of its calls.

    Args:
        model: the network; its outermost downsampling layers are hooked
            (:func:`~shiftpool.metrics.layers.downsampling_layers`).
        measure: ``measure(module, inputs, output)`` returning ``{quantity: Tensor (N,)}``,
            or ``None`` when the call cannot be measured (the layer is listed in ``skipped``).

    Example:
        >>> net = nn.Sequential(nn.MaxPool2d(2))
        >>> probe = LayerProbe(net, lambda m, i, o: {"mean": o.mean((1, 2, 3))})
        >>> with probe, probe.recording():
        ...     _ = net(torch.ones(2, 1, 4, 4))
        >>> probe.estimates()["0"]["mean"].value
        1.0
    """

    def __init__(self, model: nn.Module, measure: Measure) -> None:
        self.layers = downsampling_layers(model)
        self.measure = measure
        self.skipped: set[str] = set()
        self._meters: dict[str, dict[str, MeanMeter]] = {}
        self._pass: dict[str, list[dict[str, Tensor]]] | None = None
        self._handles: list[torch.utils.hooks.RemovableHandle] = []

    def __enter__(self) -> LayerProbe:
        for name, module in self.layers:
            self._handles.append(module.register_forward_hook(self._hook(name)))
        return self

    def __exit__(self, *exc: object) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()

    @contextmanager
    def recording(self) -> Iterator[None]:
        """Measure the forward passes run inside this block."""
        self._pass = {}
        try:
            yield
            self._fold(self._pass)
        finally:
            self._pass = None

    def estimates(self, confidence: float = 0.95) -> dict[str, dict[str, Estimate]]:
        """``{layer: {quantity: Estimate}}`` in layer order, ``"mean"`` last."""
        return {
            layer: {q: meter.estimate(confidence) for q, meter in quantities.items()}
            for layer, quantities in self._meters.items()
            if all(meter.n for meter in quantities.values())
        }

    def _hook(self, name: str) -> Callable[..., None]:
        def hook(module: nn.Module, inputs: tuple[Tensor, ...], output: Tensor) -> None:
            if self._pass is None:
                return
            output = output[0] if isinstance(output, (tuple, list)) else output
            values = self.measure(module, inputs, output)
            if values is None:
                self.skipped.add(name)
            else:
                self._pass.setdefault(name, []).append(values)

        return hook

    def _fold(self, calls: dict[str, list[dict[str, Tensor]]]) -> None:
        per_layer = {name: _mean_of_calls(values) for name, values in calls.items()}
        if not per_layer:
            return
        for name, values in per_layer.items():
            self._update(name, values)
        quantities = set.intersection(*(set(v) for v in per_layer.values()))
        mean = {
            q: torch.stack([v[q] for v in per_layer.values()]).mean(0) for q in sorted(quantities)
        }
        self._update(MEAN_OVER_LAYERS, mean)
        # keep "mean" after the layers in the ordering of estimates()
        self._meters[MEAN_OVER_LAYERS] = self._meters.pop(MEAN_OVER_LAYERS)

    def _update(self, name: str, values: dict[str, Tensor]) -> None:
        meters = self._meters.setdefault(name, {})
        for quantity, v in values.items():
            meters.setdefault(quantity, MeanMeter()).update(v)


def _mean_of_calls(calls: list[dict[str, Tensor]]) -> dict[str, Tensor]:
    if len(calls) == 1:
        return calls[0]
    return {q: torch.stack([c[q] for c in calls]).mean(0) for q in calls[0]}
