"""Checks of settings values shared by the settings types: each returns the value normalised or raises a
``ValueError`` naming the argument and what it must be."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

__all__ = ["int_at_least", "finite_number", "positive_number"]


def int_at_least(value: Any, name: str, low: int = 1) -> int:
    """``value`` as an ``int`` when it is an integer (not a bool) ``>= low``; ``ValueError`` naming ``name`` else."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
        raise ValueError(f"{name} must be an int >= {low}, got {value!r}")
    return int(value)


def finite_number(value: Any, name: str) -> float:
    """``value`` as a ``float`` when it is a finite real number (not a bool); ``ValueError`` naming ``name`` else."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)) or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    return float(value)


def positive_number(value: Any, name: str) -> float:
    """``value`` as a ``float`` when it is a real number > 0 (not a bool); ``ValueError`` naming ``name`` else."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)) or not value > 0:
        raise ValueError(f"{name} must be a number > 0, got {value!r}")
    return float(value)
