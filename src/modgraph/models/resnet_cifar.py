"""He et al. (2016) CIFAR ResNets 20/32/44/56/110 (6n + 2 layers), and the authors' pruned ResNet56s.

A 16-channel 3x3 stem, three stages of ``n`` BasicBlocks with 16/32/64
channels, and option-A shortcuts: strided subsampling plus zero channel
padding, no parameters. They are :class:`~modgraph.models.resnet.ResNetConfig`
configurations of the shared :class:`~modgraph.models.resnet.ResNet`, so layer
names follow that module: ``"stem"`` then ``"layer{s}.{b}"``.

``resnet56_authors_cifar10`` and ``resnet56_authors_cifar100`` are the
architectures of the pruned ResNet56s that the paper's authors released with
their code: the same network keeping ``(2, 3, 6)`` and ``(1, 6, 9)`` of its
``(9, 9, 9)`` blocks (the published weights are not part of modgraph).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from modgraph.models.resnet import SHORTCUTS, ResNetConfig

__all__ = ["PadShortcut", "AUTHORS_RESNET56_DEPTHS", "CONFIGS"]


class PadShortcut(nn.Module):
    """Option A: ``x[:, :, ::stride, ::stride]`` with zero channels padded on both sides.

    ``(N, in, H, W) -> (N, out, ceil(H/stride), ceil(W/stride))``; needs ``out >= in``.
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__()
        if out_channels < in_channels:
            raise ValueError(f"the zero-padding shortcut cannot reduce channels ({in_channels} -> {out_channels}); "
                             "use shortcut='projection' or widths that do not shrink")
        self.stride = stride
        self.front = (out_channels - in_channels) // 2
        self.back = out_channels - in_channels - self.front

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.pad(x[:, :, :: self.stride, :: self.stride], (0, 0, 0, 0, self.front, self.back))

    def extra_repr(self) -> str:
        return f"stride={self.stride}, pad=({self.front}, {self.back})"


SHORTCUTS.register("pad", PadShortcut)

AUTHORS_RESNET56_DEPTHS: dict[str, tuple[int, int, int]] = {"cifar10": (2, 3, 6), "cifar100": (1, 6, 9)}
"""Blocks per stage of the authors' released pruned ResNet56, per data set."""


def _cifar_resnet(depths: tuple[int, int, int]) -> ResNetConfig:
    return ResNetConfig("basic", depths, widths=(16, 32, 64), stem=16, shortcut="pad")


CONFIGS: dict[str, ResNetConfig] = {
    **{f"resnet{6 * n + 2}": _cifar_resnet((n, n, n)) for n in (3, 5, 7, 9, 18)},
    **{f"resnet56_authors_{ds}": _cifar_resnet(d) for ds, d in AUTHORS_RESNET56_DEPTHS.items()},
}
