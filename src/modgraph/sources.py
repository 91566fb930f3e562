"""Networks modgraph did not define, by source string: built, given weights, made to take pixel-space input.

A source is ``torchvision:<name>`` (``torchvision.models.get_model``, random
weights), ``timm:<name>`` (``timm.create_model(pretrained=False)``; needs the
``timm`` extra) or ``package.module:callable``, a user's factory importable from
the working directory (``sys.path``), called with ``num_classes=`` when it takes
that argument and with no arguments otherwise. Nothing is downloaded: weights
come from a local state-dict file (:func:`load_weights`) or stay random.

modgraph's images are pixel-space ``[0, 1]``; :func:`input_statistics` gives the
mean/std an external network expects (torchvision: ImageNet's; timm: its
``pretrained_cfg``; a user factory: none -- it receives pixel-space input and
normalises it itself), for :class:`modgraph.models.external.PixelInput`.
"""

from __future__ import annotations

import importlib
import inspect
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

from torch import nn

from modgraph.models.layers import IMAGENET_MEAN, IMAGENET_STD
from modgraph.models.torchvision import load_state_dict, read_state_dict
from modgraph.registry import Registry

__all__ = ["ModelSource", "parse_source", "build_network", "input_statistics", "read_weights", "check_source", "load_weights",
           "SOURCES"]


@dataclass(frozen=True)
class ModelSource:
    """A parsed source: ``kind`` (``torchvision``, ``timm`` or ``factory``) and ``name`` (``module:callable`` for a factory)."""

    kind: str
    name: str

    def __str__(self) -> str:
        return self.name if self.kind == "factory" else f"{self.kind}:{self.name}"


@dataclass(frozen=True)
class _Kind:
    """How a kind of source resolves a name to a factory ``num_classes -> nn.Module`` and gives its input statistics."""

    resolve: Callable[[str], Callable[[int], nn.Module]]
    statistics: Callable[[nn.Module], tuple[Sequence[float], Sequence[float]] | None]


def _torchvision(name: str) -> Callable[[int], nn.Module]:
    import torchvision

    known = torchvision.models.list_models()
    if name not in known:
        raise ValueError(f"torchvision has no model {name!r}; valid choices: {', '.join(sorted(known))}")
    return lambda num_classes: torchvision.models.get_model(name, weights=None)


def _timm(name: str) -> Callable[[int], nn.Module]:
    try:
        import timm
    except ImportError:
        raise ValueError("timm sources need the optional timm package: pip install 'modgraph[timm]'") from None
    if not timm.is_model(name):
        close = ", ".join(timm.list_models(f"*{name}*")[:10])
        raise ValueError(f"timm has no model {name!r}" + (f"; similar: {close}" if close else ""))
    return lambda num_classes: timm.create_model(name, pretrained=False)


def _timm_statistics(net: nn.Module) -> tuple[Sequence[float], Sequence[float]]:
    cfg = getattr(net, "pretrained_cfg", None) or {}
    return tuple(cfg.get("mean", IMAGENET_MEAN)), tuple(cfg.get("std", IMAGENET_STD))


def _factory(name: str) -> Callable[[int], nn.Module]:
    module_name, _, attribute = name.partition(":")
    if not module_name or not attribute:
        raise ValueError(f"bad model source {name!r}: give torchvision:<name>, timm:<name> or package.module:callable")
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:
        raise ValueError(f"cannot import module {module_name!r} of model source {name!r}: {err}") from None
    factory = module
    for part in attribute.split("."):
        factory = getattr(factory, part, None)
    if not callable(factory):
        raise ValueError(f"module {module_name!r} has no callable {attribute!r} (model source {name!r})")
    try:
        takes = "num_classes" in inspect.signature(factory).parameters
    except (TypeError, ValueError):
        takes = False
    return lambda num_classes: factory(num_classes=num_classes) if takes else factory()


SOURCES: Registry[_Kind] = Registry("model source kind")
SOURCES.register("torchvision", _Kind(_torchvision, lambda net: (IMAGENET_MEAN, IMAGENET_STD)))
SOURCES.register("timm", _Kind(_timm, _timm_statistics))
SOURCES.register("factory", _Kind(_factory, lambda net: None))


def parse_source(text: str) -> ModelSource:
    """``"torchvision:vit_b_16"`` -> ``ModelSource("torchvision", "vit_b_16")``; anything else with a colon is a factory."""
    prefix, colon, rest = str(text).partition(":")
    if not colon or not prefix or not rest:
        raise ValueError(f"bad model source {text!r}: give torchvision:<name>, timm:<name> or package.module:callable")
    if prefix in SOURCES and prefix != "factory":
        return ModelSource(prefix, rest)
    return ModelSource("factory", str(text))


def check_source(source: ModelSource) -> None:
    """``ValueError`` when ``source`` names no model (unknown name, module not importable, no such callable)."""
    SOURCES.get(source.kind).resolve(source.name)


def build_network(source: ModelSource, num_classes: int) -> nn.Module:
    """The network of ``source`` with random weights; ``ValueError`` when it cannot be built or is no module."""
    factory = SOURCES.get(source.kind).resolve(source.name)
    net = factory(num_classes)
    if not isinstance(net, nn.Module):
        raise ValueError(f"model source {source} returned a {type(net).__name__}, not a torch.nn.Module")
    return net


def input_statistics(source: ModelSource, net: nn.Module) -> tuple[Sequence[float], Sequence[float]] | None:
    """The (mean, std) the network of ``source`` expects its input normalised with; None: pixel space."""
    return SOURCES.get(source.kind).statistics(net)


def read_weights(path: Path) -> dict:
    """The state dict in ``path``: a bare one, or the ``state_dict`` entry of a store checkpoint."""
    state = dict(read_state_dict(path))
    inner = state.get("state_dict")
    return dict(inner) if isinstance(inner, dict) else state


def load_weights(net: nn.Module, state: dict, path: Path, source: ModelSource) -> None:
    """Load ``state`` (read from ``path``) into ``net`` strictly; ``ValueError`` when it does not fit."""
    load_state_dict(net, state, path, f"model source {source}")
