"""Fig. 8 section: the comparison claims and the summary table."""

from __future__ import annotations

import numpy as np
import pytest

from modgraph.cka import LayerComparison, difference_matrix
from modgraph.curve import Curve
from modgraph.sections import cka as sc


pytestmark = pytest.mark.usefixtures("single_thread")


def test_claims_on_known_structure_and_too_few_layers():
    q = np.sort(np.random.default_rng(2).random(8))  # distinct layer-pair differences, no ties
    layers = tuple(f"l{i}" for i in range(q.size))
    agreeing = LayerComparison(Curve(layers, [q.tolist()]), 1.0 - difference_matrix(q) / 2)
    rho, p = sc.comparison_claims(agreeing, scope="m", permutations=199)
    assert rho.value == pytest.approx(1.0) and rho.holds and p.holds
    two = LayerComparison(Curve(("a", "b"), [[0.1, 0.5]]), np.eye(2))
    assert [c.reason for c in sc.comparison_claims(two, scope="m")] == ["needs at least 3 layers, got 2"] * 2
    with pytest.raises(ValueError, match=r"cka is \(3, 3\) but the curve has 2 layers"):
        LayerComparison(Curve(("a", "b"), [[0.1, 0.5]]), np.eye(3))


def test_comparison_table_reads_the_comparison():
    q = np.array([0.2, 0.5, 0.7])
    cka_values = np.array([[1.0, 0.8, 0.3], [0.8, 1.0, 0.6], [0.3, 0.6, 1.0]])
    comparison = LayerComparison(Curve(("a", "b", "c"), [q.tolist()]), cka_values, {"test_accuracy": 91.5})
    row = sc.comparison_table({"m": comparison}).iloc[0]
    assert row["layers"] == 3 and row["test accuracy (%)"] == 91.5
    assert row["Q last layer"] == pytest.approx(0.7) and row["smallest CKA between layers"] == pytest.approx(0.3)


def test_comparison_claims_read_the_agreement_and_mantel_p():
    rng = np.random.default_rng(5)
    q, noise = np.sort(rng.random(6)), rng.random((6, 6))
    result = LayerComparison(Curve(tuple("abcdef"), [q.tolist()]), 1.0 - difference_matrix(q) - (noise + noise.T) / 10)
    rho, p = sc.comparison_claims(result, scope="resnet20", permutations=99)
    assert rho.value == pytest.approx(result.agreement()) and rho.holds == (result.agreement() > 0.5)
    assert p.value == pytest.approx(result.mantel_p(99)) and p.holds == (p.value < 0.05)


def test_comparison_study_needs_specs():
    with pytest.raises(ValueError, match="specs must be a non-empty list of ModelSpec"):
        sc.comparison_study([])
