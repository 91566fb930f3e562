"""Where a layer's features are read: the two tap conventions.

A model describes each of its layers with a :class:`LayerSpec`: the qualified
name of the module whose output is the layer's output (``block``) and, for a
Conv-BN-ReLU unit, the name of its convolution (``conv``). A tap picks one of
the two names:

- ``"block"`` (the paper): the unit's ReLU output, or a residual block's output.
- ``"conv"`` (the authors' released code): the convolution output before batch
  norm for Conv-BN-ReLU units; layers without a ``conv`` name (residual
  blocks) keep their block output.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

from torch import nn

from modgraph.registry import Registry

__all__ = ["LayerSpec", "TAPS", "tap_layers"]


@dataclass(frozen=True)
class LayerSpec:
    """One feature layer: its block-output module and, for Conv-BN-ReLU units, its convolution."""

    block: str
    conv: str | None = None


TAPS: Registry[Callable[[LayerSpec], str]] = Registry("tap")
TAPS.register("block", lambda spec: spec.block)
TAPS.register("conv", lambda spec: spec.conv or spec.block)


def tap_layers(model: nn.Module, specs: Sequence[LayerSpec], tap: str) -> list[tuple[str, nn.Module]]:
    """``(qualified name, module)`` of every layer in ``specs`` under ``tap``, in the given (depth) order."""
    pick = TAPS.get(tap)
    modules = dict(model.named_modules())
    return [(name, modules[name]) for name in map(pick, specs)]
