"""CIFAR VGG: stages of Conv3x3-BN-ReLU units separated by max-pools, then a
512-512-C classifier. The architecture is a :class:`VGGConfig`; VGG11/13/16/19
and their shortened variants (``vgg19_1`` .. ``vgg19_6``, ``vgg11_1`` ..
``vgg11_3``) are configurations of the one :class:`VGG` class.

Layer names: unit ``u`` (0-based) of stage ``s`` (1-based) is ``"stage{s}.{u}"``
(tap ``"block"``, the unit's ReLU output) and ``"stage{s}.{u}.conv"`` (tap
``"conv"``). Removing units from the back of a stage keeps the names of the
others, so a shortened child shares its layer names with its parent.
"""

from __future__ import annotations

import operator
from dataclasses import dataclass
from numbers import Integral, Real
from typing import Sequence

import torch
from torch import nn

from modgraph.models.layers import CifarDefaults, ConvBNReLU, Normalize, init_weights, scale_width
from modgraph.models.taps import LayerSpec, tap_layers

__all__ = ["VGGConfig", "VGG", "VGG_STAGES", "vgg_remove_last_units", "CONFIGS"]

VGG_STAGES: dict[str, tuple[tuple[int, ...], ...]] = {
    "vgg11": ((64,), (128,), (256, 256), (512, 512), (512, 512)),
    "vgg13": ((64, 64), (128, 128), (256, 256), (512, 512), (512, 512)),
    "vgg16": ((64, 64), (128, 128), (256, 256, 256), (512, 512, 512), (512, 512, 512)),
    "vgg19": ((64, 64), (128, 128), (256, 256, 256, 256), (512, 512, 512, 512), (512, 512, 512, 512)),
}


def vgg_remove_last_units(stages: Sequence[Sequence[int]], n: int) -> tuple[tuple[int, ...], ...]:
    """Remove the last ``n`` Conv-BN-ReLU units, back to front, each stage keeping at least one.

    The last stage shrinks to one unit first, then the one before it, and so on.
    ``ValueError`` when ``n`` is negative or would empty a stage.
    """
    stages = [tuple(stage) for stage in stages]
    removable = sum(len(stage) - 1 for stage in stages)
    if isinstance(n, bool) or not isinstance(n, Integral) or not 0 <= n <= removable:
        raise ValueError(f"can remove 0..{removable} units from stages {stages} (one unit per stage stays); got n={n!r}")
    left = int(n)
    for s in reversed(range(len(stages))):
        cut = min(left, len(stages[s]) - 1)
        stages[s] = stages[s][: len(stages[s]) - cut]
        left -= cut
    return tuple(stages)


@dataclass(frozen=True)
class VGGConfig(CifarDefaults):
    """VGG architecture: ``stages`` holds each stage's unit channel counts (before width scaling)."""

    stages: tuple[tuple[int, ...], ...]
    hidden: int = 512
    dropout: float = 0.5

    def __post_init__(self) -> None:
        try:
            stages = tuple(tuple(operator.index(c) for c in stage) for stage in self.stages)
        except (TypeError, ValueError) as err:
            raise ValueError(f"stages must be a sequence of channel lists; got {self.stages!r}") from err
        if not stages or any(not stage or min(stage) < 1 for stage in stages):
            raise ValueError(f"stages must be non-empty lists of positive channel counts; got {self.stages!r}")
        if (isinstance(self.hidden, bool) or not isinstance(self.hidden, Integral) or self.hidden < 1
                or not isinstance(self.dropout, Real) or not 0.0 <= self.dropout < 1.0):
            raise ValueError(f"need hidden >= 1 and 0 <= dropout < 1; got hidden={self.hidden}, dropout={self.dropout}")
        object.__setattr__(self, "stages", stages)
        object.__setattr__(self, "hidden", int(self.hidden))

    def build(self, num_classes: int, width: float, mean: Sequence[float], std: Sequence[float]) -> VGG:
        """The VGG this configuration describes."""
        return VGG(self, num_classes, width, mean, std)


class VGG(nn.Module):
    """CIFAR VGG on pixel-space input ``(N, 3, H, W)`` (H, W >= 2 ** stages) -> logits ``(N, C)``.

    Submodules: ``normalize``, ``stage1`` ``pool1`` ... ``stageS`` ``poolS``, ``classifier``
    (global average pool, which is the identity on 32x32 CIFAR input, then 512-512-C
    with ReLU and dropout, widths scaled by ``width``).
    """

    def __init__(self, config: VGGConfig, num_classes: int, width: float,
                 mean: Sequence[float], std: Sequence[float]) -> None:
        super().__init__()
        self.config = config
        self.normalize = Normalize(mean, std)
        channels = 3
        for s, stage in enumerate(config.stages, 1):
            units = []
            for c in stage:
                units.append(ConvBNReLU(channels, scale_width(c, width)))
                channels = units[-1].conv.out_channels
            self.add_module(f"stage{s}", nn.Sequential(*units))
            self.add_module(f"pool{s}", nn.MaxPool2d(2))
        hidden = scale_width(config.hidden, width)
        self.classifier = nn.Sequential(
            nn.AdaptiveAvgPool2d(1), nn.Flatten(),
            nn.Linear(channels, hidden), nn.ReLU(), nn.Dropout(config.dropout),
            nn.Linear(hidden, hidden), nn.ReLU(), nn.Dropout(config.dropout),
            nn.Linear(hidden, num_classes),
        )
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n_stages = len(self.config.stages)
        if x.ndim == 4 and min(x.shape[-2:]) < 2 ** n_stages:
            raise ValueError(f"VGG with {n_stages} max-pools needs images of at least {2 ** n_stages}x{2 ** n_stages}; "
                             f"got {tuple(x.shape)}")
        x = self.normalize(x)
        for s in range(1, n_stages + 1):
            x = getattr(self, f"pool{s}")(getattr(self, f"stage{s}")(x))
        return self.classifier(x)

    def feature_layers(self, tap: str = "block") -> list[tuple[str, nn.Module]]:
        """Every Conv-BN-ReLU unit in depth order: ``"stage{s}.{u}"`` (block) or ``"stage{s}.{u}.conv"`` (conv)."""
        specs = [LayerSpec(f"stage{s}.{u}", f"stage{s}.{u}.conv")
                 for s, stage in enumerate(self.config.stages, 1) for u in range(len(stage))]
        return tap_layers(self, specs, tap)


CONFIGS: dict[str, VGGConfig] = {name: VGGConfig(stages) for name, stages in VGG_STAGES.items()}
CONFIGS.update({f"vgg19_{n}": VGGConfig(vgg_remove_last_units(VGG_STAGES["vgg19"], n)) for n in range(1, 7)})
CONFIGS.update({f"vgg11_{n}": VGGConfig(vgg_remove_last_units(VGG_STAGES["vgg11"], n)) for n in range(1, 4)})
