"""k-NN graph and modularity: agreement with networkx and a naive top-k, invariances, bad input."""

from __future__ import annotations

import warnings

import networkx as nx
import numpy as np
import pytest
import torch

from modgraph.graph import (
    SIMILARITIES,
    KnnGraph,
    TieWarning,
    graph_from_neighbours,
    knn_graph,
    knn_modularity,
    modularity,
    nearest_neighbours,
    similarity_matrix,
    similarity_rows,
)


pytestmark = pytest.mark.usefixtures("single_thread")


def _nx_modularity(A: np.ndarray, labels: np.ndarray) -> float:
    """networkx modularity of the dense matrix ``A`` read in the matrix convention."""
    graph = nx.Graph()
    graph.add_nodes_from(range(len(A)))
    rows, cols = np.nonzero(np.triu(A))
    for i, j in zip(rows, cols):
        graph.add_edge(int(i), int(j), weight=A[i, j] / 2 if i == j else A[i, j])
    communities = [set(np.flatnonzero(labels == c).tolist()) for c in np.unique(labels)]
    return nx.community.modularity(graph, communities, weight="weight")


def _random_graph(rng: np.random.Generator, n: int, density: float, self_loops: bool) -> np.ndarray:
    weights = rng.uniform(0.1, 2.0, (n, n)) * (rng.random((n, n)) < density)
    A = np.triu(weights, 1)
    A = A + A.T
    if self_loops:
        A[np.diag_indices(n)] = rng.uniform(0, 1, n) * (rng.random(n) < 0.5)
    return A


def _clustered(seed: int, n: int = 120, d: int = 16, classes: int = 4, dtype=torch.float64):
    """Features with class structure, ``labels`` (n,) and features (n, d)."""
    gen = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, classes, (n,), generator=gen)
    centres = torch.randn(classes, d, generator=gen, dtype=dtype)
    X = centres[labels] + 0.8 * torch.randn(n, d, generator=gen, dtype=dtype)
    return X, labels


def _naive_neighbours(X: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Row by row: cosine similarities sorted by (-similarity, index), self excluded."""
    norms = np.linalg.norm(X, axis=1)
    inv = np.where(norms > 0, 1 / np.where(norms > 0, norms, 1), 0.0)
    S = X @ X.T * np.outer(inv, inv)
    idx, sims = [], []
    for i, row in enumerate(S):
        order = [j for j in np.lexsort((np.arange(len(row)), -row)) if j != i][:k]
        idx.append(order)
        sims.append(row[order])
    return np.array(idx), np.array(sims)


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("self_loops", [False, True])
def test_modularity_matches_networkx(seed: int, self_loops: bool) -> None:
    rng = np.random.default_rng(seed)
    n = int(rng.integers(20, 60))
    A = _random_graph(rng, n, density=rng.uniform(0.05, 0.5), self_loops=self_loops)
    labels = rng.choice([3, 7, 11, 20], size=n)
    expected = _nx_modularity(A, labels)
    assert modularity(A, labels) == pytest.approx(expected, abs=1e-9)
    assert modularity(torch.from_numpy(A), torch.from_numpy(labels)) == pytest.approx(expected, abs=1e-9)
    assert modularity(torch.from_numpy(A).to_sparse(), labels) == pytest.approx(expected, abs=1e-9)


@pytest.mark.parametrize("similarity", ["cosine", "pearson"])
def test_knn_modularity_matches_networkx_on_its_graph(similarity: str) -> None:
    X, labels = _clustered(1)
    graph = knn_graph(X, 5, similarity)
    expected = _nx_modularity(graph.to_dense().numpy(), labels.numpy())
    assert knn_modularity(X, labels, k=5, similarity=similarity) == pytest.approx(expected, abs=1e-9)
    assert modularity(graph.to_sparse(), labels) == pytest.approx(expected, abs=1e-9)


def test_two_disjoint_equal_cliques_give_one_half() -> None:
    # Two K_4 with unit weights: 2W = 24, e_c = 12, S_c = 12 -> Q = 2 (12/24 - (12/24)^2) = 0.5.
    block = np.ones((4, 4)) - np.eye(4)
    A = np.block([[block, np.zeros((4, 4))], [np.zeros((4, 4)), block]])
    labels = np.array([0] * 4 + [1] * 4)
    assert modularity(A, labels) == pytest.approx(0.5, abs=1e-12)
    # The same graph from features: identical directions inside a clique, orthogonal across.
    X = np.repeat(np.eye(2), 4, axis=0) * np.arange(1, 9)[:, None]
    assert knn_modularity(X, labels, k=3) == pytest.approx(0.5, abs=1e-12)
    # Labelling against the cliques is as far from modular as it gets here.
    assert modularity(A, np.array([0, 1] * 4)) < 0


@pytest.mark.parametrize("similarity", ["cosine", "pearson"])
def test_permuting_samples_leaves_q_unchanged(similarity: str) -> None:
    X, labels = _clustered(2)
    perm = torch.randperm(len(X), generator=torch.Generator().manual_seed(0))
    q = knn_modularity(X, labels, k=4, similarity=similarity)
    assert knn_modularity(X[perm], labels[perm], k=4, similarity=similarity) == pytest.approx(q, abs=1e-12)
    assert 0.2 < q < 1


@pytest.mark.parametrize("similarity", ["cosine", "pearson"])
def test_positive_row_scaling_leaves_q_unchanged(similarity: str) -> None:
    X, labels = _clustered(3)
    scale = torch.rand(len(X), 1, generator=torch.Generator().manual_seed(1), dtype=X.dtype) * 100 + 0.01
    q = knn_modularity(X, labels, k=3, similarity=similarity)
    assert knn_modularity(X * scale, labels, k=3, similarity=similarity) == pytest.approx(q, abs=1e-10)
    assert knn_modularity(7.5 * X, labels, k=3, similarity=similarity) == pytest.approx(q, abs=1e-10)


def test_extreme_magnitudes_give_the_same_graph() -> None:
    X, labels = _clustered(4, dtype=torch.float32)
    reference = nearest_neighbours(X, 3)[0]
    for factor in (1e30, 1e-30):
        assert torch.equal(nearest_neighbours(X * factor, 3)[0], reference)
        assert knn_modularity(X * factor, labels) == pytest.approx(knn_modularity(X, labels), abs=1e-6)


def test_pearson_is_cosine_on_centred_rows() -> None:
    X, labels = _clustered(5)
    centred = X - X.mean(dim=1, keepdim=True)
    torch.testing.assert_close(similarity_rows(X, "pearson"), similarity_rows(centred, "cosine"))
    assert knn_modularity(X, labels, similarity="pearson") == pytest.approx(
        knn_modularity(centred, labels, similarity="cosine"), abs=1e-12
    )
    # A shift per row changes cosine but not pearson.
    shifted = X + torch.arange(len(X), dtype=X.dtype)[:, None]
    torch.testing.assert_close(similarity_rows(shifted, "pearson"), similarity_rows(X, "pearson"))


def test_similarity_matrix_is_cosine() -> None:
    X, _ = _clustered(6, n=30)
    Xn = X.numpy()
    expected = Xn @ Xn.T / np.outer(np.linalg.norm(Xn, axis=1), np.linalg.norm(Xn, axis=1))
    np.testing.assert_allclose(similarity_matrix(X).numpy(), expected, atol=1e-12)


@pytest.mark.filterwarnings("ignore::modgraph.graph.TieWarning")
def test_zero_rows_have_zero_similarity_and_lowest_index_neighbours() -> None:
    X = torch.randn(10, 7, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    X[4] = 0
    rows = similarity_rows(X)
    assert torch.count_nonzero(rows[4]) == 0
    X[6] = 0.1
    assert torch.count_nonzero(similarity_rows(X, "pearson")[[4, 6]]) == 0
    indices, sims = nearest_neighbours(X, 3)
    assert indices[4].tolist() == [0, 1, 2]
    assert torch.count_nonzero(sims[4]) == 0


@pytest.mark.parametrize(("n", "k", "block_rows"), [(64, 5, 1), (64, 5, 7), (64, 5, 64), (64, 5, None),
                                                    (1500, 3, None), (1500, 40, 300), (50, 40, None)])
def test_blocked_top_k_matches_naive_reference(n: int, k: int, block_rows: int | None) -> None:
    X, _ = _clustered(7, n=n, d=8)
    expected_idx, expected_sims = _naive_neighbours(X.numpy(), k)
    indices, sims = nearest_neighbours(X, k, block_rows=block_rows)
    np.testing.assert_array_equal(indices.numpy(), expected_idx)
    np.testing.assert_allclose(sims.numpy(), expected_sims, atol=1e-12)


@pytest.mark.parametrize(
    ("distinct", "dims", "copies", "k", "block_rows"),
    [(12, 3, 2, 4, 1), (12, 3, 2, 4, 5), (12, 3, 2, 4, None), (12, 3, 100, 4, None), (12, 3, 100, 4, 700),
     (400, 8, 3, 1, None), (400, 8, 3, 2, 500)],
)
@pytest.mark.filterwarnings("ignore::modgraph.graph.TieWarning")
def test_ties_go_to_the_lower_index(distinct: int, dims: int, copies: int, k: int, block_rows: int | None) -> None:
    # Small integer features repeated far apart: exact similarities, tied across distant columns.
    gen = np.random.default_rng(0)
    X = gen.integers(0, 4, (distinct, dims)).astype(np.float64)
    X = np.concatenate([X] * copies + [X[:5]])
    expected_idx, expected_sims = _naive_neighbours(X, k)
    indices, sims = nearest_neighbours(X, k, block_rows=block_rows)
    np.testing.assert_array_equal(indices.numpy(), expected_idx)
    np.testing.assert_array_equal(sims.numpy(), expected_sims)


def test_shorter_lists_are_prefixes() -> None:
    X, _ = _clustered(8, n=50)
    long_idx, long_sims = nearest_neighbours(X, 9)
    for k in (1, 3, 8):
        idx, sims = nearest_neighbours(X, k)
        assert torch.equal(idx, long_idx[:, :k])
        assert torch.equal(sims, long_sims[:, :k])


def test_knn_graph_structure() -> None:
    X, _ = _clustered(9, n=80)
    k = 4
    graph = knn_graph(X, k)
    A = graph.to_dense()
    assert isinstance(graph, KnnGraph)
    assert torch.equal(A, A.T)
    assert torch.count_nonzero(A.diagonal()) == 0
    indices, sims = nearest_neighbours(X, k)
    directed = torch.zeros_like(A)
    directed[torch.arange(80)[:, None], indices] = sims
    torch.testing.assert_close(A, (directed + directed.T) / 2, rtol=0, atol=0)
    out_edges = directed != 0
    assert torch.equal((A != 0).sum(dim=1), (out_edges | out_edges.T).sum(dim=1))
    assert ((A != 0).sum(dim=1) >= k).all()
    keys = graph.rows * 80 + graph.cols
    assert torch.equal(keys, torch.sort(keys).values) and keys.unique().numel() == graph.nnz
    assert k * 80 <= graph.nnz <= 2 * k * 80


def test_same_input_gives_same_numbers_and_float32_agrees() -> None:
    X, labels = _clustered(10)
    q = knn_modularity(X, labels, block_rows=13)
    assert knn_modularity(X, labels, block_rows=13) == q
    assert knn_modularity(X, labels) == pytest.approx(q, abs=1e-12)
    assert knn_modularity(X.float(), labels) == pytest.approx(q, abs=1e-5)


def test_graph_from_neighbours_averages_both_directions() -> None:
    indices = torch.tensor([[1], [0], [0]])
    sims = torch.tensor([[0.8], [0.6], [0.4]], dtype=torch.float64)
    A = graph_from_neighbours(indices, sims).to_dense()
    expected = torch.tensor([[0, 0.7, 0.2], [0.7, 0, 0], [0.2, 0, 0]], dtype=torch.float64)
    torch.testing.assert_close(A, expected)
    with pytest.raises(ValueError, match=r"lie in \[0, 3\), got \[0, 3\]"):
        graph_from_neighbours(torch.tensor([[1], [0], [3]]), sims)


def test_similarity_registry_names() -> None:
    assert SIMILARITIES.names() == ["cosine", "pearson"]


@pytest.mark.parametrize(
    ("X", "labels", "k", "similarity", "message"),
    [
        (np.ones(10), np.arange(10) % 2, 3, "cosine", "2-D"),
        (np.ones((2, 5, 2)), np.arange(2), 1, "cosine", "2-D"),
        (np.random.rand(10, 4), np.arange(10) % 2, 0, "cosine", "1 <= k < N = 10"),
        (np.random.rand(10, 4), np.arange(10) % 2, 10, "cosine", "1 <= k < N = 10"),
        (np.random.rand(10, 4), np.arange(10) % 2, 2.5, "cosine", "1 <= k < N = 10"),
        (np.random.rand(10, 4), np.arange(9) % 2, 3, "cosine", "9 labels for 10 samples"),
        (np.random.rand(10, 4), np.zeros((10, 1)), 3, "cosine", "labels must be 1-D"),
        (np.random.rand(10, 4), np.zeros(10), 3, "cosine", "at least 2 distinct classes"),
        (np.random.rand(10, 4), np.arange(10) % 2, 3, "euclid", "valid choices: cosine, pearson"),
    ],
)
def test_bad_input_raises_clear_value_error(X, labels, k, similarity: str, message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        knn_modularity(X, labels, k=k, similarity=similarity)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("similarity", ["cosine", "pearson"])
def test_non_finite_features_are_reported_with_row_count(bad: float, similarity: str) -> None:
    X = np.random.default_rng(0).random((10, 4)).astype(np.float32)
    X[2, 1] = X[7, 3] = bad
    with pytest.raises(ValueError, match="NaN or infinite values in 2 of 10 rows"):
        knn_modularity(X, np.arange(10) % 2, similarity=similarity)


def test_modularity_rejects_bad_graphs() -> None:
    labels = np.arange(4) % 2
    with pytest.raises(ValueError, match="positive total edge weight"):
        modularity(np.zeros((4, 4)), labels)
    with pytest.raises(ValueError, match="symmetric"):
        modularity(np.triu(np.ones((4, 4)), 1), labels)
    with pytest.raises(ValueError, match="square"):
        modularity(np.ones((4, 3)), labels)
    with pytest.raises(ValueError, match="NaN or infinite"):
        modularity(np.full((4, 4), np.nan), labels)
    with pytest.raises(ValueError, match="5 labels for 4 samples"):
        modularity(np.ones((4, 4)), np.arange(5) % 2)
    with pytest.raises(ValueError, match="block_rows"):
        nearest_neighbours(np.random.rand(5, 2), 2, block_rows=0)


def _labelled_features(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Non-negative features of 3 classes, 20 samples each, with clear class structure."""
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(3), 20)
    return np.abs(rng.normal(size=(60, 8)) + 3 * np.eye(8)[labels]), labels


def test_whole_float_labels_are_cast_and_give_the_integer_result() -> None:
    X, labels = _labelled_features()
    expected = knn_modularity(X, labels, 3)
    assert knn_modularity(X, labels.astype(np.float32), 3) == expected
    assert knn_modularity(X, torch.from_numpy(labels.astype(np.float64)), 3) == expected
    assert knn_modularity(X, labels.astype(bool) | (labels == 2), 3) == knn_modularity(X, labels > 0, 3)


@pytest.mark.parametrize(("change", "message"), [
    (lambda l: np.where(np.arange(60) == 0, np.nan, l), "1 of 60 are NaN or infinite"),
    (lambda l: l + np.random.default_rng(1).normal(size=60) * 1e-9, "60 of 60 are not whole numbers"),
    (lambda l: l.astype(str), "got dtype <U"),
    (lambda l: l + 0.5j, "got dtype complex"),
])
def test_labels_that_are_not_class_ids_are_refused(change, message: str) -> None:
    X, labels = _labelled_features()
    with pytest.raises(ValueError, match=message):
        knn_modularity(X, change(labels.astype(np.float64)), 3)
    with pytest.raises(ValueError, match=message):
        modularity(knn_graph(X, 3), change(labels.astype(np.float64)))


def test_negative_similarities_give_no_edge_weight() -> None:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(60, 8))
    labels = np.repeat(np.arange(3), 20)
    graph = knn_graph(X, 59)
    assert graph.weights.min() >= 0
    indices, sims = nearest_neighbours(X, 59)
    kept = int((sims >= 0).sum())
    assert 0 < kept < sims.numel()
    dense = np.where(similarity_matrix(X).numpy() > 0, similarity_matrix(X).numpy(), 0)
    np.fill_diagonal(dense, 0)
    np.testing.assert_allclose(graph.to_dense().numpy(), dense, atol=1e-6)
    q = knn_modularity(X, labels, 59)
    assert -0.5 <= q <= 1 and q == pytest.approx(_nx_modularity(dense, labels), abs=1e-6)


def test_non_negative_features_keep_their_graph_bit_for_bit() -> None:
    X, labels = _labelled_features()
    indices, sims = nearest_neighbours(X, 5)
    graph = graph_from_neighbours(indices, sims)
    src = torch.arange(60).repeat_interleave(5)
    keys = torch.cat([src * 60 + indices.reshape(-1), indices.reshape(-1) * 60 + src])
    assert graph.nnz == torch.unique(keys).numel()


def test_modularity_refuses_negative_weights() -> None:
    A = np.ones((4, 4)) - np.eye(4)
    A[0, 1] = A[1, 0] = -1
    with pytest.raises(ValueError, match="2 negative weights"):
        modularity(A, np.arange(4) % 2)


def test_identical_features_warn_that_ties_decide_the_graph() -> None:
    labels = np.repeat(np.arange(3), 20)
    with pytest.warns(TieWarning, match="60 of 60 samples have neighbours 3 and 4 at equal similarity"):
        knn_modularity(np.ones((60, 8)), labels, 3)
    with warnings.catch_warnings():
        warnings.simplefilter("error", TieWarning)
        knn_modularity(*_labelled_features(), 3)
        nearest_neighbours(np.ones((60, 8)), 59)  # every other sample is a neighbour: no tie decides anything


@pytest.mark.parametrize("similarity", ["cosine", "pearson"])
def test_all_zero_features_say_that_every_row_is_zero(similarity: str) -> None:
    X = np.zeros((60, 8)) if similarity == "cosine" else np.full((60, 8), 2.0)
    with pytest.raises(ValueError, match="every feature row is zero"):
        knn_modularity(X, np.repeat(np.arange(3), 20), 3, similarity=similarity)


def test_complex_features_are_refused() -> None:
    X, labels = _labelled_features()
    with pytest.raises(ValueError, match="features must be real, got torch.complex64"):
        knn_modularity(X.astype(np.complex64), labels, 3)
