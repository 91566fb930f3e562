"""Ablations of the modularity curve (Figs. 7, B11-B13): sample size N, neighbours k, similarity, training.

For one stored model, :func:`model_ablation` gathers cached curves over a
range of ``N`` (at the reference ``k``) and of ``k`` (at the reference ``N``)
with the reference and the alternative similarity -- two cached sweeps
(:func:`modgraph.cache.sweep`) -- plus the curve of the same architecture at
its initial weights (:class:`modgraph.store.Initial`). Every curve of an
ablation uses the samples of :func:`modgraph.data.sample_indices` with the
same ``seed``, so curves at the same ``N`` share their samples. The claims'
quantities are pure functions of mean curves (arrays in, numbers out).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Mapping, Sequence

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from modgraph.claims import (Claim, check, depth_range_ratio, depth_spearman, early_layers, early_mean, largest_step,
                             layer_spreads, max_spread)
from modgraph.curve import Curve, CurveSettings
from modgraph.graph import SIMILARITIES
from modgraph.paper import FLAT_RATIO, OVERLAP_TOLERANCE
from modgraph.registry import Registry

if TYPE_CHECKING:
    from modgraph.agreement import Agreement
    from modgraph.store import ModelSpec

__all__ = [
    "AblationSettings",
    "ModelAblation",
    "PANELS",
    "LAYER_SUMMARIES",
    "model_ablation",
    "ablation_study",
    "reference_table",
    "COMPARED_PANELS",
    "divergence_table",
    "agreement_study",
]


LAYER_SUMMARIES: Registry[tuple[str, Callable[[np.ndarray], float]]] = Registry("layer summary")
LAYER_SUMMARIES.register("early", ("early layers", early_mean))
LAYER_SUMMARIES.register("last", ("last layer", lambda q: float(np.asarray(q, dtype=float)[-1])))


def _sorted_ints(values: Sequence[int], name: str, min_count: int) -> tuple[int, ...]:
    if isinstance(values, (str, int, np.integer)):
        raise ValueError(f"{name} must be a list of positive integers, got {values!r}")
    items = tuple(values)
    if any(isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1 for v in items):
        raise ValueError(f"{name} must be positive integers, got {values!r}")
    out = tuple(sorted({int(v) for v in items}))
    if len(out) < min_count:
        raise ValueError(f"{name} needs at least {min_count} distinct values, got {values!r}")
    return out


@dataclass(frozen=True)
class AblationSettings:
    """What an ablation measures: the reference curve (``curve``) and its variations.

    ``ns``: sample sizes at the reference ``k``; ``small_ks`` and ``large_ks``:
    neighbour counts at the reference ``n``; ``alternative``: the similarity
    compared with the reference one. Sequences are stored sorted and unique.
    """

    curve: CurveSettings = CurveSettings()
    alternative: str = "pearson"
    ns: tuple[int, ...] = (100, 200, 300, 400, 500)
    small_ks: tuple[int, ...] = (3, 5, 7, 9)
    large_ks: tuple[int, ...] = (10, 25, 50, 100, 200)

    def __post_init__(self) -> None:
        if not isinstance(self.curve, CurveSettings):
            raise ValueError(f"curve must be a CurveSettings, got {type(self.curve).__name__}")
        for name in ("ns", "small_ks", "large_ks"):
            object.__setattr__(self, name, _sorted_ints(getattr(self, name), name, 2))
        SIMILARITIES.get(self.alternative)
        object.__setattr__(self, "alternative", self.alternative.lower())
        c = self.curve
        if c.similarity == self.alternative:
            raise ValueError(f"alternative must differ from similarity {c.similarity!r}; valid choices: "
                             f"{', '.join(s for s in SIMILARITIES.names() if s != c.similarity)}")
        too_large = [k for k in self.ks if k >= c.n]
        if too_large:
            raise ValueError(f"every k must be < n = {c.n} (samples per graph); too large: {too_large}")
        if c.k >= self.ns[0]:
            raise ValueError(f"k = {c.k} must be < the smallest of ns = {list(self.ns)}")

    @property
    def ks(self) -> tuple[int, ...]:
        """Every k measured at the reference ``n``: the reference, small and large ones, sorted."""
        return tuple(sorted({self.curve.k, *self.small_ks, *self.large_ks}))

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready and flat: the reference curve's settings beside the variations."""
        return {**self.curve.to_dict(), "alternative": self.alternative, "ns": list(self.ns),
                "small_ks": list(self.small_ks), "large_ks": list(self.large_ks)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "AblationSettings":
        """The settings :meth:`to_dict` described."""
        return cls(CurveSettings.from_dict(data), data["alternative"], data["ns"], data["small_ks"], data["large_ks"])


@dataclass(frozen=True)
class ModelAblation:
    """The ablation curves of one model.

    ``by_n``: N -> curve (reference k and similarity); ``by_k``: k -> curve
    (reference N and similarity, every k of :attr:`AblationSettings.ks`);
    ``alternative``: the alternative similarity at the reference N and k;
    ``untrained``: the reference setting on the model's initial weights.
    """

    model: str
    settings: AblationSettings
    by_n: dict[int, Curve]
    by_k: dict[int, Curve]
    alternative: Curve
    untrained: Curve
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        s = self.settings
        if set(self.by_n) != set(s.ns) or set(self.by_k) != set(s.ks):
            raise ValueError(f"by_n must hold N = {list(s.ns)} and by_k k = {list(s.ks)}, got "
                             f"{sorted(self.by_n)} and {sorted(self.by_k)}")
        layers = {c.layers for c in (*self.by_n.values(), *self.by_k.values(), self.alternative, self.untrained)}
        if len(layers) != 1:
            raise ValueError("every curve of an ablation must have the same layers")

    @property
    def reference(self) -> Curve:
        """The curve at the reference N, k and similarity."""
        return self.by_k[self.settings.curve.k]

    def panel(self, name: str) -> dict[str, Curve]:
        """Legend label -> curve of the :data:`PANELS` entry ``name``."""
        label, curves = PANELS.get(name)
        return {label.format(key): curve for key, curve in curves(self).items()}

    def summary(self, name: str, where: str) -> dict[Any, float]:
        """Setting -> mean Q at ``where`` (a :data:`LAYER_SUMMARIES` name) for the :data:`PANELS` entry ``name``."""
        _, summarise = LAYER_SUMMARIES.get(where)
        return {key: summarise(curve.mean) for key, curve in PANELS.get(name)[1](self).items()}

    def claims(self, *, scope: str | None = None) -> list[Claim]:
        """The ablation claims (Figs. 7, B11, B12, B13) tested on this model's mean curves."""
        scope = scope or self.model
        s, c = self.settings, self.settings.curve
        ref = self.reference.mean
        first, last = s.ns[0], s.ns[-1]
        early = early_layers(len(self.reference.layers))
        large = [self.by_k[k].mean for k in s.large_ks]
        trend, trend_reason = _depth_trend(large)
        return [
            check(f"{scope}: a smaller N lowers the modularity of early layers",
                  f"mean Q of the first {early} layer(s) at N = {last} minus at N = {first}",
                  early_mean(self.by_n[last].mean) - early_mean(self.by_n[first].mean), ">", 0.0, source="Fig. 7"),
            check(f"{scope}: N has little effect on the last layer",
                  f"max - min over N in {list(s.ns)} of the last layer's Q",
                  max_spread([[self.by_n[n].mean[-1]] for n in s.ns]), "<", OVERLAP_TOLERANCE, source="Fig. 7"),
            check(f"{scope}: curves for small k nearly overlap",
                  f"largest spread of Q at any layer over k in {list(s.small_ks)}",
                  max_spread([self.by_k[k].mean for k in s.small_ks]), "<", OVERLAP_TOLERANCE, source="Fig. 7"),
            check(f"{scope}: the last layer's Q decreases as k grows",
                  f"largest change of the last layer's Q between consecutive k in {list(s.large_ks)}",
                  largest_step([q[-1] for q in large]), "<", 0.0, source="Fig. B11"),
            check(f"{scope}: Q still increases with depth for every large k",
                  f"smallest Spearman rho(Q, layer index) over k in {list(s.large_ks)}",
                  trend, ">", 0.0, source="Fig. B11", reason=trend_reason),
            check(f"{scope}: {s.alternative} and {c.similarity} similarity give nearly the same curve",
                  f"largest |Q_{s.alternative} - Q_{c.similarity}| at any layer (N = {c.n}, k = {c.k})",
                  max_spread([self.alternative.mean, ref]), "<", OVERLAP_TOLERANCE, source="Fig. B12"),
            check(f"{scope}: the curve of the untrained model is nearly flat",
                  "range of Q over depth at the initial weights / that of the trained model",
                  depth_range_ratio(self.untrained.mean, ref) if np.ptp(ref) > 0 else None, "<", FLAT_RATIO,
                  source="Fig. B13", reason="the trained model's curve is constant"),
        ]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: settings, curves as dicts (keys as strings), meta."""
        return {
            "model": self.model, "settings": self.settings.to_dict(),
            "by_n": {str(n): c.to_dict() for n, c in self.by_n.items()},
            "by_k": {str(k): c.to_dict() for k, c in self.by_k.items()},
            "alternative": self.alternative.to_dict(), "untrained": self.untrained.to_dict(), "meta": self.meta,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "ModelAblation":
        """The ablation :meth:`to_dict` described."""
        return cls(
            model=data["model"], settings=AblationSettings.from_dict(data["settings"]),
            by_n={int(n): Curve.from_dict(c) for n, c in data["by_n"].items()},
            by_k={int(k): Curve.from_dict(c) for k, c in data["by_k"].items()},
            alternative=Curve.from_dict(data["alternative"]), untrained=Curve.from_dict(data["untrained"]),
            meta=dict(data.get("meta", {})),
        )


def _depth_trend(curves: Sequence[np.ndarray]) -> tuple[float | None, str]:
    """Smallest :func:`modgraph.claims.depth_spearman` over ``curves``, or ``None`` and why it is undefined."""
    if len(curves[0]) < 3:
        return None, f"needs curves of at least 3 layers, got {len(curves[0])}"
    rhos = [depth_spearman(q) for q in curves]
    if any(math.isnan(rho) for rho in rhos):
        return None, "a curve is constant over depth, so its rank correlation is undefined"
    return min(rhos), ""


PANELS: Registry[tuple[str, Callable[[ModelAblation], dict[Any, Curve]]]] = Registry("ablation panel")
PANELS.register("n", ("N = {}", lambda a: {n: a.by_n[n] for n in a.settings.ns}))
PANELS.register("small_k", ("k = {}", lambda a: {k: a.by_k[k] for k in a.settings.small_ks}))
PANELS.register("large_k", ("k = {}", lambda a: {k: a.by_k[k] for k in a.settings.large_ks}))
PANELS.register("similarity", ("{}", lambda a: {a.settings.curve.similarity: a.reference,
                                                 a.settings.alternative: a.alternative}))
PANELS.register("initialisation", ("{}", lambda a: {"trained": a.reference, "initial weights": a.untrained}))


def model_ablation(spec: "ModelSpec", settings: AblationSettings, *, device: str | None = None,
                   progress: bool = True) -> ModelAblation:
    """The ablation curves of the stored model ``spec`` (trained on first use) on its data set's test split.

    Two cached sweeps (:func:`modgraph.cache.sweep`, one feature pass each):
    every k and both similarities at the reference n, every n at the reference
    k; and the cached reference curve at the initial weights
    (:class:`modgraph.store.Initial`).
    """
    from modgraph import cache
    from modgraph.store import Initial, Trained

    if not isinstance(settings, AblationSettings):
        raise ValueError(f"settings must be an AblationSettings, got {type(settings).__name__}")
    s, c, trained = settings, settings.curve, Trained(spec)
    run = dict(device=device, progress=progress)
    by_k_sweep = cache.sweep(trained, c, ks=s.ks, similarities=(c.similarity, s.alternative), **run)
    by_n = dict(zip(s.ns, cache.sweep(trained, c, ns=s.ns, **run)))
    untrained = cache.curve(Initial(spec), c, **run)
    reference = by_k_sweep[s.ks.index(c.k)]
    meta = {key: reference.meta.get(key) for key in ("model", "dataset", "split", "spec", "test_accuracy")}
    return ModelAblation(spec.arch, s, by_n, dict(zip(s.ks, by_k_sweep[: len(s.ks)])),
                         by_k_sweep[len(s.ks) + s.ks.index(c.k)], untrained, meta)


def ablation_study(specs: Sequence["ModelSpec"], settings: AblationSettings, *, device: str | None = None,
                   progress: bool = True) -> dict[str, ModelAblation]:
    """:func:`model_ablation` of every stored model of ``specs`` (:func:`modgraph.cache.trained_specs`): arch ->
    ablation."""
    from modgraph.store import check_specs

    return {spec.arch: model_ablation(spec, settings, device=device, progress=progress)
            for spec in tqdm(check_specs(specs), desc="ablations", disable=not progress)}


def reference_table(study: Mapping[str, ModelAblation]) -> pd.DataFrame:
    """One row per model: layers, test accuracy (%), and the reference curve's first- and last-layer Q
    after training and at the initial weights."""
    rows = [{"model": model, "layers": len(r.reference.layers), "test accuracy (%)": r.meta.get("test_accuracy"),
             "Q first layer": r.reference.mean[0], "Q last layer": r.reference.mean[-1],
             "Q first layer, initial weights": r.untrained.mean[0],
             "Q last layer, initial weights": r.untrained.mean[-1]} for model, r in study.items()]
    columns = ["model", "layers", "test accuracy (%)", "Q first layer", "Q last layer",
               "Q first layer, initial weights", "Q last layer, initial weights"]
    return pd.DataFrame(rows, columns=columns)


COMPARED_PANELS: tuple[str, ...] = ("n", "small_k", "similarity")
"""The :data:`PANELS` whose curves the claims expect to nearly coincide somewhere (N: at the last layer)."""


def divergence_table(study: Mapping[str, ModelAblation]) -> pd.DataFrame:
    """Where the curves of each :data:`COMPARED_PANELS` entry differ most: one row per model and panel.

    Columns: the settings compared, the layer with the largest spread of Q
    (max - min over the panel's mean curves; its depth as "i of L"), that
    spread, the reference curve's Q there, and the spread at the last layer.
    """
    rows = []
    for model, result in study.items():
        for name in COMPARED_PANELS:
            curves = PANELS.get(name)[1](result)
            spreads = layer_spreads([c.mean for c in curves.values()])
            at = int(spreads.argmax())
            rows.append({"model": model, "compared": ", ".join(map(str, curves)),
                         "layer of largest spread": result.reference.layers[at],
                         "depth": f"{at + 1} of {spreads.size}", "largest spread": float(spreads[at]),
                         "reference Q there": float(result.reference.mean[at]),
                         "spread at the last layer": float(spreads[-1])})
    return pd.DataFrame(rows, columns=["model", "compared", "layer of largest spread", "depth", "largest spread",
                                       "reference Q there", "spread at the last layer"])


def agreement_study(specs: Sequence["ModelSpec"], settings: AblationSettings, *, device: str | None = None,
                    progress: bool = True) -> dict[str, "Agreement"]:
    """Arch -> the rank agreement (:func:`modgraph.cache.agreement`) of every stored model of ``specs`` on the
    reference curve's samples, ranks 1..max(small_ks), with the reference and the alternative similarity."""
    from modgraph import cache
    from modgraph.store import Trained, check_specs

    c = settings.curve
    return {spec.arch: cache.agreement(Trained(spec), c, ranks=max(settings.small_ks),
                                       similarities=(c.similarity, settings.alternative), device=device,
                                       progress=progress)
            for spec in tqdm(check_specs(specs), desc="agreement", disable=not progress)}
