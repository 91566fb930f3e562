"""Fig. 8: the modularity-difference matrix |Q_i - Q_j| beside 1 - linear CKA between the same layers."""

from __future__ import annotations

from typing import TYPE_CHECKING, Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import seaborn as sns

if TYPE_CHECKING:
    from modgraph.cka import LayerComparison

__all__ = ["difference_heatmap", "difference_figure"]


def difference_heatmap(
    matrix: np.ndarray,
    layers: Sequence[str],
    *,
    ax: plt.Axes | None = None,
    title: str | None = None,
    label: str = "",
    vmax: float | None = None,
) -> plt.Axes:
    """A heatmap of a layer-by-layer difference ``matrix`` (L, L), rows and columns in depth order ``layers``."""
    M = np.asarray(matrix, dtype=float)
    if M.ndim != 2 or M.shape != (len(layers), len(layers)):
        raise ValueError(f"matrix must be (L, L) for L = {len(layers)} layers, got shape {M.shape}")
    ax = ax if ax is not None else plt.subplots(figsize=(5, 4.3))[1]
    sns.heatmap(M, ax=ax, cmap="viridis", vmin=0.0, vmax=vmax, square=True, xticklabels=list(layers),
                yticklabels=list(layers), cbar_kws={"label": label, "shrink": 0.8})
    ax.tick_params(axis="x", labelrotation=90, labelsize=7)
    ax.tick_params(axis="y", labelrotation=0, labelsize=7)
    if title:
        ax.set_title(title)
    return ax


def difference_figure(
    comparisons: Mapping[str, "LayerComparison"],
    *,
    title: str,
    panel_size: tuple[float, float] = (5.0, 4.3),
) -> plt.Figure:
    """One row per model: ``|Q_i - Q_j|`` and ``1 - CKA`` heatmaps, then the scatter of their layer pairs.

    ``comparisons``: model -> :class:`modgraph.cka.LayerComparison`;
    the scatter's title gives their Spearman agreement.
    """
    if not comparisons:
        raise ValueError("difference_figure needs at least one model")
    fig, axes = plt.subplots(len(comparisons), 3, figsize=(panel_size[0] * 3, panel_size[1] * len(comparisons)),
                             squeeze=False)
    for row, (model, comparison) in zip(axes, comparisons.items()):
        dq, dcka, names = comparison.modularity_difference, comparison.cka_difference, comparison.layers
        difference_heatmap(dq, names, ax=row[0], title=f"{model}: |Q_i - Q_j|", label="|ΔQ|")
        difference_heatmap(dcka, names, ax=row[1], title=f"{model}: 1 - linear CKA", label="1 - CKA")
        upper = np.triu_indices(len(names), k=1)
        row[2].scatter(dcka[upper], dq[upper], s=14, alpha=0.7)
        row[2].set_xlabel("1 - CKA")
        row[2].set_ylabel("|Q_i - Q_j|")
        row[2].set_title(f"{model}: layer pairs, Spearman ρ = {comparison.agreement():.2f}"
                         if len(names) >= 3 else f"{model}: layer pairs")
    fig.suptitle(title)
    fig.tight_layout()
    return fig
