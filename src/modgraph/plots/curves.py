"""Modularity curves: mean +- std over repeats against depth, one line per model."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Callable, Mapping

import matplotlib.pyplot as plt
import numpy as np

from modgraph.figures import NotDrawn, not_measured
from modgraph.registry import Registry

if TYPE_CHECKING:
    from modgraph.curve import Curve

__all__ = ["X_AXES", "plot_curves", "curve_grid"]

X_AXES: Registry[tuple[str, Callable[[int], np.ndarray]]] = Registry("x axis")
X_AXES.register("index", ("layer index", lambda n: np.arange(1, n + 1)))
X_AXES.register("relative", ("relative depth (layer / number of layers)", lambda n: np.arange(1, n + 1) / n))


def plot_curves(
    curves: Mapping[str, "Curve"],
    *,
    ax: plt.Axes | None = None,
    x: str = "index",
    title: str | None = None,
    legend: bool = True,
) -> plt.Axes:
    """Draw each curve's mean (line + markers) and +-1 std band (over repeats) on ``ax``.

    ``curves`` maps a legend label to a :class:`modgraph.curve.Curve`;
    ``x`` is a name in :data:`X_AXES` (``index`` or ``relative``).
    """
    xlabel, positions = X_AXES.get(x)
    if not curves:
        raise ValueError("plot_curves needs at least one curve")
    ax = ax if ax is not None else plt.subplots(figsize=(6, 4))[1]
    for label, curve in curves.items():
        mean = np.asarray(curve.mean, dtype=float)
        std = np.asarray(curve.std, dtype=float)
        if mean.ndim != 1 or mean.shape != std.shape:
            raise ValueError(f"curve {label!r}: mean and std must be 1-D of equal length, "
                             f"got {mean.shape}, {std.shape}")
        xs = positions(mean.size)
        (line,) = ax.plot(xs, mean, marker="o", markersize=3, linewidth=1.5, label=label)
        ax.fill_between(xs, mean - std, mean + std, color=line.get_color(), alpha=0.2, linewidth=0)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("modularity Q")
    if title:
        ax.set_title(title)
    if legend:
        ax.legend(frameon=False, ncols=1 if len(curves) < 6 else 2)
    return ax


def curve_grid(
    panels: Mapping[str, Mapping[str, "Curve"] | str],
    *,
    title: str,
    x: str = "index",
    ncols: int = 2,
    panel_size: tuple[float, float] = (5.5, 3.8),
) -> plt.Figure | NotDrawn:
    """One panel per entry of ``panels`` (panel title -> {label: Curve}), sharing the y axis.

    An entry given as a string instead of curves (why it was not measured) gets
    no panel; when no entry has curves the result is a :class:`NotDrawn`.
    """
    if not panels:
        raise ValueError("curve_grid needs at least one panel")
    if ncols < 1:
        raise ValueError(f"ncols must be >= 1, got {ncols}")
    drawn = {name: curves for name, curves in panels.items() if not isinstance(curves, str)}
    if not drawn:
        return not_measured(panels)
    ncols = min(ncols, len(drawn))
    nrows = math.ceil(len(drawn) / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(panel_size[0] * ncols, panel_size[1] * nrows),
                             squeeze=False, sharey=True)
    for ax, (name, curves) in zip(axes.flat, drawn.items()):
        plot_curves(curves, ax=ax, x=x, title=name)
    for ax in list(axes.flat)[len(drawn):]:
        ax.set_visible(False)
    fig.suptitle(title)
    fig.tight_layout()
    return fig
