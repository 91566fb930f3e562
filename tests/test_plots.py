"""Figures: the data drawn equals the curves given, files are written atomically and reproducibly."""

import numpy as np
import pytest
import torch

from modgraph import plots
from modgraph.curve import Curve
from modgraph.plots import curves as curve_plots
from modgraph.plots import tsne


def make_curve(values, name="m"):
    values = np.atleast_2d(values)
    return Curve(tuple(f"layer{i}" for i in range(values.shape[1])), values, {"model": name})


@pytest.fixture(autouse=True)
def close_figures():
    yield
    import matplotlib.pyplot as plt

    plt.close("all")


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
    assert isinstance(result, plots.NotDrawn) and "imagenet50, cifar100: not measured" in result.reason
    assert plt.get_fignums() == before  # no empty frame was made
    (tmp_path / "fig5.png").write_bytes(b"old")
    assert plots.save_figure(result, "fig5", tmp_path) == [] and not list(tmp_path.iterdir())


def test_paper_title_needs_figure_number():
    assert plots.paper_title("B1", "x") == "Fig. B1 (paper): x"
    with pytest.raises(ValueError, match="figure number"):
        plots.paper_title(" ", "x")


def test_save_figure_writes_png_and_pdf_reproducibly(tmp_path):
    import matplotlib.pyplot as plt

    plots.set_style()
    fig, ax = plt.subplots()
    ax.plot([0, 1], [0, 1])
    first = plots.save_figure(fig, "fig4_test", tmp_path)
    assert [p.name for p in first] == ["fig4_test.png", "fig4_test.pdf"]
    assert first[0].read_bytes().startswith(b"\x89PNG") and first[1].read_bytes().startswith(b"%PDF")
    snapshot = [p.read_bytes() for p in first]
    plots.save_figure(fig, "fig4_test", tmp_path)
    assert [p.read_bytes() for p in first] == snapshot  # no timestamps: reruns do not change the files
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fig4_test.pdf", "fig4_test.png"]  # no temp files left


@pytest.mark.parametrize("name", ["", "../x", "a/b", ".hidden"])
def test_save_figure_rejects_paths_as_names(tmp_path, name):
    import matplotlib.pyplot as plt

    with pytest.raises(ValueError, match="plain file stem"):
        plots.save_figure(plt.figure(), name, tmp_path)


def test_tsne_embed_is_seeded_and_checks_shapes():
    X = np.random.default_rng(0).normal(size=(40, 6))
    a = tsne.tsne_embed(X, seed=1, perplexity=5)
    assert a.shape == (40, 2)
    np.testing.assert_array_equal(a, tsne.tsne_embed(X, seed=1, perplexity=5))
    with pytest.raises(ValueError, match=r"shape \(N, D\)"):
        tsne.tsne_embed(X[0])
    with pytest.raises(ValueError, match="perplexity"):
        tsne.tsne_embed(X, perplexity=40)


class TwoLayers(torch.nn.Module):
    """The smallest model that declares feature layers."""

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 4, 3)
        self.head = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.LazyLinear(10))
        self.head(self.conv(torch.zeros(1, 3, 8, 8)))

    def forward(self, x):
        return self.head(self.conv(x))

    def feature_layers(self, tap="block"):
        return [("conv", self.conv), ("head", self.head)]


def test_layer_embeddings_embed_every_layer_like_tsne_of_its_features():
    from modgraph.features import iter_layer_features

    model = TwoLayers().eval()
    images = torch.rand(30, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    emb = tsne.layer_embeddings(model, images, perplexity=5, seed=3, progress=False)
    assert list(emb) == ["conv", "head"]
    conv = dict(iter_layer_features(model, images, tap="block", progress=False))["conv"]
    np.testing.assert_allclose(emb["conv"], tsne.tsne_embed(conv.numpy(), seed=3, perplexity=5))


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
