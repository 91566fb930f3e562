"""Linear CKA: self-similarity, invariances, the two forms, the debiased estimator, bad input; layer comparison:
difference matrices, their agreement and Mantel test, one-pass modularity + CKA."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from modgraph.cka import (LayerComparison, centred_gram, cka_matrix, compare_layers, difference_matrix, linear_cka,
                          linear_cka_features, mantel_test, matrix_agreement, upper_triangle)
from modgraph.curve import CurveSettings, modularity_curve
from modgraph.data import sample_indices
from modgraph.features import iter_layer_features
from modgraph.models import create_model


pytestmark = pytest.mark.usefixtures("single_thread")


def _pair(seed: int, n: int = 60, d1: int = 12, d2: int = 7, noise: float = 1.0):
    """Two representations (n, d1) and (n, d2) sharing a 3-D signal, float64 numpy."""
    rng = np.random.default_rng(seed)
    signal = rng.normal(size=(n, 3))
    X = signal @ rng.normal(size=(3, d1)) + noise * rng.normal(size=(n, d1))
    Y = signal @ rng.normal(size=(3, d2)) + noise * rng.normal(size=(n, d2))
    return X, Y


def _song_unbiased_hsic(K: np.ndarray, L: np.ndarray) -> float:
    """Song et al. (2012), eq. 5, written out directly."""
    n = len(K)
    K, L = K.copy(), L.copy()
    np.fill_diagonal(K, 0)
    np.fill_diagonal(L, 0)
    one = np.ones(n)
    return (
        np.trace(K @ L) + (one @ K @ one) * (one @ L @ one) / ((n - 1) * (n - 2)) - 2 / (n - 2) * one @ K @ L @ one
    ) / (n * (n - 3))


@pytest.mark.parametrize("debiased", [False, True])
def test_cka_of_a_representation_with_itself_is_one(debiased: bool) -> None:
    X, _ = _pair(0)
    assert linear_cka(X, X, debiased=debiased) == pytest.approx(1.0, abs=1e-12)


@pytest.mark.parametrize("debiased", [False, True])
def test_invariant_to_orthogonal_transforms_and_isotropic_scaling(debiased: bool) -> None:
    X, Y = _pair(1)
    rng = np.random.default_rng(2)
    Q, _ = np.linalg.qr(rng.normal(size=(X.shape[1], X.shape[1])))
    reference = linear_cka(X, Y, debiased=debiased)
    assert 0.1 < reference < 0.99
    assert linear_cka(X @ Q, Y, debiased=debiased) == pytest.approx(reference, abs=1e-12)
    assert linear_cka(4.5 * X, 0.01 * Y, debiased=debiased) == pytest.approx(reference, abs=1e-12)
    assert linear_cka(X, X @ Q, debiased=debiased) == pytest.approx(1.0, abs=1e-12)
    # Not invariant to anisotropic scaling: the test can tell.
    stretch = np.linspace(0.1, 10, X.shape[1])
    assert abs(linear_cka(X * stretch, Y, debiased=debiased) - reference) > 1e-3


def test_invariant_to_a_constant_shift_of_features() -> None:
    X, Y = _pair(3)
    assert linear_cka(X + 5.0, Y) == pytest.approx(linear_cka(X, Y), abs=1e-12)


@pytest.mark.parametrize("seed", range(3))
def test_feature_space_form_equals_example_space_form(seed: int) -> None:
    X, Y = _pair(seed, noise=2.0)
    assert linear_cka_features(X, Y) == pytest.approx(linear_cka(X, Y), abs=1e-12)
    assert linear_cka_features(torch.from_numpy(X).float(), Y) == pytest.approx(linear_cka(X, Y), abs=1e-5)


def test_debiased_estimator_matches_song_et_al() -> None:
    X, Y = _pair(4, n=30)
    K, L = X @ X.T, Y @ Y.T
    expected = _song_unbiased_hsic(K, L) / np.sqrt(_song_unbiased_hsic(K, K) * _song_unbiased_hsic(L, L))
    assert linear_cka(X, Y, debiased=True) == pytest.approx(expected, abs=1e-12)


def test_debiased_is_close_to_biased_for_large_n_only() -> None:
    X, Y = _pair(5, n=1000, d1=20, d2=20)
    assert linear_cka(X, Y, debiased=True) == pytest.approx(linear_cka(X, Y), abs=0.02)
    # Independent narrow-sample representations: the biased estimate is inflated, the debiased one is not.
    rng = np.random.default_rng(6)
    A, B = rng.normal(size=(20, 50)), rng.normal(size=(20, 50))
    assert linear_cka(A, B) > 0.3
    assert abs(linear_cka(A, B, debiased=True)) < 0.2


def test_centred_gram_is_h_k_h() -> None:
    X, _ = _pair(7, n=15)
    H = np.eye(15) - 1 / 15
    np.testing.assert_allclose(centred_gram(X).numpy(), H @ X @ X.T @ H, atol=1e-10)
    U = centred_gram(X, debiased=True).numpy()
    np.testing.assert_allclose(U, U.T)
    assert np.count_nonzero(np.diag(U)) == 0


@pytest.mark.parametrize("debiased", [False, True])
def test_cka_matrix_matches_pairwise_cka_and_streams(debiased: bool) -> None:
    rng = np.random.default_rng(8)
    X, Y = _pair(8, n=40)
    layers = [X, Y, rng.normal(size=(40, 5)), X @ rng.normal(size=(12, 30))]
    expected = np.array([[linear_cka(a, b, debiased=debiased) for b in layers] for a in layers])
    M = cka_matrix(iter(layers), debiased=debiased)
    assert M.shape == (4, 4)
    np.testing.assert_allclose(M, expected, atol=1e-12)
    np.testing.assert_allclose(np.diag(M), 1.0, atol=1e-12)
    named = ((f"layer{i}", torch.from_numpy(a)) for i, a in enumerate(layers))
    np.testing.assert_allclose(cka_matrix(named, debiased=debiased), expected, atol=1e-12)
    grams = [a @ a.T for a in layers]
    np.testing.assert_allclose(cka_matrix(grams, debiased=debiased, grams=True), expected, atol=1e-12)


def test_mismatched_examples_raise() -> None:
    X, Y = _pair(9)
    with pytest.raises(ValueError, match="X has 60 rows, Y has 59"):
        linear_cka(X, Y[:-1])
    with pytest.raises(ValueError, match="X has 60 rows, Y has 59"):
        linear_cka_features(X, Y[:-1])
    with pytest.raises(ValueError, match="layer 1 has 59 examples, the first layer 60"):
        cka_matrix([X, Y[:-1]])


def test_bad_input_raises() -> None:
    X, Y = _pair(10)
    with pytest.raises(ValueError, match="2-D"):
        linear_cka(X[:, 0], Y)
    with pytest.raises(ValueError, match="NaN or infinite"):
        linear_cka(np.where(X > 2, np.nan, X), Y)
    with pytest.raises(ValueError, match="does not vary"):
        linear_cka(np.ones_like(X), Y)
    with pytest.raises(ValueError, match="does not vary"):
        cka_matrix([("conv1", X), ("relu", np.zeros_like(Y))])
    with pytest.raises(ValueError, match="at least 4 examples"):
        linear_cka(X[:3], Y[:3], debiased=True)
    with pytest.raises(ValueError, match="square"):
        cka_matrix([X], grams=True)
    with pytest.raises(ValueError, match="at least one layer"):
        cka_matrix([])


def tiny_resnet() -> torch.nn.Module:
    return create_model("resnet20", num_classes=4, width=0.25, seed=2)


def test_difference_matrix_is_pairwise_absolute_difference():
    q = np.array([0.1, 0.4, 0.35, 0.9])
    D = difference_matrix(q)
    brute = np.array([[abs(a - b) for b in q] for a in q])
    np.testing.assert_allclose(D, brute)
    assert np.allclose(D, D.T) and np.all(np.diag(D) == 0)
    np.testing.assert_allclose(difference_matrix(q + 5.0), D)  # shift invariant
    np.testing.assert_allclose(upper_triangle(D), [0.3, 0.25, 0.8, 0.05, 0.5, 0.55])
    with pytest.raises(ValueError, match="1-D curve"):
        difference_matrix([[0.1, 0.2]])


def test_agreement_is_rank_based_and_symmetric():
    rng = np.random.default_rng(0)
    q = rng.random(7)
    A = difference_matrix(q)
    assert matrix_agreement(A, A ** 2) == pytest.approx(1.0)  # monotone map keeps the ranks
    assert matrix_agreement(A, 1.0 - A) == pytest.approx(-1.0)
    B = difference_matrix(rng.random(7))
    assert matrix_agreement(A, B) == pytest.approx(matrix_agreement(B, A))
    assert np.isnan(matrix_agreement(A, np.ones((7, 7)) - np.eye(7)))


def test_agreement_rejects_bad_shapes():
    with pytest.raises(ValueError, match="same layers"):
        matrix_agreement(np.zeros((4, 4)), np.zeros((5, 5)))
    with pytest.raises(ValueError, match="at least 3 layers"):
        matrix_agreement(np.zeros((2, 2)), np.zeros((2, 2)))
    with pytest.raises(ValueError, match="square"):
        upper_triangle(np.zeros((3, 4)))
    with pytest.raises(ValueError, match="NaN"):
        matrix_agreement(np.full((3, 3), np.nan), np.zeros((3, 3)))


def test_mantel_p_value_separates_shared_and_unrelated_structure():
    rng = np.random.default_rng(1)
    A = difference_matrix(np.sort(rng.random(9)))
    assert mantel_test(A, A ** 0.5, permutations=199) == pytest.approx(1 / 200)
    unrelated = [mantel_test(A, difference_matrix(rng.random(9)), permutations=199, seed=s) for s in range(5)]
    assert np.median(unrelated) > 0.05
    assert mantel_test(A, A ** 2, permutations=50, seed=3) == mantel_test(A, A ** 2, permutations=50, seed=3)
    with pytest.raises(ValueError, match="permutations must be an int >= 1"):
        mantel_test(A, A, permutations=0)


def test_one_pass_equals_direct_curve_and_direct_cka(clustered_images):
    images, labels = clustered_images(12)
    model = tiny_resnet()
    result = compare_layers(model, images, labels, CurveSettings(n=16, k=3, repeats=2, seed=4), progress=False)
    direct = modularity_curve(model, images, labels, n=16, k=3, repeats=2, seed=4, progress=False)
    np.testing.assert_allclose(result.curve.array, direct.array)
    assert result.layers == direct.layers
    sets = sample_indices(len(labels), 16, 2, 4)
    feats = [X for _, X in iter_layer_features(model, images, device="cpu")]
    expected = np.mean([[[linear_cka(Xi[s], Xj[s]) for Xj in feats] for Xi in feats] for s in sets], axis=0)
    np.testing.assert_allclose(result.cka, expected, atol=1e-5)
    assert np.allclose(result.cka, result.cka.T) and np.allclose(np.diag(result.cka), 1.0)
    # grouping layers to bound memory does not change anything
    small = compare_layers(model, images, labels, CurveSettings(n=16, k=3, repeats=2, seed=4), max_bytes=1,
                           progress=False)
    np.testing.assert_allclose(small.cka, result.cka, atol=1e-6)
    assert small.curve.values == result.curve.values


def test_comparison_matrices_and_round_trip(clustered_images):
    images, labels = clustered_images(12)
    result = compare_layers(tiny_resnet(), images, labels, CurveSettings(n=16, k=3, repeats=1, seed=0),
                            meta={"model": "resnet20"}, progress=False)
    np.testing.assert_allclose(result.modularity_difference, difference_matrix(result.curve.mean))
    np.testing.assert_allclose(result.cka_difference, 1.0 - result.cka)
    back = LayerComparison.from_dict(result.to_dict())
    np.testing.assert_allclose(back.cka, result.cka)
    assert back.curve.values == result.curve.values and back.meta["model"] == "resnet20"



def test_compare_layers_rejects_bad_inputs(clustered_images):
    images, labels = clustered_images(12)
    with pytest.raises(ValueError, match=r"labels must have shape \(48,\)"):
        compare_layers(tiny_resnet(), images, labels[:5], CurveSettings(n=8), progress=False)
    with pytest.raises(ValueError, match="images must be a"):
        compare_layers(tiny_resnet(), images[0], labels, CurveSettings(n=8), progress=False)
