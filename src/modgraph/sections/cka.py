"""Fig. 8: modularity differences beside linear CKA between the layers of trained ResNets.

The comparison itself is :func:`modgraph.cka.compare_layers`, cached per
weights source by :func:`modgraph.cache.comparison`; this module gathers a
study and states its claims.
"""

from __future__ import annotations

from typing import Callable, Mapping, Sequence

import pandas as pd
from tqdm.auto import tqdm

from modgraph.cka import LayerComparison
from modgraph.claims import Claim, check
from modgraph.curve import CurveSettings
from modgraph.paper import AGREEMENT_THRESHOLD, SIGNIFICANCE
from modgraph.store import ModelSpec, Trained, WeightsSource, check_specs

__all__ = [
    "comparison_claims",
    "comparison_study",
    "comparison_table",
]


def comparison_claims(comparison: LayerComparison, *, scope: str, source: str = "Fig. 8", permutations: int = 999,
                      seed: int = 0) -> list[Claim]:
    """Modularity differences order the layer pairs as 1 - CKA does: strongly, and not by chance."""
    few = len(comparison.layers) < 3
    reason = f"needs at least 3 layers, got {len(comparison.layers)}" if few else ""
    rho = None if few else comparison.agreement()
    p = None if few else comparison.mantel_p(permutations, seed)
    return [
        check(f"{scope}: modularity differences between layers agree with 1 - CKA",
              "Spearman rho between the layer pairs' |Q_i - Q_j| and 1 - CKA_ij",
              rho, ">", AGREEMENT_THRESHOLD, source=source, reason=reason),
        check(f"{scope}: the agreement is not a chance ordering of the layers",
              f"Mantel test p-value ({permutations} joint permutations of the layers)",
              p, "<", SIGNIFICANCE, source=source, reason=reason),
    ]


def comparison_study(
    specs: Sequence[ModelSpec],
    settings: CurveSettings = CurveSettings(),
    *,
    weights: Callable[[ModelSpec], WeightsSource] = Trained,
    debiased: bool = False,
    device: str | None = None,
    progress: bool = True,
) -> dict[str, LayerComparison]:
    """:func:`modgraph.cache.comparison` (``settings``, ``debiased``) of every model of ``specs``
    (:func:`modgraph.cache.trained_specs`) at the weights ``weights(spec)`` (default :class:`modgraph.store.Trained`;
    :class:`modgraph.store.Initial` for the untrained control): arch -> comparison."""
    from modgraph import cache

    return {spec.arch: cache.comparison(weights(spec), settings, debiased=debiased, device=device, progress=progress)
            for spec in tqdm(check_specs(specs), desc="CKA", disable=not progress)}


def comparison_table(study: Mapping[str, LayerComparison]) -> pd.DataFrame:
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
