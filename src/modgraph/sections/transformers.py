"""Beyond the paper: Vision Transformers beside the paper's CNNs (chapter 07).

The chapter measures a ViT with the paper's own tools: its curve beside
CNNs' on the same samples, its modularity over the epochs of training
(:func:`modgraph.sections.training.training_dynamics`) and torchvision's
ImageNet ViT (:func:`modgraph.cache.pretrained_curves`). This module joins
the studies and states the claims, which are the paper's CNN claims asked of
a transformer: whatever the verdict, it is a finding about ViTs.
"""

from __future__ import annotations

from typing import Sequence

import pandas as pd

from modgraph.claims import Claim, last_layer_highest, rises_with_depth
from modgraph.cache import CurveStudy
from modgraph.sections.training import TrainingDynamics

__all__ = ["joined", "accuracy_frame", "transformer_claims"]


def joined(studies: Sequence[CurveStudy]) -> CurveStudy:
    """One study holding every curve of ``studies`` per data set (models in order of the studies)."""
    datasets = tuple(dict.fromkeys(ds for study in studies for ds in study.datasets))
    curves = {ds: {model: curve for study in studies for model, curve in study.curves.get(ds, {}).items()}
              for ds in datasets}
    missing = {ds: why for study in studies for ds, why in study.missing.items()}
    skipped = {model: why for study in studies for model, why in study.skipped.items()}
    return CurveStudy(datasets, {ds: c for ds, c in curves.items() if c}, missing, skipped)


def accuracy_frame(study: CurveStudy) -> pd.DataFrame:
    """Data set, model, number of layers and test accuracy (%) of every curve in ``study``."""
    rows = [{"data set": ds, "model": model, "layers": len(curve.layers),
             "test accuracy (%)": curve.meta.get("test_accuracy")}
            for ds, curves in study.curves.items() for model, curve in curves.items()]
    return pd.DataFrame(rows, columns=["data set", "model", "layers", "test accuracy (%)"])


def transformer_claims(study: CurveStudy, model: str, dynamics: TrainingDynamics, imagenet: CurveStudy, *,
                       source: str, edge_layers: int = 1) -> list[Claim]:
    """The paper's CNN claims asked of the transformer ``model``: on every data set of ``study`` (Q rises
    with depth; the last layer is the most modular), during training (``dynamics``) and for each
    ImageNet ViT of ``imagenet``."""
    out = []
    for ds in study.datasets:
        curves = {model: study.curves[ds][model]} if model in study.curves.get(ds, {}) else {}
        reason = study.missing.get(ds, "")
        out += [fn(curves, scope=f"{model} on {ds}", source=source, reason=reason)
                for fn in (rises_with_depth, last_layer_highest)]
    out += dynamics.claims(source=source, layers=edge_layers, scope=f"{model} during training")
    for ds in imagenet.datasets:
        measured = imagenet.curves.get(ds, {})
        names = list(measured) or ["ImageNet ViT"]
        for name in names:
            curves = {name: measured[name]} if name in measured else {}
            out += [fn(curves, scope=f"{name} on {ds}", source=source, reason=imagenet.missing.get(ds, ""))
                    for fn in (rises_with_depth, last_layer_highest)]
    return out
