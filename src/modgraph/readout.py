"""A layer's forward output -> one feature row per image, ``(B, D)``; pure.

- A tensor ``(B, C, H, W)`` -- or any ``(B, ...)`` other than 3-D -- is flattened
  to ``(B, C*H*W)``, exactly as modgraph has always read its CNN layers. Channels-
  last outputs (torchvision Swin blocks give ``(B, H, W, C)``) are flattened too:
  the same coordinates in another order, which leaves the cosine and Pearson
  similarities, and so the curve, unchanged.
- A 3-D tensor is a batch-first token sequence ``(B, T, D)`` (torchvision ViT
  encoder blocks give ``(B, 1 + T, D)``, class token first) reduced by ``tokens``
  (:data:`TOKENS`): ``"flatten"`` ``(B, T*D)``, ``"cls"`` token 0 ``(B, D)``,
  ``"mean"`` the mean over tokens ``(B, D)``. The default for every model,
  modgraph's or not, is :data:`DEFAULT_TOKENS` = ``"flatten"``: a token layer is
  read as the paper reads a convolutional layer, every position's features, so
  a ViT's curve and a CNN's measure the same thing. ``"cls"`` asks what the head
  sees (token 0 is the one it classifies; before the first block it is the same
  learned vector for every image, so its graph has no structure); ``"mean"`` is
  the pooled view.
- A tuple or list gives its first tensor; a mapping (a dict, a HuggingFace-style
  ``ModelOutput``) its ``output_key`` entry, else its first tensor value.

Anything else is a ``ValueError`` naming the layer.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Callable

import torch

from modgraph.registry import Registry

__all__ = ["TOKENS", "DEFAULT_TOKENS", "readout"]

TOKENS: Registry[Callable[[torch.Tensor], torch.Tensor]] = Registry("token reduction")
TOKENS.register("cls", lambda x: x[:, 0])
TOKENS.register("mean", lambda x: x.mean(dim=1))
TOKENS.register("flatten", lambda x: x.reshape(x.shape[0], -1))
DEFAULT_TOKENS = "flatten"
"""The token reduction used when none is asked for, for every model (see the module docstring)."""


def readout(output: object, layer: str, tokens: str = DEFAULT_TOKENS, output_key: str | None = None) -> torch.Tensor:
    """The ``(B, D)`` features of ``layer`` from its forward ``output`` (see the module docstring)."""
    reduce = TOKENS.get(tokens)
    tensor = _tensor_of(output, layer, output_key)
    if tensor.ndim == 0:
        raise ValueError(f"layer {layer!r} returned a scalar tensor, not one row per image")
    if tensor.ndim == 3:
        return reduce(tensor)
    return tensor.reshape(tensor.shape[0], -1)


def _tensor_of(output: object, layer: str, output_key: str | None) -> torch.Tensor:
    if isinstance(output, torch.Tensor):
        return output
    if isinstance(output, Mapping):
        if output_key is not None:
            if output_key not in output:
                raise ValueError(f"layer {layer!r} returned a {type(output).__name__} without key {output_key!r}; "
                                 f"its keys: {', '.join(map(str, output))}")
            return _tensor_of(output[output_key], layer, None)
        values = list(output.values())
    elif isinstance(output, (tuple, list)):
        values = list(output)
    else:
        values = []
    first = next((value for value in values if isinstance(value, torch.Tensor)), None)
    if first is None:
        raise ValueError(f"layer {layer!r} returned a {type(output).__name__} holding no tensor; "
                         "select a module whose output is a tensor (or a tuple, list or dict with one)")
    return first
