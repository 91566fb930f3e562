"""Checks of settings values shared by the settings types: each returns the value normalised or raises a
``ValueError`` naming the argument and what it must be."""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["int_at_least"]


def int_at_least(value: Any, name: str, low: int = 1) -> int:
    """``value`` as an ``int`` when it is an integer (not a bool) ``>= low``; ``ValueError`` naming ``name`` else."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
        raise ValueError(f"{name} must be an int >= {low}, got {value!r}")
    return int(value)
