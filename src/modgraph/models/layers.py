"""Building blocks shared by every architecture: input normalisation, the
Conv-BN-ReLU unit, width scaling, weight initialisation and channel statistics."""

from __future__ import annotations

import math
from numbers import Real
from typing import ClassVar, Sequence

import torch
from torch import nn

__all__ = [
    "CIFAR10_MEAN",
    "CIFAR10_STD",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "CifarDefaults",
    "Normalize",
    "ConvBNReLU",
    "scale_width",
    "check_width",
    "init_weights",
]

CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class CifarDefaults:
    """What a CIFAR model configuration defaults to (:class:`modgraph.models.ModelConfig`): 10 classes and the
    CIFAR-10 input statistics."""

    default_num_classes: ClassVar[int] = 10
    default_mean: ClassVar[tuple[float, ...]] = CIFAR10_MEAN
    default_std: ClassVar[tuple[float, ...]] = CIFAR10_STD


class Normalize(nn.Module):
    """``(x - mean) / std`` per channel; ``mean`` and ``std`` are buffers.

    Input ``(N, C, H, W)`` in pixel space with ``C == len(mean)``; output the same shape.
    """

    def __init__(self, mean: Sequence[float], std: Sequence[float]) -> None:
        super().__init__()
        mean_t = torch.as_tensor(tuple(mean), dtype=torch.float32)
        std_t = torch.as_tensor(tuple(std), dtype=torch.float32)
        if mean_t.ndim != 1 or mean_t.numel() == 0 or mean_t.shape != std_t.shape:
            raise ValueError(
                f"mean and std must be equally long, non-empty sequences; got {len(mean_t.reshape(-1))} "
                f"and {len(std_t.reshape(-1))} values"
            )
        if not bool(torch.isfinite(mean_t).all()) or not bool((std_t > 0).all()):
            raise ValueError(f"std must be positive and mean finite; got mean={tuple(mean)}, std={tuple(std)}")
        self.register_buffer("mean", mean_t.view(1, -1, 1, 1))
        self.register_buffer("std", std_t.view(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        channels = self.mean.shape[1]
        if x.ndim != 4 or x.shape[1] != channels:
            raise ValueError(f"expected images of shape (N, {channels}, H, W); got {tuple(x.shape)}")
        return (x - self.mean) / self.std

    def extra_repr(self) -> str:
        mean, std = ([round(v, 4) for v in t.flatten().tolist()] for t in (self.mean, self.std))
        return f"mean={mean}, std={std}"


class ConvBNReLU(nn.Sequential):
    """3x3 convolution (no bias), batch norm, ReLU: ``(N, in, H, W) -> (N, out, H/stride, W/stride)``.

    Submodules are named ``conv``, ``bn`` and ``relu``; nothing is computed in place.
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU()


def scale_width(channels: int, width: float) -> int:
    """``round(channels * width)``, at least 1."""
    return max(1, round(channels * width))


def check_width(width: float) -> float:
    """``width`` as a float; ``ValueError`` unless it is a finite number > 0."""
    if isinstance(width, bool) or not isinstance(width, Real) or not math.isfinite(width) or width <= 0:
        raise ValueError(f"width must be a finite number > 0; got {width!r}")
    return float(width)


def init_weights(model: nn.Module) -> None:
    """He-normal (fan-out) convolutions, unit/zero batch norm; linear layers keep PyTorch's default."""
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.BatchNorm2d):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)
