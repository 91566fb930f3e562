"""torchvision's ImageNet ResNet18..152, VGG11..19 (with batch norm) and ViT-B,
wrapped so they take pixel-space input and declare their layers like every
other model.

Registered as ``tv_resnet18`` .. ``tv_resnet152``, ``tv_vgg11_bn`` ..
``tv_vgg19_bn``, ``tv_vit_b_16`` and ``tv_vit_b_32``; defaults are 1000
classes and ImageNet mean/std. Nothing is
ever downloaded: ``weights`` is a local state-dict file of the torchvision
network (its own keys, e.g. ``conv1.weight``), or ``None`` for random weights.

Layer names (the wrapped network is the submodule ``net``):

- ResNet: the stem's output ``"net.maxpool"`` (conv-BN-ReLU-max-pool; tap
  ``"conv"``: ``"net.conv1"``), then every block ``"net.layer{s}.{b}"``.
- VGG: each Conv-BN-ReLU unit's ReLU ``"net.features.{i}"`` (tap ``"conv"``:
  the unit's convolution ``"net.features.{i-2}"``).
- ViT (``tv_vit_b_16``, ``tv_vit_b_32``; 224x224 input): the embedded tokens
  entering the encoder ``"net.encoder.dropout"`` (patches, class token and
  position embedding), then every encoder block
  ``"net.encoder.layers.encoder_layer_{i}"``; each outputs ``(N, 1 + P, D)``
  tokens, the class token first. Both taps read the same modules.
"""

from __future__ import annotations

import pickle
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, ClassVar, Sequence

import torch
import torchvision
from torch import nn

from modgraph.models.layers import IMAGENET_MEAN, IMAGENET_STD, Normalize
from modgraph.models.taps import LayerSpec, tap_layers
from modgraph.registry import Registry

__all__ = ["TorchvisionConfig", "TorchvisionModel", "FAMILIES", "CONFIGS", "resnet_specs", "vgg_specs", "vit_specs",
           "read_state_dict", "load_state_dict"]


def resnet_specs(net: nn.Module, prefix: str = "net.") -> list[LayerSpec]:
    """Stem and blocks of torchvision ResNet ``net``, named ``prefix`` + its own names."""
    specs = [LayerSpec(f"{prefix}maxpool", f"{prefix}conv1")]
    for s in range(1, 5):
        specs += [LayerSpec(f"{prefix}layer{s}.{b}") for b in range(len(getattr(net, f"layer{s}")))]
    return specs


def vgg_specs(net: nn.Module, prefix: str = "net.") -> list[LayerSpec]:
    """Conv-BN-ReLU units of torchvision VGG ``net``, named ``prefix`` + its own names."""
    specs, conv = [], None
    for i, module in enumerate(net.features):
        if isinstance(module, nn.Conv2d):
            conv = f"{prefix}features.{i}"
        elif isinstance(module, nn.ReLU):
            specs.append(LayerSpec(f"{prefix}features.{i}", conv))
    return specs


def vit_specs(net: nn.Module, prefix: str = "net.") -> list[LayerSpec]:
    """Embedded tokens and encoder blocks of torchvision ViT ``net``, named ``prefix`` + its own names."""
    return [LayerSpec(f"{prefix}encoder.dropout")] + [LayerSpec(f"{prefix}encoder.layers.{name}")
                                                      for name, _ in net.encoder.layers.named_children()]


FAMILIES: Registry[Callable[[nn.Module], list[LayerSpec]]] = Registry("torchvision family")
FAMILIES.register("resnet", resnet_specs)
FAMILIES.register("vgg", vgg_specs)
FAMILIES.register("vit", vit_specs)


@dataclass(frozen=True)
class TorchvisionConfig:
    """A torchvision architecture ``arch`` of layer family ``family``; ``weights`` a local state-dict file or None."""

    arch: str
    family: str
    weights: str | None = None

    default_num_classes: ClassVar[int] = 1000
    default_mean: ClassVar[tuple[float, ...]] = IMAGENET_MEAN
    default_std: ClassVar[tuple[float, ...]] = IMAGENET_STD

    def __post_init__(self) -> None:
        FAMILIES.get(self.family)
        if self.weights is not None:
            if not isinstance(self.weights, (str, Path)):
                raise ValueError(f"weights must be a path to a state-dict file or None; got {self.weights!r}")
            object.__setattr__(self, "weights", str(self.weights))

    def build(self, num_classes: int, width: float, mean: Sequence[float], std: Sequence[float]) -> TorchvisionModel:
        """torchvision's network (weights loaded from ``weights`` when set) behind a :class:`Normalize`."""
        if width != 1.0:
            raise ValueError(f"torchvision architectures have a fixed width; width must be 1.0, got {width}")
        net = torchvision.models.get_model(self.arch, weights=None, num_classes=num_classes)
        if self.weights is not None:
            path = Path(self.weights).expanduser()
            load_state_dict(net, read_state_dict(path), path, f"torchvision {self.arch} with {num_classes} classes")
        return TorchvisionModel(net, self.family, mean, std)


def read_state_dict(path: Path) -> Mapping:
    """The state dict in weights file ``path`` (``torch.load(weights_only=True)``); ``ValueError`` when it is none."""
    if not path.is_file():
        raise ValueError(f"weights file {path} does not exist")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (OSError, EOFError, RuntimeError, pickle.UnpicklingError) as err:
        raise ValueError(f"cannot read weights file {path} as a state dict: {err}") from err
    if not isinstance(state, Mapping):
        raise ValueError(f"weights file {path} holds a {type(state).__name__}, not a state dict")
    return state


def load_state_dict(net: nn.Module, state: Mapping, path: Path, what: str) -> None:
    """Load ``state`` (read from ``path``) into ``net`` strictly; ``ValueError`` naming ``what`` when it does not fit."""
    try:
        net.load_state_dict(state)
    except RuntimeError as err:
        raise ValueError(f"weights file {path} does not fit {what}: {err}") from err


class TorchvisionModel(nn.Module):
    """``net(normalize(x))`` for pixel-space input ``(N, 3, H, W)`` -> logits ``(N, C)``."""

    def __init__(self, net: nn.Module, family: str, mean: Sequence[float], std: Sequence[float]) -> None:
        super().__init__()
        self.normalize = Normalize(mean, std)
        self.net = net
        self._specs = FAMILIES.get(family)(net)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(self.normalize(x))

    def feature_layers(self, tap: str = "block") -> list[tuple[str, nn.Module]]:
        """The layers named in the module docstring, in depth order."""
        return tap_layers(self, self._specs, tap)


CONFIGS: dict[str, TorchvisionConfig] = {
    **{f"tv_resnet{d}": TorchvisionConfig(f"resnet{d}", "resnet") for d in (18, 34, 50, 101, 152)},
    **{f"tv_vgg{d}_bn": TorchvisionConfig(f"vgg{d}_bn", "vgg") for d in (11, 13, 16, 19)},
    **{f"tv_vit_{size}": TorchvisionConfig(f"vit_{size}", "vit") for size in ("b_16", "b_32")},
}
