"""Fig. 6(b): modularity of every layer over the training epochs, beside test accuracy."""

from __future__ import annotations

from typing import TYPE_CHECKING, Mapping

import matplotlib.pyplot as plt
import numpy as np
from matplotlib import cm, colors

if TYPE_CHECKING:
    from modgraph.sections.training import TrainingDynamics

__all__ = ["training_figure"]


def training_figure(dynamics: Mapping[str, "TrainingDynamics"], *, title: str, cmap: str = "viridis") -> plt.Figure:
    """One row per model: a heatmap of mean Q (layer x epoch) and Q of each layer vs epoch with test accuracy.

    ``dynamics`` maps a row label to a
    :class:`~modgraph.sections.training.TrainingDynamics`. All heatmaps share
    one colour scale; in the line panel the colour of a layer's line encodes
    its depth (same colour map) and the dashed black line is the test
    accuracy (%, right axis).
    """
    if not dynamics:
        raise ValueError("training_figure needs at least one model's dynamics")
    qs = {name: d.q for name, d in dynamics.items()}
    vmin = min(float(q.min()) for q in qs.values())
    vmax = max(float(q.max()) for q in qs.values())
    norm = colors.Normalize(vmin=vmin, vmax=vmax if vmax > vmin else vmin + 1e-9)
    fig, axes = plt.subplots(len(dynamics), 2, figsize=(12, 3.6 * len(dynamics)), squeeze=False,
                             gridspec_kw={"width_ratios": [1, 1.15]})
    colour_map = plt.get_cmap(cmap)
    for (heat, lines), (name, d) in zip(axes, dynamics.items()):
        q = qs[name]
        epochs = np.asarray(d.epochs)
        n_layers = q.shape[1]
        image = heat.imshow(q.T, origin="lower", aspect="auto", cmap=colour_map, norm=norm, interpolation="nearest",
                            extent=(-0.5, len(epochs) - 0.5, 0.5, n_layers + 0.5))
        heat.set_xticks(np.arange(len(epochs)), [str(e) for e in epochs])
        if len(epochs) > 12:
            for label in heat.get_xticklabels()[1::2]:
                label.set_visible(False)
        heat.set_xlabel("epoch (0 = initialisation)")
        heat.set_ylabel("layer index")
        heat.set_title(f"{name}: modularity Q per layer")
        heat.grid(False)
        fig.colorbar(image, ax=heat, label="modularity Q")
        for j in range(n_layers):
            lines.plot(epochs, q[:, j], color=colour_map(j / max(1, n_layers - 1)), linewidth=1.2, marker="o",
                       markersize=2)
        lines.set_xlabel("epoch (0 = initialisation)")
        lines.set_ylabel("modularity Q")
        lines.set_title(f"{name}: Q of each layer and test accuracy")
        depth = cm.ScalarMappable(norm=colors.Normalize(1, n_layers), cmap=colour_map)
        fig.colorbar(depth, ax=lines, label="layer index", pad=0.12)
        acc = lines.twinx()
        acc.plot(epochs, d.accuracy, color="black", linestyle="--", linewidth=1.5, label="test accuracy")
        acc.set_ylabel("test accuracy (%)")
        acc.set_ylim(0, 100)
        acc.grid(False)
        acc.legend(loc="lower right", frameon=False)
    fig.suptitle(title)
    fig.tight_layout()
    return fig
