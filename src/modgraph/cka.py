"""Linear centred kernel alignment (CKA, Kornblith et al. 2019) between layer representations.

CKA compares two representations of the same ``N`` examples through their
example-space Gram matrices, so the feature widths ``D`` may be huge:
``CKA(X, Y) = HSIC(K, L) / sqrt(HSIC(K, K) HSIC(L, L))`` with ``K = X X^T`` and
``L = Y Y^T``. The biased HSIC centres the Grams (``H K H``); the debiased one
is the unbiased estimator of Song et al. (2012), computed as the inner product
of U-centred Grams (Szekely and Rizzo 2014), as proposed for CKA by Nguyen et
al. (2021). Grams are formed in the input dtype and centred in float64.
"""

from __future__ import annotations

from typing import Iterable

import numpy as np
import torch

__all__ = ["centred_gram", "linear_cka", "linear_cka_features", "cka_matrix"]

Array = torch.Tensor | np.ndarray


def centred_gram(X: Array, debiased: bool = False) -> torch.Tensor:
    """The centred (or, ``debiased``, U-centred) linear Gram matrix (N, N), float64, of ``X`` (N, D)."""
    X = _features(X, "X")
    return _centre(X @ X.T, debiased)


def linear_cka(X: Array, Y: Array, debiased: bool = False) -> float:
    """Linear CKA of ``X`` (N, D1) and ``Y`` (N, D2) in example space; in [0, 1] unless ``debiased``."""
    X, Y = _features(X, "X"), _features(Y, "Y")
    _same_examples(X, Y)
    return _alignment(_centre(X @ X.T, debiased), _centre(Y @ Y.T, debiased), "X", "Y")


def linear_cka_features(X: Array, Y: Array) -> float:
    """Linear CKA in feature space: ``||Yc^T Xc||_F^2 / (||Xc^T Xc||_F ||Yc^T Yc||_F)``, columns centred.

    Equals ``linear_cka(X, Y)``; costs O(N D1 D2), so only for narrow features.
    """
    X, Y = _features(X, "X"), _features(Y, "Y")
    _same_examples(X, Y)
    Xc = X.to(torch.float64) - X.to(torch.float64).mean(dim=0)
    Yc = Y.to(torch.float64) - Y.to(torch.float64).mean(dim=0)
    denominator = torch.linalg.matrix_norm(Xc.T @ Xc) * torch.linalg.matrix_norm(Yc.T @ Yc)
    if not denominator > 0:
        raise ValueError("CKA is undefined: X or Y does not vary across examples")
    return float(torch.linalg.matrix_norm(Yc.T @ Xc) ** 2 / denominator)


def cka_matrix(layers: Iterable[Array | tuple[str, Array]], debiased: bool = False, grams: bool = False) -> np.ndarray:
    """Linear CKA between all pairs of ``L`` layers -> (L, L) float64 numpy array.

    ``layers`` yields per-layer features (N, D_l), or ``(name, features)`` pairs
    as ``features.iter_layer_features`` does, or with ``grams=True`` the
    uncentred Grams ``X X^T`` (N, N). It is consumed once, as a stream: each
    layer is reduced to its centred Gram on arrival (L * N^2 float64 kept).
    """
    centred: list[torch.Tensor] = []
    n_examples = 0
    for index, item in enumerate(layers):
        array = item[1] if isinstance(item, tuple) else item
        name = f"layer {item[0]!r}" if isinstance(item, tuple) else f"layer {index}"
        if grams:
            gram = _features(array, name)
            if gram.shape[0] != gram.shape[1]:
                raise ValueError(f"{name}: a Gram matrix must be square (N, N), got {tuple(gram.shape)}")
        else:
            X = _features(array, name)
            gram = X @ X.T
        if centred and gram.shape[0] != n_examples:
            raise ValueError(f"{name} has {gram.shape[0]} examples, the first layer {n_examples}")
        n_examples = gram.shape[0]
        g = _centre(gram, debiased)
        if not torch.linalg.matrix_norm(g) > 0:
            raise ValueError(f"CKA is undefined: {name} does not vary across examples")
        centred.append(g.flatten())
    if not centred:
        raise ValueError("cka_matrix needs at least one layer")
    stacked = torch.stack(centred)
    inner = stacked @ stacked.T
    norms = inner.diagonal().sqrt()
    return (inner / norms[:, None] / norms[None, :]).cpu().numpy()


def _features(X: Array, name: str) -> torch.Tensor:
    X = torch.as_tensor(X)
    if X.ndim != 2:
        raise ValueError(f"{name} must be 2-D (N examples, D features), got shape {tuple(X.shape)}")
    if X.dtype not in (torch.float32, torch.float64):
        X = X.to(torch.float32)
    if not torch.isfinite(X).all():
        raise ValueError(f"{name} contains NaN or infinite values")
    return X


def _same_examples(X: torch.Tensor, Y: torch.Tensor) -> None:
    if X.shape[0] != Y.shape[0]:
        raise ValueError(f"X and Y must describe the same examples: X has {X.shape[0]} rows, Y has {Y.shape[0]}")


def _centre(gram: torch.Tensor, debiased: bool) -> torch.Tensor:
    """``H K H`` or, ``debiased``, the U-centred ``K`` (zero diagonal); float64 (N, N)."""
    K = gram.to(torch.float64)
    n = K.shape[0]
    if not debiased:
        if n < 2:
            raise ValueError(f"CKA needs at least 2 examples, got {n}")
        row = K.mean(dim=1, keepdim=True)
        return K - row - row.T + row.mean()
    if n < 4:
        raise ValueError(f"debiased CKA needs at least 4 examples, got {n}")
    K = K.clone()
    K.fill_diagonal_(0)
    row = K.sum(dim=1, keepdim=True) / (n - 2)
    U = K - row - row.T + K.sum() / ((n - 1) * (n - 2))
    return U.fill_diagonal_(0)


def _alignment(Kc: torch.Tensor, Lc: torch.Tensor, x_name: str, y_name: str) -> float:
    """``<Kc, Lc> / (||Kc|| ||Lc||)`` with a clear error when a side does not vary."""
    kk, ll = (Kc * Kc).sum(), (Lc * Lc).sum()
    for value, name in ((kk, x_name), (ll, y_name)):
        if not value > 0:
            raise ValueError(f"CKA is undefined: {name} does not vary across examples")
    return float((Kc * Lc).sum() / torch.sqrt(kk * ll))
