"""Pruning figures: accuracy drop against the Delta-Q of the removed layers (Fig. 10), and a
modularity curve with the layers pruned from it marked (Table 1).

Fig. 9 (curves of depth variants) is :func:`modgraph.plots.curves.curve_grid`
of :meth:`modgraph.sections.pruning.VariantStudies.panels`.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.ticker import MaxNLocator

from modgraph.plots.curves import plot_curves
from modgraph.figures import NotDrawn, not_measured

if TYPE_CHECKING:
    from modgraph.curve import Curve

__all__ = ["POINT_COLUMNS", "delta_q_figure", "pruned_curve_figure"]

POINT_COLUMNS = ("data set", "model", "Delta-Q", "accuracy drop (%)", "source")
"""Columns of the points :func:`delta_q_figure` draws (:func:`modgraph.sections.pruning.delta_q_points`)."""

_MEASURED = "measured"


def delta_q_figure(
    points: pd.DataFrame,
    *,
    datasets: Sequence[str],
    title: str,
    missing: Mapping[str, str] | None = None,
    ncols: int = 2,
    panel_size: tuple[float, float] = (5.0, 3.8),
) -> plt.Figure | NotDrawn:
    """One panel per data set: accuracy drop (%) against Delta-Q, measured points labelled by model.

    ``points`` has :data:`POINT_COLUMNS`; rows whose ``source`` is not
    ``"measured"`` (the paper's quoted values) are drawn as hollow markers
    under their source's name. A data set in ``missing`` gets no panel; when
    every one is missing the result is a :class:`NotDrawn`.
    """
    absent = [c for c in POINT_COLUMNS if c not in points.columns]
    if absent:
        raise ValueError(f"points lack the columns {absent}; expected {list(POINT_COLUMNS)}")
    if not datasets:
        raise ValueError("delta_q_figure needs at least one data set")
    if ncols < 1:
        raise ValueError(f"ncols must be >= 1, got {ncols}")
    missing = missing or {}
    drawn = [ds for ds in datasets if ds not in missing]
    if not drawn:
        return not_measured(datasets)
    ncols = min(ncols, len(drawn))
    nrows = math.ceil(len(drawn) / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(panel_size[0] * ncols, panel_size[1] * nrows), squeeze=False)
    for ax, ds in zip(axes.flat, drawn):
        rows = points[points["data set"] == ds]
        measured = rows[rows["source"] == _MEASURED]
        ax.scatter(measured["Delta-Q"], measured["accuracy drop (%)"], s=36, zorder=3, label="measured (ours)")
        for _, row in measured.iterrows():
            ax.annotate(row["model"], (row["Delta-Q"], row["accuracy drop (%)"]), textcoords="offset points",
                        xytext=(4, 4), fontsize=8)
        for source, quoted in rows[rows["source"] != _MEASURED].groupby("source", sort=False):
            ax.scatter(quoted["Delta-Q"], quoted["accuracy drop (%)"], s=36, facecolors="none", zorder=3,
                       edgecolors="black", label=source)
        ax.axhline(0.0, color="grey", linewidth=0.8)
        ax.xaxis.set_major_locator(MaxNLocator(5))
        ax.margins(0.15)
        ax.set_xlabel("Delta-Q of the removed layers")
        ax.set_ylabel("accuracy drop (%)")
        ax.set_title(ds)
        if len(rows):
            ax.legend(frameon=True, fontsize=8)
    for ax in list(axes.flat)[len(drawn):]:
        ax.set_visible(False)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def pruned_curve_figure(
    curve: "Curve",
    removed: Sequence[str],
    *,
    title: str,
    kept: Sequence[str] = (),
    label: str = "unpruned model",
) -> plt.Figure:
    """``curve`` (mean ± std) with its ``removed`` layers marked by crosses and redundant ``kept`` ones by circles."""
    layers = list(curve.layers)
    unknown = [name for name in (*removed, *kept) if name not in layers]
    if unknown:
        raise ValueError(f"{', '.join(unknown)} not among the curve's layers; valid choices: {', '.join(layers)}")
    fig, ax = plt.subplots(figsize=(7, 4))
    plot_curves({label: curve}, ax=ax, legend=False)
    mean = np.asarray(curve.mean, dtype=float)
    for names, style, text in ((removed, {"marker": "x", "c": "black"}, "removed"),
                               (kept, {"marker": "o", "facecolors": "none", "edgecolors": "black"},
                                "redundant but kept")):
        if names:
            index = np.array([layers.index(name) for name in names])
            ax.scatter(index + 1, mean[index], s=70, zorder=4, label=f"{text} ({len(names)})", **style)
    ax.legend(frameon=False)
    fig.suptitle(title)
    fig.tight_layout()
    return fig
