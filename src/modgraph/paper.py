"""What the paper says: its quoted numbers, its model lists, and the thresholds its claims are tested with.

The book's one place for the paper's facts. Numbers quoted from the paper
(Table B2, Table 1, the text on Fig. 10) are named ``PAPER_*``; the
thresholds turn a sentence of the paper ("Q increases with depth", "the
curves nearly overlap") into a test and are choices of this book, stated
once here and shown beside every verdict.
"""

from __future__ import annotations

from typing import Any

from modgraph.models.resnet import RESNET152_REMOVED

__all__ = [
    "PAPER_TABLE_B2",
    "quoted_accuracy",
    "PAPER_FIG4_ARCHS",
    "PAPER_FIG4_DATASETS",
    "PAPER_FIG5_ARCHS",
    "PAPER_FIG9",
    "PAPER_FIG10",
    "PAPER_FIG10_POINTS",
    "PAPER_TABLE1",
    "PAPER_TABLE1_MODEL",
    "AUTHORS_THRESHOLD",
    "PLATEAU_RISE",
    "RISE_THRESHOLD",
    "LAST_LAYER_TOLERANCE",
    "SHALLOW_RANGE_RATIO",
    "DEEP_CORRELATION",
    "OVERLAP_TOLERANCE",
    "FLAT_RATIO",
    "AGREEMENT_THRESHOLD",
    "SIGNIFICANCE",
    "ACCURACY_MARGIN",
]

# The paper's numbers and model lists, quoted.

PAPER_TABLE_B2: dict[str, dict[str, float]] = {
    "cifar10": {"vgg11": 92.11, "vgg13": 93.68, "vgg16": 93.63, "vgg19": 93.36, "resnet18": 94.78,
                "resnet34": 95.14, "resnet50": 95.38, "resnet101": 95.18, "resnet152": 95.32},
    "cifar100": {"vgg11": 66.87, "vgg13": 70.19, "vgg16": 72.34, "vgg19": 72.63, "resnet18": 76.87,
                 "resnet34": 76.69, "resnet50": 78.03, "resnet101": 78.21, "resnet152": 78.64},
    "imagenet50": {"vgg11": 83.97, "vgg13": 85.87, "vgg16": 85.04, "vgg19": 87.32, "resnet18": 82.55,
                   "resnet34": 82.99, "resnet50": 85.04, "resnet101": 87.32, "resnet152": 87.89},
}
"""The paper's Table B2, quoted: test accuracy (%) of its nine models per data set (``data set -> arch -> %``)."""


def quoted_accuracy(dataset: str, arch: str) -> float | None:
    """The paper's test accuracy (%) for ``arch`` on ``dataset`` (Table B2), or ``None`` if it lists none."""
    return PAPER_TABLE_B2.get(dataset.lower(), {}).get(arch.lower())


PAPER_FIG4_ARCHS = ("vgg11", "vgg13", "vgg16", "vgg19", "resnet18", "resnet34", "resnet50", "resnet101", "resnet152")
"""The architectures of the paper's Fig. 4."""

PAPER_FIG4_DATASETS = ("cifar10", "cifar100")
"""The data sets of the paper's Fig. 4."""

PAPER_FIG5_ARCHS = ("tv_resnet18", "tv_resnet34", "tv_resnet50", "tv_resnet101", "tv_resnet152")
"""The ImageNet models of the paper's Fig. 5 (torchvision's ResNets)."""

PAPER_FIG9: dict[str, tuple[str, ...]] = {
    "vgg19": tuple(f"vgg19_{n}" for n in range(1, 7)),
    "resnet152": tuple(f"resnet152_{n}" for n in RESNET152_REMOVED),
}
"""The families of the paper's Fig. 9 (CIFAR-10): parent -> its variants."""

PAPER_FIG10: dict[str, tuple[str, ...]] = {"vgg11": ("vgg11_1", "vgg11_2", "vgg11_3")}
"""The family of the paper's Fig. 10 (CIFAR-10 and CIFAR-100)."""

PAPER_FIG10_POINTS: dict[str, tuple[tuple[float, float], ...]] = {
    "cifar10": ((0.01, 0.01), (0.16, 0.57)),
    "cifar100": ((0.08, 0.37), (0.26, 2.11)),
}
"""(Delta-Q, accuracy drop in %) pairs quoted from the paper's text on Fig. 10, per data set."""

PAPER_TABLE1: tuple[dict[str, Any], ...] = (
    {"method": "modularity-guided layer pruning (the paper)", "accuracy (%)": 93.38,
     "parameters reduction (%)": 43.00, "FLOPs reduction (%)": 60.30},
    {"method": "Chen & Zhao 2018", "accuracy (%)": 93.29,
     "parameters reduction (%)": 42.30, "FLOPs reduction (%)": 34.80},
    {"method": "DBP-0.5", "accuracy (%)": 93.39,
     "parameters reduction (%)": None, "FLOPs reduction (%)": 53.41},
)
"""Rows of the paper's Table 1 (ResNet56 on CIFAR-10), quoted; DBP-0.5 has no parameter count there."""

PAPER_TABLE1_MODEL = ("resnet56", "cifar10")
"""The architecture and data set of the paper's Table 1."""

AUTHORS_THRESHOLD = 0.03
"""The threshold on the rise of Q that the authors' released pruning code states."""

# The claims' thresholds (Fig. 4-5: curves; Fig. 6(b): training; Figs. 7, B11-B13: ablations;
# Fig. 8: CKA; Figs. 9-10 and Table 1: pruning).

PLATEAU_RISE = 0.01
"""Rise of Q from one layer to the next below which the layer adds nothing: a plateau step of a curve,
a redundant layer to prune (:func:`modgraph.prune.redundant_layers`)."""

RISE_THRESHOLD = 0.5
"""Spearman rho of Q with depth above which "Q tends to increase with depth" holds."""

LAST_LAYER_TOLERANCE = 0.05
"""``max(Q) - Q[-1]`` up to which the last layer counts as (near-)most modular."""

SHALLOW_RANGE_RATIO = 0.25
"""(range over epochs of the first layers' Q) / (that of the last layers') below which the shallow
layers count as "nearly constant" during training."""

DEEP_CORRELATION = 0.8
"""Pearson r across epochs between the last layers' Q and test accuracy above which the deep
layers' modularity "rises with accuracy"."""

OVERLAP_TOLERANCE = 0.05
"""Largest |difference| of Q (at any layer) up to which curves count as "nearly the same"."""

FLAT_RATIO = 0.25
"""Largest range of Q over depth, relative to the trained model's, of a "nearly flat" curve."""

AGREEMENT_THRESHOLD = 0.5
"""Spearman rho between the two difference matrices above which they "show the same structure"."""

SIGNIFICANCE = 0.05
"""Mantel-test p-value below which the agreement is not explained by chance orderings of the layers."""

ACCURACY_MARGIN = 1.0
"""Largest accuracy drop (percentage points) from the parent that counts as "accuracy is kept"; gains
always count as kept (the paper's point is that removing the layers costs little accuracy)."""
