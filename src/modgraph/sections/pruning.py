"""Modularity-guided layer pruning (Sec. 5.3: Figs. 9 and 10, Table 1).

Depth variants (Figs. 9, 10): a *family* is a trained parent (e.g. ``vgg19``)
and registered variants with units removed from the back of its stages
(``vgg19_1`` .. ``vgg19_6``). Each variant is fine-tuned from the trained
parent through the model store (``ModelSpec(parent=..., init="transfer")``),
and every model's modularity curve comes from the curve cache.

- The *removed layers* of a variant are the parent's layers it lacks
  (:func:`modgraph.prune.removed_layers`); their *Delta-Q* is the modularity
  those layers add on the parent's mean curve, ``sum over removed i of
  (Q_i - Q_{i-1})`` (:func:`modgraph.prune.removed_delta_q`): for one removed
  layer, its step.
- A model's *plateau* is its redundant layers by
  :func:`modgraph.prune.redundant_layers` at the settings' threshold.

Pruning by the curve (Table 1): :func:`prune_by_curve` removes the redundant
layers of the parent's curve that can go together
(:func:`modgraph.prune.select_removable`), fine-tunes the pruned model from
the parent through the store, and counts parameters and FLOPs with thop.

The claims' quantities are pure functions (arrays in, numbers out); the
paper's own numbers are quoted in :mod:`modgraph.paper`.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, replace
from typing import TYPE_CHECKING, Any, Mapping, Sequence

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from modgraph.checks import finite_number, int_at_least, positive_number
from modgraph.claims import Claim, check, linear_correlation, rank_trend
from modgraph.curve import CurveSettings
from modgraph.paper import ACCURACY_MARGIN, PAPER_FIG10_POINTS, PAPER_TABLE1, PAPER_TABLE1_MODEL, PLATEAU_RISE
from modgraph.prune import authors_complexity, curve_removal, removed_delta_q, removed_layers
from modgraph.site import admonition

if TYPE_CHECKING:
    from modgraph.curve import Curve
    from modgraph.prune import Complexity, LayerVerdict
    from modgraph.store import ModelSpec

__all__ = [
    "PruneSettings",
    "FamilyStudy",
    "family_study",
    "VariantStudies",
    "variant_studies",
    "delta_q_points",
    "drop_claims",
    "pruned_spec",
    "curve_pruned_spec",
    "family_specs",
    "PruneResult",
    "prune_by_curve",
]


@dataclass(frozen=True)
class PruneSettings:
    """How the section trains, fine-tunes and measures.

    Parents train with ``recipe`` over ``epochs`` (``None``: the recipe's);
    variants and pruned models are fine-tuned from their trained parent with
    the same recipe stretched to ``finetune_epochs``, all with training seed
    ``seed``. Curves are measured with ``curve``; ``threshold`` is the
    rise in Q below which :func:`modgraph.prune.redundant_layers` calls a layer
    redundant.
    """

    recipe: str
    finetune_epochs: int
    epochs: int | None = None
    width: float = 1.0
    seed: int = 0
    curve: CurveSettings = CurveSettings()
    threshold: float = PLATEAU_RISE

    def __post_init__(self) -> None:
        from modgraph.train import get_recipe

        get_recipe(self.recipe)
        if not isinstance(self.curve, CurveSettings):
            raise ValueError(f"curve must be a CurveSettings, got {type(self.curve).__name__}")
        int_at_least(self.finetune_epochs, "finetune_epochs")
        if self.epochs is not None:
            int_at_least(self.epochs, "epochs")
        positive_number(self.width, "width")
        finite_number(self.threshold, "threshold")

    def for_parents(self, width: float | None = None, epochs: int | None = None) -> "PruneSettings":
        """These settings with parents of width multiplier ``width`` trained ``epochs`` epochs (``None``: unchanged)."""
        changes = {k: v for k, v in (("width", width), ("epochs", epochs)) if v is not None}
        return replace(self, **changes) if changes else self

    def parent_spec(self, arch: str, dataset: str, width: float | None = None) -> "ModelSpec":
        """The store spec of the trained parent ``arch`` on ``dataset`` at ``width`` (``None``: the settings')."""
        from modgraph.store import ModelSpec

        return ModelSpec(arch, dataset, recipe=self.recipe, epochs=self.epochs, seed=self.seed,
                         width=self.width if width is None else width)

    def variant_spec(self, parent: "ModelSpec", variant: str) -> "ModelSpec":
        """The store spec of ``variant`` fine-tuned from the trained ``parent``; ``ValueError`` unless it is a
        variant of it (:func:`modgraph.prune.removed_layers`)."""
        from modgraph.store import ModelSpec

        removed_layers(parent.arch, variant)
        return ModelSpec(variant, parent.dataset, recipe=self.recipe, epochs=self.finetune_epochs, seed=self.seed,
                         width=parent.width, parent=parent, init="transfer")

    def curve_of(self, spec: "ModelSpec", *, device: str | None = None, progress: bool = True) -> "Curve":
        """The cached test-split curve (:attr:`curve`) of the stored model ``spec`` (trained on first use)."""
        from modgraph import cache
        from modgraph.store import Trained

        return cache.curve(Trained(spec), self.curve, device=device, progress=progress)


@dataclass(frozen=True)
class FamilyStudy:
    """A parent and its fine-tuned depth variants on one data set.

    ``curves``: model -> Curve, the parent first (each curve's
    ``meta["test_accuracy"]`` is the model's test accuracy in %);
    ``removed``: variant -> the parent's layers it lacks; ``threshold``: of
    :func:`modgraph.prune.redundant_layers`.
    """

    parent: str
    dataset: str
    curves: dict[str, "Curve"]
    removed: dict[str, tuple[str, ...]]
    threshold: float

    def accuracy(self, model: str) -> float:
        """Test accuracy (%) of ``model``; NaN when its store record has none."""
        value = self.curves[model].meta.get("test_accuracy")
        return float("nan") if value is None else float(value)

    def plateau(self, model: str) -> list["LayerVerdict"]:
        """The redundant layers of ``model``'s own curve."""
        from modgraph.prune import redundant_layers

        return redundant_layers(self.curves[model], self.threshold)

    def table(self) -> pd.DataFrame:
        """One row per model: removed layers, their Delta-Q, accuracy and its change, plateau layers."""
        parent_curve = self.curves[self.parent]
        rows = []
        for model, curve in self.curves.items():
            removed = self.removed.get(model, ())
            plateau = self.plateau(model)
            rows.append({
                "data set": self.dataset, "family": self.parent, "model": model, "layers": len(curve.layers),
                "removed layers": len(removed),
                "Delta-Q of removed layers": removed_delta_q(parent_curve.mean, parent_curve.layers, removed),
                "test accuracy (%)": self.accuracy(model),
                "change vs parent (pp)": self.accuracy(model) - self.accuracy(self.parent),
                "plateau layers": len(plateau),
                "plateau": ", ".join(v.layer for v in plateau),
            })
        return pd.DataFrame(rows)

    def claims(self, *, source: str) -> list[Claim]:
        """The plateau shrinks as layers are removed; every variant keeps the parent's accuracy."""
        table = self.table()
        scope = f"{self.parent} variants on {self.dataset}"
        trend = rank_trend(table["removed layers"], table["plateau layers"])
        reason = ("needs the parent and at least 2 variants with different plateau lengths"
                  if math.isnan(trend) else "")
        drops = -table["change vs parent (pp)"].to_numpy()[1:]
        worst = float(drops.max()) if drops.size and np.isfinite(drops).all() else None
        return [
            check(f"{scope}: the plateau shrinks as layers are removed",
                  f"Spearman rho over {len(table)} model(s) of (removed layers, plateau layers at dQ < "
                  f"{self.threshold:g})", trend, "<", 0.0, source=source, reason=reason),
            check(f"{scope}: the variants, fine-tuned from the parent, keep its accuracy",
                  f"largest test accuracy drop of {drops.size} fine-tuned variant(s) from the parent (pp; "
                  "negative: every variant gained)",
                  worst, "<", ACCURACY_MARGIN, source=source,
                  reason="no variant was measured" if not drops.size else "an accuracy is not recorded"),
        ]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: curves as dicts, removed layers, threshold."""
        return {"parent": self.parent, "dataset": self.dataset, "threshold": self.threshold,
                "curves": {m: c.to_dict() for m, c in self.curves.items()},
                "removed": {m: list(r) for m, r in self.removed.items()}}


def family_specs(parent: str, variants: Sequence[str], dataset: str,
                 settings: PruneSettings) -> dict[str, "ModelSpec"]:
    """Model name -> store spec of ``parent`` on ``dataset`` and of each variant fine-tuned from it (parent first)."""
    if isinstance(variants, str):
        raise ValueError(f"variants must be a list of model names, not the string {variants!r}")
    parent_spec = settings.parent_spec(parent, dataset)
    return {parent_spec.arch: parent_spec, **{v.lower(): settings.variant_spec(parent_spec, v) for v in variants}}


def family_study(parent: str, variants: Sequence[str], dataset: str, settings: PruneSettings, *,
                 device: str | None = None, progress: bool = True) -> FamilyStudy:
    """Train (or load) ``parent`` on ``dataset``, fine-tune each variant from it, and measure every curve."""
    specs = family_specs(parent, variants, dataset, settings)
    parent_spec = specs[parent.lower()]
    curves = {name: settings.curve_of(spec, device=device, progress=progress)
              for name, spec in tqdm(specs.items(), desc=f"{parent} family", disable=not progress)}
    removed = {name: removed_layers(parent_spec.arch, name) for name in specs if name != parent_spec.arch}
    return FamilyStudy(parent_spec.arch, parent_spec.dataset, curves, removed, float(settings.threshold))


@dataclass(frozen=True)
class VariantStudies:
    """Family studies per data set, and what was not measured.

    ``studies``: data set -> parent -> :class:`FamilyStudy`; ``missing``: data
    set -> why it has none; ``omitted``: parent -> the models of its family in
    the paper's figure that this run leaves out. Shows as a Markdown note.
    """

    datasets: tuple[str, ...]
    studies: dict[str, dict[str, FamilyStudy]]
    missing: dict[str, str] = field(default_factory=dict)
    omitted: dict[str, tuple[str, ...]] = field(default_factory=dict)

    def _repr_markdown_(self) -> str:
        lines = [f"- **{ds}**: measured {', '.join(m for s in fams.values() for m in s.curves)}"
                 for ds, fams in self.studies.items()]
        lines += [f"- **left out of the {parent} family** (in the paper's figure, not in this profile's "
                  f"parameters): {', '.join(models)}" for parent, models in self.omitted.items()]
        notes = [admonition(f"{ds}: not measured", why) for ds, why in self.missing.items()]
        return "\n\n".join(filter(None, ["\n".join(lines), *notes])) or "Nothing was requested."

    def panels(self) -> dict[str, Mapping[str, "Curve"] | str]:
        """Panel title -> {"model (accuracy %)": Curve}, or why the data set has none (for ``curve_grid``)."""
        out: dict[str, Mapping[str, "Curve"] | str] = {}
        for ds in self.datasets:
            if ds in self.missing:
                out[ds] = self.missing[ds]
            for parent, study in self.studies.get(ds, {}).items():
                out[f"{parent} on {ds}"] = {f"{m} ({study.accuracy(m):.2f} %)": c for m, c in study.curves.items()}
        return out

    def table(self) -> pd.DataFrame:
        """:meth:`FamilyStudy.table` of every study, stacked."""
        tables = [s.table() for fams in self.studies.values() for s in fams.values()]
        return pd.concat(tables, ignore_index=True) if tables else pd.DataFrame()

    def claims(self, *, source: str) -> list[Claim]:
        """:meth:`FamilyStudy.claims` of every study."""
        return [c for fams in self.studies.values() for s in fams.values() for c in s.claims(source=source)]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: every study, the missing data sets and omitted models."""
        return {"datasets": list(self.datasets),
                "studies": {ds: {p: s.to_dict() for p, s in fams.items()} for ds, fams in self.studies.items()},
                "missing": dict(self.missing), "omitted": {p: list(m) for p, m in self.omitted.items()}}


def variant_studies(families: Mapping[str, Sequence[str]], datasets: Sequence[str], settings: PruneSettings, *,
                    paper: Mapping[str, Sequence[str]] | None = None, device: str | None = None,
                    progress: bool = True) -> VariantStudies:
    """:func:`family_study` of every ``parent -> variants`` entry of ``families`` on every data set.

    A data set whose files are absent is recorded in ``missing`` with the
    loader's message. ``paper`` (e.g. :data:`modgraph.paper.PAPER_FIG9`) lists the paper's
    families: their models not requested here are recorded in ``omitted``.
    """
    from modgraph.data import DatasetNotFoundError, load_dataset

    if not isinstance(families, Mapping):
        raise ValueError(f"families must map a parent to its variants, got {type(families).__name__}")
    studies: dict[str, dict[str, FamilyStudy]] = {}
    missing: dict[str, str] = {}
    for ds in datasets:
        try:
            load_dataset(ds, "test", progress=progress)
        except DatasetNotFoundError as err:
            missing[ds] = str(err)
            continue
        studies[ds] = {p.lower(): family_study(p, vs, ds, settings, device=device, progress=progress)
                       for p, vs in families.items()}
    requested = {m.lower() for p, vs in families.items() for m in (p, *vs)}
    omitted = {p: left for p, vs in (paper or {}).items()
               if (left := tuple(m for m in (p, *vs) if m not in requested))}
    return VariantStudies(tuple(datasets), studies, missing, omitted)


def delta_q_points(studies: VariantStudies) -> pd.DataFrame:
    """Fig. 10's points: measured (Delta-Q of removed layers, accuracy drop) per variant, and the paper's quoted ones.

    Columns: data set, model, Delta-Q, accuracy drop (%), source ("measured"
    or "paper (quoted)"). The drop is the parent's accuracy minus the variant's.
    """
    rows = []
    table = studies.table()
    variants = table[table["removed layers"] > 0] if len(table) else table
    for _, row in variants.iterrows():
        rows.append({"data set": row["data set"], "model": row["model"],
                     "Delta-Q": row["Delta-Q of removed layers"],
                     "accuracy drop (%)": -row["change vs parent (pp)"], "source": "measured"})
    for ds in studies.datasets:
        for dq, drop in PAPER_FIG10_POINTS.get(ds, ()):
            rows.append({"data set": ds, "model": "", "Delta-Q": dq, "accuracy drop (%)": drop,
                         "source": "paper (quoted)"})
    return pd.DataFrame(rows, columns=["data set", "model", "Delta-Q", "accuracy drop (%)", "source"])


def drop_claims(points: pd.DataFrame, datasets: Sequence[str], *, missing: Mapping[str, str],
                source: str) -> list[Claim]:
    """"The accuracy drop grows with Delta-Q": per data set, Pearson r of the measured points > 0."""
    out = []
    for ds in datasets:
        measured = points[(points["data set"] == ds) & (points["source"] == "measured")]
        r = linear_correlation(measured["Delta-Q"], measured["accuracy drop (%)"])
        reason = missing.get(ds) or f"needs 3 variants with different Delta-Q and drops, got {len(measured)}"
        out.append(check(f"{ds}: the accuracy drop of a variant grows with the Delta-Q of its removed layers",
                         f"Pearson r over {len(measured)} fine-tuned variant(s) of (Delta-Q, accuracy drop)",
                         r, ">", 0.0, source=source, reason=reason))
    return out


def pruned_spec(parent: "ModelSpec", removed: Sequence[str], settings: PruneSettings) -> "ModelSpec":
    """The store spec of ``parent`` without the layers ``removed`` (block-tap names), fine-tuned from it."""
    from modgraph.prune import depth_variant
    from modgraph.store import ModelSpec

    if isinstance(removed, str) or not removed:
        raise ValueError(f"removed must be a non-empty list of layer names, got {removed!r}")
    overrides = depth_variant(parent.arch, list(removed), **dict(parent.overrides))
    return ModelSpec(parent.arch, parent.dataset, recipe=settings.recipe, epochs=settings.finetune_epochs,
                     seed=settings.seed, width=parent.width, overrides=overrides, parent=parent, init="transfer",
                     removed=tuple(removed))


@dataclass(frozen=True)
class PruneResult:
    """A model pruned where its curve says, fine-tuned: what went, what stayed, accuracy and size.

    ``curve``: the parent's; ``verdicts``: its redundant layers; ``removed``:
    those pruned (block-tap names); ``refused``: layer -> why it stayed;
    accuracies in %; ``pruned_accuracy`` is ``None`` when nothing was removed.
    ``authors``: for a data set with an :data:`modgraph.prune.AUTHORS_TABLE1_ARCHS` entry,
    the complexity of ``resnet56`` and of the authors' released pruned
    architecture for it (thop, measured; not trained here).
    """

    arch: str
    dataset: str
    threshold: float
    curve: "Curve"
    verdicts: tuple["LayerVerdict", ...]
    removed: tuple[str, ...]
    refused: dict[str, str]
    parent_accuracy: float | None
    pruned_accuracy: float | None
    before: "Complexity"
    after: "Complexity"
    authors: dict[str, "Complexity"] = field(default_factory=dict)

    @property
    def reduction(self) -> dict[str, float]:
        """Percentage of parameters and of FLOPs (= of MACs) removed."""
        from modgraph.prune import reduction

        saved = reduction(self.before, self.after)
        return {"params_pct": saved["params_pct"], "flops_pct": saved["macs_pct"]}

    def _repr_markdown_(self) -> str:
        lines = [f"{len(self.verdicts)} redundant layer(s) in the curve of {self.arch} on {self.dataset} "
                 f"(rise in Q below {self.threshold:g}); {len(self.removed)} removed:", ""]
        if (self.arch, self.dataset) != PAPER_TABLE1_MODEL:
            lines = [f"**Not the paper's setting:** its Table 1 prunes {' on '.join(PAPER_TABLE1_MODEL)}; "
                     f"this profile prunes {self.arch} on {self.dataset}.", "", *lines]
        lines += [f"- `{v.layer}`: {v.reason}" + (f" -- **kept**: {self.refused[v.layer]}"
                                                   if v.layer in self.refused else "") for v in self.verdicts]
        return "\n".join(lines)

    def table(self) -> pd.DataFrame:
        """Our unpruned and pruned model, the authors' released architecture, the paper's Table 1 rows (quoted)."""
        from modgraph.models import model_config
        from modgraph.prune import reduction

        saved = self.reduction
        ours = [
            {"method": f"{self.arch} unpruned (ours)", "accuracy (%)": self.parent_accuracy,
             "parameters": self.before.params, "FLOPs": self.before.flops,
             "parameters reduction (%)": 0.0, "FLOPs reduction (%)": 0.0, "source": "measured"},
            {"method": f"{self.arch} pruned by its modularity curve, fine-tuned (ours)",
             "accuracy (%)": self.pruned_accuracy, "parameters": self.after.params, "FLOPs": self.after.flops,
             "parameters reduction (%)": saved["params_pct"], "FLOPs reduction (%)": saved["flops_pct"],
             "source": "measured"},
        ]
        if self.authors:
            (full_name, full), (name, pruned) = self.authors.items()
            saved_by_authors = reduction(full, pruned)
            ours.append({"method": f"{name}: the authors' released architecture, blocks "
                                   f"{model_config(name).depths} of {full_name}'s {model_config(full_name).depths}",
                         "accuracy (%)": None, "parameters": pruned.params, "FLOPs": pruned.flops,
                         "parameters reduction (%)": saved_by_authors["params_pct"],
                         "FLOPs reduction (%)": saved_by_authors["macs_pct"],
                         "source": f"measured by thop against {full_name} (not trained here)"})
        quoted = [{**row, "parameters": None, "FLOPs": None, "source": "paper's Table 1 (quoted)"}
                  for row in PAPER_TABLE1]
        columns = ["method", "accuracy (%)", "parameters", "FLOPs", "parameters reduction (%)",
                   "FLOPs reduction (%)", "source"]
        return pd.DataFrame(ours + quoted, columns=columns)

    def claims(self, *, source: str) -> list[Claim]:
        """The curve finds layers to prune; pruning them keeps the accuracy within the margin."""
        scope = f"{self.arch} on {self.dataset}"
        drop = (None if self.pruned_accuracy is None or self.parent_accuracy is None
                else self.parent_accuracy - self.pruned_accuracy)
        return [
            check(f"{scope}: the modularity curve finds redundant layers whose removal saves computation",
                  "FLOPs reduction (%) of the pruned model", self.reduction["flops_pct"], ">", 0.0, source=source),
            check(f"{scope}: the model pruned where its curve says keeps its accuracy after fine-tuning",
                  "test accuracy drop from the unpruned model (pp)", drop, "<", ACCURACY_MARGIN, source=source,
                  reason="no layer was removed" if not self.removed else "an accuracy is not recorded"),
        ]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready record of the pruning."""
        return {"arch": self.arch, "dataset": self.dataset, "threshold": self.threshold,
                "curve": self.curve.to_dict(), "verdicts": [asdict(v) for v in self.verdicts],
                "removed": list(self.removed), "refused": dict(self.refused), "parent_accuracy": self.parent_accuracy,
                "pruned_accuracy": self.pruned_accuracy, "before": self.before.to_dict(),
                "after": self.after.to_dict(), "reduction": self.reduction,
                "authors": {name: c.to_dict() for name, c in self.authors.items()}}


def prune_by_curve(parent: "ModelSpec", settings: PruneSettings, *, device: str | None = None,
                   progress: bool = True) -> PruneResult:
    """Prune the stored ``parent`` at the redundant layers of its curve and fine-tune the result.

    The parent's curve (cached) gives :func:`modgraph.prune.redundant_layers`
    among the layers the model can lose; those that can go together are
    removed, the pruned model is fine-tuned from the parent through the store
    (``settings.finetune_epochs``), and thop counts both models for one image.
    """
    from modgraph.data import load_dataset
    from modgraph.prune import complexity
    from modgraph.store import accuracy_percent, get_model

    stored = get_model(parent, device=device, progress=progress)
    model = stored.model
    curve = settings.curve_of(parent, device=device, progress=progress)
    verdicts, removed, refused = curve_removal(model, curve, settings.threshold, settings.curve.tap)
    test = load_dataset(parent.dataset, "test", progress=progress)
    size = (1, 3, *test.image_size)
    before = complexity(model, size)
    if removed:
        pruned = get_model(pruned_spec(parent, removed, settings), device=device, progress=progress)
        after, pruned_accuracy = complexity(pruned.model, size), accuracy_percent(pruned.metrics)
    else:
        after, pruned_accuracy = before, None
    return PruneResult(parent.arch, parent.dataset, float(settings.threshold), curve, tuple(verdicts), removed,
                       refused, accuracy_percent(stored.metrics), pruned_accuracy, before, after,
                       authors_complexity(parent.dataset, test.num_classes, size))


def curve_pruned_spec(parent: "ModelSpec", settings: PruneSettings, *, device: str | None = None,
                      progress: bool = True) -> "ModelSpec | None":
    """The spec :func:`prune_by_curve` fine-tunes from the stored ``parent`` (``None``: nothing to remove).

    Needs the parent (trained on first use) and its cached curve, as :func:`prune_by_curve` does.
    """
    from modgraph.store import get_model

    model = get_model(parent, device=device, progress=progress).model
    curve = settings.curve_of(parent, device=device, progress=progress)
    _, removed, _ = curve_removal(model, curve, settings.threshold, settings.curve.tap)
    return pruned_spec(parent, removed, settings) if removed else None
