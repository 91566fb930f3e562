"""The paper's claims, the quantities that test them, and the table that reports them.

A section notebook states each claim of its paper section as a :class:`Claim`
built by :func:`check`: the measured quantity, the comparison and threshold,
and whether it holds -- computed from the measurement, never typed by hand.
A value that could not be measured (NaN, e.g. a data set is absent) never
holds and carries the reason. The quantities below are pure functions (arrays
in, numbers out) of modularity curves (1-D arrays of Q over depth), of stacks
of them (one per setting or per epoch) and of accuracies; the sections build
their claims from them.
"""

from __future__ import annotations

import math
import operator
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Callable, Iterable, Mapping, Sequence

import numpy as np
import pandas as pd
from scipy import stats

from modgraph.paper import LAST_LAYER_TOLERANCE, PLATEAU_RISE, RISE_THRESHOLD
from modgraph.registry import Registry

if TYPE_CHECKING:
    from modgraph.curve import Curve

__all__ = [
    "Claim",
    "COMPARISONS",
    "check",
    "VERDICTS",
    "verdict",
    "claims_table",
    "depth_spearman",
    "rank_trend",
    "linear_correlation",
    "early_layers",
    "early_mean",
    "layer_spreads",
    "max_spread",
    "largest_step",
    "depth_range_ratio",
    "CORRELATIONS",
    "shallow_q",
    "deep_q",
    "epoch_range_ratio",
    "accuracy_correlation",
    "peak_gap",
    "last_layer_gap",
    "plateau_fraction",
    "rises_with_depth",
    "last_layer_highest",
    "plateaus_in_deeper_models",
    "curve_claims",
]

COMPARISONS: Registry[Callable[[float, float], bool]] = Registry("comparison")
for _symbol, _fn in ((">", operator.gt), (">=", operator.ge), ("<", operator.lt), ("<=", operator.le)):
    COMPARISONS.register(_symbol, _fn)


@dataclass(frozen=True)
class Claim:
    """One claim of the paper and the measurement that tests it.

    ``holds`` is ``value <op> threshold``; ``reason`` explains a claim that
    could not be tested (empty otherwise); ``source`` points into the paper
    (e.g. ``"Sec. 4.1, Fig. 4"``).
    """

    claim: str
    quantity: str
    value: float
    op: str
    threshold: float
    holds: bool
    reason: str = ""
    source: str = ""

    def as_dict(self) -> dict:
        """A JSON-ready dict (NaN becomes ``None``)."""
        out = asdict(self)
        if not math.isfinite(out["value"]):
            out["value"] = None
        return out


def check(
    claim: str,
    quantity: str,
    value: float | None,
    op: str,
    threshold: float,
    *,
    source: str = "",
    reason: str = "",
) -> Claim:
    """Test ``value <op> threshold`` and return the :class:`Claim`.

    ``op`` is one of ``>``, ``>=``, ``<``, ``<=``. ``value`` ``None`` or NaN
    means "not measured": the claim does not hold and ``reason`` (or a default
    text) says why. ``reason`` is ignored for a measured value.
    """
    compare = COMPARISONS.get(op)
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating, type(None))):
        raise ValueError(f"claim {claim!r}: value must be a number or None, got {type(value).__name__}")
    if not isinstance(threshold, (int, float, np.integer, np.floating)) or not math.isfinite(threshold):
        raise ValueError(f"claim {claim!r}: threshold must be a finite number, got {threshold!r}")
    value = float("nan") if value is None else float(value)
    if math.isnan(value):
        return Claim(claim, quantity, value, op, float(threshold), False,
                     reason or "not measured (value is NaN)", source)
    return Claim(claim, quantity, value, op, float(threshold), bool(compare(value, threshold)), "", source)


VERDICTS = ("holds", "does not hold", "not measured")
"""The verdicts a claim can get, as the tables and the book show them."""


def verdict(holds: bool, value: float | None) -> str:
    """``"holds"``, ``"does not hold"``, or ``"not measured"`` (``value`` None or NaN; such a claim never holds).

    Works for a :class:`Claim` (``verdict(c.holds, c.value)``) and for its
    JSON form in a results file (``verdict(d["holds"], d["value"])``).
    """
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return VERDICTS[2]
    return VERDICTS[0] if holds else VERDICTS[1]


def claims_table(claims: Iterable[Claim]) -> pd.DataFrame:
    """One row per claim: claim, quantity, measured value, test, verdict, reason, source."""
    rows = []
    for c in claims:
        if not isinstance(c, Claim):
            raise ValueError(f"claims_table expects Claim objects (from claims.check), got {type(c).__name__}")
        rows.append({
            "claim": c.claim,
            "measured quantity": c.quantity,
            "value": c.value,
            "test": f"{c.op} {c.threshold:g}",
            "verdict": verdict(c.holds, c.value),
            "reason": c.reason,
            "source": c.source,
        })
    columns = ["claim", "measured quantity", "value", "test", "verdict", "reason", "source"]
    return pd.DataFrame(rows, columns=columns)


def _curve(values: Sequence[float] | np.ndarray, min_len: int) -> np.ndarray:
    q = np.asarray(values, dtype=float)
    if q.ndim != 1:
        raise ValueError(f"expected a 1-D curve of Q over depth, got shape {q.shape}")
    if q.size < min_len:
        raise ValueError(f"expected a curve of at least {min_len} layers, got {q.size}")
    return q


def depth_spearman(values: Sequence[float] | np.ndarray) -> float:
    """Spearman rank correlation of Q with layer index; ``values`` (L,), L >= 3.

    1 = Q never decreases with depth, -1 = it never increases; NaN for a
    constant curve.
    """
    q = _curve(values, 3)
    if np.all(q == q[0]):
        return float("nan")
    return float(stats.spearmanr(np.arange(q.size), q).statistic)


def _pairs(x: Sequence[float], y: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    a, b = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if a.ndim != 1 or a.shape != b.shape:
        raise ValueError(f"x and y must be 1-D of equal length, got shapes {a.shape} and {b.shape}")
    return a, b


def rank_trend(x: Sequence[float], y: Sequence[float]) -> float:
    """Spearman rho of ``y`` (M,) against ``x`` (M,); NaN with fewer than 3 points or a constant ``x`` or ``y``."""
    a, b = _pairs(x, y)
    if a.size < 3 or np.ptp(a) == 0 or np.ptp(b) == 0:
        return float("nan")
    return float(stats.spearmanr(a, b).statistic)


def linear_correlation(x: Sequence[float], y: Sequence[float]) -> float:
    """Pearson r of ``y`` (M,) against ``x`` (M,); NaN with fewer than 3 points or a constant ``x`` or ``y``."""
    a, b = _pairs(x, y)
    if a.size < 3 or np.ptp(a) == 0 or np.ptp(b) == 0:
        return float("nan")
    return float(stats.pearsonr(a, b).statistic)


def _curve_stack(values: np.ndarray | Sequence[Sequence[float]], min_curves: int) -> np.ndarray:
    q = np.asarray(values, dtype=float)
    if q.ndim != 2 or q.shape[0] < min_curves or q.shape[1] < 1:
        raise ValueError(f"expected (C >= {min_curves} curves, L >= 1 layers) of Q, got shape {q.shape}")
    return q


def early_layers(n_layers: int) -> int:
    """How many layers count as early: the first third of ``n_layers``, at least one."""
    if isinstance(n_layers, bool) or not isinstance(n_layers, (int, np.integer)) or n_layers < 1:
        raise ValueError(f"n_layers must be an int >= 1, got {n_layers!r}")
    return max(1, int(n_layers) // 3)


def early_mean(values: np.ndarray | Sequence[float]) -> float:
    """Mean Q over the :func:`early_layers` of a curve ``values`` (L,)."""
    q = _curve(values, 1)
    return float(q[: early_layers(q.size)].mean())


def layer_spreads(values: np.ndarray | Sequence[Sequence[float]]) -> np.ndarray:
    """``max - min over curves`` at each layer of ``values`` (C >= 2, L) -> (L,): 0 where all curves coincide."""
    return np.ptp(_curve_stack(values, 2), axis=0)


def max_spread(values: np.ndarray | Sequence[Sequence[float]]) -> float:
    """``max over layers of`` :func:`layer_spreads` of ``values`` (C >= 2, L): 0 when all curves coincide."""
    return float(layer_spreads(values).max())


def largest_step(values: np.ndarray | Sequence[float]) -> float:
    """Largest change between consecutive entries of ``values`` (M >= 2,): < 0 iff strictly decreasing."""
    q = np.asarray(values, dtype=float)
    if q.ndim != 1 or q.size < 2:
        raise ValueError(f"expected a 1-D sequence of at least 2 values, got shape {q.shape}")
    return float(np.diff(q).max())


def depth_range_ratio(values: np.ndarray | Sequence[float], reference: np.ndarray | Sequence[float]) -> float:
    """Range (max - min over layers) of ``values`` (L,) divided by that of ``reference`` (L,)."""
    q, ref = _curve(values, 1), _curve(reference, 1)
    if q.shape != ref.shape:
        raise ValueError(f"values and reference must have the same layers, got shapes {q.shape} and {ref.shape}")
    if not np.ptp(ref) > 0:
        raise ValueError("the reference curve is constant: its range is 0")
    return float(np.ptp(q) / np.ptp(ref))


CORRELATIONS: Registry[Callable[[np.ndarray, np.ndarray], float]] = Registry("correlation")
CORRELATIONS.register("pearson", lambda a, b: float(stats.pearsonr(a, b).statistic))
CORRELATIONS.register("spearman", lambda a, b: float(stats.spearmanr(a, b).statistic))


def _epoch_matrix(q: np.ndarray | Sequence[Sequence[float]], layers: int) -> np.ndarray:
    m = np.asarray(q, dtype=float)
    if m.ndim != 2 or m.shape[0] < 2 or m.shape[1] < 1:
        raise ValueError(f"expected Q of shape (epochs >= 2, layers >= 1), got {m.shape}")
    if isinstance(layers, bool) or not isinstance(layers, (int, np.integer)) or not 1 <= layers <= m.shape[1]:
        raise ValueError(f"layers must be an int in [1, {m.shape[1]}] (the number of layers), got {layers!r}")
    return m


def shallow_q(q: np.ndarray | Sequence[Sequence[float]], layers: int = 1) -> np.ndarray:
    """Mean Q of the first ``layers`` layers per epoch: (E, L) -> (E,)."""
    return _epoch_matrix(q, layers)[:, :layers].mean(axis=1)


def deep_q(q: np.ndarray | Sequence[Sequence[float]], layers: int = 1) -> np.ndarray:
    """Mean Q of the last ``layers`` layers per epoch: (E, L) -> (E,)."""
    return _epoch_matrix(q, layers)[:, -layers:].mean(axis=1)


def epoch_range_ratio(q: np.ndarray | Sequence[Sequence[float]], layers: int = 1) -> float:
    """Range over epochs of :func:`shallow_q` divided by that of :func:`deep_q`; ``q`` (E, L).

    0 when the first layers do not move at all; NaN when the last layers'
    Q is constant (nothing to compare with).
    """
    deep = np.ptp(deep_q(q, layers))
    return float(np.ptp(shallow_q(q, layers)) / deep) if deep > 0 else math.nan


def accuracy_correlation(
    q: np.ndarray | Sequence[Sequence[float]],
    accuracy: np.ndarray | Sequence[float],
    layers: int = 1,
    method: str = "pearson",
) -> float:
    """Correlation across epochs of :func:`deep_q` with ``accuracy`` (E,); needs E >= 3.

    ``method``: a :data:`CORRELATIONS` name. NaN when either is constant.
    """
    correlate = CORRELATIONS.get(method)
    deep = deep_q(q, layers)
    acc = np.asarray(accuracy, dtype=float)
    if acc.shape != deep.shape:
        raise ValueError(f"accuracy must have one value per epoch, shape {deep.shape}, got {acc.shape}")
    if deep.size < 3:
        raise ValueError(f"a correlation across epochs needs at least 3 epochs, got {deep.size}")
    if np.ptp(deep) == 0 or np.ptp(acc) == 0:
        return math.nan
    return correlate(deep, acc)


def peak_gap(adversarial: Sequence[float] | np.ndarray, clean: Sequence[float] | np.ndarray) -> float:
    """``max(adversarial) - max(clean)`` of two curves of Q over depth, both (L,): < 0 when the adversarial one peaks lower."""
    adv = np.asarray(adversarial, dtype=float)
    ref = np.asarray(clean, dtype=float)
    if adv.ndim != 1 or adv.shape != ref.shape or adv.size == 0:
        raise ValueError(f"peak_gap needs two non-empty 1-D curves of equal length, got {adv.shape} and {ref.shape}")
    return float(adv.max() - ref.max())


def last_layer_gap(values: Sequence[float] | np.ndarray) -> float:
    """``max(Q) - Q[-1]`` over a curve ``values`` (L,): 0 when the last layer is the most modular."""
    q = _curve(values, 1)
    return float(q.max() - q[-1])


def plateau_fraction(values: Sequence[float] | np.ndarray, tol: float = PLATEAU_RISE) -> float:
    """Fraction of the L-1 layer-to-layer steps of ``values`` (L,) where Q rises by less than ``tol``.

    Counts plateaus and degradations: 0 for a curve that rises by at least
    ``tol`` at every layer.
    """
    if not tol >= 0:
        raise ValueError(f"tol must be >= 0, got {tol!r}")
    q = _curve(values, 2)
    return float(np.mean(np.diff(q) < tol))


def _median_over(curves: Mapping[str, "Curve"], quantity: Callable[[np.ndarray], float]) -> float:
    values = [quantity(np.asarray(c.mean, dtype=float)) for c in curves.values()]
    values = [v for v in values if not math.isnan(v)]
    return float(np.median(values)) if values else float("nan")


def _no_curves(curves: Mapping[str, "Curve"], reason: str) -> str:
    return reason or ("no curves were measured" if not curves else "")


def rises_with_depth(curves: Mapping[str, "Curve"], *, scope: str, source: str, reason: str = "") -> Claim:
    """"Modularity roughly tends to increase as the layer goes deeper": median Spearman rho over models > 0.5.

    ``curves`` maps model name -> Curve (empty when nothing could be measured;
    ``reason`` then says why).
    """
    value = _median_over(curves, depth_spearman) if curves else None
    return check(f"{scope}: modularity roughly tends to increase as the layer goes deeper",
                 f"median over {len(curves)} model(s) of Spearman rho(mean Q, layer index)",
                 value, ">", RISE_THRESHOLD, source=source, reason=_no_curves(curves, reason))


def last_layer_highest(curves: Mapping[str, "Curve"], *, scope: str, source: str, reason: str = "") -> Claim:
    """"The last layer is (near) the most modular": median of ``max(Q) - Q[-1]`` over models <= 0.05."""
    value = _median_over(curves, last_layer_gap) if curves else None
    return check(f"{scope}: the last layer has the highest or near-highest modularity",
                 f"median over {len(curves)} model(s) of max(mean Q) - mean Q of the last layer",
                 value, "<=", LAST_LAYER_TOLERANCE, source=source, reason=_no_curves(curves, reason))


def plateaus_in_deeper_models(curves: Mapping[str, "Curve"], *, scope: str, source: str, reason: str = "",
                              tol: float = PLATEAU_RISE) -> Claim:
    """"Plateaus and degradation arise when the model is large for the data": across models,
    Spearman rho(number of layers, :func:`plateau_fraction`) > 0; needs 3 models of distinct depths."""
    depths = [len(c.layers) for c in curves.values()]
    fractions = [plateau_fraction(np.asarray(c.mean, dtype=float), tol) for c in curves.values()]
    value = None
    if len(set(depths)) >= 3 and len(set(fractions)) > 1:
        value = float(stats.spearmanr(depths, fractions).statistic)
    elif not reason:
        reason = (f"needs curves of at least 3 models of different depths, got {len(set(depths))}"
                  if len(set(depths)) < 3 else "every model has the same plateau fraction")
    return check(f"{scope}: plateaus and degradation arise when the model is large relative to the data set",
                 f"Spearman rho across {len(curves)} model(s) of (number of layers, fraction of layer steps "
                 f"where Q rises by < {tol:g})",
                 value, ">", 0.0, source=source, reason=reason)


def curve_claims(curves: Mapping[str, "Curve"], *, scope: str, source: str, reason: str = "") -> list[Claim]:
    """The three claims about modularity curves of several models (Sec. 4, Figs. 4-5)."""
    return [fn(curves, scope=scope, source=source, reason=reason)
            for fn in (rises_with_depth, last_layer_highest, plateaus_in_deeper_models)]
