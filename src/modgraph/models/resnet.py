"""Residual networks as configuration: one :class:`ResNet` class, a
:class:`ResNetConfig` per variant.

This module registers the ImageNet-style ResNet18/34/50/101/152 adapted to
CIFAR (3x3 stem conv-BN-ReLU with 64 channels and no max-pool, four stages of
BasicBlocks or Bottlenecks, projection shortcuts, global average pool, fc) and
the paper's shortened ``resnet152_n`` of Fig. 9 / Table B3 (``n`` in 5, 11, 16, 21,
26, 30: the last ``n`` blocks of the third stage removed, depths ``(3, 8, 36 - n, 3)``).
He et al.'s CIFAR ResNets live in :mod:`modgraph.models.resnet_cifar` as
configurations of the same class.

Layer names: ``"stem"`` (tap ``"block"``; ``"stem.conv"`` for tap ``"conv"``),
then block ``b`` (0-based) of stage ``s`` (1-based) is ``"layer{s}.{b}"`` under
both taps. Removing blocks from the back of a stage keeps the other names.
"""

from __future__ import annotations

import operator
from dataclasses import dataclass, replace
from numbers import Integral
from typing import Callable, ClassVar, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from modgraph.models.layers import CifarDefaults, ConvBNReLU, Normalize, init_weights, scale_width
from modgraph.models.taps import LayerSpec, tap_layers
from modgraph.registry import Registry

__all__ = ["BasicBlock", "Bottleneck", "BLOCKS", "SHORTCUTS", "ResNetConfig", "ResNet", "CONFIGS"]

Shortcut = Callable[[int, int, int], nn.Module]
"""``(in_channels, out_channels, stride) -> module`` mapping ``(N, in, H, W)`` to ``(N, out, H/stride, W/stride)``."""

SHORTCUTS: Registry[Shortcut] = Registry("shortcut")


@SHORTCUTS.register("projection")
def projection_shortcut(in_channels: int, out_channels: int, stride: int) -> nn.Module:
    """He et al.'s option B: strided 1x1 convolution and batch norm."""
    return nn.Sequential(nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False), nn.BatchNorm2d(out_channels))


def _shortcut(in_channels: int, out_channels: int, stride: int, make: Shortcut) -> nn.Module:
    if stride == 1 and in_channels == out_channels:
        return nn.Identity()
    return make(in_channels, out_channels, stride)


class BasicBlock(nn.Module):
    """Two 3x3 conv-BN with ReLU between and after the residual sum: ``(N, in, H, W) -> (N, ch, H/s, W/s)``."""

    expansion: ClassVar[int] = 1

    def __init__(self, in_channels: int, channels: int, stride: int, shortcut: Shortcut) -> None:
        super().__init__()
        self.out_channels = channels
        self.conv1 = nn.Conv2d(in_channels, channels, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)
        self.shortcut = _shortcut(in_channels, channels, stride, shortcut)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


class Bottleneck(nn.Module):
    """1x1 reduce, strided 3x3, 1x1 expand (x4), ReLU after the residual sum: ``(N, in, H, W) -> (N, 4 ch, H/s, W/s)``."""

    expansion: ClassVar[int] = 4

    def __init__(self, in_channels: int, channels: int, stride: int, shortcut: Shortcut) -> None:
        super().__init__()
        self.out_channels = channels * self.expansion
        self.conv1 = nn.Conv2d(in_channels, channels, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)
        self.conv3 = nn.Conv2d(channels, self.out_channels, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(self.out_channels)
        self.shortcut = _shortcut(in_channels, self.out_channels, stride, shortcut)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = F.relu(self.bn2(self.conv2(out)))
        return F.relu(self.bn3(self.conv3(out)) + self.shortcut(x))


BLOCKS: Registry[type[nn.Module]] = Registry("residual block")
BLOCKS.register("basic", BasicBlock)
BLOCKS.register("bottleneck", Bottleneck)


def _positive_ints(name: str, values: object) -> tuple[int, ...]:
    try:
        out = tuple(operator.index(v) for v in values)  # type: ignore[union-attr]
    except (TypeError, ValueError) as err:
        raise ValueError(f"{name} must be a sequence of positive integers; got {values!r}") from err
    if not out or min(out) < 1:
        raise ValueError(f"{name} must be a non-empty sequence of positive integers; got {values!r}")
    return out


@dataclass(frozen=True)
class ResNetConfig(CifarDefaults):
    """Residual network: ``depths[i]`` blocks of ``widths[i]`` channels in stage ``i`` (before width scaling).

    ``block`` names a :data:`BLOCKS` entry, ``shortcut`` a :data:`SHORTCUTS` entry
    (used where a block changes resolution or channel count).
    """

    block: str
    depths: tuple[int, ...]
    widths: tuple[int, ...] = (64, 128, 256, 512)
    stem: int = 64
    shortcut: str = "projection"

    def __post_init__(self) -> None:
        BLOCKS.get(self.block)
        SHORTCUTS.get(self.shortcut)
        depths = _positive_ints("depths", self.depths)
        widths = _positive_ints("widths", self.widths)
        if len(depths) != len(widths):
            raise ValueError(f"depths and widths must be equally long (one entry per stage); got {depths} and {widths}")
        if isinstance(self.stem, bool) or not isinstance(self.stem, Integral) or self.stem < 1:
            raise ValueError(f"stem must be a positive channel count; got {self.stem!r}")
        object.__setattr__(self, "depths", depths)
        object.__setattr__(self, "widths", widths)
        object.__setattr__(self, "stem", int(self.stem))

    def build(self, num_classes: int, width: float, mean: Sequence[float], std: Sequence[float]) -> ResNet:
        """The ResNet this configuration describes."""
        return ResNet(self, num_classes, width, mean, std)


class ResNet(nn.Module):
    """Residual network on pixel-space input ``(N, 3, H, W)`` -> logits ``(N, C)``.

    Submodules: ``normalize``, ``stem`` (3x3 Conv-BN-ReLU), ``layer1`` .. ``layerS``
    (the first stage keeps the resolution, the others halve it), ``pool``, ``fc``.
    """

    def __init__(self, config: ResNetConfig, num_classes: int, width: float,
                 mean: Sequence[float], std: Sequence[float]) -> None:
        super().__init__()
        self.config = config
        self.normalize = Normalize(mean, std)
        self.stem = ConvBNReLU(3, scale_width(config.stem, width))
        block, shortcut = BLOCKS.get(config.block), SHORTCUTS.get(config.shortcut)
        channels = self.stem.conv.out_channels
        for s, (depth, stage_width) in enumerate(zip(config.depths, config.widths), 1):
            blocks = []
            for b in range(depth):
                stride = 2 if s > 1 and b == 0 else 1
                blocks.append(block(channels, scale_width(stage_width, width), stride, shortcut))
                channels = blocks[-1].out_channels
            self.add_module(f"layer{s}", nn.Sequential(*blocks))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(channels, num_classes)
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(self.normalize(x))
        for s in range(1, len(self.config.depths) + 1):
            x = getattr(self, f"layer{s}")(x)
        return self.fc(torch.flatten(self.pool(x), 1))

    def feature_layers(self, tap: str = "block") -> list[tuple[str, nn.Module]]:
        """The stem (``"stem"``, or ``"stem.conv"`` for tap conv), then every block ``"layer{s}.{b}"``."""
        specs = [LayerSpec("stem", "stem.conv")]
        specs += [LayerSpec(f"layer{s}.{b}") for s, depth in enumerate(self.config.depths, 1) for b in range(depth)]
        return tap_layers(self, specs, tap)


RESNET152 = ResNetConfig("bottleneck", (3, 8, 36, 3))
CONFIGS: dict[str, ResNetConfig] = {
    "resnet18": ResNetConfig("basic", (2, 2, 2, 2)),
    "resnet34": ResNetConfig("basic", (3, 4, 6, 3)),
    "resnet50": ResNetConfig("bottleneck", (3, 4, 6, 3)),
    "resnet101": ResNetConfig("bottleneck", (3, 4, 23, 3)),
    "resnet152": RESNET152,
}
RESNET152_REMOVED = (5, 11, 16, 21, 26, 30)
"""Blocks removed from the third stage in the paper's ResNet152 variants (Table B3: 31, 25, 20, 15, 10, 6 kept)."""
CONFIGS.update({
    f"resnet152_{n}": replace(RESNET152, depths=(3, 8, RESNET152.depths[2] - n, 3)) for n in RESNET152_REMOVED
})
