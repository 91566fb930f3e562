"""Pruning figures: the points drawn are the points given, absent data sets say why, bad input is refused."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest

from modgraph.curve import Curve
from modgraph.figures import NotDrawn
from modgraph.plots.pruning import POINT_COLUMNS, delta_q_figure, pruned_curve_figure

POINTS = pd.DataFrame([
    {"data set": "cifar10", "model": "vgg11_1", "Delta-Q": 0.02, "accuracy drop (%)": 0.1, "source": "measured"},
    {"data set": "cifar10", "model": "vgg11_2", "Delta-Q": 0.12, "accuracy drop (%)": 0.9, "source": "measured"},
    {"data set": "cifar10", "model": "", "Delta-Q": 0.01, "accuracy drop (%)": 0.01, "source": "paper (quoted)"},
    {"data set": "cifar10", "model": "", "Delta-Q": 0.16, "accuracy drop (%)": 0.57, "source": "paper (quoted)"},
])


@pytest.fixture(autouse=True)
def _close():
    yield
    plt.close("all")


def offsets(ax: plt.Axes) -> list[np.ndarray]:
    return [np.asarray(c.get_offsets()) for c in ax.collections]


def test_delta_q_figure_draws_measured_and_quoted_points():
    fig = delta_q_figure(POINTS, datasets=["cifar10", "cifar100"], missing={"cifar100": "no files under data/"},
                         title="Fig. 10 (paper): test")
    (measured_ax,) = [ax for ax in fig.axes if ax.get_visible()]
    measured, quoted = offsets(measured_ax)
    np.testing.assert_allclose(measured, [[0.02, 0.1], [0.12, 0.9]])
    np.testing.assert_allclose(quoted, [[0.01, 0.01], [0.16, 0.57]])
    assert [t.get_text() for t in measured_ax.texts] == ["vgg11_1", "vgg11_2"]
    assert [t.get_text() for t in measured_ax.get_legend().get_texts()] == ["measured (ours)", "paper (quoted)"]
    assert measured_ax.get_title() == "cifar10"
    assert fig._suptitle.get_text() == "Fig. 10 (paper): test"


def test_delta_q_figure_without_measured_data_sets_is_not_drawn():
    result = delta_q_figure(POINTS, datasets=["cifar100"], missing={"cifar100": "no files"}, title="t")
    assert isinstance(result, NotDrawn) and result.reason.startswith("cifar100: not measured")


def test_delta_q_figure_rejects_bad_input():
    with pytest.raises(ValueError, match=r"lack the columns \['source'\]"):
        delta_q_figure(POINTS.drop(columns="source"), datasets=["cifar10"], title="t")
    with pytest.raises(ValueError, match="at least one data set"):
        delta_q_figure(POINTS, datasets=[], title="t")
    assert list(POINT_COLUMNS) == list(POINTS.columns)


def test_pruned_curve_figure_marks_the_named_layers():
    curve = Curve(("stem", "layer1.0", "layer1.1", "layer2.0"), [[0.1, 0.2, 0.3, 0.5], [0.1, 0.2, 0.5, 0.5]])
    fig = pruned_curve_figure(curve, ["layer1.0"], kept=["layer1.1"], title="Table 1 (paper): test")
    removed, kept = offsets(fig.axes[0])[-2:]
    np.testing.assert_allclose(removed, [[2, 0.2]])
    np.testing.assert_allclose(kept, [[3, 0.4]])
    labels = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert labels == ["unpruned model", "removed (1)", "redundant but kept (1)"]
    with pytest.raises(ValueError, match="layer9.0 not among the curve's layers; valid choices: stem"):
        pruned_curve_figure(curve, ["layer9.0"], title="t")
