"""He et al. (2016) CIFAR ResNets 20/32/44/56/110 (6n + 2 layers).

A 16-channel 3x3 stem, three stages of ``n`` BasicBlocks with 16/32/64
channels, and option-A shortcuts: strided subsampling plus zero channel
padding, no parameters. They are :class:`~modgraph.models.resnet.ResNetConfig`
configurations of the shared :class:`~modgraph.models.resnet.ResNet`, so layer
names follow that module: ``"stem"`` then ``"layer{s}.{b}"``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from modgraph.models.resnet import SHORTCUTS, ResNetConfig

__all__ = ["PadShortcut", "CONFIGS"]


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

CONFIGS: dict[str, ResNetConfig] = {
    f"resnet{6 * n + 2}": ResNetConfig("basic", (n, n, n), widths=(16, 32, 64), stem=16, shortcut="pad")
    for n in (3, 5, 7, 9, 18)
}
