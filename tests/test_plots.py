"""Figures: the data drawn equals the curves given, files are written atomically and reproducibly."""

import numpy as np
import pytest

from modgraph import figures, plots
from modgraph.curve import Curve
from modgraph.plots import curves as curve_plots
from modgraph.plots import tsne


def make_curve(values, name="m"):
    values = np.atleast_2d(values)
    return Curve(tuple(f"layer{i}" for i in range(values.shape[1])), values, {"model": name})


def test_plot_curves_draws_mean_and_std_band():
    c = make_curve([[0.1, 0.3, 0.5], [0.3, 0.5, 0.7]])
    ax = curve_plots.plot_curves({"A": c, "B": make_curve([[0.0, 0.1], [0.0, 0.1]])})
    line = ax.lines[0]
    np.testing.assert_allclose(line.get_ydata(), [0.2, 0.4, 0.6])
    np.testing.assert_allclose(line.get_xdata(), [1, 2, 3])
    band = ax.collections[0].get_paths()[0].vertices[:, 1]
    std = np.std([[0.1, 0.3, 0.5], [0.3, 0.5, 0.7]], axis=0, ddof=1)
    assert band.min() == pytest.approx((c.mean - std).min()) and band.max() == pytest.approx((c.mean + std).max())
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["A", "B"]
    assert ax.get_ylabel() == "modularity Q"


def test_relative_depth_axis_ends_at_one():
    ax = curve_plots.plot_curves({"A": make_curve([[0.1, 0.2, 0.3, 0.4]])}, x="relative")
    np.testing.assert_allclose(ax.lines[0].get_xdata(), [0.25, 0.5, 0.75, 1.0])


def test_unknown_axis_and_empty_input_are_rejected():
    with pytest.raises(ValueError, match=r"unknown x axis 'depth'; valid choices: index, relative"):
        curve_plots.plot_curves({"A": make_curve([[0.1, 0.2]])}, x="depth")
    with pytest.raises(ValueError, match="at least one curve"):
        curve_plots.plot_curves({})
    with pytest.raises(ValueError, match="at least one panel"):
        curve_plots.curve_grid({}, title="t")


def test_curve_grid_draws_measured_panels_only():
    fig = curve_plots.curve_grid({"cifar10": {"A": make_curve([[0.1, 0.2]])}, "cifar100": "data set absent"},
                                 title=plots.paper_title("4", "curves"), ncols=3)
    visible = [ax for ax in fig.axes if ax.get_visible()]
    assert [ax.get_title() for ax in visible] == ["cifar10"]
    assert not any(ax.texts for ax in visible)
    assert fig._suptitle.get_text() == "Fig. 4 (paper): curves"


def test_curve_grid_without_curves_is_not_drawn(tmp_path):
    import matplotlib.pyplot as plt

    before = plt.get_fignums()
    result = curve_plots.curve_grid({"imagenet50": "no images", "cifar100": "absent"}, title="t")
    assert isinstance(result, figures.NotDrawn) and "imagenet50, cifar100: not measured" in result.reason
    assert plt.get_fignums() == before  # no empty frame was made
    (tmp_path / "fig5.png").write_bytes(b"old")
    assert figures.save_figure(result, "fig5", tmp_path) == [] and not list(tmp_path.iterdir())


def test_paper_title_needs_figure_number():
    assert plots.paper_title("B1", "x") == "Fig. B1 (paper): x"
    with pytest.raises(ValueError, match="figure number"):
        plots.paper_title(" ", "x")


def test_tsne_figure_titles_show_each_layers_q():
    c = make_curve([[0.1, 0.4], [0.3, 0.6]])
    emb = {"layer0": np.zeros((4, 2)), "layer1": np.ones((4, 2))}
    fig = tsne.tsne_figure(emb, [0, 1, 1, 0], ["a", "b"], curve=c, title="Fig. 1 (paper): t")
    titles = [ax.get_title() for ax in fig.axes if ax.get_visible()]
    assert titles == ["layer0  Q=0.200", "layer1  Q=0.500", "modularity curve"]
    with pytest.raises(ValueError, match=r"expected \(4, 2\)"):
        tsne.tsne_figure({"layer0": np.zeros((3, 2))}, [0, 1, 1, 0], ["a", "b"], title="t")
    with pytest.raises(ValueError, match="index the 2 classes"):
        tsne.tsne_figure(emb, [0, 1, 2, 0], ["a", "b"], title="t")
    with pytest.raises(ValueError, match="curve has no layers"):
        tsne.tsne_figure({"conv9": np.zeros((4, 2))}, [0, 1, 1, 0], ["a", "b"], curve=c, title="t")


def test_agreement_figure_draws_a_line_per_rank_and_the_alternative():
    from modgraph.agreement import Agreement
    from modgraph.plots import ablations

    result = Agreement(("a", "b", "c"), {"cosine": np.tile([0.9, 0.6, 0.3], (3, 1)),
                                         "pearson": np.tile([1.0, 0.8, 0.6], (3, 1))})
    fig = ablations.agreement_figure({"m1": result, "m2": result}, ranks=(1, 3), similarity="cosine",
                                     alternative="pearson", k=2, title="t")
    ax = fig.axes[0]
    assert [line.get_label() for line in ax.get_lines()] == ["first 1, cosine", "first 3, cosine", "first 2, pearson"]
    np.testing.assert_allclose(ax.get_lines()[1].get_ydata(), [0.6] * 3)  # mean of 0.9, 0.6, 0.3
    np.testing.assert_allclose(ax.get_lines()[2].get_ydata(), [0.9] * 3)
    assert len([a for a in fig.axes if a.get_visible()]) == 2
    chance = Agreement(result.layers, result.values, {"classes": 10})
    line = ablations.agreement_figure({"m": chance}, ranks=(1,), similarity="cosine", title="t").axes[0].get_lines()[-1]
    assert line.get_label() == "chance (1/10)" and list(line.get_ydata()) == [0.1, 0.1]
    with pytest.raises(ValueError, match="at least one model"):
        ablations.agreement_figure({}, ranks=(1,), similarity="cosine", title="t")
