"""k-NN similarity graphs of samples and their modularity against class labels (pure functions).

A layer's features ``X`` (N, D) become a graph: every sample links to its ``k``
most similar other samples with the similarity as edge weight; the directed
adjacency ``A`` is symmetrised as ``(A + A^T) / 2``. Newman's weighted
modularity of the class partition of that graph is the layer's modularity.

Similarities are inner products of preprocessed rows (``SIMILARITIES``):
``cosine`` L2-normalises rows, ``pearson`` centres each row then normalises.
A row with zero norm (for ``pearson``: a constant row) maps to the zero vector:
its similarity to every sample, itself included, is 0. When every row is zero
there is no graph, and :func:`nearest_neighbours` says so.

Edge weights are never negative. The paper takes cosine similarities of
post-ReLU features, which are >= 0; the authors' code zeroes the diagonal of
the similarity matrix, so a sample's k nearest neighbours are those above 0
(its own zero) first. Signed features (``tap="conv"``, ``pearson``, large
``k``) can give a negative similarity to a listed neighbour. Newman's
modularity has no meaning for negative weights (node strengths stop being
probabilities, ``Q`` leaves ``[-1/2, 1]`` or ``2W`` reaches zero), and an
anti-similar pair is not a link, so :func:`graph_from_neighbours` gives such a
neighbour weight 0 and drops it: the graph holds the neighbours at similarity
``>= 0``. Results for non-negative similarities are unaffected (a neighbour at
similarity exactly 0 stays as a weight-0 entry, which adds nothing to ``Q``).
:func:`modularity` refuses an adjacency with negative weights.

Labels are class ids: integers, or floats with whole values (cast); NaN or
fractional labels raise, since grouping by exact float value would invent
classes. Complex features raise (their imaginary part would be lost).

Ties: neighbours at equal similarity are taken by increasing index. When the
k-th and (k+1)-th candidates of a row tie (duplicate samples, zero rows,
identical features), that order, not the data, picks the graph;
:func:`nearest_neighbours` then warns (:class:`TieWarning`) with the number
of such rows.

Everything runs on torch tensors (CPU or CUDA, float32 or float64; numpy arrays
are accepted) without Python loops over nodes. The similarity matrix is never
held whole: its upper triangle is formed in strips of ``block_rows`` rows, so
the extra memory is O(block_rows * N + N * k) and the product costs about half
of ``X @ X.T``.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

from modgraph.registry import Registry

__all__ = [
    "SIMILARITIES",
    "TieWarning",
    "KnnGraph",
    "similarity_rows",
    "similarity_matrix",
    "nearest_neighbours",
    "graph_from_neighbours",
    "knn_graph",
    "modularity",
    "knn_modularity",
    "warn_if_tied",
]


class TieWarning(UserWarning):
    """Equal similarities at the k-th neighbour: sample order, not the data, chose some k-NN lists."""

SIMILARITIES: Registry[Callable[[torch.Tensor], torch.Tensor]] = Registry("similarity")
SIMILARITIES.register("cosine", lambda x: x)


@SIMILARITIES.register("pearson")
def _centre_rows(x: torch.Tensor) -> torch.Tensor:
    """Rows minus their means; constant rows become exactly zero (not rounding noise)."""
    low, high = torch.aminmax(x, dim=1, keepdim=True)
    return torch.where(low == high, 0, x - x.mean(dim=1, keepdim=True))


_BLOCK_BYTES = 2**26
_STRIPS = 16
_MIN_STRIP_ROWS = 64
_MIN_STRIP_WORK = 2**27
_CHUNKED_WIDTH = 1024


@dataclass(frozen=True, eq=False)
class KnnGraph:
    """A symmetric weighted graph on ``n`` nodes as a coalesced edge list.

    ``rows``, ``cols`` (int64) and ``weights`` (float) are 1-D of equal length,
    sorted by (row, col); every undirected edge appears in both directions.
    """

    rows: torch.Tensor
    cols: torch.Tensor
    weights: torch.Tensor
    n: int

    @property
    def nnz(self) -> int:
        """Number of stored (directed) entries: twice the number of edges."""
        return int(self.rows.numel())

    def to_dense(self) -> torch.Tensor:
        """The (n, n) adjacency matrix."""
        dense = torch.zeros(self.n, self.n, dtype=self.weights.dtype, device=self.weights.device)
        dense[self.rows, self.cols] = self.weights
        return dense

    def to_sparse(self) -> torch.Tensor:
        """The (n, n) adjacency as a coalesced torch sparse COO tensor."""
        indices = torch.stack([self.rows, self.cols])
        return torch.sparse_coo_tensor(
            indices, self.weights, (self.n, self.n), is_coalesced=True, check_invariants=False
        )


def similarity_rows(X: torch.Tensor | np.ndarray, similarity: str = "cosine") -> torch.Tensor:
    """Rows ``R`` (N, D) with ``R @ R.T`` the (N, N) similarity matrix of ``X`` (N, D)."""
    base, inv = _factors(_features(X), similarity)
    return base * inv[:, None]


def similarity_matrix(X: torch.Tensor | np.ndarray, similarity: str = "cosine") -> torch.Tensor:
    """The dense (N, N) similarity matrix of ``X`` (N, D); O(N^2) memory, for small N."""
    rows = similarity_rows(X, similarity)
    return rows @ rows.T


def nearest_neighbours(
    X: torch.Tensor | np.ndarray,
    k: int,
    similarity: str = "cosine",
    block_rows: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Each sample's ``k`` most similar other samples.

    ``X`` (N, D) -> ``(indices, sims)``, both (N, k): row ``i`` lists its
    neighbours (never ``i`` itself) by decreasing similarity, equal similarities
    by increasing index, so the first ``k' < k`` columns are the ``k'``-NN lists.

    The similarity matrix is symmetric, so only its upper triangle is computed.
    A strip of ``block_rows`` rows (default: as many as fit in 64 MiB) holds
    their similarities to every later sample; it ranks its own rows and, read by
    columns, the candidates it holds for the rows below, and running lists merge
    the candidates exactly. Similarities are ``(B_i . B_j) * (inv_i * inv_j)``,
    computed once per pair, so equal inputs give bitwise equal values wherever
    they meet and ties are genuine. One more neighbour than asked is ranked to
    see ties at the k-th (:func:`warn_if_tied`). ``ValueError`` when every row
    is zero (no similarity is positive, so there is no graph).
    """
    X = _features(X)
    n = X.shape[0]
    _check_k(k, n)
    wanted, k = k, min(k + 1, n - 1)
    if block_rows is None:
        block_rows = max(1, _BLOCK_BYTES // (n * X.element_size()))
    elif block_rows < 1:
        raise ValueError(f"block_rows must be >= 1, got {block_rows}")
    gemm_rows = max(-(-n // _STRIPS), _MIN_STRIP_ROWS, _MIN_STRIP_WORK // (n * X.shape[1]))
    base, inv = _factors(X, similarity)
    if not bool(inv.any()):
        what = "zero or constant (pearson centres rows)" if similarity == "pearson" else "zero"
        raise ValueError(f"every feature row is {what} ({n} rows of {X.shape[1]} features): all similarities "
                         f"are 0 and the k-NN graph has no weight; a layer whose outputs are all zero "
                         f"(dead units) has no modularity")
    sims = torch.full((n, k), -torch.inf, dtype=X.dtype, device=X.device)
    indices = torch.full((n, k), n, dtype=torch.int64, device=X.device)
    for start in range(0, n, block_rows):
        stop = min(start + block_rows, n)
        strip = _upper_strip(base, inv, start, stop, gemm_rows)
        if stop < n:
            _merge(sims[stop:], indices[stop:], *_top_k(strip[:, stop - start :].T, k), offset=start,
                   first=start == 0)
        strip.diagonal().fill_(-torch.inf)
        _merge(sims[start:stop], indices[start:stop], *_top_k(strip, k), offset=start, first=start == 0)
    warn_if_tied(sims, wanted)
    return indices[:, :wanted].contiguous(), sims[:, :wanted].contiguous()


def warn_if_tied(sims: torch.Tensor, k: int) -> int:
    """Warn (:class:`TieWarning`) when rows of ``sims`` (N, > k, decreasing) tie at their k-th and (k+1)-th entry.

    Returns the number of such rows (0 without warning when ``sims`` has no
    column after the k-th, i.e. every other sample is a neighbour).
    """
    if sims.shape[1] <= k:
        return 0
    tied = int((sims[:, k - 1] == sims[:, k]).sum())
    if tied:
        warnings.warn(f"k-NN lists decided by ties: {tied} of {sims.shape[0]} samples have neighbours {k} and "
                      f"{k + 1} at equal similarity (duplicate, zero or identical feature rows); the lower sample "
                      f"index was taken", TieWarning, stacklevel=3)
    return tied


def graph_from_neighbours(indices: torch.Tensor, sims: torch.Tensor) -> KnnGraph:
    """The symmetrised graph ``(A + A^T) / 2`` of the directed k-NN lists (N, k).

    A neighbour at negative similarity has weight 0 and is left out (module docstring).
    """
    if indices.ndim != 2 or indices.shape != sims.shape:
        raise ValueError(
            f"indices and sims must be (N, k) of the same shape, got {tuple(indices.shape)} and {tuple(sims.shape)}"
        )
    n, k = indices.shape
    if indices.numel() and (int(indices.min()) < 0 or int(indices.max()) >= n):
        raise ValueError(f"neighbour indices must lie in [0, {n}), got [{int(indices.min())}, {int(indices.max())}]")
    src = torch.arange(n, device=indices.device).repeat_interleave(k)
    dst = indices.reshape(-1)
    half = sims.reshape(-1) / 2
    if bool((half < 0).any()):
        keep = half >= 0
        src, dst, half = src[keep], dst[keep], half[keep]
    keys = torch.cat([src * n + dst, dst * n + src])
    unique, inverse = torch.unique(keys, sorted=True, return_inverse=True)
    weights = torch.zeros(unique.numel(), dtype=sims.dtype, device=sims.device)
    weights.index_add_(0, inverse, torch.cat([half, half]))
    return KnnGraph(rows=unique // n, cols=unique % n, weights=weights, n=n)


def knn_graph(
    X: torch.Tensor | np.ndarray,
    k: int,
    similarity: str = "cosine",
    block_rows: int | None = None,
) -> KnnGraph:
    """The symmetrised k-NN similarity graph of the rows of ``X`` (N, D); no self loops."""
    return graph_from_neighbours(*nearest_neighbours(X, k, similarity, block_rows))


def modularity(A: KnnGraph | torch.Tensor | np.ndarray, labels: torch.Tensor | np.ndarray) -> float:
    """Newman's weighted modularity of the partition ``labels`` (N,) of the graph ``A``.

    ``A`` is a ``KnnGraph``, a torch sparse COO tensor or a dense symmetric
    (N, N) matrix. ``Q = sum_c [e_c / 2W - (S_c / 2W)^2]`` with ``2W`` the sum of
    all entries, ``e_c`` the entries inside class ``c`` (both directions) and
    ``S_c`` the summed strength of its nodes; O(nnz + N), accumulated in float64.
    Self loops follow the matrix convention: the diagonal entry ``a_ii`` counts
    once, which equals networkx's graph convention for a self-loop edge of
    weight ``a_ii / 2`` (networkx counts self loops twice in the degree).
    """
    rows, cols, weights, n = _edges(A)
    return _partition_modularity(rows, cols, weights, *_label_codes(labels, n))


def knn_modularity(
    X: torch.Tensor | np.ndarray,
    labels: torch.Tensor | np.ndarray,
    k: int = 3,
    similarity: str = "cosine",
    block_rows: int | None = None,
) -> float:
    """Modularity of the class partition ``labels`` (N,) of the k-NN graph of ``X`` (N, D)."""
    X = _features(X)
    codes, n_classes = _label_codes(labels, X.shape[0])
    graph = knn_graph(X, k, similarity, block_rows)
    return _partition_modularity(graph.rows, graph.cols, graph.weights, codes, n_classes)


def _partition_modularity(
    rows: torch.Tensor, cols: torch.Tensor, weights: torch.Tensor, codes: torch.Tensor, n_classes: int
) -> float:
    """Modularity of the edge list (nnz,) x 3 for the node classes ``codes`` (N,) in ``0..n_classes-1``."""
    n = codes.numel()
    codes = codes.to(rows.device)
    weights = weights.to(torch.float64)
    two_w = weights.sum()
    if not two_w > 0:
        raise ValueError(f"modularity needs a positive total edge weight, got {two_w.item():g}: no two samples "
                         f"are linked with a positive similarity")
    strength = torch.zeros(n, dtype=torch.float64, device=rows.device).index_add_(0, rows, weights)
    class_strength = torch.zeros(n_classes, dtype=torch.float64, device=rows.device).index_add_(0, codes, strength)
    inside = weights[codes[rows] == codes[cols]].sum()
    return float(inside / two_w - ((class_strength / two_w) ** 2).sum())


def _features(X: torch.Tensor | np.ndarray) -> torch.Tensor:
    """``X`` as a 2-D floating tensor: float64 stays, anything else becomes float32."""
    X = torch.as_tensor(X)
    if X.is_complex():
        raise ValueError(f"features must be real, got {X.dtype}: pass X.real, X.abs() or both side by side, "
                         f"whichever the method needs")
    if X.ndim != 2:
        raise ValueError(f"features must be 2-D (N samples, D features), got shape {tuple(X.shape)}")
    if X.shape[0] < 2 or X.shape[1] < 1:
        raise ValueError(f"features need at least 2 samples and 1 feature, got shape {tuple(X.shape)}")
    return X if X.dtype in (torch.float32, torch.float64) else X.to(torch.float32)


def _factors(X: torch.Tensor, similarity: str) -> tuple[torch.Tensor, torch.Tensor]:
    """``(B, inv)`` with similarity ``(B_i . B_j) inv_i inv_j``; ``B`` is ``X`` itself for cosine.

    Raises on non-finite features. Rows are rescaled (a copy) only when their
    norms would over- or underflow the Gram product; both similarities are
    invariant to that rescaling.
    """
    transform = SIMILARITIES.get(similarity)
    base = transform(X)
    norms = torch.linalg.vector_norm(base, dim=1)
    finite = torch.isfinite(norms)
    if not finite.all():
        bad = int((~torch.isfinite(X[~finite]).all(dim=1)).sum())
        if bad:
            raise ValueError(f"features contain NaN or infinite values in {bad} of {X.shape[0]} rows")
    info = torch.finfo(X.dtype)
    zero = norms == 0
    nonzero = norms[~zero]
    in_range = bool((nonzero >= info.tiny**0.25).all()) and bool((nonzero <= info.max**0.25).all())
    if not (finite.all() and in_range and not base[zero].any()):
        X = X / X.abs().amax(dim=1, keepdim=True).clamp_min(info.tiny)
        base = transform(X)
        norms = torch.linalg.vector_norm(base, dim=1)
    inv = torch.where(norms > 0, 1 / norms, torch.zeros_like(norms))
    return base, inv


def _upper_strip(base: torch.Tensor, inv: torch.Tensor, start: int, stop: int, gemm_rows: int) -> torch.Tensor:
    """Similarities of rows ``start:stop`` to rows ``start:`` (M, N - start), computing each pair once.

    Products of ``gemm_rows`` rows cover the upper triangle; the rest of the
    diagonal block is its mirror image.
    """
    m = stop - start
    strip = torch.empty(m, base.shape[0] - start, dtype=base.dtype, device=base.device)
    for a in range(0, m, gemm_rows):
        b = min(a + gemm_rows, m)
        rows = slice(start + a, start + b)
        strip[a:b, a:] = torch.mm(base[rows], base[start + a :].T).mul_(torch.outer(inv[rows], inv[start + a :]))
        strip[b:, a:b] = strip[a:b, b:m].T
    return strip


def _merge(sims: torch.Tensor, indices: torch.Tensor, new_sims: torch.Tensor, new_cols: torch.Tensor,
           offset: int, first: bool) -> None:
    """Merge candidates (new columns + ``offset`` = indices) into the running (M, k) lists, in place.

    ``first``: the lists are still empty and the candidates, k per row, replace them.
    """
    k = sims.shape[1]
    if first and new_sims.shape[1] == k:
        sims.copy_(new_sims)
        indices.copy_(new_cols + offset)
        return
    both_sims, both_indices = _lexsort(
        torch.cat([sims, new_sims], dim=1), torch.cat([indices, new_cols + offset], dim=1)
    )
    sims.copy_(both_sims[:, :k])
    indices.copy_(both_indices[:, :k])


def _lexsort(values: torch.Tensor, indices: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Each row of (M, c) ``values`` and ``indices`` sorted by decreasing value, then increasing index."""
    order = indices.argsort(dim=1)
    values, indices = values.gather(1, order), indices.gather(1, order)
    order = values.argsort(dim=1, descending=True, stable=True)
    return values.gather(1, order), indices.gather(1, order)


def _top_k(block: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Per row of ``block`` (B, W) its ``min(k, W)`` largest entries and columns, ties to the lower column, sorted."""
    if block.shape[1] <= k:
        return block.sort(dim=1, descending=True, stable=True)
    values, indices = _top_k_plus_one(block, k)
    tied = torch.nonzero(values[:, k] == values[:, k - 1]).flatten()
    values, indices = values[:, :k].contiguous(), indices[:, :k].contiguous()
    if tied.numel():
        sub = block[tied]
        threshold = values[tied, k - 1 : k]
        above = sub > threshold
        equal = sub == threshold
        keep = above | (equal & (equal.cumsum(dim=1) <= k - above.sum(dim=1, keepdim=True)))
        cols = torch.nonzero(keep)[:, 1].reshape(-1, k)
        indices[tied] = cols
        values[tied] = sub.gather(1, cols)
    return _lexsort(values, indices)


def _top_k_plus_one(block: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``k + 1`` largest values per row of ``block`` (B, W > k) and columns holding them (any among ties).

    Only the columns of the ``k + 1`` column chunks with the largest maxima are
    ranked: a value outside them has ``k + 1`` values at least as large inside
    them, so the ``k + 1`` largest values are exact, and cheap chunk maxima
    replace most of the ranking work.
    """
    rows, width = block.shape
    size = max(1, round((width / (k + 1)) ** 0.5))
    if width < _CHUNKED_WIDTH or 2 * (k + 1) * size > width:
        return block.topk(k + 1, dim=1)
    whole = width // size * size
    maxima = block[:, :whole].reshape(rows, -1, size).amax(dim=2)
    if whole < width:
        maxima = torch.cat([maxima, block[:, whole:].amax(dim=1, keepdim=True)], dim=1)
    chunks = maxima.topk(k + 1, dim=1).indices
    cols = (chunks[:, :, None] * size + torch.arange(size, device=block.device)).reshape(rows, -1)
    outside = cols >= width
    candidates = block.gather(1, cols.masked_fill(outside, 0)).masked_fill_(outside, -torch.inf)
    values, picked = candidates.topk(k + 1, dim=1)
    return values, cols.gather(1, picked)


def _check_k(k: int, n: int) -> None:
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 1 <= k < n:
        raise ValueError(f"k must be an integer with 1 <= k < N = {n} (samples), got {k!r}")


def _label_codes(labels: torch.Tensor | np.ndarray, n: int) -> tuple[torch.Tensor, int]:
    """Labels (n,) as int64 class codes 0..C-1 and C; integer-valued, at least two classes."""
    array = labels.detach().cpu().numpy() if isinstance(labels, torch.Tensor) else np.asarray(labels)
    if array.ndim != 1:
        raise ValueError(f"labels must be 1-D, got shape {array.shape}")
    if array.dtype.kind == "f":
        bad = ~np.isfinite(array)
        if bad.any():
            raise ValueError(f"labels must be integer class ids; {int(bad.sum())} of {array.size} are NaN or "
                             f"infinite")
        fractional = array != np.round(array)
        if fractional.any():
            raise ValueError(f"labels must be integer class ids; {int(fractional.sum())} of {array.size} are not "
                             f"whole numbers (e.g. {array[fractional][0]!r})")
        array = array.astype(np.int64)
    elif array.dtype.kind not in "biu":
        raise ValueError(f"labels must be integer class ids (int or whole-valued float), got dtype {array.dtype}")
    classes, inverse = np.unique(array, return_inverse=True)
    codes, n_classes = torch.from_numpy(inverse.astype(np.int64).reshape(-1)), len(classes)
    if codes.numel() != n:
        raise ValueError(f"labels must have one entry per sample: got {codes.numel()} labels for {n} samples")
    if n_classes < 2:
        raise ValueError(f"modularity needs at least 2 distinct classes, got {n_classes}")
    return codes, n_classes


def _edges(A: KnnGraph | torch.Tensor | np.ndarray) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, int]:
    """``(rows, cols, weights, n)`` of the nonzero entries of a square symmetric adjacency."""
    if isinstance(A, KnnGraph):
        _check_weights(A.weights)
        return A.rows, A.cols, A.weights, A.n
    A = torch.as_tensor(A)
    if A.is_complex():
        raise ValueError(f"adjacency must be real, got {A.dtype}")
    if A.ndim != 2 or A.shape[0] != A.shape[1]:
        raise ValueError(f"adjacency must be a square (N, N) matrix, got shape {tuple(A.shape)}")
    if A.is_sparse:
        A = A.coalesce()
        rows, cols = A.indices()
        values = A.values()
        _check_weights(values)
        flipped = torch.sparse_coo_tensor(
            torch.stack([cols, rows]), values, A.shape, check_invariants=False
        ).coalesce()
        if not (torch.equal(flipped.indices(), A.indices()) and torch.allclose(flipped.values(), values)):
            raise ValueError("adjacency must be symmetric (undirected graph)")
        return rows, cols, values, A.shape[0]
    if not A.is_floating_point():
        A = A.to(torch.float64)
    _check_weights(A)
    if not torch.allclose(A, A.T):
        raise ValueError("adjacency must be symmetric (undirected graph)")
    rows, cols = torch.nonzero(A, as_tuple=True)
    return rows, cols, A[rows, cols], A.shape[0]


def _check_weights(weights: torch.Tensor) -> None:
    if not torch.isfinite(weights).all():
        raise ValueError("adjacency contains NaN or infinite weights")
    if bool((weights < 0).any()):
        raise ValueError(f"adjacency has {int((weights < 0).sum())} negative weights; modularity needs weights "
                         f">= 0 (knn graphs give a negative similarity weight 0, see modgraph.graph)")
