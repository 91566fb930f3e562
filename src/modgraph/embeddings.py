"""t-SNE embeddings of layer features (Fig. 1): seeded, one OpenMP thread, one layer at a time."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from sklearn.manifold import TSNE
from threadpoolctl import threadpool_limits
from tqdm.auto import tqdm

if TYPE_CHECKING:
    import torch

__all__ = ["tsne_embed", "layer_embeddings"]


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
