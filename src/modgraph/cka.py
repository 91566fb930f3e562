"""Linear centred kernel alignment (CKA, Kornblith et al. 2019) between layer representations.

CKA compares two representations of the same ``N`` examples through their
example-space Gram matrices, so the feature widths ``D`` may be huge:
``CKA(X, Y) = HSIC(K, L) / sqrt(HSIC(K, K) HSIC(L, L))`` with ``K = X X^T`` and
``L = Y Y^T``. The biased HSIC centres the Grams (``H K H``); the debiased one
is the unbiased estimator of Song et al. (2012), computed as the inner product
of U-centred Grams (Szekely and Rizzo 2014), as proposed for CKA by Nguyen et
al. (2021). Grams are formed in the input dtype and centred in float64.

Layer comparison (Fig. 8): :func:`compare_layers` streams a model's layer
features once over the sample sets of a modularity curve
(:func:`modgraph.curve.sample_union`) and gives a :class:`LayerComparison`:
the curve and the linear CKA between all layer pairs, formed from per-layer
Grams (at most one group of layers' features and L Grams of N x N per sample
set are held), averaged over the sample sets. Its quantities are pure
functions of the two ``(L, L)`` difference matrices ``|Q_i - Q_j|`` and
``1 - CKA_ij``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable, Iterator, Mapping, Sequence, Unpack

import numpy as np
import torch
from scipy import stats
from torch import nn
from tqdm.auto import tqdm

from modgraph.curve import Curve, CurveSettings, check_inputs, curve_from_features, sample_union
from modgraph.features import Reading, iter_layer_features
from modgraph.selection import select_layers

__all__ = [
    "centred_gram",
    "linear_cka",
    "linear_cka_features",
    "cka_matrix",
    "difference_matrix",
    "upper_triangle",
    "matrix_agreement",
    "mantel_test",
    "LayerComparison",
    "compare_layers",
]

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


def _square(M: np.ndarray | Sequence[Sequence[float]], name: str) -> np.ndarray:
    A = np.asarray(M, dtype=float)
    if A.ndim != 2 or A.shape[0] != A.shape[1]:
        raise ValueError(f"{name} must be a square (L, L) matrix, got shape {A.shape}")
    if not np.isfinite(A).all():
        raise ValueError(f"{name} contains NaN or infinite values")
    return A


def _pair(A: np.ndarray | Sequence[Sequence[float]], B: np.ndarray | Sequence[Sequence[float]]
          ) -> tuple[np.ndarray, np.ndarray]:
    A, B = _square(A, "A"), _square(B, "B")
    if A.shape != B.shape:
        raise ValueError(f"A and B must compare the same layers, got shapes {A.shape} and {B.shape}")
    if A.shape[0] < 3:
        raise ValueError(f"needs at least 3 layers (3 layer pairs), got {A.shape[0]}")
    return A, B


def difference_matrix(values: np.ndarray | Sequence[float]) -> np.ndarray:
    """``|Q_i - Q_j|`` for a curve ``values`` (L,) -> (L, L), symmetric with a zero diagonal."""
    q = np.asarray(values, dtype=float)
    if q.ndim != 1 or q.size < 1:
        raise ValueError(f"expected a 1-D curve of Q over depth, got shape {q.shape}")
    return np.abs(q[:, None] - q[None, :])


def upper_triangle(M: np.ndarray | Sequence[Sequence[float]]) -> np.ndarray:
    """The entries above the diagonal of ``M`` (L, L), row by row -> (L (L - 1) / 2,)."""
    A = _square(M, "M")
    return A[np.triu_indices(A.shape[0], k=1)]


def matrix_agreement(A: np.ndarray | Sequence[Sequence[float]], B: np.ndarray | Sequence[Sequence[float]]) -> float:
    """Spearman rho between the upper triangles of ``A`` and ``B`` (L, L), L >= 3; NaN if one is constant."""
    a, b = (upper_triangle(M) for M in _pair(A, B))
    if np.ptp(a) == 0 or np.ptp(b) == 0:
        return float("nan")
    return float(stats.spearmanr(a, b).statistic)


def mantel_test(A: np.ndarray | Sequence[Sequence[float]], B: np.ndarray | Sequence[Sequence[float]], *,
                permutations: int = 999, seed: int = 0) -> float:
    """One-sided Mantel p-value of :func:`matrix_agreement` of ``A`` and ``B`` (L, L).

    The layers of ``B`` are relabelled by ``permutations`` random
    permutations (rows and columns together); the p-value is
    ``(1 + #{rho_perm >= rho}) / (1 + permutations)``. NaN when the agreement is.
    """
    A, B = _pair(A, B)
    if isinstance(permutations, bool) or not isinstance(permutations, int) or permutations < 1:
        raise ValueError(f"permutations must be an int >= 1, got {permutations!r}")
    observed = matrix_agreement(A, B)
    if np.isnan(observed):
        return float("nan")
    rng = np.random.default_rng(seed)
    a = stats.rankdata(upper_triangle(A))
    rows, cols = np.triu_indices(A.shape[0], k=1)
    hits = 0
    for _ in range(permutations):
        order = rng.permutation(A.shape[0])
        b = stats.rankdata(B[order[rows], order[cols]])
        hits += np.corrcoef(a, b)[0, 1] >= observed - 1e-12
    return float((1 + hits) / (1 + permutations))


@dataclass(frozen=True)
class LayerComparison:
    """Modularity and linear CKA between the layers of one model on the same samples.

    ``curve``: the modularity curve (repeats = sample sets); ``cka`` (L, L):
    linear CKA between layers, averaged over the sample sets; ``meta``: model,
    data set and settings.
    """

    curve: Curve
    cka: np.ndarray
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        cka = _square(self.cka, "cka")
        if cka.shape[0] != len(self.curve.layers):
            raise ValueError(f"cka is {cka.shape} but the curve has {len(self.curve.layers)} layers")
        object.__setattr__(self, "cka", cka)

    @property
    def layers(self) -> tuple[str, ...]:
        """Layer names in depth order."""
        return self.curve.layers

    @property
    def modularity_difference(self) -> np.ndarray:
        """``|Q_i - Q_j|`` (L, L) of the mean curve."""
        return difference_matrix(self.curve.mean)

    @property
    def cka_difference(self) -> np.ndarray:
        """``1 - CKA_ij`` (L, L)."""
        return 1.0 - self.cka

    def agreement(self) -> float:
        """:func:`matrix_agreement` of the two difference matrices."""
        return matrix_agreement(self.modularity_difference, self.cka_difference)

    def mantel_p(self, permutations: int = 999, seed: int = 0) -> float:
        """:func:`mantel_test` of the two difference matrices."""
        return mantel_test(self.modularity_difference, self.cka_difference, permutations=permutations, seed=seed)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: the curve as a dict, CKA as nested lists, meta."""
        return {"curve": self.curve.to_dict(), "cka": self.cka.tolist(), "meta": self.meta}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "LayerComparison":
        """The comparison :meth:`to_dict` described."""
        return cls(Curve.from_dict(data["curve"]), np.asarray(data["cka"], dtype=float), dict(data.get("meta", {})))


def compare_layers(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor | np.ndarray,
    settings: CurveSettings = CurveSettings(),
    *,
    debiased: bool = False,
    meta: Mapping[str, Any] | None = None,
    progress: bool = True,
    **reading: Unpack[Reading],
) -> LayerComparison:
    """Modularity curve and linear CKA matrix of ``model`` on the sample sets of ``settings``.

    ``images`` (N, 3, H, W) in [0, 1], ``labels`` (N,); ``reading`` as for
    :func:`modgraph.curve.modularity_curve`. The samples are those of
    :func:`modgraph.curve.modularity_curve` with the same ``settings`` (so the
    curve equals it); one feature pass serves both measures.
    """
    labels = check_inputs(images, labels)
    union, local = sample_union(images.shape[0], (settings.n,), settings.repeats, settings.seed)
    sets = local[settings.n]
    grams: list[list[torch.Tensor]] = []

    def features() -> Iterator[tuple[str, torch.Tensor]]:
        stream = iter_layer_features(model, images[torch.from_numpy(union)], tap=settings.tap, **reading)
        total = len(select_layers(model, reading.get("layers"), settings.tap))
        for name, X in tqdm(stream, total=total, desc="layers", unit="layer", disable=not progress, leave=False):
            grams.append([(R @ R.T).cpu() for R in (X[torch.as_tensor(idx, device=X.device)] for idx in sets)])
            yield name, X

    curve = curve_from_features(features(), labels[union], sets, k=settings.k, similarity=settings.similarity,
                                meta={**dict(meta or {}), "seed": settings.seed, "tap": settings.tap})
    per_set = [cka_matrix((layer[r] for layer in grams), debiased=debiased, grams=True)
               for r in range(settings.repeats)]
    info = {**dict(meta or {}), **settings.to_dict(), "debiased": debiased}
    return LayerComparison(curve, np.mean(per_set, axis=0), info)
