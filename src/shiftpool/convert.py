"""Make any CNN shift-aware: strided layers become stride-1 layers plus a shiftpool downsampler.

:func:`convert` finds every ``Conv2d`` with stride > 1 and every strided ``MaxPool2d`` and
``AvgPool2d``, runs it at stride 1 and adds the chosen downsampler, keeping the weights:

* a strided convolution with a kernel > 1: the downsampler goes after the convolution's
  BatchNorm and activation (the chain of norm/activation/identity layers that follows it),
  found on the model's ``torch.fx`` graph. It is attached to the last parameter-free module of
  that chain (``relu`` becomes ``DownsampleAfter(relu, downsampler)``), or, where that module is
  shared (torchvision's ``BasicBlock.relu`` runs twice), to the input of the one convolution
  that consumes the chain. Where neither is possible it goes right after the convolution;
* a strided 1x1 convolution (a shortcut projection): downsampler → 1x1 convolution;
* a strided pool: the same pool at stride 1 → downsampler (Zhang's MaxBlurPool placement).

The report says which placement each layer got. No existing parameter or buffer changes its
state_dict key: ``converted.load_state_dict(original.state_dict(), strict=False)`` reports no
unexpected keys, and missing keys only for the downsamplers' own parameters (none for
parameter-free operators, so ``strict=True`` loads).

Residual blocks: the graph's additions show which downsampling points sit on the two branches
of one block. If the operator chooses a polyphase component per sample (``aps``, ``lps``), the
point that runs second follows the choice of the one that runs first, so that both branches
shift alike (SPEC §3). Other operators get one downsampler per point (``tips``: with its own
parameters on the shortcut).

A model that ``torch.fx`` cannot trace is still converted, with every downsampler right after
its convolution (before it for 1x1) and no phase sharing; the report says so.
"""

from __future__ import annotations

import copy
import operator
from collections import Counter
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, fx, nn

from shiftpool.core.checks import check_int
from shiftpool.core.errors import InputError, InputTypeError
from shiftpool.downsample import Downsample, create_downsample
from shiftpool.downsample.geometry import pair
from shiftpool.models.layers import circular_pool, operator_options, shares_phase, stride_one_pool

__all__ = ["ConversionReport", "DownsampleAfter", "DownsampledConv2d", "LayerChange", "convert"]

_POOLS = (nn.MaxPool2d, nn.AvgPool2d)
_NORMS = (nn.modules.batchnorm._BatchNorm, nn.GroupNorm)
_ACTIVATIONS = (
    nn.ReLU, nn.ReLU6, nn.SiLU, nn.GELU, nn.Hardswish, nn.Hardsigmoid, nn.LeakyReLU, nn.ELU,
    nn.CELU, nn.SELU, nn.Mish, nn.PReLU, nn.Hardtanh, nn.Tanh, nn.Sigmoid, nn.Softplus,
)  # fmt: skip
_POINTWISE_MODULES = (*_NORMS, *_ACTIVATIONS, nn.Identity, nn.modules.dropout._DropoutNd)
_POINTWISE_FUNCTIONS = {
    F.relu, F.relu_, F.relu6, F.silu, F.gelu, F.hardswish, F.hardsigmoid, F.leaky_relu, F.elu,
    F.celu, F.selu, F.mish, F.hardtanh, F.softplus, F.batch_norm, F.group_norm, F.dropout,
    torch.relu, torch.relu_, torch.sigmoid, torch.tanh, torch.batch_norm,
}  # fmt: skip
_POINTWISE_METHODS = {"relu", "relu_", "sigmoid", "sigmoid_", "tanh", "tanh_"}
_ADD_FUNCTIONS = {operator.add, operator.iadd, torch.add}
_ADD_METHODS = {"add", "add_"}
_SHAPE_METHODS = {"size", "dim"}
_UPSAMPLE_FUNCTIONS = {F.interpolate, F.upsample, F.upsample_bilinear, F.upsample_nearest}
_UPSAMPLE_MODULES = (nn.Upsample, nn.ConvTranspose2d)

#: What the report says about a model's upsampling (torchvision's segmentation heads).
UPSAMPLING_NOTE = ("upsampling stays valid at every size (interpolation to a given size), but "
                   "is not exactly shift-equivariant")
PAIRABLE_NOTE = ("; a polyphase upsampler can be paired with each downsampler: "
                 "shiftpool.downsample.upsample.create_upsample(downsampler)")


class DownsampledConv2d(nn.Conv2d):
    """A convolution with a downsampler before and/or after it.

    Built by :meth:`from_conv` from an existing convolution, whose ``weight`` and ``bias`` it
    shares under the same keys; the downsamplers add keys ``downsample_before.*`` and
    ``downsample_after.*``.

    Shape: ``(N, C_in, H, W)`` → the convolution's output, downsampled by each stride.

    Example:
        >>> conv = nn.Conv2d(4, 8, 1)
        >>> down = DownsampledConv2d.from_conv(conv, before=create_downsample("max", 4))
        >>> down(torch.randn(2, 4, 8, 8)).shape
        torch.Size([2, 8, 4, 4])
    """

    def __init__(
        self,
        *args: Any,
        downsample_before: nn.Module | None = None,
        downsample_after: nn.Module | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.downsample_before = downsample_before
        self.downsample_after = downsample_after

    @classmethod
    def from_conv(
        cls, conv: nn.Conv2d, before: nn.Module | None = None, after: nn.Module | None = None
    ) -> DownsampledConv2d:
        """``conv`` (same parameters, stride and padding) between ``before`` and ``after``."""
        new = cls(
            conv.in_channels,
            conv.out_channels,
            conv.kernel_size,
            stride=conv.stride,
            padding=conv.padding,
            dilation=conv.dilation,
            groups=conv.groups,
            bias=conv.bias is not None,
            padding_mode=conv.padding_mode,
            device="meta",
            downsample_before=before,
            downsample_after=after,
        )
        new.weight = conv.weight
        new.bias = conv.bias
        return new.train(conv.training)

    def forward(self, x: Tensor) -> Tensor:
        if self.downsample_before is not None:
            x = self.downsample_before(x)
        x = super().forward(x)
        if self.downsample_after is not None:
            x = self.downsample_after(x)
        return x


class DownsampleAfter(nn.Module):
    """``downsample(module(x))``: attaches a downsampler to a parameter-free module.

    Example:
        >>> layer = DownsampleAfter(nn.ReLU(), create_downsample("max"))
        >>> layer(torch.randn(1, 3, 8, 8)).shape
        torch.Size([1, 3, 4, 4])
    """

    def __init__(self, module: nn.Module, downsample: nn.Module) -> None:
        super().__init__()
        self.module = module
        self.downsample = downsample

    def forward(self, *args: Any, **kwargs: Any) -> Tensor:
        return self.downsample(self.module(*args, **kwargs))


@dataclass(frozen=True)
class LayerChange:
    """What :func:`convert` did to one strided layer.

    Attributes:
        layer: qualified name of the strided convolution or pool.
        kind: ``"conv"``, ``"conv1x1"`` (e.g. a shortcut projection) or ``"pool"``.
        channels: channels the downsampler sees (``None`` if unknown).
        stride: the layer's stride, now the downsampler's.
        placement: where the downsampler runs, in words.
        module: qualified name of the downsampler module.
        phase: ``"follows <layer>"`` / ``"leads <layer>"`` for shared phases, else ``""``.
    """

    layer: str
    kind: str
    channels: int | None
    stride: tuple[int, int]
    placement: str
    module: str
    phase: str = ""


@dataclass
class ConversionReport:
    """The readable list of what :func:`convert` changed (``print(report)``).

    Attributes:
        method: the operator.
        options: its options.
        model: the model's class name.
        changes: one :class:`LayerChange` per converted layer, in execution order.
        skipped: ``(layer, reason)`` for each strided layer left as it was.
        circular: layers whose padding was made circular.
        traced: whether placement used the model's ``torch.fx`` graph.
        note: why not, if not.
        upsampling: the model's upsampling points (segmentation heads), ``"<node>: <what>"``;
            they are left as they are (see :data:`UPSAMPLING_NOTE`).
    """

    method: str
    options: dict[str, Any]
    model: str
    changes: list[LayerChange] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    circular: list[str] = field(default_factory=list)
    traced: bool = True
    note: str = ""
    upsampling: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        options = ", ".join(f"{k}={v!r}" for k, v in self.options.items())
        lines = [
            f"shiftpool.convert: {self.model}, {len(self.changes)} layer(s) → "
            f"{self.method}({options})"
            + ("" if self.traced else f"; {self.note}, no phase sharing")
        ]
        header = ("layer", "kind", "channels", "stride", "downsampler placement", "phase")
        rows = [
            (c.layer, c.kind, str(c.channels), f"{c.stride[0]}x{c.stride[1]}", c.placement, c.phase)
            for c in self.changes
        ]
        widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header) - 1)]
        for row in [header, *rows]:
            cells = [cell.ljust(width) for cell, width in zip(row, widths, strict=False)]
            lines.append("  " + "  ".join([*cells, row[-1]]).rstrip())
        lines += [f"  skipped {layer}: {reason}" for layer, reason in self.skipped]
        if self.circular:
            lines.append(f"  circular padding in {len(self.circular)} layer(s)")
        lines += [f"  upsampling {where}, kept" for where in self.upsampling]
        if self.upsampling:
            paired = self.method in ("aps", "lps", "tips")
            lines.append("  " + UPSAMPLING_NOTE + (PAIRABLE_NOTE if paired else ""))
        return "\n".join(lines)


@dataclass
class _Point:
    """A strided layer to convert, and the plan for it."""

    name: str
    module: nn.Module
    kind: str
    stride: tuple[int, int]
    order: int
    node: fx.Node | None = None
    channels: int | None = None
    placement: str = ""
    how: str = ""  # "wrap" | "before" | "after" | "pool"
    target: str = ""
    leader: _Point | None = None
    phase: str = ""
    downsampler: nn.Module | None = None


def convert(
    model: nn.Module,
    method: str,
    *,
    skip_stem: bool = False,
    min_channels: int = 0,
    circular: bool = False,
    inplace: bool = False,
    verbose: bool = False,
    return_report: bool = False,
    **options: Any,
) -> nn.Module | tuple[nn.Module, ConversionReport]:
    """Replace every strided convolution and pool of ``model`` by stride 1 + ``method``.

    Args:
        model: any ``nn.Module``.
        method: a registered operator (:func:`shiftpool.list_downsamples`).
        skip_stem: leave the first downsampling layer strided if it is a convolution (Zhang
            keeps ResNet's 7x7/2 stem convolution and converts only its max pool).
        min_channels: leave layers whose downsampler would see fewer channels.
        circular: also make the padding of every convolution and pool circular, and the
            operator's (unless given in ``options``): with ``aps``, or ``lps`` in eval mode, the
            network is then exactly invariant to circular shifts of inputs that every stride
            divides.
        inplace: modify ``model`` itself instead of a deep copy.
        verbose: print the report.
        return_report: return ``(model, report)``.
        **options: options of the operator; one it does not take is a ``TypeError``.

    Returns:
        The converted model, and the :class:`ConversionReport` if ``return_report``.

    Raises:
        ValueError: unknown operator, nothing to convert, or a model converted already.

    Example:
        >>> import torchvision
        >>> net = convert(torchvision.models.resnet18(), "blur", filter_size=3)
        >>> net(torch.randn(1, 3, 64, 64)).shape
        torch.Size([1, 1000])
    """
    if not isinstance(model, nn.Module):
        raise InputTypeError(
            f"shiftpool.convert: expected an nn.Module, got {type(model).__name__}"
        )
    check_int(min_channels, "shiftpool.convert: min_channels", minimum=0)
    options = operator_options(method, options, circular)
    _refuse_converted(model)
    if not _strided_layers(model):
        raise InputError(
            f"shiftpool.convert: nothing to convert in {type(model).__name__}: it has no "
            "Conv2d, MaxPool2d or AvgPool2d with stride > 1"
        )
    if not inplace:
        model = copy.deepcopy(model)
    report = ConversionReport(method, dict(options), type(model).__name__)
    points = _plan(model, report, skip_stem=skip_stem, min_channels=min_channels)
    if not points:
        skipped = "; ".join(f"{layer}: {reason}" for layer, reason in report.skipped)
        raise InputError(
            f"shiftpool.convert: nothing to convert in {type(model).__name__}: every strided "
            f"layer was skipped ({skipped})"
        )
    _build_downsamplers(points, method, options, _reference_tensor(model))
    _apply(model, points, circular)
    if circular:
        report.circular = _make_circular(model)
    report.changes = [_change(p) for p in points]
    if verbose:
        print(report)
    return (model, report) if return_report else model


# --- finding and planning ---------------------------------------------------------------------


def _refuse_converted(model: nn.Module) -> None:
    """Raise if ``model`` already holds a shiftpool downsampler: never downsample twice."""
    for name, module in model.named_modules():
        if isinstance(module, (Downsample, DownsampledConv2d, DownsampleAfter)):
            raise InputError(
                f"shiftpool.convert: {type(model).__name__} already has a shiftpool downsampler "
                f"at {name!r} ({type(module).__name__}); convert the original model instead "
                "(converting twice would downsample twice)"
            )


def _layer_stride(module: nn.Module) -> tuple[int, int]:
    stride = module.stride if module.stride is not None else module.kernel_size
    return pair(tuple(stride) if isinstance(stride, list) else stride, "stride", "convert")


def _strided_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """``(name, module)`` of every strided ``Conv2d``, ``MaxPool2d`` and ``AvgPool2d``."""
    return [
        (name, module)
        for name, module in model.named_modules()
        if isinstance(module, (nn.Conv2d, *_POOLS)) and _layer_stride(module) != (1, 1)
    ]


class _Tracer(fx.Tracer):
    """Keeps every convolution and pool (subclasses too) as one node of the graph."""

    def is_leaf_module(self, module: nn.Module, qualified_name: str) -> bool:
        return isinstance(module, (nn.Conv2d, *_POOLS)) or super().is_leaf_module(
            module, qualified_name
        )


def _trace(model: nn.Module) -> tuple[fx.Graph | None, str]:
    try:
        return _Tracer().trace(model), ""
    except Exception as error:  # any failure to trace means: place without the graph
        return None, f"not traceable by torch.fx ({type(error).__name__})"


def _plan(
    model: nn.Module, report: ConversionReport, *, skip_stem: bool, min_channels: int
) -> list[_Point]:
    """The points to convert, each with its placement, in execution order."""
    graph, report.note = _trace(model)
    report.traced = graph is not None
    modules = dict(model.named_modules())
    if graph is not None:
        report.upsampling = _upsampling_points(graph, modules)
    layers = []
    for name, module in _strided_layers(model):
        if getattr(module, "ceil_mode", False):
            report.skipped.append((name, "ceil_mode=True: a stride-1 pool would change its size"))
        else:
            layers.append((name, module))
    if graph is None:
        points = _points_without_graph(layers, modules, report)
    else:
        points = _points_on_graph(graph, layers, modules, report)
    points = _drop_skipped(points, report, skip_stem=skip_stem, min_channels=min_channels)
    if graph is not None:
        _pair_residual_points(graph, points)
    return sorted(points, key=lambda p: p.order)


def _upsampling_points(graph: fx.Graph, modules: dict[str, nn.Module]) -> list[str]:
    """``"<node>: <what>"`` for each interpolation or transposed convolution of the graph."""
    found = []
    for node in graph.nodes:
        if node.op == "call_function" and node.target in _UPSAMPLE_FUNCTIONS:
            mode = node.kwargs.get("mode", "nearest")
            found.append(f"{node.name}: F.{node.target.__name__}(mode={mode!r})")
        elif node.op == "call_module" and isinstance(modules.get(node.target), _UPSAMPLE_MODULES):
            found.append(f"{node.target}: {type(modules[node.target]).__name__}")
    return found


def _kind(module: nn.Module) -> str:
    if isinstance(module, _POOLS):
        return "pool"
    return "conv1x1" if module.kernel_size == (1, 1) else "conv"


def _points_on_graph(
    graph: fx.Graph,
    layers: list[tuple[str, nn.Module]],
    modules: dict[str, nn.Module],
    report: ConversionReport,
) -> list[_Point]:
    nodes = list(graph.nodes)
    index = {node: i for i, node in enumerate(nodes)}
    calls = Counter(node.target for node in nodes if node.op == "call_module")
    node_of = {node.target: node for node in nodes if node.op == "call_module"}
    points = []
    for name, module in layers:
        if calls[name] != 1:
            reason = "not called in forward" if calls[name] == 0 else f"called {calls[name]} times"
            report.skipped.append((name, reason))
            continue
        node = node_of[name]
        point = _Point(name, module, _kind(module), _layer_stride(module), index[node], node)
        if point.kind == "pool":
            _place_pool(point, _channels_into(node, modules))
        elif not _place_on_graph(point, modules, calls, index):
            report.skipped.append((name, point.placement))
            continue
        points.append(point)
    return points


def _place_pool(point: _Point, channels: int | None) -> None:
    point.how, point.target, point.channels = "pool", point.name, channels
    point.placement = "stride-1 pool, then the downsampler"


def _place_on_graph(
    point: _Point, modules: dict[str, nn.Module], calls: Counter, index: dict[fx.Node, int]
) -> bool:
    """Choose where ``point``'s downsampler goes; ``False`` (reason in placement) if nowhere."""
    conv = point.module
    plain = type(conv) is nn.Conv2d
    if point.kind == "conv1x1" and plain:
        _set(point, "before", point.name, conv.in_channels, "before the 1x1 conv", point.order)
        return True
    chain = _pointwise_chain(point.node, modules)
    end = chain[-1] if chain else point.node
    parent = point.name.rpartition(".")[0]
    names = " → ".join(_node_label(n, parent) for n in chain)
    channels = conv.out_channels
    wrappable = chain and end.op == "call_module" and _stateless(modules[end.target])
    if wrappable and calls[end.target] == 1:
        _set(point, "wrap", end.target, channels, f"after {names}", index[end])
        return True
    users = _data_users(end)
    consumer = users[0] if len(users) == 1 else None
    if (
        consumer is not None
        and consumer.op == "call_module"
        and type(modules[consumer.target]) is nn.Conv2d
        and calls[consumer.target] == 1
    ):
        where = f"after {names}, at the input of {_relative(consumer.target, parent)}"
        _set(point, "before", consumer.target, channels, where, index[consumer])
        return True
    if plain:
        why = "no parameter-free module after it" if chain else "no norm/activation follows"
        _set(point, "after", point.name, channels, f"right after the conv ({why})", point.order)
        return True
    point.placement = f"{type(conv).__name__} is not a plain Conv2d and has no place after it"
    return False


def _set(point: _Point, how: str, target: str, channels: int, placement: str, order: int) -> None:
    point.how, point.target, point.channels, point.placement, point.order = (
        how, target, channels, placement, order,
    )  # fmt: skip


def _points_without_graph(
    layers: list[tuple[str, nn.Module]], modules: dict[str, nn.Module], report: ConversionReport
) -> list[_Point]:
    """Untraceable model: right after each convolution (before a 1x1), pools as usual."""
    points = []
    for order, (name, module) in enumerate(layers):
        point = _Point(name, module, _kind(module), _layer_stride(module), order)
        if point.kind == "pool":
            _place_pool(point, _channels_before_in_registration(name, modules))
        elif type(module) is not nn.Conv2d:
            report.skipped.append((name, f"{type(module).__name__} is not a plain Conv2d"))
            continue
        elif point.kind == "conv1x1":
            _set(point, "before", name, module.in_channels, "before the 1x1 conv", order)
        else:
            _set(point, "after", name, module.out_channels, "right after the conv", order)
        points.append(point)
    return points


def _channels_before_in_registration(name: str, modules: dict[str, nn.Module]) -> int | None:
    """Channels of the last conv/norm registered before ``name`` (untraceable models)."""
    channels = None
    for other, module in modules.items():
        if other == name:
            return channels
        channels = _module_channels(module) or channels
    return channels


def _module_channels(module: nn.Module) -> int | None:
    for attribute in ("out_channels", "num_features", "num_channels"):
        value = getattr(module, attribute, None)
        if isinstance(value, int):
            return value
    return None


def _is_pointwise(node: fx.Node, modules: dict[str, nn.Module]) -> bool:
    """Whether ``node`` maps each pixel on its own (a norm, activation, identity or dropout)."""
    if node.op == "call_module":
        return isinstance(modules[node.target], _POINTWISE_MODULES)
    return _calls(node, _POINTWISE_FUNCTIONS, _POINTWISE_METHODS)


def _calls(node: fx.Node, functions: Collection[object], methods: Collection[str]) -> bool:
    """Whether ``node`` calls one of ``functions`` or one of the tensor ``methods`` (by name)."""
    if node.op == "call_function":
        return node.target in functions
    return node.op == "call_method" and node.target in methods


def _data_users(node: fx.Node) -> list[fx.Node]:
    """The users of ``node`` that read its values, not only its shape (``x.ndim``, ``x.size()``)."""
    return [
        user
        for user in node.users
        if not (user.op == "call_function" and user.target is getattr)
        and not (user.op == "call_method" and user.target in _SHAPE_METHODS)
    ]


def _pointwise_chain(node: fx.Node, modules: dict[str, nn.Module]) -> list[fx.Node]:
    """The norm/activation nodes that follow ``node``, each the only user of the one before."""
    chain: list[fx.Node] = []
    while len(users := _data_users(node)) == 1:
        user = users[0]
        if not user.args or user.args[0] is not node or not _is_pointwise(user, modules):
            break
        chain.append(user)
        node = user
    return chain


def _node_label(node: fx.Node, parent: str) -> str:
    """A short name for ``node``: its module's name relative to ``parent``, or its function's."""
    if node.op == "call_module":
        return _relative(node.target, parent)
    return getattr(node.target, "__name__", str(node.target))


def _relative(name: str, parent: str) -> str:
    return name[len(parent) + 1 :] if parent and name.startswith(f"{parent}.") else name


def _stateless(module: nn.Module) -> bool:
    return not any(True for _ in module.parameters()) and not any(True for _ in module.buffers())


def _channels_into(node: fx.Node, modules: dict[str, nn.Module]) -> int | None:
    """Channels of ``node``'s input: those of the nearest conv or norm upstream."""
    current = node.args[0] if node.args else None
    while isinstance(current, fx.Node):
        if current.op == "call_module":
            channels = _module_channels(modules[current.target])
            if channels is not None:
                return channels
        current = current.args[0] if current.args else None
    return None


def _drop_skipped(
    points: list[_Point], report: ConversionReport, *, skip_stem: bool, min_channels: int
) -> list[_Point]:
    first = min(points, key=lambda p: p.order, default=None)
    kept = []
    for point in points:
        if skip_stem and point is first and point.kind != "pool":
            report.skipped.append((point.name, "stem (skip_stem=True)"))
        elif min_channels and (point.channels is None or point.channels < min_channels):
            report.skipped.append((point.name, f"{point.channels} channels < {min_channels}"))
        else:
            kept.append(point)
    return kept


# --- residual blocks --------------------------------------------------------------------------


def _is_add(node: fx.Node) -> bool:
    return _calls(node, _ADD_FUNCTIONS, _ADD_METHODS)


def _ancestors(node: fx.Node) -> set[fx.Node]:
    seen = {node}
    stack = [node]
    while stack:
        for parent in stack.pop().all_input_nodes:
            if parent not in seen:
                seen.add(parent)
                stack.append(parent)
    return seen


def _pair_residual_points(graph: fx.Graph, points: list[_Point]) -> None:
    """Where one downsampling point sits on each branch of a residual addition, the later one
    follows the earlier one's phase."""
    by_node = {p.node: p for p in points if p.node is not None}
    for node in graph.nodes:
        branches = [a for a in node.args[:2] if isinstance(a, fx.Node)] if _is_add(node) else []
        if len(branches) != 2:
            continue
        left, right = (_ancestors(branch) for branch in branches)
        on_left = [p for n, p in by_node.items() if n in left and n not in right]
        on_right = [p for n, p in by_node.items() if n in right and n not in left]
        if len(on_left) != 1 or len(on_right) != 1:
            continue
        first, second = sorted((on_left[0], on_right[0]), key=lambda p: p.order)
        alike = first.stride == second.stride and _keeps_size(first) and _keeps_size(second)
        if alike and first.leader is None and second.leader is None:
            second.leader = first


def _keeps_size(point: _Point) -> bool:
    """Whether the input of ``point``'s downsampler has the size of the layer's input, as a
    follower needs (a stride-1 conv or pool padded by ``dilation * (kernel - 1) / 2``)."""
    module = point.module
    kernel = pair(module.kernel_size, "kernel_size", "convert")
    dilation = pair(getattr(module, "dilation", 1), "dilation", "convert")
    padding = module.padding
    if isinstance(padding, str):
        return padding == "same"
    padding = pair(padding, "padding", "convert", minimum=0)
    return all(2 * p == d * (k - 1) for p, d, k in zip(padding, dilation, kernel, strict=True))


# --- building and applying --------------------------------------------------------------------


def _reference_tensor(model: nn.Module) -> Tensor | None:
    return next(iter(model.parameters()), None)


def _build_downsamplers(
    points: list[_Point], method: str, options: dict[str, Any], reference: Tensor | None
) -> None:
    """Give each point its downsampler; a follower where its leader shares phases."""
    built: dict[int, nn.Module] = {}
    for point in points:  # execution order: a leader is built before its follower
        leader = built.get(id(point.leader)) if point.leader is not None else None
        if leader is not None and shares_phase(leader):
            downsampler = leader.follower()
            point.phase = f"follows {point.leader.name}"
            point.leader.phase = f"leads {point.name}"
        else:
            downsampler = _create(method, point, options)
        if reference is not None:
            downsampler = downsampler.to(device=reference.device, dtype=reference.dtype)
        built[id(point)] = downsampler.train(point.module.training)
    for point in points:
        point.downsampler = built[id(point)]


def _create(method: str, point: _Point, options: dict[str, Any]) -> nn.Module:
    try:
        return create_downsample(method, point.channels, point.stride, **options)
    except ValueError as error:
        if point.channels is not None:
            raise
        raise InputError(
            f"shiftpool.convert: {method} needs the channel count of {point.kind} "
            f"{point.name!r}, which could not be found from the layers before it"
        ) from error


def _apply(model: nn.Module, points: list[_Point], circular: bool) -> None:
    """Run the points at stride 1 and attach their downsamplers, keeping every state_dict key."""
    before: dict[str, list[nn.Module]] = {}
    after: dict[str, nn.Module] = {}
    for point in points:
        if point.kind != "pool":
            point.module.stride = (1, 1)
        if point.how == "before":
            before.setdefault(point.target, []).append(point.downsampler)
        elif point.how == "after":
            after[point.target] = point.downsampler
        elif point.how == "wrap":
            _wrap(model, point.target, model.get_submodule(point.target), point.downsampler)
        else:
            _wrap(model, point.target, stride_one_pool(point.module, circular), point.downsampler)
    for name in sorted(set(before) | set(after)):
        conv = model.get_submodule(name)
        new = DownsampledConv2d.from_conv(conv, _chain(before.get(name, [])), after.get(name))
        _replace(model, name, new)


def _wrap(model: nn.Module, name: str, module: nn.Module, downsampler: nn.Module) -> None:
    training = model.get_submodule(name).training
    _replace(model, name, DownsampleAfter(module, downsampler).train(training))


def _chain(downsamplers: list[nn.Module]) -> nn.Module | None:
    """One module running ``downsamplers`` in turn (a conv consuming two downsampled chains)."""
    if len(downsamplers) <= 1:
        return downsamplers[0] if downsamplers else None
    return nn.Sequential(*downsamplers)


def _replace(model: nn.Module, name: str, module: nn.Module) -> None:
    parent, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent), child, module)


def _make_circular(model: nn.Module) -> list[str]:
    """Circular padding in every padded conv and pool outside the downsamplers; their names."""
    changed = []
    inside = tuple(f"{name}." for name, m in model.named_modules() if isinstance(m, Downsample))
    for name, module in list(model.named_modules()):
        if name.startswith(inside):
            continue
        if isinstance(module, nn.Conv2d) and _padded(module) and module.padding_mode != "circular":
            module.padding_mode = "circular"
            changed.append(name)
        elif isinstance(module, _POOLS) and _padded(module):
            _replace(model, name, circular_pool(module))
            changed.append(name)
    return changed


def _padded(module: nn.Module) -> bool:
    padding = module.padding
    return isinstance(padding, str) or any(pair(padding, "padding", "convert", minimum=0))


def _change(point: _Point) -> LayerChange:
    attribute = {"before": "downsample_before", "after": "downsample_after"}
    module = attribute.get(point.how, "downsample")
    return LayerChange(
        layer=point.name,
        kind=point.kind,
        channels=point.channels,
        stride=point.stride,
        placement=point.placement,
        module=f"{point.target}.{module}",
        phase=point.phase,
    )
