"""Fig. 8 helpers: difference matrices, their agreement and Mantel test, one-pass modularity + CKA."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from modgraph.cka import linear_cka
from modgraph.curve import Curve, CurveSettings, modularity_curve
from modgraph.data import sample_indices
from modgraph.features import iter_layer_features
from modgraph.models import create_model
from modgraph.sections import cka as sc
from modgraph.sections.cka import LayerComparison


pytestmark = pytest.mark.usefixtures("single_thread")


def clustered_images(n_per_class: int = 12, classes: int = 4, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    labels = torch.arange(classes).repeat_interleave(n_per_class)
    base = torch.rand(classes, 3, 1, 1, generator=gen)
    noise = torch.rand(len(labels), 3, 32, 32, generator=gen)
    return (0.6 * base[labels] + 0.4 * noise).clamp(0, 1), labels


def tiny_resnet() -> torch.nn.Module:
    return create_model("resnet20", num_classes=4, width=0.25, seed=2)


def test_difference_matrix_is_pairwise_absolute_difference():
    q = np.array([0.1, 0.4, 0.35, 0.9])
    D = sc.difference_matrix(q)
    brute = np.array([[abs(a - b) for b in q] for a in q])
    np.testing.assert_allclose(D, brute)
    assert np.allclose(D, D.T) and np.all(np.diag(D) == 0)
    np.testing.assert_allclose(sc.difference_matrix(q + 5.0), D)  # shift invariant
    np.testing.assert_allclose(sc.upper_triangle(D), [0.3, 0.25, 0.8, 0.05, 0.5, 0.55])
    with pytest.raises(ValueError, match="1-D curve"):
        sc.difference_matrix([[0.1, 0.2]])


def test_agreement_is_rank_based_and_symmetric():
    rng = np.random.default_rng(0)
    q = rng.random(7)
    A = sc.difference_matrix(q)
    assert sc.matrix_agreement(A, A ** 2) == pytest.approx(1.0)  # monotone map keeps the ranks
    assert sc.matrix_agreement(A, 1.0 - A) == pytest.approx(-1.0)
    B = sc.difference_matrix(rng.random(7))
    assert sc.matrix_agreement(A, B) == pytest.approx(sc.matrix_agreement(B, A))
    assert np.isnan(sc.matrix_agreement(A, np.ones((7, 7)) - np.eye(7)))


def test_agreement_rejects_bad_shapes():
    with pytest.raises(ValueError, match="same layers"):
        sc.matrix_agreement(np.zeros((4, 4)), np.zeros((5, 5)))
    with pytest.raises(ValueError, match="at least 3 layers"):
        sc.matrix_agreement(np.zeros((2, 2)), np.zeros((2, 2)))
    with pytest.raises(ValueError, match="square"):
        sc.upper_triangle(np.zeros((3, 4)))
    with pytest.raises(ValueError, match="NaN"):
        sc.matrix_agreement(np.full((3, 3), np.nan), np.zeros((3, 3)))


def test_mantel_p_value_separates_shared_and_unrelated_structure():
    rng = np.random.default_rng(1)
    A = sc.difference_matrix(np.sort(rng.random(9)))
    assert sc.mantel_test(A, A ** 0.5, permutations=199) == pytest.approx(1 / 200)
    unrelated = [sc.mantel_test(A, sc.difference_matrix(rng.random(9)), permutations=199, seed=s) for s in range(5)]
    assert np.median(unrelated) > 0.05
    assert sc.mantel_test(A, A ** 2, permutations=50, seed=3) == sc.mantel_test(A, A ** 2, permutations=50, seed=3)
    with pytest.raises(ValueError, match="permutations must be an int >= 1"):
        sc.mantel_test(A, A, permutations=0)


def test_one_pass_equals_direct_curve_and_direct_cka():
    images, labels = clustered_images()
    model = tiny_resnet()
    result = sc.compare_layers(model, images, labels, CurveSettings(n=16, k=3, repeats=2, seed=4), progress=False)
    direct = modularity_curve(model, images, labels, n=16, k=3, repeats=2, seed=4, progress=False)
    np.testing.assert_allclose(result.curve.array, direct.array)
    assert result.layers == direct.layers
    sets = sample_indices(len(labels), 16, 2, 4)
    feats = [X for _, X in iter_layer_features(model, images, device="cpu")]
    expected = np.mean([[[linear_cka(Xi[s], Xj[s]) for Xj in feats] for Xi in feats] for s in sets], axis=0)
    np.testing.assert_allclose(result.cka, expected, atol=1e-5)
    assert np.allclose(result.cka, result.cka.T) and np.allclose(np.diag(result.cka), 1.0)
    # grouping layers to bound memory does not change anything
    small = sc.compare_layers(model, images, labels, CurveSettings(n=16, k=3, repeats=2, seed=4), max_bytes=1,
                              progress=False)
    np.testing.assert_allclose(small.cka, result.cka, atol=1e-6)
    assert small.curve.values == result.curve.values


def test_comparison_matrices_claims_and_round_trip():
    images, labels = clustered_images()
    result = sc.compare_layers(tiny_resnet(), images, labels, CurveSettings(n=16, k=3, repeats=1, seed=0),
                               meta={"model": "resnet20"}, progress=False)
    np.testing.assert_allclose(result.modularity_difference, sc.difference_matrix(result.curve.mean))
    np.testing.assert_allclose(result.cka_difference, 1.0 - result.cka)
    back = LayerComparison.from_dict(result.to_dict())
    np.testing.assert_allclose(back.cka, result.cka)
    assert back.curve.values == result.curve.values and back.meta["model"] == "resnet20"
    rho, p = result.claims(scope="resnet20", permutations=99)
    assert rho.value == pytest.approx(result.agreement()) and rho.holds == (result.agreement() > 0.5)
    assert p.value == pytest.approx(result.mantel_p(99)) and p.holds == (p.value < 0.05)


def test_claims_on_known_structure_and_too_few_layers():
    q = np.sort(np.random.default_rng(2).random(8))  # distinct layer-pair differences, no ties
    layers = tuple(f"l{i}" for i in range(q.size))
    agreeing = LayerComparison(Curve(layers, [q.tolist()]), 1.0 - sc.difference_matrix(q) / 2)
    rho, p = agreeing.claims(scope="m", permutations=199)
    assert rho.value == pytest.approx(1.0) and rho.holds and p.holds
    two = LayerComparison(Curve(("a", "b"), [[0.1, 0.5]]), np.eye(2))
    assert [c.reason for c in two.claims(scope="m")] == ["needs at least 3 layers, got 2"] * 2
    with pytest.raises(ValueError, match=r"cka is \(3, 3\) but the curve has 2 layers"):
        LayerComparison(Curve(("a", "b"), [[0.1, 0.5]]), np.eye(3))


def test_bad_inputs_raise_clear_errors():
    images, labels = clustered_images()
    with pytest.raises(ValueError, match=r"labels must have shape \(48,\)"):
        sc.compare_layers(tiny_resnet(), images, labels[:5], CurveSettings(n=8), progress=False)
    with pytest.raises(ValueError, match="images must be a"):
        sc.compare_layers(tiny_resnet(), images[0], labels, CurveSettings(n=8), progress=False)
    with pytest.raises(ValueError, match="archs must be a non-empty list"):
        sc.comparison_study("resnet18", "digits", recipe="smoke")


def test_summary_table_reads_the_comparison():
    q = np.array([0.2, 0.5, 0.7])
    cka_values = np.array([[1.0, 0.8, 0.3], [0.8, 1.0, 0.6], [0.3, 0.6, 1.0]])
    comparison = LayerComparison(Curve(("a", "b", "c"), [q.tolist()]), cka_values, {"test_accuracy": 91.5})
    row = sc.summary_table({"m": comparison}).iloc[0]
    assert row["layers"] == 3 and row["test accuracy (%)"] == 91.5
    assert row["Q last layer"] == pytest.approx(0.7) and row["smallest CKA between layers"] == pytest.approx(0.3)


def test_cached_comparison_per_weights_computes_once(stub_store):
    from modgraph import store
    from modgraph.data import load_dataset
    from modgraph.store import initial_model

    spec = store.ModelSpec("resnet20", "digits", recipe="smoke", seed=0, width=0.25)
    data = load_dataset("digits", "test", progress=False)
    trained = create_model("resnet20", num_classes=10, width=0.25, mean=data.mean, std=data.std, seed=7)
    calls = stub_store(trained, 0.25)
    settings = CurveSettings(n=12, k=3, repeats=1, seed=0)
    first = sc.cached_comparison(spec, settings, progress=False)
    assert sc.cached_comparison(spec, settings, progress=False).to_dict() == first.to_dict() and len(calls) == 1
    assert first.meta["weights"] == "trained" and first.meta["test_accuracy"] == 25.0
    images, labels = data.tensors()
    direct = sc.compare_layers(initial_model(spec, data), images, labels, settings, progress=False)
    control = sc.cached_comparison(spec, settings, weights="initial", progress=False)
    assert len(calls) == 1 and control.meta["weights"] == "initial"
    np.testing.assert_allclose(control.cka, direct.cka)
    assert control.curve.values == direct.curve.values
    with pytest.raises(ValueError, match="unknown weights 'final'; valid choices: initial, trained"):
        sc.cached_comparison(spec, settings, weights="final", progress=False)
