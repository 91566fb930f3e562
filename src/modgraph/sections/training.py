"""Fig. 6(b): the modularity of every layer over the first epochs of training, beside test accuracy.

:func:`training_dynamics` gathers the cached test-split curves of every
snapshot a spec requests (:class:`modgraph.store.Snapshot`; epoch 0 is the
initialisation), each with that epoch's test accuracy, into a
:class:`TrainingDynamics`, whose ``q`` is the (epochs, layers) matrix
of mean Q. The claims' quantities are pure functions of that matrix and the
accuracy per epoch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Mapping

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from modgraph.claims import Claim, accuracy_correlation, check, epoch_range_ratio
from modgraph.curve import Curve, CurveSettings
from modgraph.paper import DEEP_CORRELATION, SHALLOW_RANGE_RATIO

if TYPE_CHECKING:
    from modgraph.store import ModelSpec

__all__ = [
    "TrainingDynamics",
    "training_dynamics",
]


@dataclass(frozen=True, eq=False)
class TrainingDynamics:
    """Modularity curves of one model's snapshots and its test accuracy per snapshot.

    ``epochs`` (E,) increasing (0 = initialisation); ``curves`` one
    :class:`~modgraph.curve.Curve` per epoch, all over the same layers;
    ``accuracy`` (E,) test accuracy in %.
    """

    arch: str
    epochs: tuple[int, ...]
    curves: tuple[Curve, ...]
    accuracy: tuple[float, ...]

    def __post_init__(self) -> None:
        epochs = tuple(int(e) for e in self.epochs)
        if not epochs or list(epochs) != sorted(set(epochs)):
            raise ValueError(f"epochs must be non-empty and strictly increasing, got {self.epochs}")
        if len(self.curves) != len(epochs) or len(self.accuracy) != len(epochs):
            raise ValueError(f"need one curve and one accuracy per epoch: {len(epochs)} epochs, "
                             f"{len(self.curves)} curves, {len(self.accuracy)} accuracies")
        layers = {c.layers for c in self.curves}
        if len(layers) != 1:
            raise ValueError(f"all curves must have the same layers, got {len(layers)} different layer lists")
        object.__setattr__(self, "epochs", epochs)
        object.__setattr__(self, "curves", tuple(self.curves))
        object.__setattr__(self, "accuracy", tuple(float(a) for a in self.accuracy))

    @property
    def layers(self) -> tuple[str, ...]:
        """Layer names in depth order (L,)."""
        return self.curves[0].layers

    @property
    def q(self) -> np.ndarray:
        """Mean Q over repeats, (E, L)."""
        return np.stack([c.mean for c in self.curves])

    def to_frame(self) -> pd.DataFrame:
        """One row per epoch: epoch, test accuracy (%), then mean Q of each layer (columns in depth order)."""
        frame = pd.DataFrame(self.q, columns=list(self.layers))
        frame.insert(0, "test accuracy (%)", self.accuracy)
        frame.insert(0, "epoch", self.epochs)
        return frame

    def claims(self, *, source: str, layers: int = 1, scope: str | None = None) -> list[Claim]:
        """"Shallow layers stay nearly constant" (:func:`epoch_range_ratio` < :data:`SHALLOW_RANGE_RATIO`) and
        "deep-layer modularity rises with accuracy" (Pearson :func:`accuracy_correlation` > :data:`DEEP_CORRELATION`)."""
        scope = scope or self.arch
        which = "layer" if layers == 1 else f"{layers} layers"
        span = f"epochs {self.epochs[0]}..{self.epochs[-1]}"
        short = len(self.epochs) < 3
        ratio = epoch_range_ratio(self.q, layers)
        corr = math.nan if short else accuracy_correlation(self.q, self.accuracy, layers)
        return [
            check(f"{scope}: the modularity of the shallow layers stays nearly constant during training",
                  f"range over {span} of the mean Q of the first {which} / that of the last {which}",
                  ratio, "<", SHALLOW_RANGE_RATIO, source=source,
                  reason="the last layers' Q does not change over the epochs"),
            check(f"{scope}: the modularity of the deep layers rises with test accuracy",
                  f"Pearson r over {span} between the mean Q of the last {which} and test accuracy",
                  corr, ">", DEEP_CORRELATION, source=source,
                  reason=(f"a correlation needs at least 3 epochs, got {len(self.epochs)}" if short
                          else "Q of the last layers or the accuracy is constant over the epochs")),
        ]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: arch, epochs, accuracy and the curves."""
        return {"arch": self.arch, "epochs": list(self.epochs), "accuracy": list(self.accuracy),
                "curves": [c.to_dict() for c in self.curves]}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "TrainingDynamics":
        """The dynamics :meth:`to_dict` described."""
        return cls(data["arch"], tuple(data["epochs"]), tuple(Curve.from_dict(c) for c in data["curves"]),
                   tuple(data["accuracy"]))


def training_dynamics(
    spec: "ModelSpec",
    settings: CurveSettings = CurveSettings(),
    *,
    device: str | None = None,
    progress: bool = True,
) -> TrainingDynamics:
    """The cached curve (:func:`modgraph.cache.curve` of :class:`modgraph.store.Snapshot`) of every epoch in
    ``spec.snapshot_epochs`` (at least 2), with the test accuracy after that epoch."""
    from modgraph import cache
    from modgraph.store import Snapshot

    epochs = spec.snapshot_epochs
    if len(epochs) < 2:
        raise ValueError(f"training dynamics need at least 2 snapshot epochs, got {list(epochs)}; "
                         "request them with ModelSpec(snapshot_epochs=range(0, E + 1))")
    curves = tuple(cache.curve(Snapshot(spec, e), settings, device=device, progress=progress)
                   for e in tqdm(epochs, desc=f"{spec.arch} snapshots", disable=not progress))
    return TrainingDynamics(spec.arch, epochs, curves, tuple(c.meta["test_accuracy"] for c in curves))
