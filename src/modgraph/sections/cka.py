"""Modularity differences beside linear CKA between the layers of one model (Fig. 8).

:func:`compare_layers` streams a model's layer features once
(:func:`modgraph.features.iter_layer_features`) and, on the same sample sets,
computes the modularity curve and the example-space Gram matrix of every
layer; linear CKA (:func:`modgraph.cka.cka_matrix`) between all layer pairs is
then formed from the Grams, so at most one group of layers' features and L
Gram matrices (N x N per sample set) are held. Both are averaged over the
sample sets. The comparison's quantities are pure functions of the two
``(L, L)`` difference matrices: ``|Q_i - Q_j|`` and ``1 - CKA_ij``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Iterator, Mapping, Sequence

import numpy as np
import pandas as pd
import torch
from scipy import stats
from torch import nn
from tqdm.auto import tqdm

from modgraph.cka import cka_matrix
from modgraph.claims import Claim, check
from modgraph.curve import Curve, CurveSettings, curve_from_features
from modgraph.data import sample_indices
from modgraph.features import iter_layer_features, layer_names
from modgraph.paper import AGREEMENT_THRESHOLD, SIGNIFICANCE
from modgraph.registry import Registry

if TYPE_CHECKING:
    from modgraph.data import ArrayDataset
    from modgraph.store import ModelSpec

__all__ = [
    "difference_matrix",
    "upper_triangle",
    "matrix_agreement",
    "mantel_test",
    "LayerComparison",
    "compare_layers",
    "WEIGHTS",
    "cached_comparison",
    "comparison_study",
    "summary_table",
]


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

    def claims(self, *, scope: str, source: str = "Fig. 8", permutations: int = 999, seed: int = 0) -> list[Claim]:
        """Modularity differences order the layer pairs as 1 - CKA does: strongly, and not by chance."""
        few = len(self.layers) < 3
        reason = f"needs at least 3 layers, got {len(self.layers)}" if few else ""
        rho = None if few else self.agreement()
        p = None if few else self.mantel_p(permutations, seed)
        return [
            check(f"{scope}: modularity differences between layers agree with 1 - CKA",
                  "Spearman rho between the layer pairs' |Q_i - Q_j| and 1 - CKA_ij",
                  rho, ">", AGREEMENT_THRESHOLD, source=source, reason=reason),
            check(f"{scope}: the agreement is not a chance ordering of the layers",
                  f"Mantel test p-value ({permutations} joint permutations of the layers)",
                  p, "<", SIGNIFICANCE, source=source, reason=reason),
        ]

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
    batch_size: int = 256,
    device: str | torch.device | None = None,
    max_bytes: int = 2**31,
    meta: Mapping[str, Any] | None = None,
    progress: bool = True,
) -> LayerComparison:
    """Modularity curve and linear CKA matrix of ``model`` on the sample sets of ``settings``.

    ``images`` (N, 3, H, W) in [0, 1], ``labels`` (N,). The samples are those of
    :func:`modgraph.curve.modularity_curve` with the same ``settings`` (so the
    curve equals it); one feature pass serves both measures.
    """
    n, k, repeats, seed, similarity, tap = (settings.n, settings.k, settings.repeats, settings.seed,
                                            settings.similarity, settings.tap)
    if not isinstance(images, torch.Tensor) or images.ndim != 4:
        raise ValueError(f"images must be a (N, 3, H, W) tensor, got {getattr(images, 'shape', type(images))}")
    labels = labels.detach().cpu().numpy() if isinstance(labels, torch.Tensor) else np.asarray(labels)
    if labels.shape != (images.shape[0],):
        raise ValueError(f"labels must have shape ({images.shape[0]},), one per image, got {labels.shape}")
    sets = sample_indices(images.shape[0], n, repeats, seed)
    union = np.unique(np.concatenate(sets))
    local = [np.searchsorted(union, idx) for idx in sets]
    grams: list[list[torch.Tensor]] = []

    def features() -> Iterator[tuple[str, torch.Tensor]]:
        stream = iter_layer_features(model, images[torch.from_numpy(union)], tap=tap, batch_size=batch_size,
                                     device=device, max_bytes=max_bytes)
        for name, X in tqdm(stream, total=len(layer_names(model, tap)), desc="layers", unit="layer",
                            disable=not progress, leave=False):
            rows = [X[torch.as_tensor(idx, device=X.device)] for idx in local]
            grams.append([(R @ R.T).cpu() for R in rows])
            yield name, X

    curve = curve_from_features(features(), labels[union], local, k=k, similarity=similarity,
                                meta={**dict(meta or {}), "seed": seed, "tap": tap})
    per_set = [cka_matrix((layer[r] for layer in grams), debiased=debiased, grams=True) for r in range(repeats)]
    info = {**dict(meta or {}), **settings.to_dict(), "debiased": debiased}
    return LayerComparison(curve, np.mean(per_set, axis=0), info)


def _trained_weights(spec: "ModelSpec", data: "ArrayDataset", device: str | None,
                     progress: bool) -> tuple[nn.Module, dict[str, Any]]:
    from modgraph import cache
    from modgraph.store import get_model

    stored = get_model(spec, device=device, progress=progress)
    return stored.model, {"weights": "trained", "test_accuracy": cache.accuracy_percent(stored.metrics)}


def _initial_weights(spec: "ModelSpec", data: "ArrayDataset", device: str | None,
                     progress: bool) -> tuple[nn.Module, dict[str, Any]]:
    from modgraph.store import initial_model

    return initial_model(spec, data), {"weights": "initial", "test_accuracy": None}


WEIGHTS: Registry[Callable[["ModelSpec", "ArrayDataset", str | None, bool], tuple[nn.Module, dict[str, Any]]]] = (
    Registry("weights"))
"""Which weights of a spec to compare: name -> fn(spec, data, device, progress) -> (model, meta)."""
WEIGHTS.register("trained", _trained_weights)
WEIGHTS.register("initial", _initial_weights)


def cached_comparison(
    spec: "ModelSpec",
    settings: CurveSettings = CurveSettings(),
    *,
    weights: str = "trained",
    debiased: bool = False,
    device: str | None = None,
    progress: bool = True,
) -> LayerComparison:
    """:func:`compare_layers` of the model ``spec`` on its data set's test split, cached.

    ``weights`` (a :data:`WEIGHTS` name): ``trained`` takes the model from
    :func:`modgraph.store.get_model` (trained on first use), ``initial`` the
    same network at the weights its training starts from
    (:func:`modgraph.store.initial_model`). The result is cached
    under ``data/cache/cka/`` keyed by spec, weights, settings and code.
    """
    from modgraph import cache
    from modgraph.data import load_dataset

    load_weights = WEIGHTS.get(weights)
    config = {"model": spec.canonical(), "weights": weights.lower(), "dataset": spec.dataset, "split": "test",
              **settings.to_dict(), "debiased": debiased}

    def compute() -> dict:
        data = load_dataset(spec.dataset, "test", progress=progress)
        model, info = load_weights(spec, data, device, progress)
        images, labels = data.tensors()
        meta = {"model": spec.arch, "dataset": spec.dataset, "split": "test", "spec": spec.canonical(), **info}
        return compare_layers(model, images, labels, settings, debiased=debiased, device=device, meta=meta,
                              progress=progress).to_dict()

    code = cache.CURVE_CODE + ("modgraph.cka", "modgraph.sections.cka", "modgraph.store")
    return LayerComparison.from_dict(cache.cached("cka", config, compute, code=code))


def comparison_study(
    archs: Sequence[str],
    dataset: str,
    settings: CurveSettings = CurveSettings(),
    *,
    recipe: str,
    width: float = 1.0,
    epochs: int | None = None,
    seed: int = 0,
    weights: str = "trained",
    debiased: bool = False,
    device: str | None = None,
    progress: bool = True,
) -> dict[str, LayerComparison]:
    """:func:`cached_comparison` (``settings``, ``weights``, ``debiased``) of every ``arch`` of the store trained
    on ``dataset`` with training seed ``seed``: arch -> comparison."""
    from modgraph.cache import trained_specs

    if isinstance(archs, str) or not archs:
        raise ValueError(f"archs must be a non-empty list of model names, got {archs!r}")
    specs = trained_specs(archs, dataset, recipe=recipe, width=width, epochs=epochs, seed=seed)
    return {spec.arch: cached_comparison(spec, settings, weights=weights, debiased=debiased, device=device,
                                         progress=progress)
            for spec in tqdm(specs, desc="CKA", disable=not progress)}


def summary_table(study: Mapping[str, LayerComparison]) -> pd.DataFrame:
    """One row per entry of ``study``: weights, layers, test accuracy (%), first- and last-layer Q, smallest
    CKA between layers, and the agreement of the two difference matrices."""
    rows = [{"model": model, "weights": c.meta.get("weights"), "layers": len(c.layers),
             "test accuracy (%)": c.meta.get("test_accuracy"), "Q first layer": c.curve.mean[0],
             "Q last layer": c.curve.mean[-1], "smallest CKA between layers": float(c.cka.min()),
             "Spearman rho(|Q_i - Q_j|, 1 - CKA)": c.agreement() if len(c.layers) >= 3 else None}
            for model, c in study.items()]
    columns = ["model", "weights", "layers", "test accuracy (%)", "Q first layer", "Q last layer",
               "smallest CKA between layers", "Spearman rho(|Q_i - Q_j|, 1 - CKA)"]
    return pd.DataFrame(rows, columns=columns)
