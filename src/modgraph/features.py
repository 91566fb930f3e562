"""Layers of a model and their activations, one flattened ``(N, D)`` matrix per layer.

A modgraph model declares its layers with ``model.feature_layers(tap)``:
``(qualified module name, module)`` pairs in depth order, whose forward outputs
are the features; any other model's layers are chosen by
:mod:`modgraph.selection` (names, globs, family defaults) and its outputs read
by :mod:`modgraph.readout`. Two tap conventions exist:

- ``tap="block"`` (the paper's definition of a layer): the output of each
  Conv-BN-ReLU unit of a VGG (after the ReLU, so non-negative), and the output of
  the stem and of each residual block of a ResNet (after the residual sum and
  its ReLU).
- ``tap="conv"`` (the authors' released code): the convolution output, before
  batch norm and ReLU, of each VGG unit and of the ResNet stem; residual blocks
  are read exactly as under ``"block"``.

Both taps give the same number of layers; they differ in where inside a
Conv-BN-ReLU unit the features are read (signed pre-normalisation responses
versus rectified, normalised ones), which changes the cosine similarities and
hence the modularity of those layers.

:func:`iter_layer_features` runs the model with forward hooks. When all layers'
features together exceed ``max_bytes``, consecutive layers are grouped to fit
(see :func:`plan_groups`) and the images are passed once per group; each
group's forward pass stops after its deepest layer.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
from numbers import Integral
from typing import Callable, Iterator, Sequence, TypedDict

import torch
from torch import nn
from tqdm.auto import tqdm

from modgraph.devices import resolve_device
from modgraph.readout import DEFAULT_TOKENS, TOKENS, readout
from modgraph.selection import select_layers

_Read = Callable[[object, str], torch.Tensor]
"""``(layer output, layer name) -> (B, D)`` features: :func:`modgraph.readout.readout` with its settings."""

__all__ = ["layer_modules", "layer_names", "plan_groups", "Reading", "iter_layer_features", "default_device"]


def layer_modules(model: nn.Module, tap: str = "block") -> list[tuple[str, nn.Module]]:
    """``(qualified name, module)`` of every default feature layer of ``model`` in depth order.

    Any model :func:`modgraph.selection.select_layers` knows: a model declaring
    ``feature_layers(tap)`` as declared, a known family by its defaults.
    ``ValueError`` for an unknown tap, an ill-declared layer or an unknown family.
    """
    return select_layers(model, None, tap)


def layer_names(model: nn.Module, tap: str = "block") -> list[str]:
    """Names of the feature layers of ``model`` in depth order."""
    return [name for name, _ in layer_modules(model, tap)]


def plan_groups(nbytes: Sequence[int], max_bytes: int) -> list[list[int]]:
    """Split layer indices ``0..L-1`` into consecutive groups of total size ``<= max_bytes``.

    Greedy in depth order; a layer larger than ``max_bytes`` forms a group alone.
    """
    if max_bytes <= 0:
        raise ValueError(f"max_bytes must be > 0; got {max_bytes}")
    groups: list[list[int]] = []
    total = 0
    for i, size in enumerate(nbytes):
        if groups and total + size <= max_bytes:
            groups[-1].append(i)
            total += size
        else:
            groups.append([i])
            total = size
    return groups


def default_device() -> torch.device:
    """CUDA when available, else CPU (:func:`modgraph.devices.resolve_device` of ``None``)."""
    return resolve_device(None)


class Reading(TypedDict, total=False):
    """How :func:`iter_layer_features` reads the layers besides the tap: its keyword arguments that the curve
    functions (:func:`modgraph.curve.modularity_curve`, :func:`modgraph.cka.compare_layers`) pass on."""

    layers: Sequence[str] | None
    tokens: str | None
    output_key: str | None
    batch_size: int
    device: str | torch.device | None
    max_bytes: int


def iter_layer_features(
    model: nn.Module,
    images: torch.Tensor,
    *,
    tap: str = "block",
    layers: Sequence[str] | None = None,
    tokens: str | None = None,
    output_key: str | None = None,
    batch_size: int = 256,
    device: str | torch.device | None = None,
    max_bytes: int = 2**31,
    progress: bool = False,
) -> Iterator[tuple[str, torch.Tensor]]:
    """Yield ``(layer name, features)`` in depth order; features ``(N, D)`` float32 on ``device``.

    ``images``: float ``(N, 3, H, W)`` in ``[0, 1]``. ``layers``: module names and
    globs (:func:`modgraph.selection.select_layers`); default the model's
    :func:`layer_names`. Layers are yielded in the order they first run in a probe
    forward pass of one image; a selected layer that never runs, or runs twice,
    is a ``ValueError``. Outputs become ``(N, D)`` rows by
    :func:`modgraph.readout.readout` with ``tokens`` (default
    :data:`modgraph.readout.DEFAULT_TOKENS`, for every model) and ``output_key``. The model runs on
    ``device`` (default :func:`default_device`) in eval mode without gradients, in
    batches of ``batch_size``; between yields it is back on its own device, in its
    own train/eval modes, and carries no hooks. Consecutive layers are computed
    together, one pass over the images per group, in groups whose features total
    at most ``max_bytes`` (``N * D * 4`` summed; a larger single layer is alone).
    """
    selected = select_layers(model, layers, tap)
    tokens = DEFAULT_TOKENS if tokens is None else tokens
    TOKENS.get(tokens)
    if output_key is not None and not isinstance(output_key, str):
        raise ValueError(f"output_key must be a string or None; got {output_key!r}")
    _check_images(images)
    if isinstance(batch_size, bool) or not isinstance(batch_size, Integral) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer; got {batch_size!r}")
    if max_bytes <= 0:
        raise ValueError(f"max_bytes must be > 0; got {max_bytes}")
    device = resolve_device(device)
    read = functools.partial(readout, tokens=tokens, output_key=output_key)
    return _iterate(model, images, selected, read, batch_size, device, max_bytes, progress)


def _iterate(model: nn.Module, images: torch.Tensor, selected: list[tuple[str, nn.Module]], read: _Read,
             batch_size: int, device: torch.device, max_bytes: int,
             progress: bool) -> Iterator[tuple[str, torch.Tensor]]:
    probe = _extract(model, images[:1], selected, read, 1, device, None)
    order = list(probe)
    selected = sorted(selected, key=lambda layer: order.index(layer[0]))
    nbytes = [images.shape[0] * probe[name].shape[1] * 4 for name, _ in selected]
    for group in plan_groups(nbytes, max_bytes):
        chosen = [selected[i] for i in group]
        desc = f"features {chosen[0][0]}" + (f"..{chosen[-1][0]}" if len(chosen) > 1 else "")
        features = _extract(model, images, chosen, read, batch_size, device, desc if progress else None)
        for name, _ in chosen:
            yield name, features.pop(name)


def _check_images(images: torch.Tensor) -> None:
    if not isinstance(images, torch.Tensor):
        raise ValueError(f"images must be a torch.Tensor of shape (N, 3, H, W); got {type(images).__name__}")
    if images.ndim != 4:
        raise ValueError(f"images must have shape (N, 3, H, W); got {tuple(images.shape)}")
    if images.shape[0] == 0:
        raise ValueError("images is empty (N = 0)")
    if not images.is_floating_point():
        raise ValueError(f"images must be floating point in [0, 1]; got dtype {images.dtype}")
    if not bool(torch.isfinite(images).all()):
        raise ValueError("images contain NaN or infinite values")
    low, high = float(images.min()), float(images.max())
    if low < 0.0 or high > 1.0:
        raise ValueError(f"images must be in pixel space [0, 1] (the model normalises them itself); "
                         f"got values in [{low:.4g}, {high:.4g}]")


class _Stop(Exception):
    """Raised by the deepest hook of a group: the rest of the forward pass is not needed."""


@contextlib.contextmanager
def _running(model: nn.Module, device: torch.device) -> Iterator[None]:
    """The model on ``device`` in eval mode without gradients; its device and modes restored after."""
    home = next(itertools.chain(model.parameters(), model.buffers()), torch.empty(0)).device
    modes = [(module, module.training) for module in model.modules()]
    model.eval()
    model.to(device)
    try:
        with torch.no_grad():
            yield
    finally:
        model.to(home)
        for module, training in modes:
            module.training = training


def _extract(model: nn.Module, images: torch.Tensor, layers: list[tuple[str, nn.Module]], read: _Read,
             batch_size: int, device: torch.device, desc: str | None) -> dict[str, torch.Tensor]:
    """One pass over ``images``: ``{name: (N, D) float32 on device}`` for ``layers``, in the order they first ran.

    Each batch's forward pass stops as soon as every one of ``layers`` has run.
    """
    n = images.shape[0]
    out: dict[str, torch.Tensor] = {}
    rows = slice(0, 0)
    fired: set[str] = set()

    def hook_for(name: str) -> Callable[[nn.Module, object, object], None]:
        def hook(module: nn.Module, inputs: object, output: object) -> None:
            if name in fired:
                raise ValueError(f"layer {name!r} ran more than once in one forward pass; its features are ambiguous")
            flat = read(output, name).detach()
            if flat.shape[0] != rows.stop - rows.start:
                raise ValueError(f"layer {name!r} output has batch size {flat.shape[0]}, "
                                 f"expected {rows.stop - rows.start}")
            fired.add(name)
            if name not in out:
                out[name] = torch.empty(n, flat.shape[1], dtype=torch.float32, device=device)
            out[name][rows].copy_(flat)
            if len(fired) == len(layers):
                raise _Stop
        return hook

    with _running(model, device), contextlib.ExitStack() as hooks:
        for name, module in layers:
            hooks.callback(module.register_forward_hook(hook_for(name)).remove)
        for start in tqdm(range(0, n, batch_size), desc=desc, disable=desc is None, leave=False, unit="batch"):
            rows = slice(start, min(start + batch_size, n))
            fired.clear()
            try:
                model(images[rows].to(device=device, dtype=torch.float32))
            except _Stop:
                pass
            missing = [name for name, _ in layers if name not in fired]
            if missing:
                raise ValueError(f"layer(s) {', '.join(missing)} did not run in the forward pass of "
                                 f"{type(model).__name__}; select modules that run once per forward")
    return out
