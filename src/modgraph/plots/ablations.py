"""Figs. 7 and B11-B13: modularity curves under varied settings, one panel per model, and a trend panel; and the
share of same-class neighbours behind them (beyond the paper)."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np

from modgraph.plots.curves import plot_curves

if TYPE_CHECKING:
    from modgraph.agreement import Agreement
    from modgraph.curve import Curve
    from modgraph.sections.ablations import ModelAblation

__all__ = ["plot_trend", "sweep_figure", "ablation_figure", "agreement_figure"]


def plot_trend(
    trend: Mapping[str, Mapping[float, float]],
    *,
    ax: plt.Axes | None = None,
    xlabel: str,
    ylabel: str = "modularity Q",
    log_x: bool = False,
    title: str | None = None,
) -> plt.Axes:
    """One line per entry of ``trend`` (label -> {setting value: Q}), in increasing setting order."""
    if not trend:
        raise ValueError("plot_trend needs at least one line")
    ax = ax if ax is not None else plt.subplots(figsize=(5, 3.6))[1]
    for label, points in trend.items():
        if not points:
            raise ValueError(f"trend line {label!r} has no points")
        xs = np.array(sorted(points), dtype=float)
        ax.plot(xs, [points[x] for x in sorted(points)], marker="o", markersize=4, linewidth=1.5, label=label)
    if log_x:
        ax.set_xscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    ax.legend(frameon=False)
    return ax


def _panel_grid(count: int, ncols: int, panel_size: tuple[float, float]) -> tuple[plt.Figure, list[plt.Axes]]:
    """A figure of ``count`` panels in rows of at most ``ncols`` (the unused cells hidden) and its axes, row-major."""
    if ncols < 1:
        raise ValueError(f"ncols must be >= 1, got {ncols}")
    ncols = min(ncols, count)
    nrows = math.ceil(count / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(panel_size[0] * ncols, panel_size[1] * nrows), squeeze=False)
    flat = list(axes.flat)
    for ax in flat[count:]:
        ax.set_visible(False)
    return fig, flat


def sweep_figure(
    panels: Mapping[str, Mapping[str, "Curve"]],
    *,
    title: str,
    trend: Mapping[str, Mapping[float, float]] | None = None,
    trend_xlabel: str = "",
    trend_title: str | None = None,
    log_x: bool = False,
    ncols: int = 3,
    panel_size: tuple[float, float] = (5.0, 3.6),
) -> plt.Figure:
    """A panel of curves per entry of ``panels`` (panel title -> {legend label: Curve}), sharing the y axis,
    then, when given, a :func:`plot_trend` panel of ``trend``."""
    if not panels:
        raise ValueError("sweep_figure needs at least one panel")
    count = len(panels) + (trend is not None)
    fig, flat = _panel_grid(count, ncols, panel_size)
    for ax, (name, curves) in zip(flat, panels.items()):
        plot_curves(curves, ax=ax, title=name)
        if ax is not flat[0]:
            ax.sharey(flat[0])
    if trend is not None:
        plot_trend(trend, ax=flat[len(panels)], xlabel=trend_xlabel, log_x=log_x, title=trend_title)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def ablation_figure(
    study: Mapping[str, "ModelAblation"],
    panel: str,
    *,
    title: str,
    trend: Sequence[str] = (),
    trend_xlabel: str = "",
    log_x: bool = False,
    ncols: int = 3,
) -> plt.Figure:
    """:func:`sweep_figure` of one :data:`modgraph.sections.ablations.PANELS` entry, a panel per model.

    ``study``: model -> ablation; ``trend``: :data:`~modgraph.sections.ablations.LAYER_SUMMARIES`
    names (e.g. ``("early", "last")``) whose mean Q is drawn against the panel's setting.
    """
    from modgraph.sections.ablations import LAYER_SUMMARIES

    if not study:
        raise ValueError("ablation_figure needs at least one model")
    lines = {f"{model}, {LAYER_SUMMARIES.get(where)[0]}": result.summary(panel, where)
             for model, result in study.items() for where in trend}
    return sweep_figure({model: result.panel(panel) for model, result in study.items()}, title=title,
                        trend=lines or None, trend_xlabel=trend_xlabel, log_x=log_x, ncols=ncols,
                        trend_title="mean Q against the setting" if lines else None)


def agreement_figure(
    agreements: Mapping[str, "Agreement"],
    *,
    ranks: Sequence[int],
    similarity: str,
    alternative: str | None = None,
    k: int | None = None,
    title: str,
    ncols: int = 3,
    panel_size: tuple[float, float] = (5.0, 3.6),
) -> plt.Figure:
    """A panel per model: over depth, the share of each sample's first r neighbours in its class
    (:meth:`modgraph.agreement.Agreement.within`), one solid line per r in ``ranks`` with ``similarity``, and
    (given ``alternative`` and ``k``) a dashed line for the first ``k`` with ``alternative``; a dotted line at
    chance, 1 / the number of classes (``meta["classes"]``), where recorded."""
    if not agreements:
        raise ValueError("agreement_figure needs at least one model")
    if not ranks:
        raise ValueError("agreement_figure needs at least one rank")
    fig, flat = _panel_grid(len(agreements), ncols, panel_size)
    colours = plt.get_cmap("viridis")(np.linspace(0.0, 0.85, len(ranks)))
    for ax, (model, agreement) in zip(flat, agreements.items()):
        depth = np.arange(1, len(agreement.layers) + 1)
        for r, colour in zip(ranks, colours):
            ax.plot(depth, agreement.within(similarity, r), marker="o", markersize=3, color=colour,
                    label=f"first {r}, {similarity}")
        if alternative is not None and k is not None:
            ax.plot(depth, agreement.within(alternative, k), linestyle="--", color="tab:red",
                    label=f"first {k}, {alternative}")
        classes = agreement.meta.get("classes")
        if classes:
            ax.axhline(1 / classes, color="grey", linestyle=":", linewidth=1, label=f"chance (1/{classes})")
        ax.set_title(model)
        ax.set_xlabel("layer (depth)")
        ax.set_ylabel("same-class share of neighbours")
        ax.set_ylim(0, 1)
    handles, labels = flat[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=len(labels), frameon=False, fontsize="small")
    fig.suptitle(title)
    fig.tight_layout(rect=(0, 0.08, 1, 1))
    return fig
