"""Which layers of any ``torch.nn.Module`` are read: explicit names, glob patterns, or the family's defaults.

:func:`select_layers` returns ``(qualified name, module)`` pairs. ``layers`` is a
list of qualified module names (``model.named_modules()``) and glob patterns
(a name holding ``*``, ``?`` or ``[``). A pattern is matched dot-segment by
dot-segment with :func:`fnmatch.fnmatchcase`, so ``*`` never crosses a dot:
``encoder.layers.*`` is the direct members of ``encoder.layers`` (not their
submodules) and ``layer?.*`` every block of ``layer1`` .. ``layer9``. Selected
modules come in ``named_modules()`` order, each once; the feature pass
(:mod:`modgraph.features`) then orders them by when they run.

Without ``layers``, the defaults of the model's family (:data:`FAMILIES`):

- ``modgraph``: a model that declares ``feature_layers(tap)`` (every modgraph
  model) is read exactly as declared.
- torchvision ``resnet``: the stem's output ``maxpool`` (tap ``conv``: ``conv1``)
  and every block ``layer{s}.{b}`` (ResNet-50: stem + 16 blocks).
- torchvision ``vgg``: each ReLU of ``features`` (tap ``conv``: its convolution).
- torchvision ``vit``: every encoder block ``encoder.layers.*`` (ViT-B/16: 12).
- torchvision ``swin``: every Swin block (outputs ``(B, H, W, C)``, flattened).
- torchvision ``convnext``: every ``CNBlock``; ``efficientnet``,
  ``mobilenet``: every MBConv / FusedMBConv / InvertedResidual block.
- ``timm`` (when installed): the modules ``model.feature_info`` names, else every
  member of ``blocks`` or ``stages``.

Every family's token layers are read the same way, flattened (one rule for
modgraph's and other models; see :mod:`modgraph.readout`).

Under tap ``conv`` layers without a convolution name keep their block output,
as in :mod:`modgraph.models.taps`. A :class:`modgraph.models.external.PixelInput`
is read as its ``net``. Any other model needs ``layers``.
"""

from __future__ import annotations

import difflib
import fnmatch
from dataclasses import dataclass
from typing import Callable, Sequence

from torch import nn
from torchvision.models import convnext, efficientnet, mobilenetv2, mobilenetv3, resnet, swin_transformer, vgg
from torchvision.models import vision_transformer

from modgraph.models.external import PixelInput
from modgraph.models.taps import TAPS, LayerSpec
from modgraph.models.torchvision import resnet_specs, vgg_specs
from modgraph.registry import Registry

__all__ = ["Family", "FAMILIES", "family_of", "select_layers", "reading_root"]


@dataclass(frozen=True)
class Family:
    """A model family: which models it covers and their default layers ``(model, tap) -> names``."""

    matches: Callable[[nn.Module], bool]
    layers: Callable[[nn.Module, str], list[str]]


def _declares(model: nn.Module) -> bool:
    return callable(getattr(model, "feature_layers", None))


def _instance(*classes: type) -> Callable[[nn.Module], bool]:
    return lambda model: isinstance(model, classes) and not _declares(model)


def _from_specs(specs: Callable[[nn.Module], list[LayerSpec]]) -> Callable[[nn.Module, str], list[str]]:
    return lambda model, tap: [TAPS.get(tap)(spec) for spec in specs(model)]


def _blocks(*classes: type) -> Callable[[nn.Module, str], list[str]]:
    """Every module of the given classes, in ``named_modules()`` order."""
    return _from_specs(lambda model: [LayerSpec(name) for name, m in model.named_modules() if isinstance(m, classes)])


def _declared(model: nn.Module, tap: str) -> list[str]:
    layers = list(model.feature_layers(tap))
    if not layers:
        raise ValueError(f"{type(model).__name__} declares no feature layers for tap {tap!r}")
    modules = dict(model.named_modules())
    names = [name for name, _ in layers]
    if len(set(names)) != len(names):
        raise ValueError(f"{type(model).__name__} declares duplicate feature layers: {names}")
    for name, module in layers:
        if modules.get(name) is not module:
            raise ValueError(f"{type(model).__name__} declares layer {name!r}, which is not the qualified name "
                             "of its module in the model")
    return names


def _is_timm(model: nn.Module) -> bool:
    return type(model).__module__.startswith("timm.") and not _declares(model)


def _timm_layers(model: nn.Module, tap: str) -> list[str]:
    modules = dict(model.named_modules())
    info = getattr(model, "feature_info", None)
    named = [entry.get("module") for entry in info if isinstance(entry, dict)] if isinstance(info, list) else []
    if named and all(name in modules for name in named):
        return list(dict.fromkeys(named))
    for container in ("blocks", "stages"):
        if isinstance(modules.get(container), (nn.Sequential, nn.ModuleList)):
            return [f"{container}.{name}" for name, _ in modules[container].named_children()]
    return []


FAMILIES: Registry[Family] = Registry("model family")
FAMILIES.register("modgraph", Family(_declares, _declared))
FAMILIES.register("resnet", Family(_instance(resnet.ResNet), _from_specs(lambda m: resnet_specs(m, ""))))
FAMILIES.register("vgg", Family(_instance(vgg.VGG), _from_specs(lambda m: vgg_specs(m, ""))))
FAMILIES.register("vit", Family(_instance(vision_transformer.VisionTransformer),
                                _blocks(vision_transformer.EncoderBlock)))
FAMILIES.register("swin", Family(_instance(swin_transformer.SwinTransformer),
                                 _blocks(swin_transformer.SwinTransformerBlock, swin_transformer.SwinTransformerBlockV2)))
FAMILIES.register("convnext", Family(_instance(convnext.ConvNeXt), _blocks(convnext.CNBlock)))
FAMILIES.register("efficientnet", Family(_instance(efficientnet.EfficientNet),
                                         _blocks(efficientnet.MBConv, efficientnet.FusedMBConv)))
FAMILIES.register("mobilenet", Family(_instance(mobilenetv2.MobileNetV2, mobilenetv3.MobileNetV3),
                                      _blocks(mobilenetv2.InvertedResidual, mobilenetv3.InvertedResidual)))
FAMILIES.register("timm", Family(_is_timm, _timm_layers))


def reading_root(model: nn.Module) -> nn.Module:
    """The module whose names and family are read: ``model``, or the ``net`` inside a ``PixelInput``."""
    while isinstance(model, PixelInput):
        model = model.net
    return model


def family_of(model: nn.Module) -> str | None:
    """The name of the family in :data:`FAMILIES` that covers ``model`` (after :func:`reading_root`), or None."""
    root = reading_root(model)
    return next((name for name in FAMILIES if FAMILIES.get(name).matches(root)), None)


def select_layers(model: nn.Module, layers: Sequence[str] | None = None,
                  tap: str = "block") -> list[tuple[str, nn.Module]]:
    """``(qualified name, module)`` of the selected layers of ``model`` (see the module docstring).

    ``ValueError`` for an unknown tap, a name or pattern that matches no module
    (listing close matches), an empty selection, or a model of no known family
    without ``layers``.
    """
    TAPS.get(tap)
    root = reading_root(model)
    modules = {name: module for name, module in root.named_modules() if name}
    if layers is None:
        names = _defaults(root, tap, modules)
    else:
        names = _matching(layers, list(modules), type(root).__name__)
    return [(name, modules[name]) for name in names]


def _defaults(root: nn.Module, tap: str, modules: dict[str, nn.Module]) -> list[str]:
    family = family_of(root)
    if family is None:
        top = ", ".join(name for name in modules if "." not in name)
        raise ValueError(f"{type(root).__name__} does not declare feature layers and is of no known model family "
                         f"({', '.join(FAMILIES.names())}); pass layers= (CLI: --layers) as module names or "
                         f"globs, e.g. of its top-level modules: {top[:300]}")
    names = FAMILIES.get(family).layers(root, tap)
    if not names:
        raise ValueError(f"{type(root).__name__} (family {family}) has no default layers; pass layers= (CLI: --layers)")
    return names


def _matching(layers: Sequence[str], names: list[str], what: str) -> list[str]:
    if isinstance(layers, str):
        raise ValueError(f"layers must be a list of layer names, not the string {layers!r}")
    if not layers:
        raise ValueError(f"layers is empty; give module names or glob patterns of {what}")
    chosen: set[str] = set()
    for wanted in layers:
        hits = [name for name in names if _fits(wanted, name)]
        if not hits:
            close = difflib.get_close_matches(str(wanted), names, n=5, cutoff=0.5)
            hint = f"close matches: {', '.join(close)}" if close else \
                f"top-level modules: {', '.join(n for n in names if '.' not in n)}"
            raise ValueError(f"layer {wanted!r} matches no module of {what}; {hint}")
        chosen.update(hits)
    return [name for name in names if name in chosen]


def _fits(pattern: str, name: str) -> bool:
    if not isinstance(pattern, str):
        raise ValueError(f"layer names must be strings; got {pattern!r}")
    if not any(char in pattern for char in "*?["):
        return pattern == name
    parts, segments = pattern.split("."), name.split(".")
    return len(parts) == len(segments) and all(map(fnmatch.fnmatchcase, segments, parts))
