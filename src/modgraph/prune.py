"""Modularity-guided layer pruning: find redundant layers, remove them, count the savings.

The paper reads degradation and plateaus of a modularity curve as redundant
layers. :func:`redundant_layers` turns that into a rule. With ``Q_i`` the mean
modularity of layer ``i`` over the curve's repeats and ``dQ_i = Q_i - Q_{i-1}``,
layer ``i`` is redundant when ``dQ_i < threshold``: it adds less than
``threshold`` modularity to the layer before it. Each verdict is a

- ``"drop"`` when ``dQ_i < -se_i``: modularity falls by more than its noise,
- ``"plateau"`` when ``|dQ_i| <= se_i``: the change is within noise,
- ``"slow growth"`` otherwise (``se_i < dQ_i < threshold``),

where ``se_i`` is the standard error of ``dQ_i`` over repeats (the standard
deviation of the per-repeat differences over ``sqrt(repeats)``; 0 for a single
repeat). The first layer (stem or first unit) is never proposed: it has no
layer before it to compare with. The last layer can be: the paper prunes
"where the curve drops, reaches a plateau or grows slowly", the end of the
curve included (its VGG19_1 loses the last unit, and the authors' released
ResNet56 lost the last block of its third stage). The default
``threshold=0.01`` is a choice, not a fitted value: modularity rises by a few
hundredths per layer where a network still separates classes; deep networks
with many layers rise less per layer, so look at the curve and pass a
threshold that suits it (the authors' code used 0.03).

:func:`prune` removes layers from a modgraph VGG (Conv-BN-ReLU units) or ResNet
(residual blocks). Only layers whose output has the shape of their input can
go, so that the next layer's weights still fit: VGG units with equal input and
output channels, residual blocks with an identity shortcut. A stage is never
emptied. The pruned model is the same class with its configuration shortened
(``stages`` or ``depths``) and the parent's weights in every kept layer, so
fine-tuning starts from the trained parent. Layer names follow positions: after
removing ``layer3.2``, the parent's ``layer3.3`` is the child's ``layer3.2``.

For the model store, :func:`depth_variant` gives the configuration overrides of
a model with chosen layers removed, and :func:`transfer_weights` copies a
trained parent's weights into such a child. :func:`removed_layers` names the
layers a registered depth variant (``vgg19_3``) lacks against its parent, and
:func:`removed_delta_q` the modularity they add on the parent's curve.

:func:`complexity` counts parameters and multiply-accumulates with thop.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import torch
from torch import nn

from modgraph.checks import finite_number
from modgraph.features import layer_names
from modgraph.models import create_model, model_config
from modgraph.models.resnet_cifar import AUTHORS_RESNET56_DEPTHS
from modgraph.paper import PAPER_TABLE1_MODEL, PLATEAU_RISE
from modgraph.registry import Registry

__all__ = [
    "LayerVerdict",
    "redundant_layers",
    "layer_steps",
    "prunable_layers",
    "select_removable",
    "prune",
    "depth_variant",
    "depth_overrides",
    "transfer_weights",
    "removed_layers",
    "removed_delta_q",
    "Complexity",
    "complexity",
    "reduction",
    "AUTHORS_TABLE1_ARCHS",
    "curve_removal",
    "authors_complexity",
]

class CurveLike(Protocol):
    """What :func:`redundant_layers` reads from a ``modgraph.curve.Curve``."""

    layers: tuple[str, ...]

    @property
    def array(self) -> np.ndarray: ...


@dataclass(frozen=True)
class LayerVerdict:
    """One redundant layer: its name and depth index in the curve, ``dQ`` and its standard error, why."""

    layer: str
    index: int
    dq: float
    dq_se: float
    kind: str
    reason: str


def layer_steps(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean step ``dQ`` and its standard error over repeats: ``(R, L) -> ((L-1,), (L-1,))``.

    Entry ``i`` is the change from layer ``i`` to layer ``i + 1``.
    """
    values = np.asarray(values, dtype=np.float64)
    if values.ndim != 2 or values.shape[0] < 1 or values.shape[1] < 2:
        raise ValueError(f"values must have shape (repeats >= 1, layers >= 2), got {values.shape}")
    if not np.isfinite(values).all():
        raise ValueError("curve values must be finite")
    steps = np.diff(values, axis=1)
    repeats = values.shape[0]
    se = steps.std(axis=0, ddof=1) / math.sqrt(repeats) if repeats > 1 else np.zeros(steps.shape[1])
    return steps.mean(axis=0), se


def _verdict(layer: str, index: int, previous: str, dq: float, se: float, threshold: float) -> LayerVerdict:
    change = f"{dq:+.4f} ± {se:.4f} from {previous}"
    if dq < -se:
        kind, reason = "drop", f"modularity drops: {change}"
    elif dq <= se:
        kind, reason = "plateau", f"modularity stays flat: {change}, within noise"
    else:
        kind, reason = "slow growth", f"modularity grows slowly: {change}, below the threshold {threshold:g}"
    return LayerVerdict(layer, index, float(dq), float(se), kind, reason)


def redundant_layers(
    curve: CurveLike, threshold: float = PLATEAU_RISE, *, prunable: Sequence[str] | None = None
) -> list[LayerVerdict]:
    """The layers of ``curve`` that add less than ``threshold`` modularity (rule in the module docstring).

    Never the first layer; the last one can be. ``prunable`` restricts the answer to those
    layer names (e.g. :func:`prunable_layers` of the model); a name that is not a
    layer of the curve raises ``ValueError``. Verdicts are in depth order.
    """
    finite_number(threshold, "threshold")
    layers = list(curve.layers)
    if len(layers) < 2:
        return []
    dq, se = layer_steps(curve.array)
    allowed = set(layers) if prunable is None else set(prunable)
    unknown = sorted(allowed - set(layers))
    if unknown:
        raise ValueError(f"prunable names {', '.join(unknown)} are not layers of the curve; "
                         f"its layers: {', '.join(layers)}")
    return [
        _verdict(layers[i], i, layers[i - 1], dq[i - 1], se[i - 1], threshold)
        for i in range(1, len(layers))
        if dq[i - 1] < threshold and layers[i] in allowed
    ]


@dataclass(frozen=True)
class _Family:
    """How to shorten one architecture: its stage containers and configuration field."""

    container: str
    config_field: str
    keeps_shape: Callable[[nn.Module], bool]
    shorten: Callable[[Any, dict[int, list[int]]], Any]


FAMILIES: Registry[_Family] = Registry("prunable architecture")
FAMILIES.register("VGG", _Family(
    "stage", "stages",
    lambda unit: unit.conv.in_channels == unit.conv.out_channels,
    lambda config, kept: tuple(tuple(stage[i] for i in kept[s]) for s, stage in enumerate(config.stages, 1)),
))
FAMILIES.register("ResNet", _Family(
    "layer", "depths",
    lambda block: isinstance(block.shortcut, nn.Identity),
    lambda config, kept: tuple(len(kept[s]) for s in range(1, len(config.depths) + 1)),
))


def _family(model: nn.Module) -> _Family:
    if not isinstance(model, nn.Module):
        raise ValueError(f"expected a torch model, got {type(model).__name__}")
    return FAMILIES.get(type(model).__name__)


def _stages(model: nn.Module, family: _Family) -> list[nn.Sequential]:
    return [getattr(model, f"{family.container}{s}")
            for s in range(1, len(getattr(model.config, family.config_field)) + 1)]


def _units(model: nn.Module) -> dict[str, tuple[int, int, nn.Module]]:
    """Every removable-in-principle unit: block name -> (stage, position, module)."""
    family = _family(model)
    return {f"{family.container}{s}.{u}": (s, u, unit)
            for s, stage in enumerate(_stages(model, family), 1) for u, unit in enumerate(stage)}


def _aliases(model: nn.Module) -> dict[str, str]:
    """Layer name under either tap -> the block-tap name."""
    blocks = layer_names(model, "block")
    return {**dict(zip(layer_names(model, "conv"), blocks)), **{b: b for b in blocks}}


def prunable_layers(model: nn.Module, tap: str = "block") -> list[str]:
    """Names (under ``tap``) of the layers :func:`prune` can remove: shape-preserving units, in depth order."""
    family, units = _family(model), _units(model)
    names = layer_names(model, tap)
    block = dict(zip(names, layer_names(model, "block")))
    return [name for name in names if block[name] in units and family.keeps_shape(units[block[name]][2])]


def _block_names(model: nn.Module, layers: Sequence[str | LayerVerdict]) -> list[str]:
    """The block-tap names of ``layers`` (names under either tap, or verdicts); ``ValueError`` for unknown ones."""
    if isinstance(layers, str):
        raise ValueError(f"layers must be a list of layer names, not the string {layers!r}")
    aliases = _aliases(model)
    names = [item.layer if isinstance(item, LayerVerdict) else item for item in layers]
    unknown = [name for name in names if name not in aliases]
    if unknown:
        raise ValueError(
            f"{', '.join(map(repr, unknown))} {'is not a layer' if len(unknown) == 1 else 'are not layers'} of this "
            f"{type(model).__name__} (a curve of another architecture?); valid choices: "
            f"{', '.join(layer_names(model, 'block'))} (or their tap 'conv' names)"
        )
    return [aliases[name] for name in names]


def _plan(model: nn.Module, layers: Sequence[str | LayerVerdict]) -> dict[int, list[int]]:
    """Kept unit positions per stage after removing ``layers``; ``ValueError`` when that is impossible."""
    family = _family(model)
    removed = set(_block_names(model, layers))
    valid = prunable_layers(model)
    fixed = sorted(removed - set(valid), key=layer_names(model, "block").index)
    if fixed:
        raise ValueError(
            f"cannot remove {', '.join(fixed)}: only layers whose output has their input's shape can go "
            f"(not the stem, not units that change channels or resolution); removable: {', '.join(valid)}"
        )
    kept = {s: [u for u, _ in enumerate(stage) if f"{family.container}{s}.{u}" not in removed]
            for s, stage in enumerate(_stages(model, family), 1)}
    emptied = [f"{family.container}{s}" for s, keep in kept.items() if not keep]
    if emptied:
        raise ValueError(f"removing {', '.join(sorted(removed))} would empty {', '.join(emptied)}; "
                         "keep at least one layer per stage")
    return kept


def select_removable(
    model: nn.Module, verdicts: Sequence[LayerVerdict]
) -> tuple[list[LayerVerdict], dict[str, str]]:
    """Split ``verdicts`` into those :func:`prune` can remove together and the others with the reason.

    A layer stays when it changes its input's shape, or when its stage would
    otherwise be emptied (then the stage keeps its verdict with the largest ``dQ``).
    """
    family, units = _family(model), _units(model)
    block = dict(zip([v.layer for v in verdicts], _block_names(model, verdicts)))
    removable = set(prunable_layers(model))
    refused = {v.layer: "its output does not have its input's shape, so the next layer's weights would not fit"
               for v in verdicts if block[v.layer] not in removable}
    for s, stage in enumerate(_stages(model, family), 1):
        inside = [v for v in verdicts if v.layer not in refused and units[block[v.layer]][0] == s]
        if inside and len(inside) == len(stage):
            keep = max(inside, key=lambda v: v.dq)
            refused[keep.layer] = f"it is the least redundant layer of {family.container}{s}, which must keep one"
    return [v for v in verdicts if v.layer not in refused], refused


def _overrides(model: nn.Module, kept: dict[int, list[int]]) -> dict[str, Any]:
    family = _family(model)
    return {family.config_field: family.shorten(model.config, kept)}


def depth_overrides(model: nn.Module) -> dict[str, Any]:
    """The configuration field pruning shortens, with ``model``'s value: ``{"stages": ...}`` or ``{"depths": ...}``."""
    field_name = _family(model).config_field
    return {field_name: getattr(model.config, field_name)}


def prune(model: nn.Module, layers: Sequence[str | LayerVerdict]) -> nn.Module:
    """A new model: ``model`` without ``layers`` (names under either tap, or verdicts).

    The result has the same class and configuration but shortened ``stages``
    (VGG) or ``depths`` (ResNet), and a copy of the parent's weights and buffers
    in every kept module; ``model`` is not changed. ``ValueError`` for unknown
    names, layers that cannot be removed, or a stage that would be emptied.
    """
    kept = _plan(model, layers)
    family = _family(model)
    child = copy.deepcopy(model)
    for s, stage in enumerate(_stages(child, family), 1):
        setattr(child, f"{family.container}{s}", nn.Sequential(*(stage[u] for u in kept[s])))
    child.config = dataclasses.replace(model.config, **_overrides(model, kept))
    return child


def depth_variant(arch: str, remove: Sequence[str], **overrides: Any) -> dict[str, Any]:
    """Configuration overrides of ``arch`` (with ``overrides``) minus the layers ``remove``.

    Usable as ``create_model(arch, **depth_variant(...))`` or a store spec's
    ``overrides``: e.g. ``depth_variant("resnet56", ["layer3.4"])`` gives
    ``{"depths": (9, 9, 8)}``. The result includes ``overrides``. Layers are
    checked as in :func:`prune` on the full-width model.
    """
    model_config(arch, **overrides)
    model = create_model(arch, **overrides)
    return {**overrides, **_overrides(model, _plan(model, remove))}


def _renaming(parent: nn.Module, kept: dict[int, list[int]]) -> dict[str, str | None]:
    """Parent unit name -> child unit name, ``None`` for removed units."""
    family = _family(parent)
    mapping: dict[str, str | None] = {name: None for name in _units(parent)}
    for s, keep in kept.items():
        for new, old in enumerate(keep):
            mapping[f"{family.container}{s}.{old}"] = f"{family.container}{s}.{new}"
    return mapping


def transfer_weights(parent: nn.Module, child: nn.Module, removed: Sequence[str] | None = None) -> nn.Module:
    """Copy ``parent``'s weights and buffers into ``child``, which lacks the layers ``removed``.

    ``removed=None``: the child's layers are the parent's of the same names
    (units removed from the back of stages, like ``vgg19_3`` from ``vgg19`` or
    a shortened ``depths``). ``ValueError`` unless ``child`` is ``parent``'s
    architecture with exactly those layers removed. Returns ``child``.
    """
    if type(child) is not type(parent):
        raise ValueError(f"child is a {type(child).__name__}, parent a {type(parent).__name__}")
    if removed is None:
        removed = [name for name in _units(parent) if name not in _units(child)]
    kept = _plan(parent, removed)
    expected = dataclasses.replace(parent.config, **_overrides(parent, kept))
    if child.config != expected:
        raise ValueError(f"child configuration {child.config} is not the parent's without "
                         f"{', '.join(removed) or 'any layer'} ({expected})")
    mapping = _renaming(parent, kept)
    state = {}
    for key, value in parent.state_dict().items():
        head = ".".join(key.split(".")[:2])
        if head not in mapping:
            state[key] = value
        elif mapping[head] is not None:
            state[mapping[head] + key[len(head):]] = value
    try:
        child.load_state_dict(state)
    except RuntimeError as err:
        raise ValueError(f"parent weights do not fit the child (different width or classes?): {err}") from err
    return child


_PROBE_WIDTH = 1 / 64
"""Width of the throw-away models that check a variant's layers against its parent's (one channel per 64)."""


def removed_layers(parent: str, variant: str) -> tuple[str, ...]:
    """The layers (block-tap names, depth order) of architecture ``parent`` that ``variant`` lacks.

    ``ValueError`` unless ``variant`` is ``parent`` with units removed from the
    back of its stages, so that its remaining layers keep the parent's names
    and weights (checked with :func:`modgraph.prune.transfer_weights` on
    narrow copies of both).
    """
    parent_model, child_model = create_model(parent, width=_PROBE_WIDTH), create_model(variant, width=_PROBE_WIDTH)
    child_names = set(layer_names(child_model, "block"))
    removed = tuple(name for name in layer_names(parent_model, "block") if name not in child_names)
    try:
        transfer_weights(parent_model, child_model)
    except ValueError as err:
        raise ValueError(f"{variant!r} is not {parent!r} with layers removed from the back of its stages: "
                         f"{err}") from None
    if not removed:
        raise ValueError(f"{variant!r} has every layer of {parent!r}: it is not a pruned variant")
    return removed


def removed_delta_q(q: np.ndarray | Sequence[float], layers: Sequence[str], removed: Sequence[str]) -> float:
    """Modularity the ``removed`` layers add on a parent's mean curve ``q`` (L,) over ``layers`` (L,).

    ``sum over removed layers i of (q[i] - q[i-1])``; the first layer has no
    step and cannot be among them. ``ValueError`` for unknown or repeated names.
    """
    values = np.asarray(q, dtype=float)
    layers = list(layers)
    if values.ndim != 1 or values.size != len(layers):
        raise ValueError(f"q must be 1-D with one value per layer ({len(layers)}), got shape {values.shape}")
    unknown = [name for name in removed if name not in layers]
    if unknown:
        raise ValueError(f"{', '.join(unknown)} not among the curve's layers; valid choices: {', '.join(layers)}")
    if len(set(removed)) != len(removed):
        raise ValueError(f"removed layers must be distinct, got {list(removed)}")
    index = [layers.index(name) for name in removed]
    if 0 in index:
        raise ValueError(f"the first layer {layers[0]!r} has no step in Q to remove")
    return float(sum(values[i] - values[i - 1] for i in index))


@dataclass(frozen=True)
class Complexity:
    """Model size for one input: parameters, multiply-accumulates, FLOPs (``2 * macs``)."""

    params: int
    macs: int
    input_size: tuple[int, ...]
    flops: int = field(init=False)
    note: str = field(init=False, default=(
        "thop counts multiply-accumulates of nn modules (convolutions, linear, batch norm, pooling); "
        "functional operations (residual additions, F.relu) and the input normalisation are not counted; "
        "flops = 2 * macs"
    ))

    def __post_init__(self) -> None:
        object.__setattr__(self, "flops", 2 * self.macs)

    def to_dict(self) -> dict[str, Any]:
        """All fields as a JSON-ready dict."""
        return {**dataclasses.asdict(self), "input_size": list(self.input_size)}


def complexity(model: nn.Module, input_size: Sequence[int] = (1, 3, 32, 32)) -> Complexity:
    """Parameters (all of them) and thop's multiply-accumulates for one forward of ``input_size``.

    thop adds buffers to the modules it profiles, so it runs on a copy in eval mode.
    """
    size = tuple(int(d) for d in input_size)
    if len(size) != 4 or min(size) < 1:
        raise ValueError(f"input_size must be (N, C, H, W) with positive entries, got {tuple(input_size)}")
    probe = copy.deepcopy(model).eval()
    device = next(probe.parameters(), torch.empty(0)).device
    with torch.no_grad(), warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=DeprecationWarning, module="thop")
        import thop

        macs, _ = thop.profile(probe, inputs=(torch.zeros(size, device=device),), verbose=False)
    return Complexity(params=sum(p.numel() for p in model.parameters()), macs=int(macs), input_size=size)


def reduction(before: Complexity, after: Complexity) -> Mapping[str, float]:
    """Percentage saved in parameters and MACs from ``before`` to ``after``."""
    return {"params_pct": 100.0 * (1 - after.params / before.params), "macs_pct": 100.0 * (1 - after.macs / before.macs)}


AUTHORS_TABLE1_ARCHS: dict[str, str] = {ds: f"resnet56_authors_{ds}" for ds in AUTHORS_RESNET56_DEPTHS}
"""The pruned ResNet56 architectures the authors released, per data set (registered models)."""


def curve_removal(model: nn.Module, curve: CurveLike, threshold: float = PLATEAU_RISE, tap: str = "block"
                  ) -> tuple[list[LayerVerdict], tuple[str, ...], dict[str, str]]:
    """What pruning ``model`` by its ``curve`` (measured at ``tap``) removes: the curve's redundant layers among
    those the model can lose, those of them that can go together (block-tap names), and why the others stay."""
    verdicts = redundant_layers(curve, threshold, prunable=prunable_layers(model, tap))
    kept, refused = select_removable(model, verdicts)
    block = dict(zip(layer_names(model, tap), layer_names(model, "block")))
    return verdicts, tuple(block[v.layer] for v in kept), refused


def authors_complexity(dataset: str, num_classes: int, input_size: Sequence[int]) -> dict[str, Complexity]:
    """``{"resnet56": ..., <authors' architecture>: ...}`` for ``dataset`` (thop), or ``{}`` when they released none."""
    name = AUTHORS_TABLE1_ARCHS.get(dataset)
    if name is None:
        return {}
    return {arch: complexity(create_model(arch, num_classes=num_classes, seed=0), input_size)
            for arch in (PAPER_TABLE1_MODEL[0], name)}
