"""Fig. 1: t-SNE of the test samples after each layer, beside the modularity curve."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import seaborn as sns
from sklearn.manifold import TSNE
from threadpoolctl import threadpool_limits
from tqdm.auto import tqdm

if TYPE_CHECKING:
    import torch

    from modgraph.curve import Curve

__all__ = ["tsne_embed", "layer_embeddings", "tsne_figure"]


def tsne_embed(X: np.ndarray, *, seed: int = 0, perplexity: float = 30.0) -> np.ndarray:
    """2-D t-SNE (PCA init) of the rows of ``X`` (N, D) -> (N, 2); same seed, same embedding."""
    X = np.asarray(X, dtype=np.float32)
    if X.ndim != 2:
        raise ValueError(f"tsne_embed expects features of shape (N, D), got {X.shape}")
    if not 0 < perplexity < X.shape[0]:
        raise ValueError(f"perplexity must be in (0, N={X.shape[0]}), got {perplexity}")
    tsne = TSNE(n_components=2, perplexity=perplexity, init="pca", learning_rate="auto", random_state=seed)
    # One OpenMP thread: the same embedding, and several times faster than the default
    # threads when other processes share the cores (their spin-waiting dominates at N ~ 500).
    with threadpool_limits(1, user_api="openmp"):
        return tsne.fit_transform(X).astype(np.float32)


def layer_embeddings(
    model: "torch.nn.Module",
    images: "torch.Tensor",
    *,
    tap: str = "block",
    seed: int = 0,
    perplexity: float = 30.0,
    device: str | None = None,
    progress: bool = True,
) -> dict[str, np.ndarray]:
    """t-SNE of every layer's flattened features of ``images`` (N, 3, H, W): layer -> (N, 2)."""
    from modgraph.features import iter_layer_features, layer_names

    names = layer_names(model, tap)
    out: dict[str, np.ndarray] = {}
    features = iter_layer_features(model, images, tap=tap, device=device, progress=False)
    for name, feats in tqdm(features, total=len(names), desc="t-SNE per layer", disable=not progress):
        out[name] = tsne_embed(feats.detach().cpu().numpy(), seed=seed, perplexity=perplexity)
    return out


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
