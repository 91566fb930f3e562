"""The one place that turns a device name into a ``torch.device`` (or says why it cannot).

Every function taking ``device=`` resolves it here, so a bad name gives the
same ``ValueError`` everywhere, before any work starts, listing the valid
choices: ``auto`` (also ``None``: CUDA when available, else the CPU), ``cpu``,
``cuda`` and ``cuda:<index>``. Other torch device types (``mps``, ``xpu``,
...) are refused: the training loop and the graph code are written and tested
for CPU and CUDA only.
"""

from __future__ import annotations

import torch

__all__ = ["VALID_DEVICES", "resolve_device"]

VALID_DEVICES = "auto, cpu, cuda, cuda:<index>"
"""The device names :func:`resolve_device` accepts, as listed in its error messages."""


def resolve_device(device: str | torch.device | None = None) -> torch.device:
    """``None``/``"auto"``: CUDA when available, else CPU; otherwise the named device, checked to exist here."""
    if device is None or (isinstance(device, str) and device.strip().lower() == "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device.strip().lower() if isinstance(device, str) else device)
    except (RuntimeError, TypeError, ValueError):
        raise ValueError(f"unknown device {device!r}; valid choices: {VALID_DEVICES}") from None
    if dev.type not in ("cpu", "cuda"):
        raise ValueError(f"unsupported device {device!r} (modgraph runs on CPU and CUDA only); "
                         f"valid choices: {VALID_DEVICES}")
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device {device!r} requested but CUDA is not available here; valid choices: "
                             f"auto or cpu")
        count = torch.cuda.device_count()
        if dev.index is not None and dev.index >= count:
            raise ValueError(f"device {device!r} requested but this machine has {count} CUDA device(s); "
                             f"valid choices: {VALID_DEVICES} with index < {count}")
    return dev
