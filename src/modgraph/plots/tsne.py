"""Fig. 1: t-SNE of the test samples after each layer (:mod:`modgraph.embeddings`), beside the modularity curve."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import seaborn as sns

if TYPE_CHECKING:
    from modgraph.curve import Curve

__all__ = ["tsne_figure"]


def tsne_figure(
    embeddings: Mapping[str, np.ndarray],
    labels: Sequence[int] | np.ndarray,
    classes: Sequence[str],
    *,
    title: str,
    curve: "Curve | None" = None,
    ncols: int = 4,
) -> plt.Figure:
    """One scatter panel per layer (coloured by class), then the modularity curve when given.

    ``embeddings`` maps layer name -> (N, 2) in depth order; ``labels`` (N,)
    index ``classes``. With ``curve`` each panel's title shows that layer's
    mean Q, and the last panel plots the curve.
    """
    labels = np.asarray(labels)
    if labels.ndim != 1:
        raise ValueError(f"labels must be 1-D, got shape {labels.shape}")
    if not embeddings:
        raise ValueError("tsne_figure needs at least one layer embedding")
    for name, emb in embeddings.items():
        if np.shape(emb) != (labels.size, 2):
            raise ValueError(f"embedding of {name!r} has shape {np.shape(emb)}, expected ({labels.size}, 2)")
    if labels.min() < 0 or labels.max() >= len(classes):
        raise ValueError(f"labels must index the {len(classes)} classes, got range [{labels.min()}, {labels.max()}]")
    q = _layer_q(curve, list(embeddings)) if curve is not None else {}
    panels = len(embeddings) + (curve is not None)
    ncols = max(1, min(ncols, panels))
    nrows = math.ceil(panels / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(3.2 * ncols, 3.0 * nrows), squeeze=False)
    palette = sns.color_palette("tab10" if len(classes) <= 10 else "husl", len(classes))
    colours = np.asarray(palette)[labels]
    flat = list(axes.flat)
    for ax, (name, emb) in zip(flat, embeddings.items()):
        emb = np.asarray(emb)
        ax.scatter(emb[:, 0], emb[:, 1], c=colours, s=6, linewidths=0)
        ax.set_title(f"{name}" + (f"  Q={q[name]:.3f}" if name in q else ""), fontsize=10)
        ax.set_xticks([])
        ax.set_yticks([])
        ax.grid(False)
    if curve is not None:
        ax = flat[len(embeddings)]
        mean, std = np.asarray(curve.mean, float), np.asarray(curve.std, float)
        xs = np.arange(1, mean.size + 1)
        ax.plot(xs, mean, marker="o", markersize=3)
        ax.fill_between(xs, mean - std, mean + std, alpha=0.2, linewidth=0)
        ax.set_xlabel("layer index")
        ax.set_ylabel("modularity Q")
        ax.set_title("modularity curve", fontsize=10)
    for ax in flat[panels:]:
        ax.set_visible(False)
    handles = [plt.Line2D([], [], marker="o", linestyle="", color=palette[i], label=c) for i, c in enumerate(classes)]
    fig.legend(handles=handles, loc="lower center", ncols=min(len(classes), 10), frameon=False,
               bbox_to_anchor=(0.5, -0.02), fontsize=8)
    fig.suptitle(title)
    fig.tight_layout(rect=(0, 0.04, 1, 1))
    return fig


def _layer_q(curve: "Curve", names: list[str]) -> dict[str, float]:
    layers = list(curve.layers)
    missing = [n for n in names if n not in layers]
    if missing:
        raise ValueError(f"curve has no layers {missing}; its layers: {layers}")
    return {n: float(np.asarray(curve.mean)[layers.index(n)]) for n in names}
