"""Class agreement of the k-NN lists behind a modularity curve, read rank by rank (beyond the paper).

A k-NN graph's modularity rises with the share of its edge weight that stays
inside classes. :func:`rank_agreement` gives, for each rank r, how often a
sample's r-th most similar sample has its class; :func:`layer_agreement`
measures it per layer on exactly the samples of a curve
(:func:`modgraph.curve.sample_union`), so it shows where and why ``Q`` moves
with ``k`` (a falling agreement over ranks 1..k) or with the similarity.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np
import torch
from torch import nn

from modgraph import provenance
from modgraph.curve import CurveSettings, check_inputs, sample_union
from modgraph.devices import resolve_device
from modgraph.features import iter_layer_features
from modgraph.graph import SIMILARITIES, nearest_neighbours

__all__ = ["rank_agreement", "Agreement", "layer_agreement"]


def rank_agreement(indices: torch.Tensor | np.ndarray, labels: torch.Tensor | np.ndarray) -> np.ndarray:
    """Fraction of rows whose r-th neighbour has the row's label, for each rank r.

    ``indices`` (N, R): row i's neighbours by decreasing similarity (as
    :func:`modgraph.graph.nearest_neighbours` returns them); ``labels`` (N,).
    Returns (R,) values in [0, 1].
    """
    idx = np.asarray(indices.cpu() if isinstance(indices, torch.Tensor) else indices)
    y = np.asarray(labels.cpu() if isinstance(labels, torch.Tensor) else labels)
    if idx.ndim != 2 or y.ndim != 1 or idx.shape[0] != y.shape[0] or idx.shape[1] < 1:
        raise ValueError(f"expected indices (N, R >= 1) and labels (N,), got {idx.shape} and {y.shape}")
    if not np.issubdtype(idx.dtype, np.integer) or (idx.size and (idx.min() < 0 or idx.max() >= y.shape[0])):
        raise ValueError(f"indices must be integers in [0, {y.shape[0]}), one row per label")
    return (y[idx] == y[:, None]).mean(axis=0)


@dataclass(frozen=True)
class Agreement:
    """Per layer and similarity, the rank agreement averaged over a curve's repeats.

    ``values``: similarity -> (L, R) array (layer, rank 1..R); ``meta``: how it
    was measured (the curve settings, model, data, ``classes`` among the
    samples, times).
    """

    layers: tuple[str, ...]
    values: dict[str, np.ndarray]
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        arrays = {s: np.asarray(v, dtype=float) for s, v in self.values.items()}
        shapes = {a.shape for a in arrays.values()}
        if not arrays or len(shapes) != 1 or len(next(iter(shapes))) != 2 or next(iter(shapes))[0] != len(self.layers):
            raise ValueError(f"values must be one (L = {len(self.layers)}, R) array per similarity, got shapes "
                             f"{[a.shape for a in arrays.values()]}")
        object.__setattr__(self, "layers", tuple(self.layers))
        object.__setattr__(self, "values", arrays)

    @property
    def ranks(self) -> int:
        """R: the deepest rank measured."""
        return next(iter(self.values.values())).shape[1]

    def within(self, similarity: str, r: int) -> np.ndarray:
        """(L,): the share of each sample's first ``r`` neighbours that have its class, per layer (the fraction of
        an unweighted r-NN graph's edges that stay inside classes)."""
        if similarity not in self.values:
            raise ValueError(f"no agreement for similarity {similarity!r}; measured: {', '.join(self.values)}")
        if isinstance(r, bool) or not isinstance(r, (int, np.integer)) or not 1 <= r <= self.ranks:
            raise ValueError(f"r must be an int in [1, {self.ranks}], got {r!r}")
        return self.values[similarity][:, :r].mean(axis=1)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready."""
        return {"layers": list(self.layers), "values": {s: v.tolist() for s, v in self.values.items()},
                "meta": self.meta}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "Agreement":
        """The agreement :meth:`to_dict` described."""
        return cls(tuple(data["layers"]), dict(data["values"]), dict(data.get("meta", {})))


def layer_agreement(model: nn.Module, images: torch.Tensor, labels: torch.Tensor | np.ndarray,
                    settings: CurveSettings, *, ranks: int, similarities: Sequence[str] = ("cosine",),
                    device: str | torch.device | None = None, meta: Mapping[str, Any] | None = None,
                    progress: bool = False) -> Agreement:
    """The rank agreement of ranks 1..``ranks`` at every layer of ``model`` (images (N, 3, H, W), labels (N,)).

    Uses the ``settings.repeats`` sample sets of ``settings.n`` images a curve
    with these settings uses, the layers at ``settings.tap``, and each of
    ``similarities``; values are means over the sets.
    """
    if isinstance(ranks, bool) or not isinstance(ranks, (int, np.integer)) or not 1 <= ranks < settings.n:
        raise ValueError(f"ranks must be an int with 1 <= ranks < n = {settings.n}, got {ranks!r}")
    names = tuple(dict.fromkeys(s.lower() for s in similarities))
    for name in names:
        SIMILARITIES.get(name)
    start = time.perf_counter()
    y = check_inputs(images, labels)
    union, local = sample_union(images.shape[0], (settings.n,), settings.repeats, settings.seed)
    dev = resolve_device(device)
    stream = iter_layer_features(model, images[torch.from_numpy(union)], tap=settings.tap, device=dev,
                                 progress=progress)
    y, layers, values = y[union], [], {name: [] for name in names}
    for layer, X in stream:
        layers.append(layer)
        for name in names:
            per_set = [rank_agreement(nearest_neighbours(X[torch.as_tensor(rows, device=X.device)], int(ranks),
                                                         name)[0], y[rows]) for rows in local[settings.n]]
            values[name].append(np.mean(per_set, axis=0))
    info = {**dict(meta or {}), **settings.to_dict(), "ranks": int(ranks), "classes": int(np.unique(y).size),
            "device": str(dev),
            "code_version": provenance.code_version(), "wall_time_s": time.perf_counter() - start}
    return Agreement(tuple(layers), {name: np.array(v) for name, v in values.items()}, info)
