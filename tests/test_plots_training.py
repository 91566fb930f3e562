"""Fig. 6(b) figure: the heatmap and lines show the dynamics' Q, one colour scale for all models."""

import numpy as np
import pytest

from modgraph.curve import Curve
from modgraph.plots.training import training_figure
from modgraph.sections.training import TrainingDynamics


def dynamics(q, acc):
    q = np.asarray(q, dtype=float)
    layers = tuple(f"l{j}" for j in range(q.shape[1]))
    return TrainingDynamics("m", tuple(range(len(q))), tuple(Curve(layers, [row]) for row in q), tuple(acc))


def test_heatmap_and_lines_draw_q_and_accuracy():
    q = [[0.1, 0.2, 0.3], [0.1, 0.4, 0.6], [0.12, 0.5, 0.8]]
    fig = training_figure({"a": dynamics(q, [10, 50, 80]), "b": dynamics(np.array(q)[:, :2] * 0.5, [10, 20, 30])},
                          title="Fig. 6(b) (paper): t")
    heat, lines, acc = fig.axes[0], fig.axes[1], [ax for ax in fig.axes if ax.get_ylabel() == "test accuracy (%)"][0]
    np.testing.assert_allclose(heat.images[0].get_array(), np.array(q).T)
    np.testing.assert_allclose([line.get_ydata() for line in lines.lines], np.array(q).T)
    np.testing.assert_allclose(acc.lines[0].get_ydata(), [10, 50, 80])
    heatmaps = [ax.images[0] for ax in fig.axes if ax.images]
    assert len(heatmaps) == 2 and {(im.norm.vmin, im.norm.vmax) for im in heatmaps} == {(0.05, 0.8)}
    assert fig._suptitle.get_text() == "Fig. 6(b) (paper): t" and heat.get_title() == "a: modularity Q per layer"


def test_empty_input_is_rejected():
    with pytest.raises(ValueError, match="at least one model"):
        training_figure({}, title="t")
