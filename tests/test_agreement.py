"""Rank agreement: the pure share per rank, its per-layer measurement on a curve's samples, the stored form."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from modgraph.agreement import Agreement, layer_agreement, rank_agreement
from modgraph.curve import CurveSettings, sample_union
from modgraph.features import iter_layer_features
from modgraph.graph import nearest_neighbours
from modgraph.models import create_model

pytestmark = pytest.mark.usefixtures("small_model_kernels")


def test_rank_agreement_counts_same_class_neighbours_per_rank():
    labels = np.array([0, 0, 1, 1])
    indices = np.array([[1, 2], [0, 3], [3, 0], [0, 2]])  # rank 1: same, same, same, other; rank 2: 1 of 4 same
    np.testing.assert_allclose(rank_agreement(indices, labels), [0.75, 0.25])
    np.testing.assert_allclose(rank_agreement(torch.as_tensor(indices), torch.as_tensor(labels)), [0.75, 0.25])


def test_rank_agreement_is_invariant_to_renaming_samples_and_classes():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(60, 8)).astype(np.float32)
    labels = rng.integers(0, 4, size=60)
    base = rank_agreement(nearest_neighbours(x, 5)[0], labels)
    order = rng.permutation(60)
    moved = rank_agreement(nearest_neighbours(x[order], 5)[0], (labels[order] + 1) % 4)
    np.testing.assert_allclose(moved, base)
    assert ((0 <= base) & (base <= 1)).all()


@pytest.mark.parametrize("indices, labels, message", [
    (np.zeros((3,), dtype=int), np.zeros(3), r"indices \(N, R >= 1\)"),
    (np.zeros((3, 2), dtype=int), np.zeros(4), r"indices \(N, R >= 1\)"),
    (np.full((3, 2), 3), np.zeros(3), r"integers in \[0, 3\)"),
    (np.zeros((3, 2)), np.zeros(3), r"integers in \[0, 3\)"),
])
def test_rank_agreement_rejects_bad_shapes(indices, labels, message):
    with pytest.raises(ValueError, match=message):
        rank_agreement(indices, labels)


@pytest.fixture(scope="module")
def digits():
    from modgraph.data import load_dataset

    data = load_dataset("digits", "test", progress=False)
    images, labels = data.tensors()
    model = create_model("vgg11", num_classes=10, width=0.0625, mean=data.mean, std=data.std, seed=3)
    return model.eval(), images, labels


def test_layer_agreement_equals_the_share_of_each_layers_knn_lists(digits):
    model, images, labels = digits
    settings = CurveSettings(n=40, k=3, repeats=2, seed=5)
    result = layer_agreement(model, images, labels, settings, ranks=4, similarities=("cosine", "Pearson"),
                             device="cpu")
    union, local = sample_union(len(labels), (40,), 2, 5)
    y = np.asarray(labels)[union]
    features = list(iter_layer_features(model, images[torch.from_numpy(union)], device="cpu"))
    assert result.layers == tuple(name for name, _ in features) and set(result.values) == {"cosine", "pearson"}
    for similarity in ("cosine", "pearson"):
        expected = [np.mean([rank_agreement(nearest_neighbours(X[torch.as_tensor(rows)], 4, similarity)[0], y[rows])
                             for rows in local[40]], axis=0) for _, X in features]
        np.testing.assert_allclose(result.values[similarity], expected)
    np.testing.assert_allclose(result.within("cosine", 3), result.values["cosine"][:, :3].mean(axis=1))
    assert result.meta["n"] == 40 and result.meta["ranks"] == 4
    assert result.meta["classes"] == np.unique(y).size
    again = Agreement.from_dict(result.to_dict())
    assert again.layers == result.layers and np.array_equal(again.values["pearson"], result.values["pearson"])


def test_layer_agreement_checks_its_inputs_first(digits):
    model, images, labels = digits
    settings = CurveSettings(n=40, k=3, repeats=2)
    with pytest.raises(ValueError, match="1 <= ranks < n = 40"):
        layer_agreement(model, images, labels, settings, ranks=40)
    with pytest.raises(ValueError, match="unknown similarity 'euclid'"):
        layer_agreement(model, images, labels, settings, ranks=3, similarities=("euclid",))
    result = Agreement(("a", "b"), {"cosine": [[0.5, 0.25], [1.0, 0.5]]})
    with pytest.raises(ValueError, match=r"r must be an int in \[1, 2\]"):
        result.within("cosine", 3)
    with pytest.raises(ValueError, match="measured: cosine"):
        result.within("pearson", 1)
    with pytest.raises(ValueError, match="one \\(L = 2, R\\) array per similarity"):
        Agreement(("a", "b"), {"cosine": [[0.5], [1.0], [0.2]]})
