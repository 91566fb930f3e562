"""Architectures by name: ``create_model("vgg16", num_classes=10, width=0.5)``.

Every registered name is a frozen configuration (:class:`VGGConfig`,
:class:`ResNetConfig`, :class:`TorchvisionConfig`, :class:`ViTConfig`); keyword overrides replace
its fields (``create_model("resnet18", depths=(1, 1, 1, 1))``). Every model takes
pixel-space ``[0, 1]`` input ``(N, 3, H, W)``, has ``normalize`` as its first
submodule, and declares its layers with ``feature_layers(tap)`` (see
:mod:`modgraph.models.taps` and each architecture's module for the names).
"""

from __future__ import annotations

import dataclasses
from numbers import Integral
from typing import Any, ClassVar, Protocol, Sequence

import torch
from torch import nn

from modgraph.models import resnet, resnet_cifar, torchvision, vgg, vit
from modgraph.models.layers import (
    CIFAR10_MEAN,
    CIFAR10_STD,
    IMAGENET_MEAN,
    IMAGENET_STD,
    ConvBNReLU,
    Normalize,
    check_width,
    scale_width,
)
from modgraph.models.resnet import ResNet, ResNetConfig
from modgraph.models.taps import TAPS, LayerSpec
from modgraph.models.torchvision import TorchvisionConfig, TorchvisionModel
from modgraph.models.vgg import VGG, VGG_STAGES, VGGConfig, vgg_remove_last_units
from modgraph.models.vit import VisionTransformer, ViTConfig
from modgraph.registry import Registry

__all__ = [
    "MODELS",
    "TAPS",
    "create_model",
    "list_models",
    "model_config",
    "Normalize",
    "ConvBNReLU",
    "LayerSpec",
    "scale_width",
    "CIFAR10_MEAN",
    "CIFAR10_STD",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "VGG",
    "VGGConfig",
    "VGG_STAGES",
    "vgg_remove_last_units",
    "ResNet",
    "ResNetConfig",
    "TorchvisionConfig",
    "TorchvisionModel",
    "VisionTransformer",
    "ViTConfig",
]


class ModelConfig(Protocol):
    """What every registered configuration provides."""

    default_num_classes: ClassVar[int]
    default_mean: ClassVar[tuple[float, ...]]
    default_std: ClassVar[tuple[float, ...]]

    def build(self, num_classes: int, width: float, mean: Sequence[float], std: Sequence[float]) -> nn.Module: ...


MODELS: Registry[ModelConfig] = Registry("model")
for _module in (vgg, resnet, resnet_cifar, torchvision, vit):
    for _name, _config in _module.CONFIGS.items():
        MODELS.register(_name, _config)


def list_models() -> list[str]:
    """Every registered model name, sorted."""
    return MODELS.names()


def model_config(name: str, **overrides: Any) -> ModelConfig:
    """The configuration registered as ``name`` with ``overrides`` replacing its fields.

    ``ValueError`` for an unknown name or an unknown field (listing the valid ones).
    """
    config = MODELS.get(name)
    fields = [f.name for f in dataclasses.fields(config)]
    unknown = sorted(set(overrides) - set(fields))
    if unknown:
        raise ValueError(f"unknown option(s) {', '.join(unknown)} for model {name!r}; valid options: {', '.join(fields)}")
    return dataclasses.replace(config, **overrides) if overrides else config


def create_model(
    name: str,
    num_classes: int | None = None,
    width: float = 1.0,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    seed: int | None = None,
    **overrides: Any,
) -> nn.Module:
    """Build the model registered as ``name``.

    ``num_classes``, ``mean`` and ``std`` default to the family's: 10 classes and
    CIFAR-10 statistics for the CIFAR models, 1000 and ImageNet statistics for the
    ``tv_*`` ones. ``width`` scales every channel count (round, at least 1).
    ``seed`` draws the initial weights from that seed without touching the global
    random state; ``None`` uses the global state. ``overrides`` replace fields of
    the configuration (see :func:`model_config`).
    """
    config = model_config(name, **overrides)
    num_classes = config.default_num_classes if num_classes is None else num_classes
    if isinstance(num_classes, bool) or not isinstance(num_classes, Integral) or num_classes < 2:
        raise ValueError(f"num_classes must be an integer >= 2; got {num_classes!r}")
    num_classes = int(num_classes)
    width = check_width(width)
    mean = config.default_mean if mean is None else mean
    std = config.default_std if std is None else std
    if seed is None:
        return config.build(num_classes, width, mean, std)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return config.build(num_classes, width, mean, std)
