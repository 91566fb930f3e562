"""The one shim that lets AdverTorch 0.2.3 import on current PyTorch.

``advertorch.attacks`` imports its FAB attack at package import, and that
module does ``from torch.autograd.gradcheck import zero_gradients``, a helper
PyTorch removed in 1.9. :func:`patch_advertorch` puts an equivalent function
back into ``torch.autograd.gradcheck`` before AdverTorch is imported. Nothing
else in the package patches third-party code; import AdverTorch only through
:func:`advertorch_attacks`.

The attacks this project uses (FGSM, Linf-PGD, JSMA, CW-L2, single-pixel,
local search) run unmodified on current PyTorch once imported; the only
behavioural quirk is that they draw random numbers from PyTorch's global
generator, which :mod:`modgraph.attacks` isolates with ``torch.random.fork_rng``.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable
from types import ModuleType

import torch

__all__ = ["zero_gradients", "patch_advertorch", "advertorch_attacks"]


def zero_gradients(x: torch.Tensor | Iterable) -> None:
    """Zero ``.grad`` in place for a tensor or (nested) iterable of tensors.

    Tensors without a gradient are left alone; the gradient is detached from
    any graph first, as the removed PyTorch helper did.
    """
    if isinstance(x, torch.Tensor):
        if x.grad is not None:
            x.grad.detach_()
            x.grad.zero_()
    elif isinstance(x, Iterable):
        for item in x:
            zero_gradients(item)


def patch_advertorch() -> None:
    """Define ``torch.autograd.gradcheck.zero_gradients`` when missing (idempotent).

    The module is fetched with ``importlib``: the attribute path
    ``torch.autograd.gradcheck`` names the *function* ``gradcheck``.
    """
    module = importlib.import_module("torch.autograd.gradcheck")
    if not hasattr(module, "zero_gradients"):
        module.zero_gradients = zero_gradients


def advertorch_attacks() -> ModuleType:
    """``advertorch.attacks``, imported after :func:`patch_advertorch`."""
    patch_advertorch()
    import advertorch.attacks

    return advertorch.attacks
