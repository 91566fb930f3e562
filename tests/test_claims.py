"""Claims: verdicts are computed from the value, NaN never holds, quantities behave as defined."""

import math

import numpy as np
import pytest

from modgraph import claims
from modgraph.claims import check, claims_table


@pytest.mark.parametrize("op,value,expected", [
    (">", 0.6, True), (">", 0.5, False), (">=", 0.5, True), ("<", 0.4, True), ("<", 0.5, False), ("<=", 0.5, True),
])
def test_check_compares_value_with_threshold(op, value, expected):
    c = check("Q rises with depth", "Spearman rho", value, op, 0.5, source="Fig. 4")
    assert c.holds is expected
    assert c.reason == ""
    assert (c.value, c.threshold, c.op, c.source) == (value, 0.5, op, "Fig. 4")


@pytest.mark.parametrize("value", [float("nan"), None, np.float32("nan")])
def test_unmeasured_value_does_not_hold_and_says_why(value):
    c = check("claim", "quantity", value, ">", 0.0)
    assert c.holds is False
    assert math.isnan(c.value)
    assert "not measured" in c.reason
    c = check("claim", "quantity", value, "<", 1e9, reason="CIFAR-100 is absent")
    assert (c.holds, c.reason) == (False, "CIFAR-100 is absent")


def test_reason_is_ignored_for_a_measured_value():
    assert check("c", "q", 1.0, ">", 0.0, reason="unused").reason == ""


def test_unknown_comparison_lists_valid_ones():
    with pytest.raises(ValueError, match=r"unknown comparison '=='; valid choices: <, <=, >, >="):
        check("c", "q", 1.0, "==", 1.0)


@pytest.mark.parametrize("value", ["0.7", True, [0.7]])
def test_non_numeric_value_is_rejected(value):
    with pytest.raises(ValueError, match="value must be a number"):
        check("c", "q", value, ">", 0.5)


@pytest.mark.parametrize("threshold", [float("nan"), float("inf"), "0.5"])
def test_threshold_must_be_finite_number(threshold):
    with pytest.raises(ValueError, match="threshold"):
        check("c", "q", 0.7, ">", threshold)


def test_claims_table_reports_computed_verdicts():
    rows = [check("a", "qa", 0.9, ">", 0.5), check("b", "qb", 0.1, ">", 0.5), check("c", "qc", None, ">", 0.5)]
    table = claims_table(rows)
    assert list(table["verdict"]) == ["holds", "does not hold", "not measured"]
    assert list(table["test"]) == ["> 0.5"] * 3
    assert table.loc[2, "reason"].startswith("not measured")
    assert list(table.columns) == ["claim", "measured quantity", "value", "test", "verdict", "reason", "source"]
    assert claims_table([]).empty


def test_verdict_reads_claims_and_their_json_alike():
    for c in (check("a", "q", 0.9, ">", 0.5), check("b", "q", 0.1, ">", 0.5), check("c", "q", None, ">", 0.5)):
        d = c.as_dict()
        assert claims.verdict(c.holds, c.value) == claims.verdict(d["holds"], d["value"])
    assert [claims.verdict(True, 1.0), claims.verdict(False, 1.0), claims.verdict(False, None)] == list(claims.VERDICTS)


def test_claims_table_rejects_non_claims():
    with pytest.raises(ValueError, match="Claim objects"):
        claims_table([{"claim": "typed by hand", "holds": True}])


def test_as_dict_is_json_ready():
    assert check("c", "q", None, ">", 0.5).as_dict()["value"] is None
    assert check("c", "q", 0.7, ">", 0.5).as_dict()["holds"] is True


def test_depth_spearman_extremes_and_monotone_invariance():
    rising = np.array([0.01, 0.05, 0.2, 0.3, 0.6])
    assert claims.depth_spearman(rising) == pytest.approx(1.0)
    assert claims.depth_spearman(rising[::-1]) == pytest.approx(-1.0)
    rng = np.random.default_rng(0)
    q = rng.normal(size=12)
    # rank correlation: unchanged by any strictly increasing transform of Q
    assert claims.depth_spearman(np.exp(3 * q)) == pytest.approx(claims.depth_spearman(q))
    assert math.isnan(claims.depth_spearman([0.2, 0.2, 0.2]))


@pytest.mark.parametrize("bad", [[0.1, 0.2], np.zeros((2, 3))])
def test_depth_spearman_rejects_bad_shapes(bad):
    with pytest.raises(ValueError, match="curve"):
        claims.depth_spearman(bad)


def test_last_layer_gap():
    assert claims.last_layer_gap([0.1, 0.3, 0.5]) == 0.0
    assert claims.last_layer_gap([0.1, 0.6, 0.5]) == pytest.approx(0.1)


def test_plateau_fraction_counts_flat_and_falling_steps():
    assert claims.plateau_fraction([0.1, 0.2, 0.3, 0.4]) == 0.0
    assert claims.plateau_fraction([0.3, 0.3, 0.3]) == 1.0
    assert claims.plateau_fraction([0.1, 0.2, 0.205, 0.1, 0.3], tol=0.01) == pytest.approx(0.5)
    with pytest.raises(ValueError, match="tol"):
        claims.plateau_fraction([0.1, 0.2], tol=-1)


def _curve(values):
    from modgraph.curve import Curve

    values = np.atleast_2d(values)
    return Curve(tuple(f"l{i}" for i in range(values.shape[1])), values)


def test_curve_claims_on_rising_curves_hold():
    curves = {"a": _curve([0.1, 0.2, 0.3, 0.4]), "b": _curve([0.0, 0.2, 0.25, 0.5, 0.6])}
    rise = claims.rises_with_depth(curves, scope="cifar10", source="Fig. 4")
    assert rise.holds and rise.value == pytest.approx(1.0) and rise.claim.startswith("cifar10: ")
    assert claims.last_layer_highest(curves, scope="cifar10", source="Fig. 4").holds


def test_curve_claims_use_the_median_over_models():
    curves = {"up": _curve([0.1, 0.2, 0.3]), "down": _curve([0.3, 0.2, 0.1]), "up2": _curve([0.1, 0.3, 0.4])}
    assert claims.rises_with_depth(curves, scope="s", source="").value == pytest.approx(1.0)
    gap = claims.last_layer_highest(curves, scope="s", source="")
    assert gap.value == pytest.approx(0.0) and gap.holds


def test_plateaus_in_deeper_models():
    curves = {"shallow": _curve([0.1, 0.2, 0.3]),  # no plateau
              "middle": _curve([0.1, 0.2, 0.2, 0.3, 0.4]),  # 1 of 4 steps flat
              "deep": _curve([0.1, 0.2, 0.2, 0.2, 0.1, 0.3, 0.3, 0.4])}  # 4 of 7 steps flat or falling
    c = claims.plateaus_in_deeper_models(curves, scope="s", source="")
    assert c.holds and c.value == pytest.approx(1.0)
    two = claims.plateaus_in_deeper_models({k: curves[k] for k in ("shallow", "deep")}, scope="s", source="")
    assert not two.holds and "at least 3 models" in two.reason


def test_curve_claims_without_curves_carry_the_reason():
    out = claims.curve_claims({}, scope="cifar100", source="Fig. 4", reason="cifar100 is absent")
    assert len(out) == 3
    assert all(not c.holds and c.reason == "cifar100 is absent" and math.isnan(c.value) for c in out)
    assert claims.rises_with_depth({}, scope="s", source="").reason == "no curves were measured"


def test_trend_and_correlation_match_their_definitions():
    x = [0, 1, 2, 3]
    assert claims.rank_trend(x, [5, 3, 2, 0]) == pytest.approx(-1.0)
    assert claims.rank_trend(x, [0, 1, 8, 9]) == pytest.approx(1.0)
    y = np.array([0.1, 0.4, 0.35, 0.9])
    assert claims.linear_correlation(x, y) == pytest.approx(np.corrcoef(x, y)[0, 1])
    # invariant to positive affine changes of either axis
    assert claims.linear_correlation(np.array(x) * 2 + 1, y * 10 - 4) == pytest.approx(np.corrcoef(x, y)[0, 1])
    for bad in ([0, 1], [1, 1, 1]):
        assert math.isnan(claims.rank_trend(bad, bad)) and math.isnan(claims.linear_correlation(bad, bad))
    with pytest.raises(ValueError, match="equal length"):
        claims.linear_correlation([1, 2, 3], [1, 2])


def test_pure_quantities_match_their_definitions():
    assert [claims.early_layers(n) for n in (1, 2, 3, 9, 13)] == [1, 1, 1, 3, 4]
    assert claims.early_mean([0.1, 0.3, 0.5, 0.9, 0.9, 0.9]) == pytest.approx(0.2)
    a, b = np.array([0.1, 0.5, 0.8]), np.array([0.15, 0.3, 0.8])
    assert claims.max_spread([a, b]) == pytest.approx(np.abs(a - b).max())
    assert claims.max_spread([a, a, a]) == 0.0
    np.testing.assert_allclose(claims.layer_spreads([a, b, (a + b) / 2]), [0.05, 0.2, 0.0], atol=1e-12)
    assert claims.largest_step([0.9, 0.8, 0.5]) < 0 < claims.largest_step([0.9, 0.8, 0.85])
    assert claims.depth_range_ratio([0.2, 0.25, 0.3], [0.1, 0.5, 0.9]) == pytest.approx(0.125)
    # invariant to shifting either curve, and to scaling both together
    assert claims.depth_range_ratio(np.array([0.2, 0.25, 0.3]) + 1, np.array([0.1, 0.5, 0.9]) - 3) == pytest.approx(0.125)
    assert claims.depth_range_ratio(3 * np.array([0.2, 0.25, 0.3]), 3 * np.array([0.1, 0.5, 0.9])) == pytest.approx(0.125)


def test_pure_quantities_reject_bad_shapes():
    with pytest.raises(ValueError, match="C >= 2 curves"):
        claims.max_spread([[0.1, 0.2]])
    with pytest.raises(ValueError, match="C >= 2 curves"):
        claims.layer_spreads([0.1, 0.2])
    with pytest.raises(ValueError, match=r"at least 2 values, got shape \(1,\)"):
        claims.largest_step([0.3])
    with pytest.raises(ValueError, match="same layers"):
        claims.depth_range_ratio([0.1, 0.2], [0.1, 0.2, 0.3])
    with pytest.raises(ValueError, match="constant"):
        claims.depth_range_ratio([0.1, 0.2], [0.4, 0.4])
    with pytest.raises(ValueError, match="n_layers must be an int >= 1"):
        claims.early_layers(0)


def test_peak_gap_is_the_difference_of_maxima():
    assert claims.peak_gap([0.1, 0.5, 0.3], [0.2, 0.4, 0.7]) == pytest.approx(-0.2)
    assert claims.peak_gap(np.array([0.9, 0.1]), np.array([0.2, 0.8])) == pytest.approx(0.1)
    with pytest.raises(ValueError, match="two non-empty 1-D curves of equal length"):
        claims.peak_gap([0.1, 0.2], [0.1, 0.2, 0.3])
    with pytest.raises(ValueError, match="two non-empty 1-D curves of equal length"):
        claims.peak_gap([[0.1, 0.2]], [[0.1, 0.2]])


# Q over 4 epochs (rows) and 3 layers (columns), flat first layer, rising last layer; test accuracy per epoch.
EPOCH_Q = np.array([[0.20, 0.10, 0.05], [0.21, 0.30, 0.40], [0.19, 0.40, 0.60], [0.20, 0.45, 0.80]])
EPOCH_ACC = np.array([10.0, 60.0, 75.0, 90.0])


def test_edge_layers_and_range_ratio():
    np.testing.assert_allclose(claims.shallow_q(EPOCH_Q), EPOCH_Q[:, 0])
    np.testing.assert_allclose(claims.deep_q(EPOCH_Q, 2), EPOCH_Q[:, 1:].mean(axis=1))
    assert claims.epoch_range_ratio(EPOCH_Q) == pytest.approx(0.02 / 0.75)
    assert claims.epoch_range_ratio(EPOCH_Q[:, ::-1]) == pytest.approx(0.75 / 0.02)
    assert math.isnan(claims.epoch_range_ratio(np.array([[0.1, 0.5], [0.2, 0.5]])))
    with pytest.raises(ValueError, match=r"expected Q of shape \(epochs >= 2, layers >= 1\)"):
        claims.epoch_range_ratio(EPOCH_Q[:1])
    with pytest.raises(ValueError, match=r"layers must be an int in \[1, 3\]"):
        claims.deep_q(EPOCH_Q, 4)


def test_accuracy_correlation_matches_scipy_and_ignores_units():
    r = claims.accuracy_correlation(EPOCH_Q, EPOCH_ACC)
    assert r == pytest.approx(np.corrcoef(EPOCH_Q[:, -1], EPOCH_ACC)[0, 1])
    assert claims.accuracy_correlation(EPOCH_Q, EPOCH_ACC / 100) == pytest.approx(r)
    rho = claims.accuracy_correlation(EPOCH_Q, EPOCH_ACC, method="spearman")
    assert rho == pytest.approx(1.0)
    assert claims.accuracy_correlation(EPOCH_Q, EPOCH_ACC[::-1], layers=2) < 0
    assert math.isnan(claims.accuracy_correlation(EPOCH_Q, np.full(4, 50.0)))
    with pytest.raises(ValueError, match="unknown correlation 'kendall'; valid choices: pearson, spearman"):
        claims.accuracy_correlation(EPOCH_Q, EPOCH_ACC, method="kendall")
    with pytest.raises(ValueError, match=r"one value per epoch, shape \(4,\)"):
        claims.accuracy_correlation(EPOCH_Q, EPOCH_ACC[:3])
    with pytest.raises(ValueError, match="at least 3 epochs, got 2"):
        claims.accuracy_correlation(EPOCH_Q[:2], EPOCH_ACC[:2])
