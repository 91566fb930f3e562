"""A network modgraph did not define, made to take pixel-space input like every modgraph model.

``PixelInput(net, mean, std, image_size)`` computes ``net(normalize(resize(x)))``
for ``x`` ``(N, 3, H, W)`` in ``[0, 1]``: images are resized bilinearly to
``image_size`` x ``image_size`` when it is set (per batch, so large inputs are
never held for a whole data set), then normalised when ``mean``/``std`` are set.
Layer selection (:mod:`modgraph.selection`) reads a ``PixelInput`` as its
``net``: layer names are the network's own (``layer1.0``, not ``net.layer1.0``).
"""

from __future__ import annotations

from numbers import Integral
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from modgraph.models.layers import Normalize

__all__ = ["PixelInput"]


class PixelInput(nn.Module):
    """``net(normalize(resize(x)))``: pixel-space ``(N, 3, H, W)`` -> whatever ``net`` returns."""

    def __init__(self, net: nn.Module, mean: Sequence[float] | None = None, std: Sequence[float] | None = None,
                 image_size: int | None = None) -> None:
        super().__init__()
        if (mean is None) != (std is None):
            raise ValueError("give both mean and std, or neither")
        if image_size is not None and (isinstance(image_size, bool) or not isinstance(image_size, Integral)
                                       or image_size < 1):
            raise ValueError(f"image_size must be a positive integer or None; got {image_size!r}")
        self.normalize = nn.Identity() if mean is None else Normalize(mean, std)
        self.net = net
        self.image_size = None if image_size is None else int(image_size)

    def forward(self, x: torch.Tensor) -> object:
        if self.image_size is not None and tuple(x.shape[-2:]) != (self.image_size, self.image_size):
            x = F.interpolate(x, size=(self.image_size, self.image_size), mode="bilinear", align_corners=False)
        return self.net(self.normalize(x))

    def extra_repr(self) -> str:
        return f"image_size={self.image_size}"
